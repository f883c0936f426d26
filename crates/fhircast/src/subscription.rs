//! Subscription requests (2-4): the form a subscriber POSTs to `hub.url`
//! (checklist 8-11, 36). JSON bodies with the same fields are tolerated.

use std::borrow::Cow;
use std::collections::hash_map::Entry;
use std::collections::HashMap;

use serde_json::Value;

use crate::event::EventSet;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Subscribe,
    Unsubscribe,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelType {
    WebSocket,
    Webhook,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub mode: Mode,
    /// `None` only in STU1 requests, which predate `hub.channel.type`.
    pub channel: Option<ChannelType>,
    pub topic: String,
    pub events: EventSet,
    pub lease_seconds: Option<u64>,
    /// `hub.channel.endpoint` (or the `endpoint` of Medplum clients up to 5.1).
    pub endpoint: Option<String>,
    pub subscriber_name: Option<String>,
    pub callback: Option<String>,
    pub secret: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SubscriptionError(pub String);

fn fail<T>(msg: impl Into<String>) -> Result<T, SubscriptionError> {
    Err(SubscriptionError(msg.into()))
}

const MAX_FIELD_LEN: usize = 4096;

/// Most fields a subscription request may have. The spec's form has ten at
/// most (mode, topic, events, channel type and endpoint, lease, callback,
/// secret, subscriber name, and Medplum's `endpoint`); 64 leaves room for
/// clients that add their own.
pub const MAX_FIELDS: usize = 64;

fn too_many_fields() -> String {
    format!("a subscription request has at most {MAX_FIELDS} fields; this one has more")
}

impl SubscriptionRequest {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn from_form(body: &[u8]) -> Result<Self, SubscriptionError> {
        if std::str::from_utf8(body).is_err() {
            return fail("body is not UTF-8 text");
        }
        Self::from_pairs(form_urlencoded::parse(body))
    }

    /// Parses a JSON object with the same field names (some clients send one).
    pub fn from_json(value: &Value) -> Result<Self, SubscriptionError> {
        let Some(obj) = value.as_object() else {
            return fail("a subscription request must be a form or a JSON object");
        };
        if obj.len() > MAX_FIELDS {
            return fail(too_many_fields());
        }
        let mut pairs = Vec::with_capacity(obj.len());
        for (k, v) in obj {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                Value::Array(items) => items
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                Value::Null => continue,
                _ => return fail(format!("field {k} must be a string")),
            };
            pairs.push((Cow::Owned(k.clone()), Cow::Owned(text)));
        }
        Self::from_pairs(pairs)
    }

    /// Linear in the number of fields, and stops at [`MAX_FIELDS`] before
    /// decoding or storing any more of them.
    fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (Cow<'a, str>, Cow<'a, str>)>,
    ) -> Result<Self, SubscriptionError> {
        let mut fields: HashMap<String, String> = HashMap::new();
        for (count, (k, v)) in pairs.into_iter().enumerate() {
            if count >= MAX_FIELDS {
                return fail(too_many_fields());
            }
            if v.len() > MAX_FIELD_LEN {
                return fail(format!(
                    "field {k} is longer than {MAX_FIELD_LEN} characters"
                ));
            }
            match fields.entry(k.into_owned()) {
                Entry::Occupied(seen) => {
                    return fail(format!("field {} is given more than once", seen.key()))
                }
                Entry::Vacant(slot) => {
                    slot.insert(v.into_owned());
                }
            }
        }
        let get = |name: &str| {
            fields
                .get(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let mode = match get("hub.mode").as_deref() {
            Some("subscribe") => Mode::Subscribe,
            Some("unsubscribe") => Mode::Unsubscribe,
            Some(other) => {
                return fail(format!(
                    "hub.mode must be subscribe or unsubscribe, not {other:?}"
                ))
            }
            None => return fail("missing required field: hub.mode"),
        };
        let channel = match get("hub.channel.type") {
            None => None,
            Some(t) if t.eq_ignore_ascii_case("websocket") => Some(ChannelType::WebSocket),
            Some(t) if t.eq_ignore_ascii_case("webhook") => Some(ChannelType::Webhook),
            Some(other) => {
                return fail(format!(
                    "hub.channel.type {other:?} is not supported; use websocket"
                ))
            }
        };
        let Some(topic) = get("hub.topic") else {
            return fail("missing required field: hub.topic");
        };
        if topic.len() > 256 {
            return fail("hub.topic is longer than 256 characters");
        }
        let events = match get("hub.events") {
            Some(list) => {
                EventSet::parse(&list).map_err(|e| SubscriptionError(format!("hub.events: {e}")))?
            }
            None => EventSet::default(),
        };
        if mode == Mode::Subscribe && events.is_empty() {
            return fail("hub.events must list at least one event to subscribe to");
        }
        let lease_seconds = match get("hub.lease_seconds") {
            None => None,
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n > 0 => Some(n),
                _ => {
                    return fail(format!(
                        "hub.lease_seconds must be a positive whole number of seconds, not {s:?}"
                    ))
                }
            },
        };
        Ok(SubscriptionRequest {
            mode,
            channel,
            topic,
            events,
            lease_seconds,
            endpoint: get("hub.channel.endpoint").or_else(|| get("endpoint")),
            subscriber_name: get("subscriber.name"),
            callback: get("hub.callback"),
            secret: fields.get("hub.secret").cloned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_subscribe_form() {
        let body = b"hub.channel.type=websocket&hub.mode=subscribe&hub.topic=fdb2f928&hub.events=Patient-open,Patient-close";
        let r = SubscriptionRequest::from_form(body).unwrap();
        assert_eq!(r.mode, Mode::Subscribe);
        assert_eq!(r.channel, Some(ChannelType::WebSocket));
        assert_eq!(r.events.to_string(), "Patient-open,Patient-close");
    }

    #[test]
    fn unsubscribe_endpoint_is_trimmed_and_legacy_name_accepted() {
        let body = b"hub.channel.type=websocket&hub.channel.endpoint=wss%3A%2F%2Fhub%2Fabc%0A&hub.mode=unsubscribe&hub.topic=t";
        let r = SubscriptionRequest::from_form(body).unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("wss://hub/abc"));
        let r = SubscriptionRequest::from_form(
            b"hub.mode=unsubscribe&hub.topic=t&endpoint=ws%3A%2F%2Fx%2Fy",
        )
        .unwrap();
        assert_eq!(r.endpoint.as_deref(), Some("ws://x/y"));
    }

    #[test]
    fn readable_errors() {
        let e = |b: &[u8]| SubscriptionRequest::from_form(b).unwrap_err().0;
        assert_eq!(e(b"hub.topic=t"), "missing required field: hub.mode");
        assert!(e(b"hub.mode=subscribe&hub.topic=t&hub.events=").contains("at least one event"));
        assert!(
            e(b"hub.mode=subscribe&hub.topic=t&hub.events=a&hub.events=b")
                .contains("more than once")
        );
        assert!(
            e(b"hub.mode=subscribe&hub.topic=t&hub.events=a&hub.lease_seconds=-1")
                .contains("positive")
        );
        assert!(e(b"hub.mode=subscribe&hub.topic=t&hub.events=*-open").contains("wildcard"));
    }

    #[test]
    fn a_hundred_thousand_fields_are_refused_quickly() {
        let body = (0..100_000)
            .map(|i| format!("f{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        let started = std::time::Instant::now();
        let e = SubscriptionRequest::from_form(body.as_bytes()).unwrap_err();
        // A complexity bound, not a timing race: parsing stops at field 65.
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            e.0,
            "a subscription request has at most 64 fields; this one has more"
        );
        let object: serde_json::Map<String, Value> = (0..80_000)
            .map(|i| (format!("k{i}"), Value::from("v")))
            .collect();
        let started = std::time::Instant::now();
        let e = SubscriptionRequest::from_json(&Value::Object(object)).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert_eq!(
            e.0,
            "a subscription request has at most 64 fields; this one has more"
        );
    }

    #[test]
    fn sixty_four_distinct_fields_are_fine() {
        let mut body = String::from("hub.mode=subscribe&hub.topic=t&hub.events=Patient-open");
        for i in 0..61 {
            body.push_str(&format!("&x{i}=1"));
        }
        assert!(SubscriptionRequest::from_form(body.as_bytes()).is_ok());
        body.push_str("&one.more=1");
        assert!(SubscriptionRequest::from_form(body.as_bytes()).is_err());
    }

    #[test]
    fn a_bare_star_is_a_wildcard_set() {
        let r =
            SubscriptionRequest::from_form(b"hub.mode=subscribe&hub.topic=t&hub.events=*").unwrap();
        assert!(r.events.is_wildcard());
        assert_eq!(r.events.to_string(), "*");
    }
}
