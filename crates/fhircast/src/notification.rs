//! Event notifications as a hub builds and reads them (2-3, 2-5): the one
//! place that knows the shape `{timestamp, id, event: {hub.topic, hub.event,
//! context, context.versionId?}}`. The hub, the dashboard and the tray read
//! event names and versions through these functions instead of indexing
//! JSON by hand, so a typo in a key is a compile error here, not a silent
//! `"unknown"` there.

use serde_json::{json, Map, Value};

use crate::validate::Event;

/// A complete notification: `{timestamp, id, event: {hub.topic, hub.event,
/// context}}`. `context` is the array of `{key, resource}` items.
pub fn build(
    id: &str,
    timestamp: &str,
    topic: &str,
    event_name: &str,
    context: Value,
) -> Map<String, Value> {
    let mut event = Map::with_capacity(3);
    event.insert("hub.topic".into(), topic.into());
    event.insert("hub.event".into(), event_name.into());
    event.insert("context".into(), context);
    let mut message = Map::with_capacity(3);
    message.insert("timestamp".into(), timestamp.into());
    message.insert("id".into(), id.into());
    message.insert("event".into(), Value::Object(event));
    message
}

/// The heartbeat a hub sends to subscribers that asked for `heartbeat`
/// (3.0.0 5.3.1): `period` in seconds, as a decimal string.
pub fn heartbeat(id: &str, timestamp: &str, topic: &str, period_secs: u64) -> Map<String, Value> {
    build(
        id,
        timestamp,
        topic,
        "heartbeat",
        json!([{"key": "period", "decimal": period_secs.to_string()}]),
    )
}

/// `hub.event` of a notification, as its sender spelled it.
pub fn event_name(message: &Map<String, Value>) -> Option<&str> {
    message.get("event")?.get("hub.event")?.as_str()
}

/// The notification's `id`.
pub fn id(message: &Map<String, Value>) -> Option<&str> {
    message.get("id")?.as_str()
}

/// `context.versionId` of a notification, if it carries one (content
/// sharing, 4-2-2).
pub fn version_id(message: &Map<String, Value>) -> Option<&str> {
    message.get("event")?.get("context.versionId")?.as_str()
}

/// The anchor of an `{anchor}-open` event name (`DiagnosticReport` for
/// `DiagnosticReport-open`, any case); `None` for any other event.
pub fn opened_anchor(event_name: &str) -> Option<&str> {
    let at = event_name.len().checked_sub("-open".len())?;
    (event_name.is_char_boundary(at) && event_name[at..].eq_ignore_ascii_case("-open"))
        .then(|| &event_name[..at])
}

/// The `{anchor}-close` that closes the context opened by `open` (an
/// `-open` notification): same topic and context, a fresh id and
/// timestamp. `None` if `open` is not an `-open` notification.
pub fn close_of(
    open: &Map<String, Value>,
    id: &str,
    timestamp: &str,
) -> Option<Map<String, Value>> {
    let anchor = opened_anchor(event_name(open)?)?;
    let event = open.get("event")?;
    let topic = event.get("hub.topic")?.as_str()?;
    let context = event
        .get("context")
        .cloned()
        .unwrap_or(Value::Array(Vec::new()));
    Some(build(
        id,
        timestamp,
        topic,
        &format!("{anchor}-close"),
        context,
    ))
}

