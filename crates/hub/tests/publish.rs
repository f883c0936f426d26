//! Request context change (2-6): the spec's catalog examples, validation,
//! custom events, Get Current Context (2-9), multiple open contexts,
//! derived open events (2-5, 4.6) and the replay on connect (2-4).
//!
//! "Nothing was delivered" is shown by publishing a marker event afterwards
//! and asserting that the marker is the next frame.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

const MARKER: &str = "org.example.marker";

/// Publishes a marker and asserts it is the next frame on `ws`.
async fn quiet(hub: &TestHub, ws: &mut Ws, topic: &str) {
    let marker = event(topic, MARKER, json!([]));
    hub.publish_ok(&marker).await;
    let got = ws.next_event().await;
    assert_eq!(
        got["id"], marker["id"],
        "expected only the marker, got {got}"
    );
}

/// POSTs like Medplum's client does (it asks for FHIR JSON); status and body.
async fn post(hub: &TestHub, url: &str, content_type: &str, body: Vec<u8>) -> (u16, Value) {
    let res = hub
        .http
        .post(url)
        .header("content-type", content_type)
        .header("accept", "application/fhir+json, */*; q=0.1")
        .body(body)
        .send()
        .await
        .expect("POST");
    let status = res.status().as_u16();
    let text = res.text().await.unwrap_or_default();
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, body)
}

async fn post_json(hub: &TestHub, message: &Value) -> (u16, Value) {
    let body = message.to_string().into_bytes();
    post(hub, &hub.hub_url(), "application/json", body).await
}

/// `issue[0].details.text` of an OperationOutcome (clients.md §0 item 8).
fn details(body: &Value) -> &str {
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no issue[0].details.text: {body}"))
}

fn version(message: &Value) -> String {
    message["event"]["context.versionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no context.versionId: {message}"))
        .to_owned()
}

/// A DiagnosticReport-open for `report` of patient `p` with these studies.
fn report_with_studies(topic: &str, report: &str, p: &str, studies: &[&str]) -> Value {
    let mut e = report_open(topic, report, p);
    let context = e["event"]["context"].as_array_mut().unwrap();
    context.extend(
        studies.iter().map(
            |id| json!({"key": "study", "resource": {"resourceType": "ImagingStudy", "id": id}}),
        ),
    );
    e
}

fn marked(events: &str) -> String {
    format!("{events},{MARKER}")
}

/// A hub and a topic with one subscriber to `events` and the marker.
async fn setup(events: &str) -> (TestHub, String, Ws) {
    let hub = TestHub::start().await;
    let topic = topic();
    let ws = hub.join(&topic, &marked(events), "RIS").await;
    (hub, topic, ws)
}

/// A hub with one subscriber and patient p1 open, for rejection tests.
struct Rig {
    hub: TestHub,
    topic: String,
    ws: Ws,
}

impl Rig {
    async fn new() -> Rig {
        let hub = TestHub::start_with(|c| {
            c.max_body_bytes = 16 * 1024;
            c.heartbeat_period = Duration::from_secs(3600);
        })
        .await;
        let topic = topic();
        let events = format!("Patient-open,Patient-close,heartbeat,{MARKER}");
        let mut ws = hub.join(&topic, &events, "RIS").await;
        hub.publish_ok(&patient_open(&topic, "p1")).await;
        ws.next_event().await;
        Rig { hub, topic, ws }
    }

    /// The POST is refused with `status` and an OperationOutcome naming
    /// `needle`; the context is unchanged and nothing was broadcast.
    async fn rejects(&mut self, content_type: &str, body: Vec<u8>, status: u16, needle: &str) {
        let before = self.hub.context(&self.topic).await;
        let (got, answer) = post(&self.hub, &self.hub.hub_url(), content_type, body).await;
        assert_eq!(got, status, "{needle}: {answer}");
        let text = details(&answer);
        assert!(text.contains(needle), "{text:?} should name {needle:?}");
        assert_eq!(self.hub.context(&self.topic).await, before);
        quiet(&self.hub, &mut self.ws, &self.topic).await;
    }

