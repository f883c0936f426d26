//! Content sharing (2-10, 3-6) and the IHE IRA duties around it: versionIds,
//! atomic `DiagnosticReport-update` bundles, select, suspend/resume of
//! report contexts, and the `content` Bundle of Get Current Context (2-9).
//!
//! "Nothing was broadcast" is shown by publishing a marker event afterwards
//! and asserting that the marker is the next frame.

mod common;

use common::*;
use serde_json::{json, Value};

const MARKER: &str = "org.example.marker";
const EVENTS: &str = "DiagnosticReport-open,DiagnosticReport-update,DiagnosticReport-select,\
                      DiagnosticReport-close,org.example.marker";

fn version(message: &Value) -> String {
    message["event"]["context.versionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no context.versionId: {message}"))
        .to_owned()
}

fn report_close(topic: &str, report: &str, p: &str) -> Value {
    let mut e = report_open(topic, report, p);
    e["event"]["hub.event"] = "DiagnosticReport-close".into();
    e
}

fn delete(url: &str) -> Value {
    json!({"fullUrl": url, "request": {"method": "DELETE", "url": url}})
}

fn put_report(id: &str, status: &str) -> Value {
    json!({"request": {"method": "PUT", "url": format!("DiagnosticReport/{id}")},
           "resource": {"resourceType": "DiagnosticReport", "id": id, "status": status}})
}

fn select(topic: &str, report: &str, refs: &[&str]) -> Value {
    let mut context = vec![
        json!({"key": "report", "reference": {"reference": format!("DiagnosticReport/{report}")}}),
    ];
    context.extend(
        refs.iter()
            .map(|r| json!({"key": "select", "reference": {"reference": r}})),
    );
    event(topic, "DiagnosticReport-select", json!(context))
}

/// The one `content` entry of a Get Current Context answer (checklist 91).
fn content_bundle(current: &Value) -> Value {
    let context = current["context"].as_array().expect("context array");
    let content: Vec<&Value> = context.iter().filter(|c| c["key"] == "content").collect();
    assert_eq!(content.len(), 1, "exactly one content entry: {current}");
    let bundle = content[0]["resource"].clone();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection", "{bundle}");
    bundle
}

