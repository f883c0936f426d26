//! Parses and validates an event message `{timestamp, id, event}` as a
//! subscriber POSTs it (checklist 42, 44, 45, 60, 67, 84, 101). Catalog
//! events are checked key by key; other events by their shape, so that
//! custom events can be forwarded (IHE IRA).

use serde_json::{Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::catalog::{self, KeySpec, ValueKind};
use crate::event::{EventKind, EventName};
use crate::Version;

/// A validated event message. `message` is the whole request as received,
/// so that the broadcast forwards it unchanged apart from version fields.
#[derive(Clone, Debug)]
pub struct Event {
    pub id: String,
    pub timestamp: String,
    pub topic: String,
    pub name: EventName,
    /// `context.versionId` (or the `versionId` spelling of 2-3's table).
    pub version_id: Option<String>,
    pub message: Map<String, Value>,
}

/// Why a message was refused; the text is meant for a developer's eyes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValidationError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ValidationError> {
    Err(ValidationError(msg.into()))
}

/// Largest `id`/topic we keep; longer strings are refused rather than stored.
const MAX_ID_LEN: usize = 256;

impl Event {
    /// The `event` object.
    pub fn event(&self) -> &Map<String, Value> {
        self.message["event"].as_object().expect("checked in parse")
    }

    pub fn event_mut(&mut self) -> &mut Map<String, Value> {
        self.message
            .get_mut("event")
            .and_then(Value::as_object_mut)
            .expect("checked in parse")
    }

    /// The context entries.
    pub fn context(&self) -> &[Value] {
        self.event()["context"]
            .as_array()
            .expect("checked in parse")
    }

    /// Parses raw bytes (UTF-8 JSON) and validates them.
    pub fn parse(body: &[u8], version: Version) -> Result<Event, ValidationError> {
        let value = crate::json::parse_bounded(body).map_err(|e| ValidationError(e.to_string()))?;
        Event::from_value(value, version)
    }

    pub fn from_value(value: Value, version: Version) -> Result<Event, ValidationError> {
        let Value::Object(mut message) = value else {
            return err("an event message must be a JSON object with timestamp, id and event");
        };
        let timestamp = required_str(&message, "timestamp", "")?;
        if !is_instant(&timestamp) {
            return err(format!(
                "timestamp {timestamp:?} is not an RFC 3339 instant such as \"2026-01-01T08:30:00Z\""
            ));
        }
        let id = required_str(&message, "id", "")?;
        if id.len() > MAX_ID_LEN {
            return err(format!("id is longer than {MAX_ID_LEN} characters"));
        }
        let Some(event) = message.get_mut("event") else {
            return err("missing required field: event");
        };
        let Value::Object(event) = event else {
            return err("event must be a JSON object");
        };
        let topic = required_str(event, "hub.topic", "event.")?;
        if topic.len() > MAX_ID_LEN {
            return err(format!(
                "event.hub.topic is longer than {MAX_ID_LEN} characters"
            ));
        }
        let raw_name = required_str(event, "hub.event", "event.")?;
        let name = EventName::parse(&raw_name)
            .map_err(|e| ValidationError(format!("event.hub.event: {e}")))?;
        // 2-3's table says `versionId`; every example says `context.versionId`.
        // Accept both, keep one.
        if let Some(v) = event.remove("versionId") {
            event.entry("context.versionId").or_insert(v);
        }
        // An empty versionId on an open is noise (the event-validator CLI
        // sends one): the hub assigns the open's versionId itself.
        if matches!(name.kind(), EventKind::Open(_))
            && event.get("context.versionId") == Some(&Value::String(String::new()))
        {
            event.remove("context.versionId");
        }
        let version_id = match event.get("context.versionId") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
            Some(_) => return err("event.context.versionId must be a non-empty string"),
        };
        let Some(Value::Array(context)) = event.get("context") else {
            return err(match event.get("context") {
                None => "missing required field: event.context",
                Some(_) => "event.context must be an array",
            });
        };
        for (i, entry) in context.iter().enumerate() {
            check_entry_shape(i, entry)?;
        }
        check_context(&name, context, version)?;
        if matches!(name.kind(), EventKind::Update(_)) && version_id.is_none() {
            return err(format!(
                "{} needs event.context.versionId: the versionId of the context being updated",
                name
            ));
        }
        Ok(Event {
            id,
            timestamp,
            topic,
            name,
            version_id,
            message,
        })
    }
}