    async fn rejects_json(&mut self, message: &Value, status: u16, needle: &str) {
        let body = message.to_string().into_bytes();
        self.rejects("application/json", body, status, needle).await;
    }
}

/// Checklist 42, 60, 61, 63, 64, 65; hub-digest §14.11 (the spec's malformed
/// timestamps are tolerated and forwarded as sent).
#[tokio::test]
async fn every_catalog_example_is_accepted_and_delivered_unchanged() {
    let hub = TestHub::start().await;
    let topic = topic();
    let events = "Patient-open,Patient-close,Encounter-open,Encounter-close,ImagingStudy-open,\
                  ImagingStudy-close,DiagnosticReport-open,DiagnosticReport-select,\
                  DiagnosticReport-close,Home-open,UserLogout,UserHibernate,SyncError";
    let mut ws = hub.join(&topic, events, "all").await;
    // The 2-6 example closes a patient no example opens: open it first.
    let mut close = fixture("stu3/patient-close.request-context-change.json")["body"].clone();
    close["event"]["hub.topic"] = topic.as_str().into();
    let mut open = close.clone();
    open["event"]["hub.event"] = "Patient-open".into();
    open["id"] = "open-798E4MyMcpCWHab9".into();
    let mut messages = Vec::new();
    let names = "patient-open.notification patient-close.notification
        patient-open.notification.basic encounter-open.notification encounter-close.notification
        imagingstudy-open.notification imagingstudy-close.notification
        imagingstudy-open.fhir-r5-variant.notification imagingstudy-close.fhir-r5-variant.notification
        diagnosticreport-open.request-body diagnosticreport-select.notification
        diagnosticreport-close.notification home-open.notification userlogout.notification
        userhibernate.notification syncerror.notification";
    for name in names.split_whitespace() {
        messages.push((name, fixture_event(&format!("stu3/{name}.json"), &topic)));
    }
    messages.push(("patient-open from 2-6", open));
    messages.push(("patient-close.request-context-change", close));
    let mut refused = Vec::new();
    for (name, message) in messages {
        let res = hub.publish(&message).await;
        let status = res.status();
        if !status.is_success() {
            refused.push(format!("{name}: {status} {}", res.text().await.unwrap()));
            continue;
        }
        let mut got = ws.next_event().await;
        if name.starts_with("userlogout") {
            // The hub closes what is still open before forwarding UserLogout.
            while got["id"] != message["id"] {
                let closing = got["event"]["hub.event"].as_str().unwrap_or_default();
                assert!(closing.ends_with("-close"), "{name}: {got}");
                got = ws.next_event().await;
            }
        }
        assert_eq!(got["id"], message["id"], "{name}: same id (64)");
        assert_eq!(got["timestamp"], message["timestamp"], "{name} (65)");
        assert_eq!(got["event"]["hub.event"], message["event"]["hub.event"]);
        assert_eq!(got["event"]["hub.topic"], topic.as_str());
        assert_eq!(
            got["event"]["context"], message["event"]["context"],
            "{name}"
        );
    }
    assert!(
        refused.is_empty(),
        "spec examples refused:\n{}",
        refused.join("\n")
    );
}

/// Checklist 60, 61; clients.md §3 item 9 (publish at `{hub.url}/{topic}`).
#[tokio::test]
async fn publish_at_topic_path_requires_the_same_topic() {
    let (hub, topic, mut ws) = setup("Patient-open").await;
    let open = patient_open(&topic, "p1");
    let url = format!("{}/{topic}", hub.hub_url());
    let (status, _) = post(&hub, &url, "application/json", open.to_string().into()).await;
    assert_eq!(status, 202);
    assert_eq!(ws.next_event().await["id"], open["id"]);

    let other = format!("{}/{}", hub.hub_url(), common::topic());
    let p2 = patient_open(&topic, "p2");
    let (status, body) = post(&hub, &other, "application/json", p2.to_string().into()).await;
    assert_eq!(status, 400, "{body}");
    assert!(details(&body).contains("topic"), "{body}");
    quiet(&hub, &mut ws, &topic).await;
    let current = hub.context(&topic).await;
    assert_eq!(current["context"][0]["resource"]["id"], "p1");
}

