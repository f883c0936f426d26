//! Discovery, subscribe, confirmation, re-subscribe, unsubscribe, leases,
//! unused endpoints and connection takeover (2-4, 2-7; hub-digest §1, §2,
//! §11; clients.md §0, §3, §5).

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{json, Value};
use tokio::time::Duration;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

const MEDPLUM_ACCEPT: &str = "application/fhir+json, */*; q=0.1";

fn code(close: Option<CloseFrame>) -> Option<u16> {
    close.map(|c| u16::from(c.code))
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect()
}

/// Status, Content-Type and body text of a response.
async fn parts(res: reqwest::Response) -> (u16, String, String) {
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok());
    let ct = ct.unwrap_or_default().to_owned();
    (res.status().as_u16(), ct, res.text().await.unwrap())
}

/// Asserts a 202 with a JSON body and returns `hub.channel.endpoint`.
async fn accepted(res: reqwest::Response) -> String {
    let (status, ct, text) = parts(res).await;
    assert_eq!(status, 202, "{text}");
    assert!(ct.starts_with("application/json"), "content type {ct:?}");
    let body: Value = serde_json::from_str(&text).expect("JSON body");
    body["hub.channel.endpoint"]
        .as_str()
        .expect("endpoint")
        .to_owned()
}

/// Asserts a 400 with a readable plain-text reason; returns the reason.
async fn refused(res: reqwest::Response, case: &str) -> String {
    let (status, ct, text) = parts(res).await;
    assert_eq!(status, 400, "{case}: {text}");
    assert!(ct.starts_with("text/plain"), "{case}: content type {ct:?}");
    assert!(text.trim().len() > 10, "{case}: reason {text:?}");
    text
}

async fn post_raw(hub: &TestHub, body: &str, accept: Option<&str>) -> reqwest::Response {
    let mut req = hub
        .http
        .post(hub.hub_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned());
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    req.send().await.expect("POST")
}

/// A websocket (un)subscription form with `extra` fields appended.
fn form<'a>(
    mode: &'a str,
    topic: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("hub.channel.type", "websocket"),
        ("hub.mode", mode),
        ("hub.topic", topic),
    ];
    fields.extend_from_slice(extra);
    fields
}

async fn subscribe_with(
    hub: &TestHub,
    topic: &str,
    events: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut fields = form("subscribe", topic, &[("hub.events", events)]);
    fields.extend_from_slice(extra);
    accepted(hub.post_form(&fields).await).await
}

/// Connects and returns the socket with its confirmation, checked for the
/// exact key set and a numeric lease.
async fn connect_confirmed(endpoint: &str, topic: &str) -> (Ws, Value) {
    let mut ws = Ws::connect(endpoint).await;
    let c = ws.next_json().await;
    assert_eq!(
        keys(&c),
        BTreeSet::from(["hub.mode", "hub.topic", "hub.events", "hub.lease_seconds"]),
        "{c}"
    );
    assert_eq!(c["hub.mode"], "subscribe");
    assert_eq!(c["hub.topic"], topic);
    assert!(
        c["hub.lease_seconds"].as_u64().is_some_and(|l| l > 0),
        "{c}"
    );
    (ws, c)
}

/// Asserts the hub refuses the endpoint: denial "invalid endpoint", close 1008.
async fn assert_dead(endpoint: &str) {
    let mut ws = Ws::connect(endpoint).await;
    let (texts, close) = ws.closed().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["hub.mode"], "denied");
    assert_eq!(texts[0]["hub.reason"], "invalid endpoint");
    assert_eq!(code(close), Some(1008));
}

fn endpoint_id(endpoint: &str) -> &str {
    endpoint.rsplit('/').next().unwrap()
}

