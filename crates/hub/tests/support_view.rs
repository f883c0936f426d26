//! "Is every app on the same patient?" (issue 15), answered by the hub:
//! each app's sync state from what it acknowledged, SyncErrors that stay
//! until someone acknowledges them, breaking and rejoining one app's link;
//! and apps registered as never acknowledging (issue 19).

mod admin_support;
mod common;

use std::time::Duration;

use admin_support::*;
use common::*;
use serde_json::{json, Value};

/// The read model's subscription named `name`, on any topic.
fn app<'a>(state: &'a Value, name: &str) -> &'a Value {
    state["topics"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["subscriptions"].as_array().unwrap().iter())
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no app {name} in {state}"))
}

/// Morning, three apps on the same study: the PACS acknowledges at once,
/// the dictation system is still busy (no ACK yet), the AI assistant
/// refuses. Support sees each one's state, with what it last acknowledged;
/// the refusal stays on the Now view until someone acknowledges it.
#[tokio::test]
async fn each_app_has_a_sync_state_from_what_it_acknowledged() {
    let hub = TestHub::start_with(|c| c.ack_timeout = Duration::from_secs(60)).await;
    let t = topic();
    let mut pacs = hub.join(&t, "Patient-open,SyncError", "PACS").await;
    let mut dictation = hub.join(&t, "Patient-open", "Dictation").await;
    let mut ai = hub.join(&t, "Patient-open", "AI").await;
    let state = get_state(&hub).await;
    assert_eq!(app(&state, "PACS")["sync"]["state"], "in-sync");
    assert_eq!(app(&state, "PACS")["sync"]["acked"], Value::Null);

    let open = patient_open(&t, "p1");
    hub.publish_ok(&open).await;
    let got = pacs.next_event().await; // ACKed with 200
    assert_eq!(got["id"], open["id"]);
    let _unanswered = dictation.next_json().await;
    let to_refuse = ai.next_json().await;
    // The PACS has ACKed once its next frame is a SyncError: the AI's
    // refusal, sent after the PACS's ACK was read (one socket, in order).
    ai.ack(to_refuse["id"].as_str().unwrap(), json!(409)).await;
    let sync_error = pacs.next_json().await;
    assert_eq!(sync_error["event"]["hub.event"], "SyncError");

    let state = get_state(&hub).await;
    let pacs_sync = &app(&state, "PACS")["sync"];
    assert_eq!(pacs_sync["state"], "in-sync", "{pacs_sync}");
    assert_eq!(pacs_sync["acked"]["id"], open["id"]);
    assert_eq!(pacs_sync["acked"]["event"], "Patient-open");
    let dictation_sync = &app(&state, "Dictation")["sync"];
    assert_eq!(dictation_sync["state"], "behind", "{dictation_sync}");
    assert_eq!(dictation_sync["pending"], 1);
    // The AI was reported and dropped (D5); the alarm stays.
    let alarms = state["syncErrors"].as_array().unwrap();
    assert_eq!(alarms.len(), 1, "{alarms:?}");
    assert_eq!(alarms[0]["app"], "AI");
    assert_eq!(alarms[0]["event"], "Patient-open");
    let seq = alarms[0]["seq"].as_u64().unwrap();
    let res = admin_post(&hub, &format!("/admin/api/sync-errors/{seq}/acknowledge")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(get_state(&hub).await["syncErrors"], json!([]));
    let res = admin_post(&hub, &format!("/admin/api/sync-errors/{seq}/acknowledge")).await;
    assert_eq!(res.status(), 404, "acknowledged once");
    hub.stop().await;
}

/// The reporting app keeps jumping to the wrong study, so support breaks
/// its link (CCOW "break link"): it is told, its row says paused, and it
/// follows nothing while the RIS moves on (open, close, open). Rejoined,
/// it gets the close it missed and then the current patient, and never
/// shows one the others have left.
#[tokio::test]
async fn support_breaks_one_apps_link_and_rejoins_it() {
    let hub = TestHub::start().await;
    let t = topic();
    let mut pacs = hub.join(&t, "Patient-open,Patient-close", "PACS").await;
    let mut reporting = hub
        .join(&t, "Patient-open,Patient-close", "Reporting")
        .await;
    hub.publish_ok(&patient_open(&t, "p1")).await;
    pacs.next_event().await;
    reporting.next_event().await;

    let endpoint = app(&get_state(&hub).await, "Reporting")["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = admin_post(
        &hub,
        &format!("/admin/api/subscriptions/{endpoint}/break-link"),
    )
    .await;
    assert_eq!(res.status(), 200);
    let told = reporting.next_json().await;
    assert_eq!(told["event"]["hub.event"], "SyncError");
    assert!(told.to_string().contains("until it is rejoined"), "{told}");
    assert_eq!(
        app(&get_state(&hub).await, "Reporting")["sync"]["state"],
        "paused"
    );

    let open2 = patient_open(&t, "p2");
    let close2 = patient_close(&t, "p2");
    let open3 = patient_open(&t, "p3");
    for e in [&open2, &close2, &open3] {
        hub.publish_ok(e).await;
        assert_eq!(pacs.next_event().await["id"], e["id"], "the PACS follows");
    }

    let res = admin_post(&hub, &format!("/admin/api/subscriptions/{endpoint}/rejoin")).await;
    assert_eq!(res.status(), 200);
    // Nothing from while it was unlinked but the close, then the current one.
    let first = reporting.next_event().await;
    assert_eq!(first["id"], close2["id"], "{first}");
    let second = reporting.next_event().await;
    assert_eq!(second["id"], open3["id"], "{second}");
    // Once the hub answers a ping sent after the ACKs, it has read them.
    ping_barrier(&mut reporting).await;
    assert_eq!(
        app(&get_state(&hub).await, "Reporting")["sync"]["state"],
        "in-sync"
    );
    // Both support actions are in the audit trail.
    let audit = hub
        .http
        .get(hub.url("/admin/api/audit"))
        .header("authorization", bearer(&hub))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("break the link of Reporting"), "{audit}");
    assert!(audit.contains("rejoin Reporting"), "{audit}");
    hub.stop().await;
}

