//! The dashboard's support actions on a real server, acting on real
//! WebSocket subscribers: drop a subscription, close all contexts, pause
//! and resume delivery; and the NDJSON export of recent events.

mod admin_support;
mod common;

use admin_support::*;
use common::*;
use serde_json::Value;

#[tokio::test]
async fn drop_ends_a_subscription_with_a_denial() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ris = hub.join(&topic, "Patient-open", "RIS").await;
    let mut events = hub.hub.events();
    let state = get_state(&hub).await;
    let short = of_topic(&state, &topic)["subscriptions"][0]["endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = admin_post(&hub, &format!("/admin/api/subscriptions/{short}/drop")).await;
    assert_eq!(res.status(), 200);
    let (texts, close) = ris.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied", "{texts:?}");
    assert_eq!(texts[0]["hub.reason"], "dropped by support");
    assert_eq!(u16::from(close.expect("close frame").code), 1000);
    assert_eq!(hub.hub.counts(), (0, 0));
    loop {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if let lockstep_hub::HubEvent::Left {
            reason, subscriber, ..
        } = e
        {
            assert_eq!(
                (reason.as_str(), subscriber.as_str()),
                ("dropped by support", "RIS")
            );
            break;
        }
    }
    let gone = &get_state(&hub).await["gone"][0];
    assert_eq!(gone["name"], "RIS");
    assert_eq!(gone["why"], "dropped by support");
    let again = admin_post(&hub, &format!("/admin/api/subscriptions/{short}/drop")).await;
    assert_eq!(again.status(), 404);
}

#[tokio::test]
async fn close_all_closes_every_context_and_tells_the_apps() {
    let hub = TestHub::start().await;
    let topic = topic();
    let events = "Patient-open,Patient-close,DiagnosticReport-open,DiagnosticReport-close";
    let mut app = hub.join(&topic, events, "Dictation").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    app.next_event().await;
    app.next_event().await;
    assert_eq!(
        of_topic(&get_state(&hub).await, &topic)["contexts"]
            .as_array()
            .unwrap()
            .len(),
        2
    );

    let res = admin_post(&hub, &format!("/admin/api/topics/{topic}/close-all")).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<Value>().await.unwrap()["closed"], 2);
    // Newest first, as published events.
    assert_eq!(
        app.next_event().await["event"]["hub.event"],
        "DiagnosticReport-close"
    );
    assert_eq!(
        app.next_event().await["event"]["hub.event"],
        "Patient-close"
    );
    assert_eq!(hub.context(&topic).await["context"], serde_json::json!([]));
    let state = get_state(&hub).await;
    assert!(of_topic(&state, &topic)["contexts"]
        .as_array()
        .unwrap()
        .is_empty());
    let unknown = admin_post(&hub, "/admin/api/topics/nope/close-all").await;
    assert_eq!(unknown.status(), 404);
}

#[tokio::test]
async fn pause_holds_delivery_and_resume_sends_the_current_context() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open,Patient-close", "PACS").await;
    let mut feed = live(&hub, Some(("authorization", bearer(&hub))))
        .await
        .unwrap();
    assert_eq!(admin_post(&hub, "/admin/api/pause").await.status(), 200);
    live_message(&mut feed, "paused").await;
    assert_eq!(get_state(&hub).await["hub"]["paused"], true);

    // Accepted and applied, not delivered.
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(
        hub.context(&topic).await["context"][0]["resource"]["id"],
        "p1"
    );
    let state = get_state(&hub).await;
    let last = state["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["held"], true);

    assert_eq!(admin_post(&hub, "/admin/api/resume").await.status(), 200);
    live_message(&mut feed, "resumed").await;
    let replayed = app.next_event().await;
    assert_eq!(replayed["event"]["hub.event"], "Patient-open");
    assert_eq!(replayed["id"], open["id"], "the replay keeps the event id");
    // Had the paused publish been delivered, a second Patient-open would
    // come before this close.
    hub.publish_ok(&patient_close(&topic, "p1")).await;
    assert_eq!(
        app.next_event().await["event"]["hub.event"],
        "Patient-close"
    );

    // A close while paused is delivered on resume; nothing else is.
    hub.publish_ok(&patient_open(&topic, "p2")).await;
    assert_eq!(app.next_event().await["event"]["hub.event"], "Patient-open");
    hub.hub.pause();
    hub.publish_ok(&patient_close(&topic, "p2")).await;
    hub.hub.resume();
    let close = app.next_event().await;
    assert_eq!(close["event"]["hub.event"], "Patient-close");
    assert_eq!(close["event"]["context"][0]["resource"]["id"], "p2");
    assert!(ping_barrier(&mut app).await.is_empty());
}

#[tokio::test]
async fn events_export_as_ndjson() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open", "RIS").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    app.next_event().await;
    hub.publish_ok(&patient_open(&topic, "p2")).await;
    app.next_event().await;
    let res = hub
        .http
        .get(hub.url("/admin/api/events.ndjson"))
        .header("authorization", bearer(&hub))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "application/x-ndjson");
    let body = res.text().await.unwrap();
    let lines: Vec<Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| {
            l["event"]["event"]["context"][0]["resource"]["id"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, ["p1", "p2"]);
    assert!(lines[0]["seq"].as_u64() < lines[1]["seq"].as_u64());
}

