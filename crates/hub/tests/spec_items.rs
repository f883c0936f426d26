//! Checklist items that were implemented without a test of their own
//! (`docs/CONFORMANCE.md`, hub-digest numbering).

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

/// Item 84: the `extension` context key is accepted and passed through
/// untouched (the spec's fragment, `extension-in-context.fragment.json`).
#[tokio::test]
async fn extension_context_passes_through_untouched() {
    let hub = TestHub::start().await;
    let t = topic();
    let mut app = hub.join(&t, "Patient-open", "Viewer").await;
    let fragment = fixture("stu3/extension-in-context.fragment.json");
    let sent = event(&t, "Patient-open", fragment["context"].clone());
    hub.publish_ok(&sent).await;

    let got = app.next_event().await;
    assert_eq!(got["event"]["context"], fragment["context"]);
    let current = hub.context(&t).await;
    let ext = current["context"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["key"] == "extension"))
        .unwrap_or_else(|| panic!("extension kept in the current context: {current}"));
    assert_eq!(ext["data"], json!({"user-timezone": "+1:00"}));
    hub.stop().await;
}

/// Item 12: contexts and deliveries are kept apart by topic.
#[tokio::test]
async fn topics_are_isolated() {
    let hub = TestHub::start().await;
    let (a, b) = (topic(), topic());
    let mut on_a = hub.join(&a, "Patient-open", "On A").await;
    let mut on_b = hub.join(&b, "Patient-open", "On B").await;

    let to_a = patient_open(&a, "patient-a");
    hub.publish_ok(&to_a).await;
    assert_eq!(on_a.next_event().await["id"], to_a["id"]);
    let to_b = patient_open(&b, "patient-b");
    hub.publish_ok(&to_b).await;
    // Delivery is in order: had A's event leaked to B, it would come first.
    assert_eq!(on_b.next_event().await["id"], to_b["id"]);
    assert!(
        ping_barrier(&mut on_a).await.is_empty(),
        "B's event stays on B"
    );

    let patient_of = |v: serde_json::Value| v["context"][0]["resource"]["id"].clone();
    assert_eq!(patient_of(hub.context(&a).await), "patient-a");
    assert_eq!(patient_of(hub.context(&b).await), "patient-b");
    hub.stop().await;
}

/// Heartbeats are not ACK-tracked (CONFORMANCE D6): an app that never
/// ACKs them stays subscribed well past the ACK timeout, with no
/// SyncError about it.
#[tokio::test]
async fn unacknowledged_heartbeats_do_not_count_as_missed_acks() {
    let ack_timeout = Duration::from_millis(150);
    let hub = TestHub::start_with(|c| {
        c.heartbeat_period = Duration::from_millis(50);
        c.ack_timeout = ack_timeout;
    })
    .await;
    let t = topic();
    let mut legacy = hub.join(&t, "heartbeat,Patient-open", "Legacy").await;
    let mut other = hub.join(&t, "Patient-open,syncerror", "Other").await;

    let first = Instant::now();
    let mut beats = 0;
    while first.elapsed() < ack_timeout * 4 {
        let frame = legacy.next_json().await; // never ACKed
        assert_eq!(frame["event"]["hub.event"], "heartbeat", "{frame}");
        beats += 1;
    }
    assert!(beats >= 3, "{beats} heartbeats");

    let marker = patient_open(&t, "marker");
    hub.publish_ok(&marker).await;
    // The other app hears of no failure: its next event is the marker.
    assert_eq!(other.next_event().await["id"], marker["id"]);
    loop {
        let frame = legacy.next_event().await;
        if frame["event"]["hub.event"] != "heartbeat" {
            assert_eq!(frame["id"], marker["id"]);
            break;
        }
    }
    hub.stop().await;
}

/// hub-digest §3 (catalog): a close names the resource it closes; a
/// DiagnosticReport-close whose report has no `id` is refused with 400
/// naming the field, and the open report stays open.
#[tokio::test]
async fn a_close_without_the_resource_id_is_refused() {
    let hub = TestHub::start().await;
    let t = topic();
    let _reporting = hub
        .join(
            &t,
            "DiagnosticReport-open,DiagnosticReport-close",
            "Reporting",
        )
        .await;
    hub.publish_ok(&report_open(&t, "r1", "p1")).await;
    let close = event(
        &t,
        "DiagnosticReport-close",
        json!([
            {"key": "report", "resource": {"resourceType": "DiagnosticReport", "status": "final"}},
            {"key": "patient", "resource": patient("p1")},
        ]),
    );
    let res = hub.publish(&close).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(
        text.contains(r#"context key \"report\" must be a DiagnosticReport resource with an id"#),
        "{text}"
    );
    let current = hub.context(&t).await;
    assert_eq!(current["context.type"], "DiagnosticReport", "{current}");
    hub.stop().await;
}