/// Checklist 44, 61; clients.md §3 item 8: each required field missing, then
/// of the wrong type, is refused with a 400 that names it.
#[tokio::test]
async fn missing_or_mistyped_fields_are_named_in_a_400() {
    let mut rig = Rig::new().await;
    for (parent, field, wrong) in [
        ("", "timestamp", json!(42)),
        ("", "id", json!({"x": 1})),
        ("", "event", json!("Patient-open")),
        ("/event", "hub.topic", json!(7)),
        ("/event", "hub.event", json!(["Patient-open"])),
        ("/event", "context", json!({"key": "patient"})),
    ] {
        let mut message = patient_open(&rig.topic, "p2");
        let obj = message.pointer_mut(parent).unwrap().as_object_mut();
        obj.unwrap().remove(field);
        rig.rejects_json(&message, 400, field).await;
        let mut message = patient_open(&rig.topic, "p2");
        message.pointer_mut(parent).unwrap()[field] = wrong;
        rig.rejects_json(&message, 400, field).await;
    }
}

/// Checklist 44, 45 (catalog keys and their resource types), 61.
#[tokio::test]
async fn catalog_context_keys_are_checked() {
    let mut rig = Rig::new().await;
    let mut wrong_type = patient_open(&rig.topic, "p2");
    wrong_type["event"]["context"][0]["resource"]["resourceType"] = "Encounter".into();
    rig.rejects_json(&wrong_type, 400, "Patient").await;

    let context =
        json!([{"key": "patient", "resource": patient("p2")}, {"key": "bogus", "string": "x"}]);
    let unknown_key = event(&rig.topic, "Patient-open", context);
    rig.rejects_json(&unknown_key, 400, "bogus").await;

    let missing = event(&rig.topic, "Patient-open", json!([]));
    rig.rejects_json(&missing, 400, "patient").await;
}

/// hub-digest §2.5 (heartbeat is hub-sent only), §5 and IHE IRA (unknown
/// session → 400). Checklist 61.
#[tokio::test]
async fn heartbeat_is_refused_and_a_new_topic_is_created_by_its_first_publish() {
    let mut rig = Rig::new().await;
    let period = json!([{"key": "period", "decimal": "10"}]);
    let beat = event(&rig.topic, "heartbeat", period);
    rig.rejects_json(&beat, 400, "heartbeat").await;
    // Issue 19 (D13 revised): a topic the caller may use is never refused
    // as unknown; nobody follows it yet, and its context waits for them.
    let stranger = common::topic();
    rig.hub.publish_ok(&patient_open(&stranger, "p2")).await;
    let context = rig.hub.context(&stranger).await;
    assert_eq!(context["context"][0]["resource"]["id"], "p2", "{context}");
    // The RIS's topic saw nothing of it.
    quiet(&rig.hub, &mut rig.ws, &rig.topic).await;
}

/// Checklist 1, 61, 102 (413 for what is too large); clients.md §0 item 5
/// (4xx, never 5xx).
#[tokio::test]
async fn bodies_that_are_not_event_json_are_refused() {
    let mut rig = Rig::new().await;
    let mut bytes = patient_open(&rig.topic, "p2").to_string().into_bytes();
    bytes.insert(1, 0xff);
    rig.rejects("application/json", bytes, 400, "UTF-8").await;
    let body = b"{\"timestamp\": ".to_vec();
    rig.rejects("application/json", body, 400, "JSON").await;
    let text = patient_open(&rig.topic, "p2").to_string().into_bytes();
    rig.rejects("text/plain", text, 415, "").await;
    let mut big = patient_open(&rig.topic, "p2");
    big["event"]["context"][0]["resource"]["text"] = "x".repeat(32 * 1024).into();
    rig.rejects_json(&big, 413, "").await;
}

