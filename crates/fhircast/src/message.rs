//! Frames on the WebSocket that are not events: the subscription
//! confirmation, the denial, and the subscriber's ACK (2-4, 2-5).

use serde_json::{json, Value};

/// `{"hub.mode":"subscribe", hub.topic, hub.events, hub.lease_seconds}`
/// (checklist 26, 27).
pub fn confirmation(topic: &str, events: &str, lease_seconds: u64) -> String {
    json!({
        "hub.mode": "subscribe",
        "hub.topic": topic,
        "hub.events": events,
        "hub.lease_seconds": lease_seconds,
    })
    .to_string()
}

/// `{"hub.mode":"denied", hub.topic, hub.events, hub.reason}` (checklist 34).
pub fn denial(topic: &str, events: &str, reason: &str) -> String {
    json!({
        "hub.mode": "denied",
        "hub.topic": topic,
        "hub.events": events,
        "hub.reason": reason,
    })
    .to_string()
}

/// The outcome a subscriber reported for one notification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckStatus {
    /// Any 2xx, or no `status` at all (Medplum's client sends none).
    Success(u16),
    Failure(u16),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub id: String,
    pub status: AckStatus,
}

/// What a subscriber sent us on the socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Inbound {
    Ack(Ack),
    /// Valid JSON that is not an ACK: logged and ignored.
    Other,
    /// Not JSON at all: logged and ignored, the socket stays up.
    Malformed(String),
}

/// Reads one text frame from a subscriber (checklist 48): `{id, status}`,
/// where `status` may be a number, a numeric string, or missing.
pub fn parse_inbound(text: &str) -> Inbound {
    let value: Value = match crate::json::parse_bounded(text.as_bytes()) {
        Ok(v) => v,
        Err(e) => return Inbound::Malformed(e.to_string()),
    };
    let Some(id) = value.get("id").and_then(Value::as_str) else {
        return Inbound::Other;
    };
    if value.get("event").is_some() {
        // An event message sent on the socket; STU3 defines none (2-5).
        return Inbound::Other;
    }
    let code = match value.get("status") {
        None | Some(Value::Null) => Some(200),
        Some(Value::Number(n)) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
        Some(Value::String(s)) => s.trim().parse::<u16>().ok(),
        Some(_) => None,
    };
    let status = match code {
        Some(c) if (200..300).contains(&c) => AckStatus::Success(c),
        Some(c) => AckStatus::Failure(c),
        // An unreadable status is not a success we can vouch for.
        None => AckStatus::Failure(0),
    };
    Inbound::Ack(Ack {
        id: id.to_owned(),
        status,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks() {
        let ack = |t: &str| match parse_inbound(t) {
            Inbound::Ack(a) => a.status,
            other => panic!("{other:?}"),
        };
        assert_eq!(ack(r#"{"id":"1","status":"200"}"#), AckStatus::Success(200));
        assert_eq!(ack(r#"{"id":"1","status":202}"#), AckStatus::Success(202));
        assert_eq!(
            ack(r#"{"id":"1","timestamp":"x"}"#),
            AckStatus::Success(200)
        );
        assert_eq!(ack(r#"{"id":"1","status":409}"#), AckStatus::Failure(409));
        assert!(matches!(parse_inbound("nope"), Inbound::Malformed(_)));
        assert_eq!(parse_inbound(r#"{"hello":1}"#), Inbound::Other);
    }
}