/// The open events implied by an `{type}-open` (4.6), least specific first:
/// Patient-open, Encounter-open, one ImagingStudy-open per study. They keep
/// the source's timestamp; each gets an id from `fresh_id`. `resource` is
/// the event's anchor type, lower case.
pub fn derived_opens(
    event: &Event,
    resource: &str,
    mut fresh_id: impl FnMut() -> String,
) -> Vec<Map<String, Value>> {
    let entries =
        |key: &str| -> Vec<&Value> { event.context().iter().filter(|i| i["key"] == key).collect() };
    let (patient, encounter, studies) =
        (entries("patient"), entries("encounter"), entries("study"));
    let mut out = Vec::new();
    let mut push = |name: &str, context: Vec<&Value>| {
        out.push(build(
            &fresh_id(),
            &event.timestamp,
            &event.topic,
            name,
            Value::Array(context.into_iter().cloned().collect()),
        ));
    };
    if resource != "patient" && !patient.is_empty() {
        push("Patient-open", patient.clone());
    }
    if resource != "encounter" && !encounter.is_empty() && !patient.is_empty() {
        push(
            "Encounter-open",
            [encounter.clone(), patient.clone()].concat(),
        );
    }
    if resource != "imagingstudy" {
        for study in studies {
            push(
                "ImagingStudy-open",
                [vec![study], encounter.clone(), patient.clone()].concat(),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Version;

    fn open(name: &str) -> Map<String, Value> {
        build(
            "e1",
            "2026-01-01T08:00:00Z",
            "t1",
            name,
            json!([{"key": "patient", "resource": {"resourceType": "Patient", "id": "p1"}}]),
        )
    }

    #[test]
    fn reads_what_it_builds() {
        let mut m = open("Patient-open");
        assert_eq!(event_name(&m), Some("Patient-open"));
        assert_eq!(id(&m), Some("e1"));
        assert_eq!(version_id(&m), None);
        m["event"]["context.versionId"] = "v2".into();
        assert_eq!(version_id(&m), Some("v2"));
        // Not a notification: nothing, never a panic.
        let junk = json!({"event": 3}).as_object().unwrap().clone();
        assert_eq!(event_name(&junk), None);
        assert_eq!(id(&Map::new()), None);
    }

    #[test]
    fn close_of_an_open_keeps_topic_and_context() {
        let close = close_of(&open("patient-OPEN"), "e2", "2026-01-01T09:00:00Z").unwrap();
        assert_eq!(event_name(&close), Some("patient-close"));
        assert_eq!(close["event"]["hub.topic"], "t1");
        assert_eq!(close["event"]["context"], open("x")["event"]["context"]);
        assert_eq!(close["id"], "e2");
        assert!(close_of(&open("Patient-close"), "e3", "now").is_none());
        assert!(
            close_of(&open("-open"), "e3", "now").is_some_and(|c| event_name(&c) == Some("-close"))
        );
        assert_eq!(opened_anchor("é-open"), Some("é"));
        assert_eq!(opened_anchor("open"), None);
    }

    #[test]
    fn heartbeat_carries_its_period() {
        let beat = heartbeat("h1", "now", "t1", 10);
        assert_eq!(event_name(&beat), Some("heartbeat"));
        assert_eq!(beat["event"]["context"][0]["decimal"], "10");
    }

    #[test]
    fn a_report_open_implies_patient_and_study_opens() {
        // The spec's DiagnosticReport-open request (report, study, patient).
        let mut message: Value = serde_json::from_str(include_str!(
            "../../hub/tests/fixtures/stu3/diagnosticreport-open.request-body.json"
        ))
        .unwrap();
        // The example's own timestamp ("T011:14") is not RFC 3339.
        message["timestamp"] = "2023-04-01T11:14:24.31Z".into();
        let event = Event::from_value(message, Version::Stu3).unwrap();
        let mut n = 0;
        let derived = derived_opens(&event, "diagnosticreport", || {
            n += 1;
            format!("d{n}")
        });
        let names: Vec<_> = derived.iter().filter_map(event_name).collect();
        assert_eq!(names, ["Patient-open", "ImagingStudy-open"]);
        assert_eq!(derived[0]["id"], "d1");
        assert_eq!(derived[1]["id"], "d2");
        assert_eq!(derived[0]["timestamp"], event.timestamp.as_str());
        assert_eq!(derived[1]["event"]["context"][0]["key"], "study");
    }
}