/// Checklist 76-81, 83, 115; clients.md §3 item 1 (STU2 form).
#[tokio::test]
async fn discovery_on_every_hub_path() {
    let hub = TestHub::start().await;
    for (path, version) in [
        ("/fhircast/STU3", "3.0.0"),
        ("/fhircast/STU2", "STU2"),
        ("/api/hub", "3.0.0"),
    ] {
        let url = hub.url(&format!("{path}/.well-known/fhircast-configuration"));
        let (status, ct, text) = parts(hub.http.get(url).send().await.unwrap()).await;
        assert_eq!(status, 200, "{path}");
        assert!(ct.starts_with("application/json"), "{path}: {ct}");
        let doc: Value = serde_json::from_str(&text).unwrap();
        let events = doc["eventsSupported"].as_array().expect("eventsSupported");
        for name in ["patient-open", "patient-close", "syncerror"] {
            let listed = events
                .iter()
                .any(|e| e.as_str().unwrap().eq_ignore_ascii_case(name));
            assert!(listed, "{path}: {name} in {doc}");
        }
        assert_eq!(doc["websocketSupport"], true, "{path}");
        assert_eq!(doc["fhircastVersion"], version, "{path}");
        assert_eq!(doc["getCurrentSupport"], true, "{path}");
        assert_eq!(
            doc["capabilities"]["supportsGetCurrentContext"], true,
            "{path}"
        );
        let fhir = doc["fhirVersion"].as_str().expect("fhirVersion");
        assert!(
            ["DSTU2", "STU3", "R4", "R4B", "R5"].contains(&fhir),
            "{path}"
        );
        if version == "STU2" {
            assert_eq!(
                doc["webhookSupport"], true,
                "legacy webhooks are served on STU2"
            );
        }
    }
}

/// Checklist 7, 8, 19, 22, 23, 26, 40; clients.md §0 item 2, §3 items 2, 5.
#[tokio::test]
async fn spec_subscribe_example_gets_random_endpoint() {
    let hub = TestHub::start().await;
    let req = fixture("stu3/subscribe-websocket.request.json");
    let res = post_raw(&hub, req["_rawBody"].as_str().unwrap(), None).await;
    let endpoint = accepted(res).await;
    let prefix = format!("ws://127.0.0.1:{}/fhircast/STU3/ws/", hub.addr.port());
    let id = endpoint.strip_prefix(&prefix).expect(&endpoint);
    assert!(
        id.len() >= 32 && id.chars().all(|c| c.is_ascii_hexdigit()),
        "{id}"
    );
    let topic = req["fields"]["hub.topic"].as_str().unwrap();
    assert!(!endpoint.contains(topic));
    let (_ws, c) = connect_confirmed(&endpoint, topic).await;
    assert_eq!(c["hub.events"], "Patient-open,Patient-close");
    let second = accepted(post_raw(&hub, req["_rawBody"].as_str().unwrap(), None).await).await;
    assert_ne!(second, endpoint, "one endpoint per subscription");
}

/// Checklist 7, 22; clients.md §3 item 2 (JSON body tolerated).
#[tokio::test]
async fn json_body_subscribe_is_tolerated() {
    let hub = TestHub::start().await;
    let topic = topic();
    let body = json!({"hub.channel.type": "websocket", "hub.mode": "subscribe",
                      "hub.topic": topic, "hub.events": "Patient-open"});
    let res = hub.publish(&body).await;
    let endpoint = accepted(res).await;
    let (_ws, c) = connect_confirmed(&endpoint, &topic).await;
    assert_eq!(c["hub.events"], "Patient-open");
}

/// Checklist 9, 19, 20, 21; clients.md §0 item 8, §3 item 4.
#[tokio::test]
async fn missing_channel_type_is_400_with_reason() {
    let hub = TestHub::start().await;
    let body = format!(
        "hub.mode=subscribe&hub.topic={}&hub.events=Patient-open",
        topic()
    );
    let text = refused(post_raw(&hub, &body, None).await, "no Accept").await;
    assert!(text.contains("hub.channel.type"), "{text}");

    let (status, ct, text) = parts(post_raw(&hub, &body, Some(MEDPLUM_ACCEPT)).await).await;
    assert_eq!(status, 400);
    assert!(ct.contains("json"), "{ct}");
    let oo: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(oo["resourceType"], "OperationOutcome");
    let details = oo["issue"][0]["details"]["text"]
        .as_str()
        .expect("details.text");
    assert!(details.contains("hub.channel.type"), "{details}");
}

/// Checklist 10, 19, 20, 21; clients.md §3 item 4, §5 (empty hub.events).
#[tokio::test]
async fn malformed_subscriptions_are_400() {
    let hub = TestHub::start().await;
    let t = topic();
    let base = form("subscribe", &t, &[("hub.events", "Patient-open")]);
    let with = |name: &'static str, value: Option<&'static str>| {
        let mut f = base.clone();
        f.retain(|(k, _)| *k != name);
        f.extend(value.map(|v| (name, v)));
        f
    };
    let mut duplicate = base.clone();
    duplicate.push(("hub.topic", "other"));
    let cases = [
        ("webhook channel", with("hub.channel.type", Some("webhook"))),
        ("unknown channel", with("hub.channel.type", Some("xyz"))),
        ("empty hub.events", with("hub.events", Some(""))),
        ("missing hub.events", with("hub.events", None)),
        ("wildcard", with("hub.events", Some("*-open"))),
        ("STU2 wildcard", with("hub.events", Some("*-*"))),
        ("invalid hub.mode", with("hub.mode", Some("xyz"))),
        ("missing hub.topic", with("hub.topic", None)),
        ("duplicate field", duplicate),
    ];
    for (case, fields) in cases {
        refused(hub.post_form(&fields).await, case).await;
    }
}

