//! SyncError generation and relaying (2-5, 3-2-1, IHE RAD-155/156): error
//! ACKs, missing ACKs, abnormal and clean closes, reconnects within the
//! grace period, and SyncErrors posted by subscribers.

mod common;

use std::time::Duration;

use common::*;
use lockstep_hub::HubEvent;
use serde_json::{json, Value};
use tokio::sync::broadcast;

const SYSTEM: &str = "https://fhircast.hl7.org/events/syncerror/";

/// Asserts `frame` is a well-formed hub SyncError on `topic` about event
/// `event_id`/`event_name` failed by `subscriber` (checklist 42, 70-74).
fn assert_sync_error(
    frame: &Value,
    topic: &str,
    event_id: &str,
    event_name: &str,
    subscriber: &str,
) {
    let ev = &frame["event"];
    assert!(
        ev["hub.event"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("SyncError")),
        "expected a SyncError, got {frame}"
    );
    assert_eq!(ev["hub.topic"], topic, "{frame}");
    assert!(
        text(&frame["id"]) && text(&frame["timestamp"]),
        "42: {frame}"
    );
    let context = ev["context"].as_array().expect("context array");
    assert_eq!(context.len(), 1, "one operationoutcome (70): {frame}");
    assert_eq!(context[0]["key"], "operationoutcome");
    let outcome = &context[0]["resource"];
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    let issue = &outcome["issue"][0];
    assert_eq!(issue["severity"], "warning", "71: {frame}");
    assert_eq!(issue["code"], "processing", "71: {frame}");
    assert!(text(&issue["diagnostics"]), "diagnostics (73): {frame}");
    let codings = issue["details"]["coding"]
        .as_array()
        .expect("details.coding");
    for (suffix, expected) in [
        ("eventid", event_id),
        ("eventname", event_name),
        ("subscribername", subscriber),
    ] {
        let system = format!("{SYSTEM}{suffix}");
        let found: Vec<&Value> = codings
            .iter()
            .filter(|c| c["system"] == system.as_str())
            .collect();
        assert_eq!(found.len(), 1, "exactly one {system} coding (72): {frame}");
        assert_eq!(found[0]["code"], expected, "{suffix} (72, 74): {frame}");
    }
    for c in codings {
        assert!(text(&c["code"]), "FHIR codes are never empty (6): {frame}");
    }
}

/// A non-blank string: FHIR JSON has no empty strings.
fn text(v: &Value) -> bool {
    v.as_str().is_some_and(|s| !s.trim().is_empty())
}

/// The connection vanishes: the TCP socket closes without a close frame.
fn vanish(ws: Ws) {
    drop(ws.stream);
}

/// How an app goes away abnormally.
#[derive(Clone, Copy, Debug)]
enum Gone {
    Tcp,
    Close4000,
}

async fn go_away(ws: Ws, how: Gone) {
    match how {
        Gone::Tcp => vanish(ws),
        Gone::Close4000 => ws.close(4000).await,
    }
}