/// IHE IRA (any valid event is processed, custom anchors get context
/// management); hub-digest §4.2 (reverse-domain names). Checklist 41, 63, 64.
#[tokio::test]
async fn custom_events_are_forwarded_and_custom_anchors_managed() {
    let events = "org.example.patient_transmogrify,Observation-open,Observation-close";
    let (hub, topic, mut ws) = setup(events).await;
    let custom = event(
        &topic,
        "org.example.patient_transmogrify",
        json!([{"key": "note", "string": "hello"}]),
    );
    hub.publish_ok(&custom).await;
    let got = ws.next_event().await;
    assert_eq!(got["id"], custom["id"]);
    assert_eq!(got["event"]["context"], custom["event"]["context"]);

    let observation = json!([{"key": "observation", "resource": {"resourceType": "Observation", "id": "o1", "status": "final"}}]);
    let open = event(&topic, "Observation-open", observation.clone());
    hub.publish_ok(&open).await;
    let got = ws.next_event().await;
    assert_eq!(got["id"], open["id"]);
    let current = hub.context(&topic).await;
    assert_eq!(current["context.type"], "Observation");
    assert_eq!(current["context.versionId"], version(&got).as_str());
    hub.publish_ok(&event(&topic, "Observation-close", observation))
        .await;
    assert_eq!(
        ws.next_event().await["event"]["hub.event"],
        "Observation-close"
    );
    assert_eq!(hub.context(&topic).await["context.type"], "");
}

/// Checklist 12, 67: names match case-insensitively, forwarded as sent.
#[tokio::test]
async fn event_names_match_case_insensitively() {
    let (hub, topic, mut shouty) = setup("patient-OPEN").await;
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    let got = shouty.next_event().await;
    assert_eq!(got["id"], open["id"]);
    assert_eq!(got["event"]["hub.event"], "Patient-open");

    let mut lower = patient_open(&topic, "p2");
    lower["event"]["hub.event"] = "PATIENT-open".into();
    hub.publish_ok(&lower).await;
    let got = shouty.next_event().await;
    assert_eq!(got["id"], lower["id"]);
    assert_eq!(
        hub.context(&topic).await["context"][0]["resource"]["id"],
        "p2"
    );
}

/// Checklist 63: the requester gets its own event back as confirmation.
#[tokio::test]
async fn the_sender_receives_its_own_event() {
    let (hub, topic, mut sender) = setup("Patient-open").await;
    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    let got = sender.next_event().await;
    assert_eq!(got["id"], open["id"]);
    assert_eq!(got["event"], answer["event"]["event"]);
}

/// Checklist 30, 41.
#[tokio::test]
async fn only_subscribed_events_are_delivered() {
    let (hub, topic, mut closer) = setup("Patient-close").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    hub.publish_ok(&report_with_studies(&topic, "r1", "p1", &["s1"]))
        .await;
    hub.publish_ok(&event(&topic, "org.example.other", json!([])))
        .await;
    let close = patient_close(&topic, "p1");
    hub.publish_ok(&close).await;
    assert_eq!(closer.next_event().await["id"], close["id"]);
    quiet(&hub, &mut closer, &topic).await;
}

/// Checklist 85, 89, 90; clients.md §3 items 10, 13.
#[tokio::test]
async fn get_context_is_empty_for_unknown_topics_and_after_close() {
    let (hub, topic, mut ws) = setup("Patient-open,Patient-close").await;
    let empty = fixture("stu3/get-current-context.empty.response.json");
    assert_eq!(hub.context(&common::topic()).await, empty);
    assert_eq!(hub.context(&topic).await, empty);
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    ws.next_event().await;
    assert_eq!(hub.context(&topic).await["context.type"], "Patient");
    hub.publish_ok(&patient_close(&topic, "p1")).await;
    ws.next_event().await;
    assert_eq!(hub.context(&topic).await, empty);
}