/// `Hub::subscribers`, what the tray's "Connected apps" menu lists: names,
/// events and connection state of real subscribers.
#[tokio::test]
async fn subscribers_lists_apps_with_events_and_state() {
    let hub = TestHub::start().await;
    let topic = topic();
    assert!(hub.hub.subscribers().is_empty());
    let _ris = hub.join(&topic, "Patient-open,Patient-close", "RIS").await;
    let pacs = hub.join(&topic, "Patient-open", "PACS").await;
    let waiting = hub
        .subscribe_named(&topic, "Patient-open", Some("Later"))
        .await;
    let list = hub.hub.subscribers();
    let summary: Vec<(&str, &str, Vec<&str>)> = list
        .iter()
        .map(|s| {
            (
                s.name.as_str(),
                s.state,
                s.events.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Later", "waiting", vec!["Patient-open"]),
            ("PACS", "connected", vec!["Patient-open"]),
            ("RIS", "connected", vec!["Patient-open", "Patient-close"]),
        ]
    );
    assert!(list.iter().all(|s| s.topic == topic));
    assert!(waiting.contains(&list[0].endpoint_id));
    assert_eq!(list.iter().filter(|s| s.connected()).count(), 2);
    let mut events = hub.hub.events();
    pacs.close(1000).await;
    // The state follows the socket: wait for the hub to see it go.
    loop {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        if matches!(e, lockstep_hub::HubEvent::Disconnected { .. }) {
            break;
        }
    }
    let pacs_now = hub
        .hub
        .subscribers()
        .into_iter()
        .find(|s| s.name == "PACS")
        .unwrap();
    assert_eq!(pacs_now.state, "disconnected");
}

/// Issues 6 and 7: what support does from the dashboard is in the audit
/// trail (action `admin`), with the answer it got, refusals included, and
/// never a client secret.
#[tokio::test]
async fn dashboard_changes_are_audited() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = hub.join(&topic, "Patient-open,Patient-close", "PACS").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    app.next_event().await;
    let send = |method: reqwest::Method, path: &str, body: Option<Value>| {
        let mut req = hub
            .http
            .request(method, hub.url(path))
            .header("authorization", bearer(&hub));
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move { req.send().await.expect("admin request") }
    };
    use reqwest::Method;

    assert_eq!(admin_post(&hub, "/admin/api/pause").await.status(), 200);
    assert_eq!(admin_post(&hub, "/admin/api/resume").await.status(), 200);
    let close_all = format!("/admin/api/topics/{topic}/close-all");
    assert_eq!(admin_post(&hub, &close_all).await.status(), 200);
    let new_app = serde_json::json!({"name": "Dictation", "scopes": "fhircast/*.read"});
    let res = send(Method::POST, "/admin/api/apps", Some(new_app)).await;
    assert_eq!(res.status(), 201);
    let created: Value = res.json().await.unwrap();
    let id = created["app"]["clientId"].as_str().unwrap().to_owned();
    let first_secret = created["clientSecret"].as_str().unwrap().to_owned();
    let res = send(Method::POST, &format!("/admin/api/apps/{id}/rotate"), None).await;
    assert_eq!(res.status(), 200);
    let second_secret = res.json::<Value>().await.unwrap()["clientSecret"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = send(Method::DELETE, &format!("/admin/api/apps/{id}"), None).await;
    assert_eq!(res.status(), 200);
    let settings = serde_json::json!({"ack_timeout_ms": 5000});
    let res = send(Method::PUT, "/admin/api/settings", Some(settings)).await;
    assert_eq!(res.status(), 409, "a test hub has no settings files");
    let unknown = format!("/admin/api/topics/{}/close-all", common::topic());
    assert_eq!(admin_post(&hub, &unknown).await.status(), 404);

    let trail = send(Method::GET, "/admin/api/audit?format=ndjson", None)
        .await
        .text()
        .await
        .unwrap();
    assert!(!trail.contains(&first_secret) && !trail.contains(&second_secret));
    let admin: Vec<(String, String)> = trail
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["action"] == "admin")
        .inspect(|r| assert_eq!(r["subscriber_name"], "dashboard"))
        .map(|r| {
            (
                r["detail"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = [
        ("pause sync".to_owned(), "200"),
        ("resume sync".to_owned(), "200"),
        ("close all contexts: 1 closed".to_owned(), "200"),
        (
            format!("register app {id} (Dictation), scopes fhircast/*.read"),
            "201",
        ),
        (format!("rotate the secret of app {id}"), "200"),
        (format!("revoke app {id}"), "200"),
        ("change settings: ack_timeout_ms".to_owned(), "409"),
        ("close all contexts".to_owned(), "404"),
    ]
    .into_iter()
    .map(|(d, o)| (d, o.to_owned()))
    .collect();
    assert_eq!(admin, want);
}