/// Is `timestamp` a date and time we can order events by? RFC 3339, plus
/// the two liberties the FHIRcast 3.0.0 spec's own example messages take
/// (which validators and clients copy): no offset (the spec says UTC) and an
/// hour written with three digits (`T010:38:04.16`).
fn is_instant(timestamp: &str) -> bool {
    let Some((date, time)) = timestamp.split_once(['T', 't']) else {
        return false;
    };
    let time = match time.as_bytes() {
        [b'0', h1, h2, b':', ..] if h1.is_ascii_digit() && h2.is_ascii_digit() => &time[1..],
        _ => time,
    };
    let has_offset = time.ends_with(['Z', 'z']) || time.contains(['+', '-']);
    let normalized = format!("{date}T{time}{}", if has_offset { "" } else { "Z" });
    OffsetDateTime::parse(&normalized, &Rfc3339).is_ok()
}

fn required_str(
    obj: &Map<String, Value>,
    field: &str,
    prefix: &str,
) -> Result<String, ValidationError> {
    match obj.get(field) {
        None | Some(Value::Null) => err(format!("missing required field: {prefix}{field}")),
        Some(Value::String(s)) if s.trim().is_empty() => {
            err(format!("{prefix}{field} must not be empty"))
        }
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => err(format!("{prefix}{field} must be a string")),
    }
}

fn check_entry_shape(i: usize, entry: &Value) -> Result<(), ValidationError> {
    let Some(obj) = entry.as_object() else {
        return err(format!("event.context[{i}] must be an object with a key"));
    };
    match obj.get("key") {
        Some(Value::String(k)) if !k.is_empty() => {}
        _ => return err(format!("event.context[{i}].key must be a non-empty string")),
    }
    if obj.len() < 2 {
        return err(format!(
            "event.context[{i}] has a key but no value (resource, reference, ...)"
        ));
    }
    Ok(())
}

fn key_of(entry: &Value) -> &str {
    entry["key"].as_str().unwrap_or_default()
}