/// hub-digest §13 (STU2-era hubs such as PowerCast answered a bare array).
#[tokio::test]
async fn stu2_get_context_is_a_bare_array() {
    let (hub, topic, mut ws) = setup("Patient-open").await;
    let get = |t: String| {
        let url = hub.url(&format!("/fhircast/STU2/{t}"));
        let http = hub.http.clone();
        async move { http.get(url).send().await.unwrap().json::<Value>().await }
    };
    assert_eq!(get(common::topic()).await.unwrap(), json!([]));
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    ws.next_event().await;
    assert_eq!(get(topic.clone()).await.unwrap(), open["event"]["context"]);
}

/// Checklist 86, 88, 90, 108, 109, 110; IHE IRA (409 for a close of a
/// context that is not open).
#[tokio::test]
async fn latest_open_is_current_and_close_never_falls_back() {
    let (hub, topic, mut ws) = setup("Patient-open,Patient-close").await;
    let current_id = |ctx: &Value| ctx["context"][0]["resource"]["id"].clone();
    for p in ["p1", "p2"] {
        hub.publish_ok(&patient_open(&topic, p)).await;
        ws.next_event().await;
    }
    assert_eq!(current_id(&hub.context(&topic).await), "p2");
    hub.publish_ok(&patient_close(&topic, "p2")).await;
    ws.next_event().await;
    assert_eq!(
        hub.context(&topic).await["context.type"],
        "",
        "no fall back to p1"
    );

    let (status, body) = post_json(&hub, &patient_close(&topic, "p2")).await;
    assert_eq!(status, 409, "{body}");
    assert!(details(&body).contains("p2"), "{body}");
    quiet(&hub, &mut ws, &topic).await;

    let reopen = patient_open(&topic, "p1");
    hub.publish_ok(&reopen).await;
    assert_eq!(ws.next_event().await["id"], reopen["id"]);
    let current = hub.context(&topic).await;
    assert_eq!(current["context.type"], "Patient");
    assert_eq!(current_id(&current), "p1");
}

/// Checklist 57; clients.md §3 item 26 (only the patient key, same id for
/// every subscriber); hub-digest §4.6 (fresh id, source timestamp).
#[tokio::test]
async fn patient_only_subscribers_get_a_derived_patient_open() {
    let (hub, topic, mut a) = setup("Patient-open").await;
    let mut b = hub.join(&topic, "patient-open", "B").await;
    let open = report_with_studies(&topic, "r1", "p1", &["s1"]);
    hub.publish_ok(&open).await;
    let (got_a, got_b) = (a.next_event().await, b.next_event().await);
    assert_eq!(got_a["event"]["hub.event"], "Patient-open");
    assert_ne!(got_a["id"], open["id"], "a derived event has its own id");
    assert_eq!(got_a["id"], got_b["id"], "one id for every recipient");
    assert_eq!(got_a["timestamp"], open["timestamp"]);
    let patient_entry = &open["event"]["context"][1];
    assert_eq!(got_a["event"]["context"], json!([patient_entry]));
    quiet(&hub, &mut a, &topic).await;
}

/// Checklist 59 (no duplicative events).
#[tokio::test]
async fn subscriber_of_source_and_derived_event_gets_only_the_source() {
    let events = "Patient-open,ImagingStudy-open,DiagnosticReport-open";
    let (hub, topic, mut both) = setup(events).await;
    let open = report_with_studies(&topic, "r1", "p1", &["s1", "s2"]);
    hub.publish_ok(&open).await;
    assert_eq!(both.next_event().await["id"], open["id"]);
    quiet(&hub, &mut both, &topic).await;
}

