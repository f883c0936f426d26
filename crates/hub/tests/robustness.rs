//! The hub under stress and abuse: a subscriber that never reads, many
//! subscribers, garbage on the socket, garbage bodies, racing publishers.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;
use futures_util::future::{join_all, FutureExt};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// A Patient-open of about `size` bytes (a big narrative).
fn big_open(topic: &str, size: usize) -> Value {
    let mut e = patient_open(topic, "big");
    let div = format!("<div>{}</div>", "x".repeat(size));
    e["event"]["context"][0]["resource"]["text"] = json!({"status": "generated", "div": div});
    e
}

/// Checklist 56, 68, 69, 70-74: an app that stops reading is cut off once
/// its queue is full, reported by a SyncError naming it, and nobody else
/// waits for it: the reading app gets every event, in order.
#[tokio::test]
async fn stuck_subscriber_does_not_delay_others() {
    let hub = TestHub::start_with(|c| {
        c.queue_capacity = 8;
        c.max_body_bytes = 4 * 1024 * 1024;
        c.ack_timeout = Duration::from_secs(120); // only the full queue counts
    })
    .await;
    let topic = topic();
    let mut reader = hub.join(&topic, "Patient-open", "Reader").await;
    let mut stuck = hub.join(&topic, "Patient-open", "Stuck App").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;

    // The stuck app's socket is never polled from here on, until the end.
    let mut published = Vec::new();
    let mut sync_error = None;
    while sync_error.is_none() {
        assert!(published.len() < 1000, "the stuck app was never cut off");
        let e = big_open(&topic, 256 * 1024);
        hub.publish_ok(&e).await;
        published.push(e["id"].as_str().unwrap().to_owned());
        let got = reader.next_event().await;
        assert_eq!(got["id"], e["id"], "the reader gets every event in order");
        match observer.stream.next().now_or_never() {
            Some(Some(Ok(Message::Text(t)))) => sync_error = Some(t),
            None | Some(Some(Ok(Message::Ping(_)))) => {}
            other => panic!("observer: {other:?}"),
        }
    }
    let sync: Value = serde_json::from_str(&sync_error.unwrap()).unwrap();
    assert_eq!(sync["event"]["hub.event"], "SyncError", "{sync}");
    let codings = &sync["event"]["context"][0]["resource"]["issue"][0]["details"]["coding"];
    let name = codings
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"] == "https://fhircast.hl7.org/events/syncerror/subscribername");
    assert_eq!(name.unwrap()["code"], "Stuck App", "{sync}");

    // The others carry on.
    for _ in 0..3 {
        let e = big_open(&topic, 1024);
        hub.publish_ok(&e).await;
        assert_eq!(reader.next_event().await["id"], e["id"]);
    }

    // The stuck app got an in-order prefix of the events, then its socket ended.
    let mut seen = 0;
    loop {
        let next = tokio::time::timeout(WAIT, stuck.stream.next())
            .await
            .expect("the stuck socket ends");
        match next {
            Some(Ok(Message::Text(t))) => {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v.get("event").is_some() {
                    assert_eq!(v["id"], published[seen].as_str(), "in order, none skipped");
                    seen += 1;
                } else {
                    assert_eq!(v["hub.mode"], "denied", "{v}");
                }
            }
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
            Some(Ok(_)) => {}
        }
    }
    assert!(seen < published.len(), "it was cut off");
    let mut again = Ws::connect(&stuck.endpoint).await;
    let (texts, _) = again.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied", "unsubscribed (56)");
}

/// Checklist 41, 63, 64: 200 apps on one topic all get the same event.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_subscribers_receive_one_event() {
    let hub = TestHub::start().await;
    let topic = topic();
    let names: Vec<String> = (0..200).map(|i| format!("App {i}")).collect();
    let mut apps = join_all(names.iter().map(|n| hub.join(&topic, "Patient-open", n))).await;
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    let got = join_all(apps.iter_mut().map(|ws| ws.next_event())).await;
    assert_eq!(got.len(), 200);
    for frame in got {
        assert_eq!(frame["id"], open["id"]);
        assert_eq!(frame["event"]["context"], open["event"]["context"]);
    }
}

/// Checklist 3, 48 (hub-digest 2.3: unknown frames and ACKs are ignored):
/// garbage from a subscriber leaves its socket and the hub serving, and
/// brings no SyncError.
#[tokio::test]
async fn malformed_frames_are_ignored() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut sloppy = hub
        .join(&topic, "Patient-open,SyncError", "Sloppy App")
        .await;
    let mut other = hub.join(&topic, "Patient-open,SyncError", "Other").await;

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    let id = open["id"].as_str().unwrap();
    assert_eq!(sloppy.next_json().await["id"], id);
    other.next_event().await;

    let huge = json!({"id": "padding", "note": "y".repeat(60 * 1024)}).to_string();
    assert!(huge.len() < 64 * 1024);
    for text in [
        "this is not JSON".to_owned(),
        "{\"id\": ".to_owned(),
        json!({"id": "no-such-event", "status": 200}).to_string(),
        json!({"id": "no-such-event", "status": 409}).to_string(),
        json!({"status": 500}).to_string(),
        json!([1, 2, 3]).to_string(),
        json!({"id": 42, "status": 500}).to_string(),
        huge,
    ] {
        sloppy.send(text).await;
    }
    sloppy
        .stream
        .send(Message::Binary(vec![0, 159, 146, 150].into()))
        .await
        .unwrap();
    sloppy.ack(id, json!(200)).await; // the real ACK still counts
    assert!(ping_barrier(&mut sloppy).await.is_empty());

    let marker = patient_open(&topic, "p2");
    hub.publish_ok(&marker).await;
    assert_eq!(sloppy.next_event().await["id"], marker["id"]);
    assert_eq!(other.next_event().await["id"], marker["id"], "no SyncError");
}