/// `Type/id` of every resource in the content Bundle, in order.
fn content_keys(current: &Value) -> Vec<String> {
    let bundle = content_bundle(current);
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            assert!(e.get("request").is_none(), "no entry.request: {e}");
            let r = &e["resource"];
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// A topic with one subscriber (that ACKs everything) to the report events.
struct Session {
    hub: TestHub,
    topic: String,
    ws: Ws,
}

impl Session {
    async fn start() -> Session {
        let hub = TestHub::start().await;
        let topic = topic();
        let ws = hub.join(&topic, EVENTS, "RIS").await;
        Session { hub, topic, ws }
    }

    /// Publishes `message`, asserts a 2xx and returns its broadcast.
    async fn accepted(&mut self, message: &Value) -> Value {
        let answer = self.hub.publish_ok(message).await;
        let got = self.ws.next_event().await;
        assert_eq!(got["id"], message["id"], "the broadcast of this request");
        assert_eq!(got["event"], answer["event"]["event"], "answer = broadcast");
        got
    }

    /// Opens `report` of patient `p`; returns the broadcast versionId.
    async fn open(&mut self, report: &str, p: &str) -> String {
        let msg = report_open(&self.topic, report, p);
        version(&self.accepted(&msg).await)
    }

    /// Applies an update with version `v`; returns the new version after
    /// checking the broadcast's priorVersionId (checklist 99).
    async fn update(&mut self, report: &str, v: &str, entries: Value) -> String {
        let got = self
            .accepted(&report_update(&self.topic, report, v, entries))
            .await;
        assert_eq!(got["event"]["context.priorVersionId"], v, "{got}");
        let new = version(&got);
        assert_ne!(new, v, "a new versionId after every update");
        new
    }

    /// The POST is refused with `status` and a text containing `needle`,
    /// nothing is broadcast and the current context is unchanged.
    async fn refused(&mut self, message: &Value, status: u16, needle: &str) {
        let before = self.current().await;
        let res = self.hub.publish(message).await;
        assert_eq!(res.status(), status, "{needle}");
        let body: Value = res.json().await.expect("OperationOutcome");
        let text = body["issue"][0]["details"]["text"]
            .as_str()
            .unwrap_or_default();
        assert!(text.contains(needle), "{text:?} should say {needle:?}");
        self.quiet().await;
        assert_eq!(
            self.current().await,
            before,
            "context and content unchanged"
        );
    }

    async fn quiet(&mut self) {
        let marker = event(&self.topic, MARKER, json!([]));
        self.hub.publish_ok(&marker).await;
        let got = self.ws.next_event().await;
        assert_eq!(
            got["id"], marker["id"],
            "expected only the marker, got {got}"
        );
    }

    async fn current(&self) -> Value {
        self.hub.context(&self.topic).await
    }
}

/// Checklist 86, 87, 88, 91, 93; clients.md §3 items 11, 14.
#[tokio::test]
async fn open_assigns_a_version_and_get_context_has_an_empty_content_bundle() {
    let mut s = Session::start().await;
    let open = report_open(&s.topic, "r1", "p1");
    let v1 = version(&s.accepted(&open).await);
    let current = s.current().await;
    assert_eq!(current["context.type"], "DiagnosticReport");
    assert_eq!(current["context.versionId"], v1.as_str());
    let mut context = current["context"].as_array().unwrap().clone();
    context.retain(|c| c["key"] != "content");
    assert_eq!(json!(context), open["event"]["context"]);
    assert_eq!(content_keys(&current), Vec::<String>::new());

    let v2 = s.open("r2", "p2").await;
    assert_ne!(v1, v2, "versionIds are unique within the topic");
}

/// Checklist 92, 98, 99, 100; clients.md §3 item 15. The spec's own update
/// example, applied to the spec's own open example.
#[tokio::test]
async fn spec_update_example_is_applied_and_rebroadcast() {
    let mut s = Session::start().await;
    let open = fixture_event("stu3/diagnosticreport-open.request-body.json", &s.topic);
    let v1 = version(&s.accepted(&open).await);
    let mut update = fixture_event("stu3/diagnosticreport-update.request-body.json", &s.topic);
    update["event"]["context.versionId"] = v1.as_str().into();
    update["event"]["context"][2]["resource"]["id"] = "spec-bundle-1".into();
    let got = s.accepted(&update).await;
    let v2 = version(&got);
    assert_ne!(v2, v1);
    assert_eq!(got["event"]["context.priorVersionId"], v1.as_str());
    assert_eq!(got["timestamp"], update["timestamp"]);
    assert_eq!(
        got["event"]["context"], update["event"]["context"],
        "same report, patient and Bundle (with its id)"
    );

    let current = s.current().await;
    assert_eq!(current["context.versionId"], v2.as_str());
    assert_eq!(
        content_keys(&current),
        [
            "ImagingStudy/7e9deb91-0017-4690-aebd-951cef34aba4",
            "Observation/40afe766-3628-4ded-b5bd-925727c013b3",
            "DiagnosticReport/2402d3bd-e988-414b-b7f2-4322e86c9327",
        ]
    );
    let puts = update["event"]["context"][2]["resource"]["entry"].clone();
    let stored = content_bundle(&current)["entry"].clone();
    for (put, kept) in puts
        .as_array()
        .unwrap()
        .iter()
        .zip(stored.as_array().unwrap())
    {
        assert_eq!(
            put["resource"], kept["resource"],
            "resources stored as sent"
        );
    }
    assert_eq!(
        current["context"][0], open["event"]["context"][0],
        "the open's report is unchanged; its update lives in content (92)"
    );
}

/// Checklist 94, 95, 96; clients.md §3 item 17.
#[tokio::test]
async fn stale_or_missing_version_is_refused() {
    let mut s = Session::start().await;
    let v1 = s.open("r1", "p1").await;
    s.update("r1", &v1, json!([put_observation("o1")])).await;
    let stale = report_update(&s.topic, "r1", &v1, json!([put_observation("o2")]));
    s.refused(&stale, 400, "version").await;
    assert_eq!(content_keys(&s.current().await), ["Observation/o1"]);

    let mut missing = report_update(&s.topic, "r1", &v1, json!([put_observation("o2")]));
    missing["event"]
        .as_object_mut()
        .unwrap()
        .remove("context.versionId");
    s.refused(&missing, 400, "versionId").await;
}

/// IHE IRA: 409 for an update or select on a context that is not open;
/// clients.md §3 item 16.
#[tokio::test]
async fn update_and_select_of_a_report_not_open_are_409() {
    let mut s = Session::start().await;
    let v1 = s.open("r1", "p1").await;
    let update = report_update(&s.topic, "r9", &v1, json!([put_observation("o1")]));
    s.refused(&update, 409, "r9").await;
    let sel = select(&s.topic, "r9", &["Observation/o1"]);
    s.refused(&sel, 409, "r9").await;
}

/// Checklist 96 (never apply part of a Bundle), 98 (POST not allowed),
/// 101 (a resource at most once per Bundle).
#[tokio::test]
async fn a_failing_bundle_applies_nothing() {
    let mut s = Session::start().await;
    let v1 = s.open("r1", "p1").await;
    let v2 = s.update("r1", &v1, json!([put_observation("o1")])).await;
    let partial = json!([put_observation("o2"), delete("Observation/nope")]);
    let msg = report_update(&s.topic, "r1", &v2, partial);
    s.refused(&msg, 400, "Observation/nope").await;

    let twice = json!([put_observation("o3"), put_observation("o3")]);
    let msg = report_update(&s.topic, "r1", &v2, twice);
    s.refused(&msg, 400, "Observation/o3").await;

    let post = json!([{"request": {"method": "POST", "url": "Observation"},
                       "resource": {"resourceType": "Observation", "status": "final"}}]);
    let msg = report_update(&s.topic, "r1", &v2, post);
    s.refused(&msg, 400, "POST").await;

    let current = s.current().await;
    assert_eq!(current["context.versionId"], v2.as_str());
    assert_eq!(content_keys(&current), ["Observation/o1"]);
}

/// clients.md §3 item 23 step by step; IHE IRA suspend/resume. Checklist
/// 92, 93, 96, 98, 99, 103, 104, 110. Step 9b (PUT o2) is added so that
/// "the content is kept" is observable after step 11.
#[tokio::test]
async fn advanced_suspend_resume_sequence() {
    let mut s = Session::start().await;
    // 1. open report r1.
    let v = s.open("r1", "p1").await;
    // 2-4. PUT an Observation, PUT it again, PUT the report itself.
    let v = s.update("r1", &v, json!([put_observation("o1")])).await;
    let v = s.update("r1", &v, json!([put_observation("o1")])).await;
    let v = s.update("r1", &v, json!([put_report("r1", "final")])).await;
    // 5. get-context.
    let current = s.current().await;
    assert_eq!(current["context.versionId"], v.as_str());
    assert_eq!(
        content_keys(&current),
        ["Observation/o1", "DiagnosticReport/r1"]
    );
    assert_eq!(current["context"][0]["resource"]["status"], "preliminary");
    // 6-7. DELETE the Observation, DELETE the report from the content.
    let v = s.update("r1", &v, json!([delete("Observation/o1")])).await;
    let v = s
        .update("r1", &v, json!([delete("DiagnosticReport/r1")]))
        .await;
    assert_eq!(content_keys(&s.current().await), Vec::<String>::new());
    // 8. DELETE the report again.
    let msg = report_update(&s.topic, "r1", &v, json!([delete("DiagnosticReport/r1")]));
    s.refused(&msg, 400, "part of the original open context")
        .await;
    // 9. DELETE the Observation again.
    let msg = report_update(&s.topic, "r1", &v, json!([delete("Observation/o1")]));
    s.refused(&msg, 400, "not currently in the content bundle")
        .await;
    // 9b. PUT another Observation.
    let v = s.update("r1", &v, json!([put_observation("o2")])).await;
    // 10. open r2.
    let w = s.open("r2", "p2").await;
    assert_ne!(w, v);
    assert_eq!(s.current().await["context.versionId"], w.as_str());
    // 11. re-open r1: its last version and its content come back.
    assert_eq!(s.open("r1", "p1").await, v);
    let current = s.current().await;
    assert_eq!(current["context"][0]["resource"]["id"], "r1");
    assert_eq!(current["context.versionId"], v.as_str());
    assert_eq!(content_keys(&current), ["Observation/o2"]);
    // 12. close r1: no versionId in the broadcast, empty context.
    let got = s.accepted(&report_close(&s.topic, "r1", "p1")).await;
    assert!(got["event"].get("context.versionId").is_none(), "{got}");
    let empty = fixture("stu3/get-current-context.empty.response.json");
    assert_eq!(s.current().await, empty);
}

/// Checklist 105; IHE IRA RAD-151 (206 when selected resources are unknown,
/// which are ignored but the event is still forwarded).
#[tokio::test]
async fn select_is_forwarded_with_202_or_206() {
    let mut s = Session::start().await;
    let v = s.open("r1", "p1").await;
    s.update("r1", &v, json!([put_observation("o1")])).await;
    let known = select(&s.topic, "r1", &["Observation/o1"]);
    let res = s.hub.publish(&known).await;
    assert_eq!(res.status(), 202);
    let got = s.ws.next_event().await;
    assert_eq!(got["id"], known["id"]);
    assert_eq!(got["event"]["context"], known["event"]["context"]);

    let some_unknown = select(&s.topic, "r1", &["Observation/o1", "Observation/zz"]);
    let res = s.hub.publish(&some_unknown).await;
    assert_eq!(res.status(), 206);
    let got = s.ws.next_event().await;
    assert_eq!(got["id"], some_unknown["id"]);
    assert_eq!(got["event"]["context"], some_unknown["event"]["context"]);
}

/// Checklist 82, 104, 107: an update to a suspended report is applied (the
/// hub advertises supportsNonCurrentContextUpdates) without changing the
/// current context.
#[tokio::test]
async fn update_of_a_suspended_report_keeps_the_current_context() {
    let mut s = Session::start().await;
    let config_url = format!("{}/.well-known/fhircast-configuration", s.hub.hub_url());
    let config = get_json(&s.hub.http, &config_url).await;
    assert_eq!(
        config["capabilities"]["supportsNonCurrentContextUpdates"],
        true
    );

    let v1 = s.open("r1", "p1").await;
    let w = s.open("r2", "p2").await;
    let v2 = s.update("r1", &v1, json!([put_observation("o1")])).await;
    let current = s.current().await;
    assert_eq!(current["context"][0]["resource"]["id"], "r2");
    assert_eq!(current["context.versionId"], w.as_str());
    assert_eq!(content_keys(&current), Vec::<String>::new());

    assert_eq!(s.open("r1", "p1").await, v2);
    assert_eq!(content_keys(&s.current().await), ["Observation/o1"]);
}

/// Checklist 93, 103: close disposes of the content; a re-open starts afresh.
#[tokio::test]
async fn close_disposes_of_the_content() {
    let mut s = Session::start().await;
    let v1 = s.open("r1", "p1").await;
    let v2 = s.update("r1", &v1, json!([put_observation("o1")])).await;
    s.accepted(&report_close(&s.topic, "r1", "p1")).await;
    let v3 = s.open("r1", "p1").await;
    assert!(v3 != v1 && v3 != v2, "a new versionId: {v3}");
    let current = s.current().await;
    assert_eq!(current["context.versionId"], v3.as_str());
    assert_eq!(content_keys(&current), Vec::<String>::new());
    let stale = report_update(&s.topic, "r1", &v2, json!([put_observation("o2")]));
    s.refused(&stale, 400, "version").await;
}