/// Checklist 57; clients.md §3 item 26 (one ImagingStudy-open per study).
#[tokio::test]
async fn one_derived_imagingstudy_open_per_study() {
    let (hub, topic, mut ws) = setup("ImagingStudy-open").await;
    let open = report_with_studies(&topic, "r1", "p1", &["s1", "s2"]);
    hub.publish_ok(&open).await;
    let mut seen = Vec::new();
    for _ in 0..2 {
        let got = ws.next_event().await;
        assert_eq!(got["event"]["hub.event"], "ImagingStudy-open");
        assert_eq!(got["timestamp"], open["timestamp"]);
        let context = got["event"]["context"].as_array().unwrap();
        let studies: Vec<_> = context.iter().filter(|c| c["key"] == "study").collect();
        assert_eq!(studies.len(), 1, "{got}");
        assert!(context.iter().any(|c| c["key"] == "patient"), "{got}");
        seen.push(studies[0]["resource"]["id"].clone());
    }
    seen.sort_by_key(|v| v.to_string());
    assert_eq!(seen, [json!("s1"), json!("s2")]);
    quiet(&hub, &mut ws, &topic).await;
}

/// Checklist 28, 29, 57.
#[tokio::test]
async fn late_joiner_gets_the_derived_open_replayed() {
    let (hub, topic, mut early) = setup("Patient-open").await;
    let open = report_with_studies(&topic, "r1", "p1", &["s1"]);
    hub.publish_ok(&open).await;
    let live = early.next_event().await;
    let mut late = hub.join(&topic, &marked("Patient-open"), "late").await;
    let replayed = late.next_event().await;
    assert_eq!(replayed["event"]["hub.event"], "Patient-open");
    assert_eq!(replayed["id"], live["id"]);
    assert_eq!(replayed["timestamp"], open["timestamp"]);
    assert_eq!(replayed["event"]["context"], live["event"]["context"]);
    quiet(&hub, &mut late, &topic).await;
}

/// Checklist 28, 29, 87 (current versionId after an update).
#[tokio::test]
async fn late_subscriber_gets_the_current_open_replayed() {
    let (hub, topic, mut ris) = setup("DiagnosticReport-open,DiagnosticReport-update").await;
    let open = report_open(&topic, "r1", "p1");
    hub.publish_ok(&open).await;
    let v1 = version(&ris.next_event().await);
    let update = report_update(&topic, "r1", &v1, json!([put_observation("o1")]));
    hub.publish_ok(&update).await;
    let v2 = version(&ris.next_event().await);
    let mut late = hub
        .join(&topic, &marked("DiagnosticReport-open"), "late")
        .await;
    let replayed = late.next_event().await;
    assert_eq!(replayed["id"], open["id"]);
    assert_eq!(replayed["timestamp"], open["timestamp"]);
    assert_eq!(replayed["event"]["context"], open["event"]["context"]);
    assert_eq!(version(&replayed), v2);
    quiet(&hub, &mut late, &topic).await;
}

/// Checklist 28: the latest open per anchor type, not every suspended one.
#[tokio::test]
async fn replay_sends_only_the_latest_open_per_anchor_type() {
    let (hub, topic, mut ris) = setup("Patient-open").await;
    for p in ["p1", "p2"] {
        hub.publish_ok(&patient_open(&topic, p)).await;
        ris.next_event().await;
    }
    let mut late = hub.join(&topic, &marked("Patient-open"), "late").await;
    let replayed = late.next_event().await;
    assert_eq!(
        replayed["event"]["context"][0]["resource"]["id"], "p2",
        "{replayed}"
    );
    quiet(&hub, &mut late, &topic).await;
}

/// Checklist 28, 90. Hub choice (hub-digest §8 conflict): once the current
/// context is closed nothing is replayed, even if an older one is still open.
#[tokio::test]
async fn no_replay_after_the_current_context_is_closed() {
    let (hub, topic, mut ris) = setup("Patient-open,Patient-close").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    hub.publish_ok(&patient_open(&topic, "p2")).await;
    hub.publish_ok(&patient_close(&topic, "p2")).await;
    for _ in 0..3 {
        ris.next_event().await;
    }
    let mut late = hub.join(&topic, &marked("Patient-open"), "late").await;
    quiet(&hub, &mut late, &topic).await;
}