/// A frame over the 64 KiB inbound limit ends that socket only. The hub
/// drops it (a 1009 close frame would be welcome too, RFC 6455 7.4.1); the
/// app counts as abnormally gone, so after the grace period it is reported
/// (checklist 54); the others are unaffected.
#[tokio::test]
async fn oversized_frame_closes_only_that_socket() {
    let hub = TestHub::start_with(|c| c.grace_period = Duration::from_millis(200)).await;
    let topic = topic();
    let mut big = hub.join(&topic, "Patient-open", "Big Talker").await;
    let mut other = hub.join(&topic, "Patient-open,SyncError", "Other").await;

    big.send("z".repeat(65 * 1024)).await;
    let (texts, close) = big.closed().await;
    assert!(texts.is_empty(), "{texts:?}");
    let code = close.map(|c| u16::from(c.code));
    assert!(matches!(code, None | Some(1009)), "{code:?}");

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    // The event and the SyncError race (the grace period is short).
    let frames = [other.next_event().await, other.next_json().await];
    assert!(frames.iter().any(|f| f["id"] == open["id"]), "{frames:?}");
    let sync = frames
        .iter()
        .find(|f| f["event"]["hub.event"] == "SyncError");
    assert!(
        sync.is_some_and(|s| s.to_string().contains("Big Talker")),
        "{frames:?}"
    );
}

/// Checklist 19, 20, 61: garbage bodies get a 4xx, and the hub keeps serving.
#[tokio::test]
async fn malformed_bodies_get_4xx() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open", "App").await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let json = "application/json";
    let form = "application/x-www-form-urlencoded";
    let cases: Vec<(&str, &str, Vec<u8>)> = vec![
        ("non-UTF-8 JSON", json, vec![0xff, 0xfe, b'{', 0x80]),
        (
            "truncated JSON",
            json,
            br#"{"timestamp": "2026-11-22T10:42:00Z", "id": "x", "event": {"hub.topic"#.to_vec(),
        ),
        ("deeply nested array", json, deep.into_bytes()),
        ("deeply nested object", json, deep_object.into_bytes()),
        ("empty JSON body", json, Vec::new()),
        ("JSON that is not an object", json, b"[]".to_vec()),
        ("form garbage", form, b"%%%&&==".to_vec()),
        (
            "non-UTF-8 form",
            form,
            vec![b'h', b'u', b'b', b'=', 0xff, 0xfe],
        ),
        ("empty form", form, Vec::new()),
    ];
    for (what, content_type, body) in cases {
        let res = hub.publish_raw(&hub.hub_url(), content_type, body).await;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "{what}: {status} {text}");
    }
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(app.next_event().await["id"], open["id"]);
}

/// Checklist 63, 97 (each publish is fanned out atomically): publishers
/// racing on one topic, and every subscriber sees the same order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_arrive_in_one_order() {
    const TASKS: usize = 4;
    const EACH: usize = 25;
    let hub = TestHub::start().await;
    let topic = topic();
    let mut readers = Vec::new();
    for i in 0..3 {
        let mut ws = hub
            .join(&topic, "Patient-open", &format!("Reader {i}"))
            .await;
        readers.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..TASKS * EACH {
                ids.push(ws.next_event().await["id"].as_str().unwrap().to_owned());
            }
            ids
        }));
    }
    let publishers = (0..TASKS).map(|t| {
        let (http, url, topic) = (hub.http.clone(), hub.hub_url(), topic.clone());
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..EACH {
                let e = patient_open(&topic, &format!("p{t}-{i}"));
                let res = http.post(&url).json(&e).send().await.unwrap();
                assert!(res.status().is_success(), "{}", res.status());
                ids.push(e["id"].as_str().unwrap().to_owned());
            }
            ids
        })
    });
    let sent: HashSet<String> = join_all(publishers)
        .await
        .into_iter()
        .flat_map(|r| r.unwrap())
        .collect();
    let seen: Vec<Vec<String>> = join_all(readers)
        .await
        .into_iter()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(sent.len(), TASKS * EACH);
    let first = &seen[0];
    assert_eq!(
        first.iter().cloned().collect::<HashSet<_>>(),
        sent,
        "complete"
    );
    for other in &seen[1..] {
        assert_eq!(other, first, "the same order for everyone");
    }
}

/// Issue 3 / hub-digest §2.5: STU3 has no heartbeat event; the hub sends the
/// draft `heartbeat` (context key `period`) only to apps that subscribe to it.
#[tokio::test]
async fn heartbeat_only_for_apps_that_ask() {
    let hub =
        TestHub::start_with(|c| c.heartbeat_period = std::time::Duration::from_millis(100)).await;
    let topic = topic();
    let mut legacy = hub.join(&topic, "heartbeat,Patient-open", "Legacy").await;
    let mut modern = hub.join(&topic, "Patient-open", "Modern").await;
    let beat = legacy.next_json().await;
    assert_eq!(beat["event"]["hub.event"], "heartbeat");
    assert_eq!(beat["event"]["context"][0]["key"], "period");
    // The other app's next frame is the marker, not a heartbeat.
    let marker = patient_open(&topic, "marker");
    hub.publish_ok(&marker).await;
    assert_eq!(modern.next_event().await["id"], marker["id"]);
}