/// Checklist 11, 12, 27, 30; clients.md §3 item 22.
#[tokio::test]
async fn duplicate_and_case_variant_events_collapse() {
    let hub = TestHub::start().await;
    let topic = topic();
    let events = "Patient-open,patient-OPEN,Patient-close,Patient-open";
    let endpoint = hub.subscribe(&topic, events).await;
    let (mut ws, c) = connect_confirmed(&endpoint, &topic).await;
    assert_eq!(c["hub.events"], "Patient-open,Patient-close");

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(ws.next_event().await["id"], open["id"]);
    let marker = patient_close(&topic, "p1");
    hub.publish_ok(&marker).await;
    assert_eq!(ws.next_event().await["id"], marker["id"], "delivered once");
}

/// Checklist 26, 27; clients.md §0 item 4, §3 item 20.
#[tokio::test]
async fn confirmation_on_every_connect() {
    let hub = TestHub::start().await;
    let topic = topic();
    let endpoint = hub.subscribe(&topic, "Patient-open, Patient-close").await;
    let (ws, c) = connect_confirmed(&endpoint, &topic).await;
    assert_eq!(c["hub.events"], "Patient-open,Patient-close");
    ws.close(1000).await;
    for _ in 0..2 {
        let (ws, again) = connect_confirmed(&endpoint, &topic).await;
        assert_eq!(again["hub.events"], c["hub.events"]);
        ws.close(1000).await;
    }
}

/// Checklist 26, 27, 115; clients.md §3 item 21.
#[tokio::test]
async fn stu2_path_confirmation() {
    let hub = TestHub::start().await;
    let topic = topic();
    let fields = form(
        "subscribe",
        &topic,
        &[("hub.events", "patient-open,patient-close")],
    );
    let url = hub.url("/fhircast/STU2");
    let endpoint = accepted(hub.post_form_to(&url, &fields).await).await;
    assert!(endpoint.starts_with("ws://"), "{endpoint}");
    let (_ws, c) = connect_confirmed(&endpoint, &topic).await;
    let example = fixture("legacy/stu2/subscription-confirmation.ws-message.json");
    assert_eq!(keys(&c), keys(&example));
    assert_eq!(c["hub.events"], example["hub.events"]);
}

/// Checklist 16, 17, 18, 26, 30.
#[tokio::test]
async fn resubscribe_replaces_events() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "Patient-open,Patient-close", "RIS").await;
    let renew = [("hub.channel.endpoint", ws.endpoint.as_str())];
    let again = subscribe_with(&hub, &topic, "Patient-close", &renew).await;
    assert_eq!(again, ws.endpoint, "same endpoint back");
    let c = ws.next_json().await;
    assert_eq!(c["hub.mode"], "subscribe", "fresh confirmation: {c}");
    assert_eq!(c["hub.events"], "Patient-close");

    hub.publish_ok(&patient_open(&topic, "p1")).await;
    let marker = patient_close(&topic, "p1");
    hub.publish_ok(&marker).await;
    let got = ws.next_event().await;
    assert_eq!(
        got["id"], marker["id"],
        "Patient-open is no longer subscribed"
    );
}

/// Checklist 16, 17, 20 (the endpoint must be live and on the topic).
#[tokio::test]
async fn resubscribe_with_endpoint_of_other_topic_is_400() {
    let hub = TestHub::start().await;
    let (a, b) = (topic(), topic());
    let endpoint = hub.subscribe(&a, "Patient-open").await;
    let unknown = endpoint.replace(endpoint_id(&endpoint), &"0".repeat(40));
    for (case, topic, ep) in [("foreign", &b, &endpoint), ("unknown", &a, &unknown)] {
        let extra = [
            ("hub.events", "Patient-close"),
            ("hub.channel.endpoint", ep.as_str()),
        ];
        refused(hub.post_form(&form("subscribe", topic, &extra)).await, case).await;
    }
    let (_ws, c) = connect_confirmed(&endpoint, &a).await;
    assert_eq!(c["hub.events"], "Patient-open", "subscription untouched");
}