/// Waits for the hub to report that `name`'s socket went away.
async fn disconnected(rx: &mut broadcast::Receiver<HubEvent>, name: &str) -> bool {
    loop {
        let got = tokio::time::timeout(WAIT, rx.recv())
            .await
            .expect("hub event in time");
        match got {
            Ok(HubEvent::Disconnected {
                subscriber, clean, ..
            }) if subscriber == name => return clean,
            Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

/// Get Current Context still shows the open that `answer` accepted: a
/// failure never changes the context (IHE IRA). The hub's `content` Bundle
/// entry (content sharing, 2-9) is left aside.
async fn assert_context_unchanged(hub: &TestHub, topic: &str, answer: &Value) {
    let current = hub.context(topic).await;
    let broadcast = &answer["event"]["event"];
    let context: Vec<&Value> = current["context"]
        .as_array()
        .expect("context array")
        .iter()
        .filter(|c| c["key"] != "content")
        .collect();
    let expected: Vec<&Value> = broadcast["context"].as_array().unwrap().iter().collect();
    assert_eq!(context, expected, "{current}");
    assert_eq!(current["context.type"], "Patient", "{current}");
    assert_eq!(current["context.versionId"], broadcast["context.versionId"]);
}

/// The hub sends a denial and nothing else (no SyncError about the app
/// itself, 68), then closes the socket (34).
async fn assert_denied(ws: &mut Ws) {
    let (texts, close) = ws.closed().await;
    assert_eq!(texts.len(), 1, "only a denial: {texts:?}");
    assert_eq!(texts[0]["hub.mode"], "denied", "{texts:?}");
    assert!(close.is_some(), "then a close frame");
}

/// Asserts the endpoint is gone: connecting gets a denial and a close (56).
async fn assert_unsubscribed(endpoint: &str) {
    assert_denied(&mut Ws::connect(endpoint).await).await;
}

/// Publishes a marker event and asserts it is the next event on each of
/// `sockets` (with its message): nothing else came first.
async fn marker_comes_next<const N: usize>(
    hub: &TestHub,
    topic: &str,
    sockets: [(&mut Ws, &str); N],
) {
    let marker = patient_open(topic, "p-marker");
    hub.publish_ok(&marker).await;
    for (ws, why) in sockets {
        assert_eq!(ws.next_event().await["id"], marker["id"], "{why}");
    }
}

/// The clock app vanishes; its SyncError (about `open`) reaches
/// `observer` one grace period later, after any SyncError about an app
/// that went before it would have.
async fn clock_ticks(clock: Ws, observer: &mut Ws, topic: &str, open: &Value) {
    vanish(clock);
    let sync = observer.next_json().await;
    assert_sync_error(
        &sync,
        topic,
        open["id"].as_str().unwrap(),
        "Patient-open",
        "Clock",
    );
}

/// Connects to `endpoint` again: the subscription is confirmed and the
/// current context (`open`, accepted with `answer`) replayed as it was.
async fn back_with_replay(
    endpoint: &str,
    topic: &str,
    open: &Value,
    answer: &Value,
    why: &str,
) -> Ws {
    let mut back = Ws::connect(endpoint).await;
    let confirmation = back.next_json().await;
    assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
    assert_eq!(confirmation["hub.topic"], topic);
    let replay = back.next_event().await;
    assert_eq!(replay["id"], open["id"], "{why}");
    assert_eq!(replay["timestamp"], open["timestamp"]);
    assert_eq!(replay["event"]["context"], open["event"]["context"]);
    assert_eq!(
        replay["event"]["context.versionId"],
        answer["event"]["event"]["context.versionId"]
    );
    back
}

/// One error ACK: SyncError to the other syncerror subscribers only, the
/// failing app is denied, closed and unsubscribed, the context stays.
async fn error_ack(status: Value) {
    let hub = TestHub::start().await;
    let topic = topic();
    let name = format!("Failing App {status}");
    let mut failing = hub.join(&topic, "Patient-open,SyncError", &name).await;
    let mut observer = hub.join(&topic, "Patient-open,SyncError", "Observer").await;
    let mut bystander = hub.join(&topic, "Patient-open", "Bystander").await;

    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    let id = open["id"].as_str().unwrap();
    observer.next_event().await;
    bystander.next_event().await;
    let got = failing.next_json().await;
    assert_eq!(got["id"], id);
    failing.ack(id, status.clone()).await;

    let sync = observer.next_json().await;
    assert_sync_error(&sync, &topic, id, "Patient-open", &name);

    assert_denied(&mut failing).await;
    assert_unsubscribed(&failing.endpoint).await;

    assert_context_unchanged(&hub, &topic, &answer).await;

    marker_comes_next(
        &hub,
        &topic,
        [
            (&mut bystander, "no SyncError to non-subscribers (69)"),
            (&mut observer, "exactly one SyncError"),
        ],
    )
    .await;
}

/// Checklist 49, 56, 68-74.
#[tokio::test]
async fn ack_409_sends_sync_error_and_unsubscribes() {
    error_ack(json!(409)).await;
}

/// Checklist 50, 56, 68-74.
#[tokio::test]
async fn ack_422_sends_sync_error_and_unsubscribes() {
    error_ack(json!(422)).await;
}

/// Checklist 51, 56, 68-74.
#[tokio::test]
async fn ack_500_sends_sync_error_and_unsubscribes() {
    error_ack(json!(500)).await;
}

/// Checklist 48, 51, 56, 68-74 (the spec's own ACK example uses a string).
#[tokio::test]
async fn ack_500_as_string_sends_sync_error() {
    error_ack(json!("500")).await;
}

/// A successful ACK in another spelling: no SyncError, still subscribed.
async fn success_ack(ack: impl FnOnce(&str) -> String) {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = hub
        .join(&topic, "Patient-open,SyncError", "Medplum App")
        .await;
    let mut observer = hub.join(&topic, "Patient-open,SyncError", "Observer").await;

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    observer.next_event().await;
    let got = app.next_json().await;
    app.send(ack(got["id"].as_str().unwrap())).await;
    assert!(
        ping_barrier(&mut app).await.is_empty(),
        "nothing but the pong"
    );

    marker_comes_next(
        &hub,
        &topic,
        [
            (&mut observer, "no SyncError"),
            (&mut app, "still subscribed"),
        ],
    )
    .await;
}

/// Checklist 48 (status "200" as a string, as in the spec example).
#[tokio::test]
async fn ack_200_as_string_is_success() {
    success_ack(|id| json!({"id": id, "status": "200"}).to_string()).await;
}

/// Checklist 48 (Medplum's client ACKs `{id, timestamp}` with no status).
#[tokio::test]
async fn ack_without_status_is_success() {
    success_ack(|id| json!({"id": id, "timestamp": "2026-11-22T10:42:01.000Z"}).to_string()).await;
}

/// Checklist 53, 56, 70-74.
#[tokio::test]
async fn missing_ack_sends_sync_error_and_unsubscribes() {
    let hub = TestHub::start_with(|c| c.ack_timeout = Duration::from_millis(300)).await;
    let topic = topic();
    let mut silent = hub.join(&topic, "Patient-open", "Silent App").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;

    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    let id = open["id"].as_str().unwrap();
    assert_eq!(silent.next_json().await["id"], id); // read, never ACKed

    let sync = observer.next_json().await;
    assert_sync_error(&sync, &topic, id, "Patient-open", "Silent App");
    assert_denied(&mut silent).await;
    assert_unsubscribed(&silent.endpoint).await;
    assert_context_unchanged(&hub, &topic, &answer).await;
}

/// A clean close never brings a SyncError, and the app may come back to the
/// same endpoint. A second app that vanishes serves as the clock: its
/// SyncError comes one grace period after it went, later than any SyncError
/// about the first app could.
async fn clean_close(code: u16) {
    let hub = TestHub::start_with(|c| c.grace_period = Duration::from_millis(200)).await;
    let topic = topic();
    let mut events = hub.hub.events();
    let mut app = hub
        .join(&topic, "Patient-open,SyncError", "Clean App")
        .await;
    let mut clock = hub.join(&topic, "Patient-open", "Clock").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;

    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    app.next_event().await;
    clock.next_event().await;

    let endpoint = app.endpoint.clone();
    app.close(code).await;
    assert!(
        disconnected(&mut events, "Clean App").await,
        "{code} is a clean close"
    );
    clock_ticks(clock, &mut observer, &topic, &open).await;

    let mut back = back_with_replay(
        &endpoint,
        &topic,
        &open,
        &answer,
        "current context replayed (28)",
    )
    .await;
    marker_comes_next(&hub, &topic, [(&mut back, "still subscribed")]).await;
}

/// Checklist 55, 26, 28.
#[tokio::test]
async fn close_1000_is_silent_and_app_can_reconnect() {
    clean_close(1000).await;
}

/// Checklist 55, 26, 28.
#[tokio::test]
async fn close_1001_is_silent_and_app_can_reconnect() {
    clean_close(1001).await;
}

async fn abnormal_drop(how: Gone) {
    let hub = TestHub::start_with(|c| c.grace_period = Duration::from_millis(200)).await;
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open", "Dropped App").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;
    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    app.next_event().await;

    let endpoint = app.endpoint.clone();
    go_away(app, how).await;
    let sync = observer.next_json().await;
    assert_sync_error(
        &sync,
        &topic,
        open["id"].as_str().unwrap(),
        "Patient-open",
        "Dropped App",
    );
    assert_unsubscribed(&endpoint).await;
    assert_context_unchanged(&hub, &topic, &answer).await;
}

/// Checklist 54, 56, 70-74.
#[tokio::test]
async fn tcp_drop_sends_sync_error_after_grace() {
    abnormal_drop(Gone::Tcp).await;
}

/// Checklist 54, 56, 70-74.
#[tokio::test]
async fn close_4000_sends_sync_error_after_grace() {
    abnormal_drop(Gone::Close4000).await;
}

/// Checklist 54, 6, 72: an app that drops before it was sent any event is
/// still reported with a valid OperationOutcome (no empty codes).
#[tokio::test]
async fn drop_before_any_event_gives_valid_sync_error() {
    let hub = TestHub::start_with(|c| c.grace_period = Duration::from_millis(200)).await;
    let topic = topic();
    let app = hub.join(&topic, "Patient-open", "Early App").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;
    vanish(app);
    let sync = observer.next_json().await;
    let issue = &sync["event"]["context"][0]["resource"]["issue"][0];
    let codings = issue["details"]["coding"].as_array().expect("codings");
    let name = format!("{SYSTEM}subscribername");
    let named = codings.iter().find(|c| c["system"] == name.as_str());
    assert_eq!(
        named.map(|c| &c["code"]),
        Some(&json!("Early App")),
        "{sync}"
    );
    for c in codings {
        assert!(text(&c["code"]), "FHIR codes are never empty: {sync}");
    }
}

/// The app drops and is back before the grace period ends: no SyncError,
/// and it gets the current context again. A second app vanishing after it
/// is the clock (see `clean_close`).
async fn reconnect_within_grace(how: Gone) {
    let hub = TestHub::start_with(|c| c.grace_period = Duration::from_secs(1)).await;
    let topic = topic();
    let mut events = hub.hub.events();
    let mut app = hub.join(&topic, "Patient-open", "Roaming App").await;
    let mut clock = hub.join(&topic, "Patient-open", "Clock").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;
    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    app.next_event().await;
    clock.next_event().await;

    let endpoint = app.endpoint.clone();
    go_away(app, how).await;
    assert!(
        !disconnected(&mut events, "Roaming App").await,
        "{how:?} is abnormal"
    );
    let mut back = back_with_replay(
        &endpoint,
        &topic,
        &open,
        &answer,
        "current context replayed (28, 29)",
    )
    .await;

    clock_ticks(clock, &mut observer, &topic, &open).await;
    marker_comes_next(&hub, &topic, [(&mut back, "still subscribed")]).await;
}

/// Checklist 54, 28, 29; hub-digest 2.8 (reconnects are not SyncErrors).
#[tokio::test]
async fn tcp_drop_then_reconnect_within_grace_is_silent() {
    reconnect_within_grace(Gone::Tcp).await;
}

/// Checklist 54, 28, 29.
#[tokio::test]
async fn close_4000_then_reconnect_within_grace_is_silent() {
    reconnect_within_grace(Gone::Close4000).await;
}

/// A SyncError POSTed by a subscriber goes to the syncerror subscribers
/// unchanged, and to nobody else.
async fn relay(with_id: bool) {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut first = hub.join(&topic, "SyncError", "First").await;
    let mut second = hub.join(&topic, "syncerror,Patient-open", "Second").await;
    let mut bystander = hub.join(&topic, "Patient-open", "Bystander").await;

    let mut posted = fixture_event("stu3/syncerror.notification.json", &topic);
    if with_id {
        posted["event"]["context"][0]["resource"]["id"] = "oo1".into();
    }
    hub.publish_ok(&posted).await;
    for ws in [&mut first, &mut second] {
        let got = ws.next_json().await;
        assert_eq!(got["id"], posted["id"], "same id (64)");
        assert_eq!(got["timestamp"], posted["timestamp"]);
        let name = got["event"]["hub.event"].as_str().unwrap();
        assert!(name.eq_ignore_ascii_case("syncerror"), "{got}");
        assert_eq!(got["event"]["context"], posted["event"]["context"]);
    }
    marker_comes_next(
        &hub,
        &topic,
        [(&mut bystander, "69"), (&mut second, "relayed once")],
    )
    .await;
}

/// Checklist 68, 69 (IHE RAD-156): the spec's own example, whose
/// OperationOutcome has no `id` (the SyncError profile does not require one).
#[tokio::test]
async fn posted_sync_error_fixture_is_relayed() {
    relay(false).await;
}

/// Checklist 68, 69: as Medplum's client sends it (resources carry an id).
#[tokio::test]
async fn posted_sync_error_with_resource_id_is_relayed() {
    relay(true).await;
}