/// Issue 19: an OHIF-style viewer never sends ACKs. Registered as such, it
/// is never dropped or reported for them, while an app that should ACK and
/// stays silent is, after the same timeout.
#[tokio::test]
async fn an_app_registered_as_not_acknowledging_is_never_reported_for_it() {
    let hub = TestHub::start_with(|c| {
        c.no_auth = false;
        c.ack_timeout = Duration::from_millis(200);
    })
    .await;
    let session = hub.hub.session_topic().to_owned();
    let token_of = |client_id: String, secret: String| {
        let hub = &hub;
        async move {
            let res = hub.token_with_secret(&client_id, &secret).await;
            let body: Value = res.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let scopes = "fhircast/*.read fhircast/*.write";
    let (viewer, viewer_secret) = hub.hub.apps().register("Viewer", scopes, vec![]).unwrap();
    hub.hub
        .apps()
        .set_acknowledges(&viewer.client_id, false)
        .unwrap();
    let (slow, slow_secret) = hub.hub.apps().register("Slow", scopes, vec![]).unwrap();
    let (pacs, pacs_secret) = hub.hub.apps().register("PACS", scopes, vec![]).unwrap();
    let viewer_id = viewer.client_id.clone();
    let viewer_token = token_of(viewer.client_id, viewer_secret).await;
    let slow_token = token_of(slow.client_id, slow_secret).await;
    let pacs_token = token_of(pacs.client_id, pacs_secret).await;
    let join = |token: String, events: &'static str, name: &'static str| {
        let hub = &hub;
        let session = session.clone();
        async move {
            let mut form = subscribe_form(&session, events);
            form.push(("subscriber.name", name));
            let res = hub
                .http
                .post(hub.hub_url())
                .bearer_auth(token)
                .form(&form)
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 202);
            let mut ws = Ws::connect(&endpoint_of(res).await).await;
            ws.next_json().await;
            ws
        }
    };
    let mut viewer_ws = join(viewer_token, "Patient-open", "Viewer").await;
    let mut slow_ws = join(slow_token, "Patient-open", "Slow").await;
    let mut pacs_ws = join(pacs_token.clone(), "Patient-open,SyncError", "PACS").await;

    let open = patient_open(&session, "p1");
    assert!(!hub.hub.apps().acknowledges(&viewer_id));
    assert_eq!(
        hub.publish_with_token(&pacs_token, &open).await.status(),
        202
    );
    assert_eq!(pacs_ws.next_event().await["id"], open["id"]);
    let _ = viewer_ws.next_json().await; // never ACKed
    let _ = slow_ws.next_json().await; // never ACKed
                                       // The slow app's timeout fires: one SyncError, naming it alone.
    let sync_error = pacs_ws.next_json().await;
    assert_eq!(sync_error["event"]["hub.event"], "SyncError");
    assert!(sync_error.to_string().contains("Slow"), "{sync_error}");
    let state = get_state(&hub).await;
    assert_eq!(app(&state, "Viewer")["sync"]["state"], "no-ack");
    // The viewer is still subscribed and keeps following.
    let next = patient_open(&session, "p2");
    assert_eq!(
        hub.publish_with_token(&pacs_token, &next).await.status(),
        202
    );
    assert_eq!(
        pacs_ws.next_event().await["id"],
        next["id"],
        "no other SyncError"
    );
    assert_eq!(viewer_ws.next_json().await["id"], next["id"]);
    hub.stop().await;
}