/// Checklist 34, 36, 38, 39, 40; clients.md §3 item 7; IHE IRA RAD-152.
#[tokio::test]
async fn unsubscribe_echoes_endpoint_then_denial_and_close() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "Patient-open", "RIS").await;
    let echoed = accepted(hub.unsubscribe(&topic, &ws.endpoint).await).await;
    assert_eq!(echoed, ws.endpoint);
    let (texts, close) = ws.closed().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    let d = &texts[0];
    assert_eq!(
        keys(d),
        BTreeSet::from(["hub.mode", "hub.topic", "hub.events", "hub.reason"])
    );
    assert_eq!(d["hub.mode"], "denied");
    assert_eq!(d["hub.topic"], topic.as_str());
    assert_eq!(d["hub.events"], "Patient-open");
    assert_eq!(code(close), Some(1000));

    assert_dead(&ws.endpoint).await;
    let fresh = hub.subscribe(&topic, "Patient-open").await;
    assert_ne!(fresh, ws.endpoint, "a removed endpoint is never reused");
}

/// Checklist 36, 38, 39; clients.md §0 item 7 (Medplum ≤ 5.1: `endpoint`
/// field plus `hub.events`); the spec example's trailing %0A (hub-digest §1.3).
#[tokio::test]
async fn unsubscribe_tolerates_legacy_forms() {
    let hub = TestHub::start().await;
    let topic = topic();
    let example = fixture("stu3/unsubscribe-websocket.request.json");
    let spec_body = example["_rawBody"].as_str().unwrap();
    let spec_topic = example["fields"]["hub.topic"].as_str().unwrap();
    let spec_endpoint = "wss%3A%2F%2Fhub.example.com%2Fee30d3b9-1558-464f-a299-cbad6f8135de";
    assert!(spec_body.contains(&format!("{spec_endpoint}%0A&")));
    for case in ["Medplum <= 5.1", "spec example"] {
        let mut ws = hub.join(&topic, "Patient-open", "RIS").await;
        let ep: String = form_urlencoded::byte_serialize(ws.endpoint.as_bytes()).collect();
        let body = if case == "spec example" {
            spec_body
                .replace(spec_endpoint, &ep)
                .replace(spec_topic, &topic)
        } else {
            format!("hub.channel.type=websocket&hub.mode=unsubscribe&hub.topic={topic}&hub.events=Patient-open&endpoint={ep}")
        };
        let echoed = accepted(post_raw(&hub, &body, None).await).await;
        assert_eq!(echoed.trim(), ws.endpoint, "{case}");
        let (texts, close) = ws.closed().await;
        assert_eq!(texts[0]["hub.mode"], "denied", "{case}");
        assert_eq!(code(close), Some(1000), "{case}");
    }
}

/// Checklist 20, 21, 37; IHE IRA RAD-152 (missing or foreign endpoint).
#[tokio::test]
async fn unsubscribe_unknown_endpoint_is_400() {
    let hub = TestHub::start().await;
    let (a, b) = (topic(), topic());
    let endpoint = hub.subscribe(&a, "Patient-open").await;
    let unknown = endpoint.replace(endpoint_id(&endpoint), &"0".repeat(40));
    refused(hub.unsubscribe(&a, &unknown).await, "unknown endpoint").await;
    refused(hub.unsubscribe(&b, &endpoint).await, "other topic").await;
    refused(
        hub.post_form(&form("unsubscribe", &a, &[])).await,
        "no endpoint",
    )
    .await;
    connect_confirmed(&endpoint, &a).await;
}

/// Checklist 9, 20, 21 (9 covers unsubscription requests too).
#[tokio::test]
async fn unsubscribe_without_channel_type_is_400() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "Patient-open", "RIS").await;
    let fields = [
        ("hub.mode", "unsubscribe"),
        ("hub.topic", topic.as_str()),
        ("hub.channel.endpoint", ws.endpoint.as_str()),
    ];
    let text = refused(hub.post_form(&fields).await, "no hub.channel.type").await;
    assert!(text.contains("hub.channel.type"), "{text}");
    let marker = patient_open(&topic, "p1");
    hub.publish_ok(&marker).await;
    assert_eq!(
        ws.next_event().await["id"],
        marker["id"],
        "still subscribed"
    );
}