fn check_context(
    name: &EventName,
    context: &[Value],
    version: Version,
) -> Result<(), ValidationError> {
    let kind = name.kind();
    if let Some(entry) = catalog::lookup(name.folded()) {
        // STU2 made SyncError's OperationOutcome optional and logout/hibernate
        // empty; STU2 clients may still send them so.
        let relaxed = version == Version::Stu2
            && matches!(
                kind,
                EventKind::SyncError | EventKind::UserLogout | EventKind::UserHibernate
            );
        // Open/close resources need their id (close is matched to open by it);
        // Parameters and OperationOutcome in the spec's examples have none.
        let needs_id = matches!(kind, EventKind::Open(_) | EventKind::Close(_));
        for spec in entry.keys {
            check_key(name, context, spec, relaxed, needs_id)?;
        }
        for item in context {
            let key = key_of(item);
            if key != "extension" && !entry.keys.iter().any(|s| s.key == key) {
                let allowed: Vec<_> = entry.keys.iter().map(|s| s.key).collect();
                return err(format!(
                    "{name} does not carry a context key {key:?} (allowed: {})",
                    if allowed.is_empty() {
                        "none".to_owned()
                    } else {
                        allowed.join(", ")
                    }
                ));
            }
        }
        return Ok(());
    }
    match kind {
        EventKind::Heartbeat => err("heartbeat events are sent by the hub, not published to it"),
        EventKind::Open(resource) | EventKind::Close(resource) => {
            let found = context.iter().any(|item| {
                item.get("resource")
                    .and_then(|r| resource_type_and_id(r))
                    .is_some_and(|(t, _)| t.eq_ignore_ascii_case(&resource))
            });
            if found {
                Ok(())
            } else {
                err(format!(
                    "{name} needs a context entry whose resource is a {resource} with an id"
                ))
            }
        }
        EventKind::Update(resource) | EventKind::Select(resource) => {
            if anchor_reference(context, &resource).is_none() {
                return err(format!(
                    "{name} needs a context entry referencing the {resource} it applies to"
                ));
            }
            if matches!(name.kind(), EventKind::Update(_)) {
                let updates = context.iter().filter(|i| key_of(i) == "updates").count();
                if updates != 1 {
                    return err(format!(
                        "{name} needs exactly one 'updates' Bundle (found {updates})"
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn check_key(
    name: &EventName,
    context: &[Value],
    spec: &KeySpec,
    relaxed: bool,
    needs_id: bool,
) -> Result<(), ValidationError> {
    let items: Vec<&Value> = context.iter().filter(|i| key_of(i) == spec.key).collect();
    let min = if relaxed { 0 } else { spec.min };
    if items.len() < min {
        return err(format!("{name} needs the context key {:?}", spec.key));
    }
    if let Some(max) = spec.max {
        if items.len() > max {
            return err(format!(
                "{name} allows the context key {:?} at most {max} time(s)",
                spec.key
            ));
        }
    }
    for item in items {
        check_value(name, spec, item, needs_id)?;
    }
    Ok(())
}

fn check_value(
    name: &EventName,
    spec: &KeySpec,
    item: &Value,
    needs_id: bool,
) -> Result<(), ValidationError> {
    let key = spec.key;
    let as_resource = |want: &str| -> Result<(), ValidationError> {
        let Some(resource) = item.get("resource") else {
            return err(format!("{name}: context key {key:?} must carry a resource"));
        };
        let resource_type = resource.get("resourceType").and_then(Value::as_str);
        let has_id = resource
            .get("id")
            .and_then(Value::as_str)
            .is_some_and(|id| !id.is_empty());
        match resource_type {
            Some(t) if t != want => err(format!(
                "{name}: context key {key:?} must be a {want}, not a {t}"
            )),
            Some(_) if needs_id && want != "Bundle" && !has_id => err(format!(
                "{name}: context key {key:?} must be a {want} resource with an id"
            )),
            Some(_) => Ok(()),
            None => err(format!(
                "{name}: context key {key:?} must be a {want} resource with a resourceType"
            )),
        }
    };
    let as_reference = |want: &str| -> Result<(), ValidationError> {
        let Some(reference) = item.get("reference") else {
            return err(format!(
                "{name}: context key {key:?} must carry a reference"
            ));
        };
        match parse_reference(reference) {
            Some((t, _)) if want.is_empty() || t == want => Ok(()),
            Some((t, _)) => err(format!("{name}: context key {key:?} must reference a {want}, not a {t}")),
            None => err(format!("{name}: context key {key:?} must be a reference of the form {{\"reference\": \"Type/id\"}}")),
        }
    };
    match spec.kind {
        ValueKind::Resource(want) => as_resource(want),
        ValueKind::Reference(want) => as_reference(want),
        ValueKind::ResourceOrReference(want) => {
            if item.get("resource").is_some() {
                as_resource(want)
            } else {
                as_reference(want)
            }
        }
    }
}

/// `(resourceType, id)` of a FHIR resource object, when it has both.
pub fn resource_type_and_id(resource: &Value) -> Option<(&str, &str)> {
    let t = resource.get("resourceType")?.as_str()?;
    let id = resource.get("id")?.as_str()?;
    (!t.is_empty() && !id.is_empty()).then_some((t, id))
}

/// `(type, id)` of a Reference object `{"reference": "Type/id"}`; absolute
/// URLs are read by their last two segments.
pub fn parse_reference(reference: &Value) -> Option<(&str, &str)> {
    parse_reference_str(reference.get("reference")?.as_str()?)
}

pub fn parse_reference_str(s: &str) -> Option<(&str, &str)> {
    let s = s.split(['?', '#']).next()?;
    let mut parts = s.trim_end_matches('/').rsplit('/');
    let id = parts.next()?;
    let t = parts.next()?;
    let ok = !id.is_empty()
        && t.chars().next()?.is_ascii_uppercase()
        && t.bytes().all(|b| b.is_ascii_alphabetic());
    ok.then_some((t, id))
}

/// The `(type, id)` an `-update`/`-select` event applies to: the first context
/// entry that references or holds a resource of the anchor's type.
pub fn anchor_reference<'a>(
    context: &'a [Value],
    resource_type: &str,
) -> Option<(&'a str, &'a str)> {
    context.iter().find_map(|item| {
        let found = match (item.get("reference"), item.get("resource")) {
            (Some(r), _) => parse_reference(r),
            (None, Some(r)) => resource_type_and_id(r),
            _ => None,
        };
        found.filter(|(t, _)| t.eq_ignore_ascii_case(resource_type))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(event: &str, context: Value) -> Value {
        json!({"timestamp": "2026-01-01T00:00:00Z", "id": "e1",
               "event": {"hub.topic": "t", "hub.event": event, "context": context}})
    }

    #[test]
    fn patient_open_is_valid_and_keeps_the_message() {
        let e = Event::from_value(
            msg(
                "patient-open",
                json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]),
            ),
            Version::Stu3,
        )
        .unwrap();
        assert_eq!(e.name.as_str(), "patient-open");
        assert_eq!(e.context().len(), 1);
    }

    #[test]
    fn errors_name_the_field() {
        let e = |v: Value| Event::from_value(v, Version::Stu3).unwrap_err().0;
        assert_eq!(
            e(json!({"id": "x", "event": {}})),
            "missing required field: timestamp"
        );
        assert!(e(msg("Patient-open", json!([]))).contains("\"patient\""));
        assert!(e(msg(
            "Patient-open",
            json!([{"key": "patient", "resource": {"resourceType": "Encounter", "id": "1"}}])
        ))
        .contains("must be a Patient"));
        assert!(e(msg("Patient-open", json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "1"}}, {"key": "bogus", "string": "x"}]))).contains("bogus"));
        assert!(e(msg("DiagnosticReport-update", json!([{"key": "report", "reference": {"reference": "DiagnosticReport/1"}}, {"key": "updates", "resource": {"resourceType": "Bundle", "type": "transaction"}}]))).contains("versionId"));
        assert!(Event::parse(b"{not json", Version::Stu3)
            .unwrap_err()
            .0
            .contains("not valid JSON"));
        assert!(Event::parse(&[0xff, 0xfe], Version::Stu3)
            .unwrap_err()
            .0
            .contains("UTF-8"));
    }

    #[test]
    fn resources_outside_open_close_need_no_id() {
        let oo = json!([{"key": "operationoutcome", "resource": {"resourceType": "OperationOutcome", "issue": []}}]);
        assert!(Event::from_value(msg("syncerror", oo), Version::Stu3).is_ok());
        let open = json!([{"key": "patient", "resource": {"resourceType": "Patient"}}]);
        assert!(Event::from_value(msg("Patient-open", open), Version::Stu3)
            .unwrap_err()
            .0
            .contains("with an id"));
    }

    #[test]
    fn custom_events_are_checked_by_shape() {
        assert!(Event::from_value(
            msg("org.example.thing", json!([{"key": "x", "string": "y"}])),
            Version::Stu3
        )
        .is_ok());
        assert!(Event::from_value(msg("Observation-open", json!([{"key": "observation", "resource": {"resourceType": "Observation", "id": "o"}}])), Version::Stu3).is_ok());
        assert!(Event::from_value(msg("Observation-open", json!([])), Version::Stu3).is_err());
    }

    #[test]
    fn references() {
        assert_eq!(
            parse_reference_str("DiagnosticReport/1"),
            Some(("DiagnosticReport", "1"))
        );
        assert_eq!(
            parse_reference_str("http://x/fhir/Patient/9"),
            Some(("Patient", "9"))
        );
        assert_eq!(parse_reference_str("nonsense"), None);
    }

    #[test]
    fn timestamp_must_be_an_rfc3339_instant() {
        let mut m = msg(
            "Patient-open",
            json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]),
        );
        m["timestamp"] = json!("yesterday");
        assert_eq!(
            Event::from_value(m.clone(), Version::Stu3).unwrap_err().0,
            "timestamp \"yesterday\" is not an RFC 3339 instant such as \"2026-01-01T08:30:00Z\""
        );
        for good in [
            "2026-03-01T09:15:02.123+01:00",
            "2026-03-01T09:15:02Z",
            // As in the spec's 3.0.0 example messages.
            "2023-04-01T010:38:04.16",
            "2018-01-08T01:37:05.14",
        ] {
            m["timestamp"] = json!(good);
            assert!(
                Event::from_value(m.clone(), Version::Stu3).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "2026-03-01",
            "2026-13-01T09:15:02Z",
            "2026-03-01T25:00:00Z",
            "T",
            "1700000000",
        ] {
            m["timestamp"] = json!(bad);
            assert!(
                Event::from_value(m.clone(), Version::Stu3).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn an_empty_version_id_on_an_open_is_dropped_elsewhere_refused() {
        let mut m = msg(
            "Patient-open",
            json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]),
        );
        m["event"]["context.versionId"] = json!("");
        let e = Event::from_value(m, Version::Stu3).unwrap();
        assert_eq!(e.version_id, None);
        assert!(!e.event().contains_key("context.versionId"));
        let mut m = msg(
            "Patient-close",
            json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]),
        );
        m["event"]["context.versionId"] = json!("");
        assert!(Event::from_value(m, Version::Stu3).is_err());
    }
}