/// Checklist 33, 34; clients.md §3 items 24 (query string), 25; IHE IRA RAD-147.
#[tokio::test]
async fn unknown_endpoint_denied_query_string_tolerated() {
    let hub = TestHub::start().await;
    let url = format!("ws://{}/fhircast/STU3/ws/{}", hub.addr, "ab".repeat(20));
    assert_dead(&url).await;

    let topic = topic();
    let endpoint = hub.subscribe(&topic, "Patient-open").await;
    connect_confirmed(&format!("{endpoint}?client=medplum&x=1"), &topic).await;
}

/// Checklist 14, 15, 27.
#[tokio::test]
async fn lease_is_honoured_up_to_the_maximum() {
    let hub = TestHub::start_with(|c| {
        c.lease_default = Duration::from_secs(1800);
        c.lease_max = Duration::from_secs(3600);
    })
    .await;
    let topic = topic();
    for (asked, granted) in [(Some("600"), 600), (Some("999999"), 3600), (None, 1800)] {
        let extra: Vec<_> = asked
            .map(|a| ("hub.lease_seconds", a))
            .into_iter()
            .collect();
        let endpoint = subscribe_with(&hub, &topic, "Patient-open", &extra).await;
        let (_ws, c) = connect_confirmed(&endpoint, &topic).await;
        let lease = c["hub.lease_seconds"].as_u64().unwrap();
        assert!(
            (granted - 5..=granted).contains(&lease),
            "asked {asked:?}: {c}"
        );
    }
}

/// Checklist 31, 32, 33, 34.
#[tokio::test]
async fn lease_expiry_denies_closes_and_kills_endpoint() {
    let hub = TestHub::start().await;
    let topic = topic();
    let endpoint =
        subscribe_with(&hub, &topic, "Patient-open", &[("hub.lease_seconds", "1")]).await;
    let (mut ws, c) = connect_confirmed(&endpoint, &topic).await;
    assert_eq!(c["hub.lease_seconds"], 1);
    let (texts, close) = ws.closed().await;
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert_eq!(texts[0]["hub.mode"], "denied");
    assert_eq!(texts[0]["hub.topic"], topic.as_str());
    assert!(close.is_some(), "a close frame");
    assert_dead(&endpoint).await;
    refused(hub.unsubscribe(&topic, &endpoint).await, "expired").await;
}

/// Checklist 24 (hub-digest §2.8: unused endpoints expire). The clock is a
/// lease expiry well after the connect window: waiting on its denial frame.
#[tokio::test]
async fn unused_endpoint_expires() {
    let hub = TestHub::start_with(|c| c.connect_window = Duration::from_millis(200)).await;
    let topic = topic();
    let long = [("hub.lease_seconds", "3600")];
    let unused = subscribe_with(&hub, &topic, "Patient-open", &long).await;
    let used = subscribe_with(&hub, &topic, "Patient-open", &long).await;
    let (ws, _) = connect_confirmed(&used, &topic).await;
    ws.close(1000).await;

    let clock = subscribe_with(&hub, &topic, "Patient-open", &[("hub.lease_seconds", "1")]).await;
    let (mut clock, _) = connect_confirmed(&clock, &topic).await;
    let (texts, _) = clock.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied", "lease of 1 s ran out");

    assert_dead(&unused).await;
    connect_confirmed(&used, &topic).await;
}

/// Checklist 26, 28, 29, 55; hub-digest §2.8 (takeover), clients.md §0 item 4.
#[tokio::test]
async fn second_connection_takes_over() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut watcher = hub.join(&topic, "syncerror,Patient-close", "Watcher").await;
    let mut old = hub.join(&topic, "Patient-open,Patient-close", "RIS").await;
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(old.next_event().await["id"], open["id"]);

    let (mut new, c) = connect_confirmed(&old.endpoint, &topic).await;
    assert_eq!(c["hub.events"], "Patient-open,Patient-close");
    let replay = new.next_event().await;
    assert_eq!(replay["id"], open["id"], "current context replayed");
    assert_eq!(replay["timestamp"], open["timestamp"]);
    let (texts, close) = old.closed().await;
    assert!(texts.iter().all(|t| t.get("event").is_none()), "{texts:?}");
    assert_eq!(code(close), Some(1000));

    let marker = patient_close(&topic, "p1");
    hub.publish_ok(&marker).await;
    assert_eq!(new.next_event().await["id"], marker["id"]);
    let seen = watcher.next_event().await;
    assert_eq!(
        seen["id"], marker["id"],
        "no SyncError about the takeover: {seen}"
    );
}
