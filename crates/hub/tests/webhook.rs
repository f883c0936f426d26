//! Legacy webhook subscribers (issue 10; hub-digest §3; checklist 116-119,
//! with 16-18, 28-29, 41, 49-51, 56, 63-65, 68-74 where webhooks share the
//! WebSocket path). Every webhook app here is a real HTTP server on
//! loopback; every wait is on an observed event (a request reaching the
//! app, a frame on a socket, a hub event), never a sleep.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use common::*;
use hmac::{Hmac, Mac};
use lockstep_hub::auth::store::MemoryStore;
use lockstep_hub::auth::SecretStore;
use lockstep_hub::HubEvent;
use serde_json::Value;
use sha2::Sha256;
use tokio::sync::{broadcast, mpsc, watch};

const SYSTEM: &str = "https://fhircast.hl7.org/events/syncerror/";

/// How the app answers intent verification.
#[derive(Clone, Copy, Debug)]
enum Verify {
    Echo,
    Refuse,
    WrongEcho,
    Redirect,
}

/// How the app answers notifications.
#[derive(Clone, Copy, Debug)]
enum Answer {
    Status(u16),
    /// Holds every notification until the test releases it.
    Hang,
}

/// One request the app received.
#[derive(Debug)]
struct Seen {
    method: Method,
    path: String,
    query: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn param(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    }

    fn keys(&self) -> Vec<String> {
        form_urlencoded::parse(self.query.as_bytes())
            .map(|(k, _)| k.into_owned())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("notification body is JSON")
    }
}

#[derive(Clone)]
struct AppState {
    seen: mpsc::UnboundedSender<Seen>,
    verify: Verify,
    answer: Answer,
    release: watch::Receiver<bool>,
    addr: SocketAddr,
}

/// A legacy webhook app: a real HTTP server on 127.0.0.1.
struct App {
    addr: SocketAddr,
    stop: Option<(
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    )>,
    /// The callback URL: an unguessable path, plus `query` if given.
    url: String,
    path: String,
    seen: mpsc::UnboundedReceiver<Seen>,
    release: watch::Sender<bool>,
}

impl App {
    async fn start(verify: Verify, answer: Answer, query: Option<&str>) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, seen) = mpsc::unbounded_channel();
        let (release, release_rx) = watch::channel(false);
        let state = AppState {
            seen: tx,
            verify,
            answer,
            release: release_rx,
            addr,
        };
        let router = axum::Router::new().fallback(app_handler).with_state(state);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        let path = format!("/callback/{}", uuid::Uuid::new_v4().simple());
        let url = match query {
            Some(q) => format!("http://{addr}{path}?{q}"),
            None => format!("http://{addr}{path}"),
        };
        App {
            addr,
            stop: Some((stop, server)),
            url,
            path,
            seen,
            release,
        }
    }

    /// The next request the app received.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("a request reached the app in time")
            .expect("app running")
    }

    /// Asserts nothing else has reached the app so far.
    fn nothing_more(&mut self, why: &str) {
        if let Ok(extra) = self.seen.try_recv() {
            panic!(
                "{why}: unexpected {} {}?{}",
                extra.method, extra.path, extra.query
            );
        }
    }

    fn release(&self) {
        let _ = self.release.send(true);
    }

    /// Stops the server and waits until its port is closed: the app died.
    async fn kill(&mut self) {
        let (stop, server) = self.stop.take().expect("running");
        let _ = stop.send(());
        tokio::time::timeout(WAIT, server)
            .await
            .expect("app stops in time")
            .unwrap();
    }
}

async fn app_handler(
    State(s): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let seen = Seen {
        method: method.clone(),
        path: uri.path().to_owned(),
        query: uri.query().unwrap_or_default().to_owned(),
        headers,
        body,
    };
    let mode = seen.param("hub.mode");
    let challenge = seen.param("hub.challenge").unwrap_or_default();
    // Recorded before answering: when the hub has our answer, the test can see the request.
    let _ = s.seen.send(seen);
    if method == Method::GET {
        if mode.as_deref() == Some("denied") {
            return StatusCode::OK.into_response();
        }
        return match s.verify {
            Verify::Echo => {
                (StatusCode::OK, [("content-type", "text/html")], challenge).into_response()
            }
            Verify::Refuse => StatusCode::NOT_FOUND.into_response(),
            Verify::WrongEcho => (StatusCode::OK, format!("{challenge}-not-quite")).into_response(),
            Verify::Redirect => (
                StatusCode::FOUND,
                [("location", format!("http://{}/elsewhere", s.addr))],
            )
                .into_response(),
        };
    }
    match s.answer {
        Answer::Status(code) => StatusCode::from_u16(code).unwrap().into_response(),
        Answer::Hang => {
            let mut release = s.release.clone();
            let _ = release.wait_for(|r| *r).await;
            StatusCode::OK.into_response()
        }
    }
}

fn stu2(hub: &TestHub) -> String {
    hub.url("/fhircast/STU2")
}

fn webhook_form<'a>(
    topic: &'a str,
    callback: &'a str,
    events: &'a str,
    secret: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("hub.channel.type", "webhook"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.events", events),
        ("hub.callback", callback),
        ("hub.secret", secret),
    ]
}

/// Waits for a hub event matching `pred`.
async fn hub_event(
    events: &mut broadcast::Receiver<HubEvent>,
    pred: impl Fn(&HubEvent) -> bool,
) -> HubEvent {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) if pred(&e) => return e,
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => panic!("hub gone"),
            }
        }
    })
    .await
    .expect("hub event in time")
}

fn connected(topic: &str) -> impl Fn(&HubEvent) -> bool + '_ {
    move |e| matches!(e, HubEvent::Connected { topic: t, .. } if t == topic)
}

fn left(topic: &str) -> impl Fn(&HubEvent) -> bool + '_ {
    move |e| matches!(e, HubEvent::Left { topic: t, .. } if t == topic)
}

/// Asserts 202 with an empty body (STU1/STU2 webhook subscribe).
async fn accepted_empty(res: reqwest::Response) {
    let status = res.status();
    let body = res.text().await.unwrap();
    assert_eq!(status, 202, "{body}");
    assert!(body.is_empty(), "no body for a webhook subscribe: {body:?}");
}

/// Subscribes `app` to `events` on the STU2 path and waits until the hub
/// has verified it; returns the verification request.
async fn join_webhook(
    hub: &TestHub,
    app: &mut App,
    topic: &str,
    events: &str,
    secret: &str,
) -> Seen {
    let mut hub_events = hub.hub.events();
    let res = hub
        .post_form_to(&stu2(hub), &webhook_form(topic, &app.url, events, secret))
        .await;
    accepted_empty(res).await;
    let get = app.next().await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.param("hub.mode").as_deref(), Some("subscribe"));
    hub_event(&mut hub_events, connected(topic)).await;
    get
}

/// A hub with, on one topic, a WebSocket subscriber `ws_name` to
/// `ws_events` beside a verified webhook app to Patient-open that answers
/// notifications with `answer`.
async fn websocket_and_webhook(
    ws_events: &str,
    ws_name: &str,
    answer: Answer,
) -> (TestHub, String, Ws, App) {
    let hub = TestHub::start().await;
    let topic = topic();
    let ws = hub.join(&topic, ws_events, ws_name).await;
    let mut app = App::start(Verify::Echo, answer, None).await;
    join_webhook(&hub, &mut app, &topic, "Patient-open", "k").await;
    (hub, topic, ws, app)
}

fn hmac_hex(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The receiver's check: `X-Hub-Signature` is `sha256=` + hex HMAC of the raw body.
fn assert_signed(post: &Seen, secret: &str) {
    let header = post
        .headers
        .get("x-hub-signature")
        .and_then(|v| v.to_str().ok())
        .expect("X-Hub-Signature header");
    assert_eq!(
        header,
        format!("sha256={}", hmac_hex(secret, &post.body)),
        "117: signature over the raw body"
    );
    assert_ne!(
        header,
        format!("sha256={}", hmac_hex("another secret", &post.body))
    );
}

/// Checklist 116, 117, 118: verification GET keeps the callback's own
/// query string and appends the hub's parameters; notifications are POSTed
/// to the full callback URL, signed with hub.secret.
#[tokio::test]
async fn verified_webhook_gets_signed_notifications() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = App::start(Verify::Echo, Answer::Status(200), Some("app=ris&x=1")).await;
    let secret = "a-random-secret-0c6f";
    let get = join_webhook(&hub, &mut app, &topic, "Patient-open,Patient-close", secret).await;
    assert_eq!(get.path, app.path);
    assert!(
        get.query.starts_with("app=ris&x=1&hub."),
        "118: {}",
        get.query
    );
    assert_eq!(get.param("hub.topic").as_deref(), Some(topic.as_str()));
    assert_eq!(
        get.param("hub.events").as_deref(),
        Some("Patient-open,Patient-close")
    );
    assert!(get.param("hub.challenge").is_some_and(|c| c.len() >= 16));
    let lease: u64 = get.param("hub.lease_seconds").unwrap().parse().unwrap();
    assert!(lease > 0);
    assert!(get.headers.get("x-hub-signature").is_none());

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    let post = app.next().await;
    assert_eq!(post.method, Method::POST);
    assert_eq!(post.path, app.path);
    assert_eq!(post.query, "app=ris&x=1", "118: query string kept as is");
    assert!(post.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    assert_signed(&post, secret);
    let body = post.json();
    assert_eq!(body["id"], open["id"]);
    assert_eq!(body["timestamp"], open["timestamp"]);
    assert_eq!(body["event"]["hub.event"], "Patient-open");

    let close = patient_close(&topic, "p1");
    hub.publish_ok(&close).await;
    let post = app.next().await;
    assert_signed(&post, secret);
    assert_eq!(post.json()["id"], close["id"], "in order");
}

/// Checklist 116, 119: a 404 (the app's "no"), a wrong echo and a redirect
/// all leave the hub without the subscription; the redirect is not followed.
#[tokio::test]
async fn failed_verification_subscribes_nothing() {
    let hub = TestHub::start().await;
    for (verify, says) in [
        (Verify::Refuse, "404"),
        (Verify::WrongEcho, "echo"),
        (Verify::Redirect, "302"),
    ] {
        let topic = topic();
        let mut app = App::start(verify, Answer::Status(200), None).await;
        let mut events = hub.hub.events();
        let res = hub
            .post_form_to(
                &stu2(&hub),
                &webhook_form(&topic, &app.url, "Patient-open", "s3cret"),
            )
            .await;
        accepted_empty(res).await;
        let get = app.next().await;
        assert!(get.param("hub.challenge").is_some(), "{verify:?}");
        let HubEvent::Left { reason, .. } = hub_event(&mut events, left(&topic)).await else {
            unreachable!()
        };
        assert!(
            reason.contains("verification failed") && reason.contains(says),
            "{verify:?}: {reason}"
        );
        assert_eq!(hub.hub.counts().0, 0, "{verify:?}: not subscribed");
        // The hub had its answer before reporting: a followed redirect would be here by now.
        app.nothing_more("redirects are not followed");
        let ctx = hub.context(&topic).await;
        assert_eq!(ctx["context"], serde_json::json!([]));
    }
}

/// Checklist 28, 29, 41, 63-65: a WebSocket and a webhook subscriber on one
/// topic get the same notification (same bytes: id, timestamp, versionId),
/// and the same context replay when they join.
#[tokio::test]
async fn websocket_and_webhook_see_the_same_events() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "Patient-open", "Viewer").await;
    let first = patient_open(&topic, "p0");
    hub.publish_ok(&first).await;
    let ws_first = ws.next_event().await;

    // The webhook joins late: it is replayed the current context.
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    join_webhook(&hub, &mut app, &topic, "Patient-open", "k").await;
    let replayed = app.next().await.json();
    assert_eq!(replayed, ws_first, "replay = what the WebSocket got");

    // A late WebSocket is replayed the same thing.
    let mut late = hub.join(&topic, "Patient-open", "Late").await;
    assert_eq!(late.next_event().await, ws_first);

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    let on_ws = ws.next_event().await;
    let on_hook = app.next().await.json();
    assert_eq!(on_ws["id"], open["id"]);
    assert_eq!(on_hook, on_ws, "same id, timestamp and versionId");
    assert_eq!(late.next_event().await, on_ws);
}

/// A callback that never answers delays nobody: the publisher gets its 2xx
/// and the WebSocket subscriber its events while the webhook's first
/// notification is still unanswered.
#[tokio::test]
async fn hanging_callback_does_not_delay_websocket() {
    let (hub, topic, mut ws, mut app) =
        websocket_and_webhook("Patient-open", "Viewer", Answer::Hang).await;

    let p1 = patient_open(&topic, "p1");
    hub.publish_ok(&p1).await;
    let held = app.next().await;
    assert_eq!(held.json()["id"], p1["id"]);
    assert_eq!(ws.next_event().await["id"], p1["id"]);

    // Still hanging: more events flow to the WebSocket.
    for id in ["p2", "p3"] {
        let p = patient_open(&topic, id);
        hub.publish_ok(&p).await;
        assert_eq!(ws.next_event().await["id"], p["id"]);
    }
    // One notification in flight per webhook: the others wait in its queue.
    app.nothing_more("the webhook's own queue holds the rest");

    app.release();
    for id in ["p2", "p3"] {
        let post = app.next().await.json();
        assert_eq!(post["event"]["context"][0]["resource"]["id"], id);
    }
}

/// Checklist 51, 56, 68-74: a callback answering 500 is reported to the
/// other subscribers with a SyncError naming it, then unsubscribed, and
/// told so with a denial GET (hub-digest §3).
#[tokio::test]
async fn callback_500_is_a_sync_error_naming_it() {
    let (hub, topic, mut ws, mut app) =
        websocket_and_webhook("Patient-open,SyncError", "Watcher", Answer::Status(500)).await;
    let name = format!("webhook at {}", app.addr);

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(app.next().await.json()["id"], open["id"]);
    assert_eq!(ws.next_event().await["id"], open["id"]);
    let sync = ws.next_json().await;
    assert!(
        sync["event"]["hub.event"]
            .as_str()
            .is_some_and(|n| n.eq_ignore_ascii_case("SyncError")),
        "{sync}"
    );
    let issue = &sync["event"]["context"][0]["resource"]["issue"][0];
    assert_eq!(issue["severity"], "warning");
    assert_eq!(issue["code"], "processing");
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains(&name) && diagnostics.contains("500"),
        "{diagnostics}"
    );
    let code = |suffix: &str| {
        issue["details"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["system"] == format!("{SYSTEM}{suffix}").as_str())
            .map(|c| c["code"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(code("eventid"), open["id"]);
    assert_eq!(code("eventname"), "Patient-open");
    assert_eq!(code("subscribername"), name.as_str());

    let denial = app.next().await;
    assert_eq!(denial.method, Method::GET);
    assert_eq!(denial.param("hub.mode").as_deref(), Some("denied"));
    assert_eq!(denial.param("hub.topic").as_deref(), Some(topic.as_str()));
    assert_eq!(denial.param("hub.events").as_deref(), Some("Patient-open"));
    assert!(denial.param("hub.reason").is_some());
    assert_eq!(hub.hub.counts().0, 1, "only the WebSocket is left");
}

/// Callbacks go to this computer only, checked on the resolved address at
/// subscribe time (hub-digest §10); other hosts need the allow-list.
#[tokio::test]
async fn non_loopback_callbacks_are_refused_at_subscribe() {
    let hub = TestHub::start().await;
    let topic = topic();
    let post = |callback: String| {
        let hub = &hub;
        let topic = topic.clone();
        async move {
            let res = hub
                .post_form_to(
                    &stu2(hub),
                    &webhook_form(&topic, &callback, "Patient-open", "k"),
                )
                .await;
            let status = res.status().as_u16();
            (status, res.text().await.unwrap())
        }
    };
    for callback in [
        "http://10.1.2.3:9000/cb",
        "http://192.168.1.20/cb",
        "http://[fd00::1]:9000/cb",
        "http://[::ffff:10.1.2.3]:9000/cb",
        "http://0.0.0.0:9000/cb",
    ] {
        let (status, text) = post(callback.to_owned()).await;
        assert_eq!(status, 403, "{callback}: {text}");
        assert!(
            text.contains("not on this computer") || text.contains("cannot receive"),
            "{callback}: {text}"
        );
    }
    // Names are judged by what they resolve to. This machine's hosts file
    // may name other machines (Debian's ip6-allnodes, a container's own
    // name); each such name must be refused too.
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    for name in hosts
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(|l| l.split_whitespace().skip(1))
        .filter(|n| !n.contains(':'))
    {
        let Ok(addrs) = tokio::net::lookup_host((name, 80)).await else {
            continue;
        };
        let addrs: Vec<_> = addrs.map(|a| a.ip()).collect();
        if addrs.is_empty() || addrs.iter().any(|a| a.is_loopback()) {
            continue;
        }
        let (status, text) = post(format!("http://{name}:9000/cb")).await;
        assert_eq!(status, 403, "{name} resolves to {addrs:?}: {text}");
    }
    for (callback, says) in [
        ("https://127.0.0.1:9000/cb", "http://"),
        ("ftp://127.0.0.1/cb", "http://"),
        ("http://user:pw@127.0.0.1/cb", "password"),
        ("not a url", "valid URL"),
    ] {
        let (status, text) = post(callback.to_owned()).await;
        assert_eq!(status, 400, "{callback}: {text}");
        assert!(text.contains(says), "{callback}: {text}");
    }
    assert_eq!(hub.hub.counts().0, 0);

    // A name that resolves to loopback is fine, end to end.
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    let mut events = hub.hub.events();
    let by_name = format!("http://localhost:{}/cb", app.addr.port());
    let (status, text) = post(by_name).await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(
        app.next().await.param("hub.mode").as_deref(),
        Some("subscribe")
    );
    hub_event(&mut events, connected(&topic)).await;

    // An explicit allow-list admits another host.
    let open = TestHub::start_with(|c| c.webhook_allowed_hosts = vec!["192.0.2.1".into()]).await;
    let res = open
        .post_form_to(
            &stu2(&open),
            &webhook_form(&topic, "http://192.0.2.1:9/cb", "Patient-open", "k"),
        )
        .await;
    assert_eq!(res.status(), 202);
}

/// The unit test of the policy covers names resolving elsewhere without
/// depending on this machine's resolver; here: STU3 keeps refusing
/// webhooks with a clear 4xx (checklist 10), on every STU3 path.
#[tokio::test]
async fn stu3_refuses_webhooks() {
    let hub = TestHub::start().await;
    let topic = topic();
    let app = App::start(Verify::Echo, Answer::Status(200), None).await;
    for path in ["/fhircast/STU3", "/api/hub"] {
        let res = hub
            .post_form_to(
                &hub.url(path),
                &webhook_form(&topic, &app.url, "Patient-open", "k"),
            )
            .await;
        assert_eq!(res.status(), 400, "{path}");
        let text = res.text().await.unwrap();
        assert!(
            text.contains("webhook") && text.contains("/fhircast/STU2"),
            "{text}"
        );
        // STU1 style (no channel type): refused there too.
        let mut stu1 = webhook_form(&topic, &app.url, "Patient-open", "k");
        stu1.remove(0);
        let res = hub.post_form_to(&hub.url(path), &stu1).await;
        assert_eq!(res.status(), 400, "{path}");
    }
    assert_eq!(hub.hub.counts().0, 0);
}

/// The spec's STU2 and STU1 example requests (re-addressed to a loopback
/// app and a fresh topic) are accepted: verification as in the examples,
/// signed notifications, and the example unsubscribes (STU2: not verified;
/// STU1: verified).
#[tokio::test]
async fn stu2_and_stu1_example_requests_are_accepted() {
    let hub = TestHub::start().await;
    for version in ["stu2", "stu1"] {
        let topic = topic();
        let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
        let mut events = hub.hub.events();
        let request = fixture(&format!("legacy/{version}/subscribe-webhook.request.json"));
        let fields = readdress(&request["fields"], &topic, &app.url);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        accepted_empty(hub.post_form_to(&stu2(&hub), &pairs).await).await;

        let get = app.next().await;
        let example = fixture(&format!(
            "legacy/{version}/intent-verification.webhook-get.json"
        ));
        let mut expected: Vec<String> = example["query"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        let mut got = get.keys();
        expected.sort();
        got.sort();
        assert_eq!(
            got, expected,
            "{version}: verification parameters as in the example"
        );
        assert_eq!(
            get.param("hub.events").as_deref(),
            Some("patient-open,patient-close")
        );
        hub_event(&mut events, connected(&topic)).await;

        // The example notification, published on the STU2 path.
        let mut note = match version {
            "stu1" => fixture("legacy/stu1/patient-open.notification-webhook.json")["body"].clone(),
            _ => fixture("legacy/stu2/patient-open.notification.json"),
        };
        note["event"]["hub.topic"] = topic.clone().into();
        note["id"] = uuid::Uuid::new_v4().to_string().into();
        let res = hub
            .publish_raw(
                &stu2(&hub),
                "application/json",
                note.to_string().into_bytes(),
            )
            .await;
        assert!(
            res.status().is_success(),
            "{version}: {}",
            res.text().await.unwrap()
        );
        let post = app.next().await;
        assert_signed(&post, request["fields"]["hub.secret"].as_str().unwrap());
        assert_eq!(post.json()["id"], note["id"]);

        let unsubscribe = fixture(&format!(
            "legacy/{version}/unsubscribe-webhook.request.json"
        ));
        let fields = readdress(&unsubscribe["fields"], &topic, &app.url);
        let pairs: Vec<(&str, &str)> = fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        accepted_empty(hub.post_form_to(&stu2(&hub), &pairs).await).await;
        if version == "stu1" {
            let get = app.next().await;
            assert_eq!(
                get.param("hub.mode").as_deref(),
                Some("unsubscribe"),
                "STU1 verifies unsubscribes"
            );
            assert!(get.param("hub.challenge").is_some());
        }
        let HubEvent::Left { reason, .. } = hub_event(&mut events, left(&topic)).await else {
            unreachable!()
        };
        assert_eq!(reason, "unsubscribed", "{version}");
        assert_eq!(hub.hub.counts().0, 0, "{version}");
        app.nothing_more("no denial after an unsubscribe the app asked for");
    }
}

/// A fixture's form fields with `hub.topic` and `hub.callback` replaced.
fn readdress(fields: &Value, topic: &str, callback: &str) -> Vec<(String, String)> {
    fields
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let v = match k.as_str() {
                "hub.topic" => topic.to_owned(),
                "hub.callback" => callback.to_owned(),
                _ => v.as_str().unwrap().to_owned(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// Checklist 13, 14, 16-18: webhook subscribes pass the same token and
/// scope checks as WebSocket ones, leases are capped by the token, and a
/// verified re-subscribe with the same callback replaces the events.
#[tokio::test]
async fn webhook_subscribe_is_authorized_and_renewable() {
    let hub = TestHub::start_with(|c| {
        c.no_auth = false;
        c.token_lifetime = std::time::Duration::from_secs(600);
    })
    .await;
    let topic = topic();
    let (app_info, secret) = hub
        .hub
        .apps()
        .register(
            "Legacy Viewer",
            "fhircast/Patient-open.read fhircast/Patient-close.read",
            vec![topic.clone()],
        )
        .unwrap();
    let token: Value = hub
        .token_with_secret(&app_info.client_id, &secret)
        .await
        .json()
        .await
        .unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    let send = |fields: Vec<(&'static str, String)>, bearer: Option<String>| {
        let hub = &hub;
        async move {
            let mut req = hub.http.post(stu2(hub)).form(&fields);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            req.send().await.unwrap()
        }
    };
    let callback = app.url.clone();
    let form = |events: &str| {
        vec![
            ("hub.channel.type", "webhook".to_owned()),
            ("hub.mode", "subscribe".to_owned()),
            ("hub.topic", topic.clone()),
            ("hub.events", events.to_owned()),
            ("hub.callback", callback.clone()),
            ("hub.secret", "k".to_owned()),
            ("hub.lease_seconds", "99999".to_owned()),
        ]
    };
    assert_eq!(send(form("Patient-open"), None).await.status(), 401);
    let res = send(form("DiagnosticReport-open"), Some(token.clone())).await;
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("fhircast/DiagnosticReport-open.read"));
    app.nothing_more("refused requests are never verified");

    let mut events = hub.hub.events();
    accepted_empty(send(form("Patient-open"), Some(token.clone())).await).await;
    let get = app.next().await;
    let lease: u64 = get.param("hub.lease_seconds").unwrap().parse().unwrap();
    assert!(lease <= 600, "14: lease {lease} capped by the token");
    let HubEvent::Connected { subscriber, .. } = hub_event(&mut events, connected(&topic)).await
    else {
        unreachable!()
    };
    assert_eq!(subscriber, "Legacy Viewer", "named after the app");

    // Re-subscribe with more events: same subscription, events replaced.
    accepted_empty(send(form("Patient-open,Patient-close"), Some(token.clone())).await).await;
    let get = app.next().await;
    assert_eq!(
        get.param("hub.events").as_deref(),
        Some("Patient-open,Patient-close")
    );
    hub_event(&mut events, connected(&topic)).await;
    assert_eq!(hub.hub.counts().0, 1, "16, 17: renewed, not duplicated");

    let publisher = hub
        .hub
        .apps()
        .register("EHR", "fhircast/*.write", vec![topic.clone()])
        .unwrap();
    let t: Value = hub
        .token_with_secret(&publisher.0.client_id, &publisher.1)
        .await
        .json()
        .await
        .unwrap();
    let close = patient_close(&topic, "p1");
    let open = patient_open(&topic, "p1");
    for message in [&open, &close] {
        let res = hub
            .publish_with_token(t["access_token"].as_str().unwrap(), message)
            .await;
        assert!(res.status().is_success());
        assert_eq!(
            app.next().await.json()["id"],
            message["id"],
            "18: new events granted"
        );
    }
}

/// Checklist 31, 32 (webhook form, hub-digest §3): when the lease runs out
/// the hub unsubscribes the webhook and tells it with a denial GET.
#[tokio::test]
async fn lease_expiry_unsubscribes_with_denial() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    let mut events = hub.hub.events();
    let mut form = webhook_form(&topic, &app.url, "Patient-open", "k");
    form.push(("hub.lease_seconds", "1"));
    accepted_empty(hub.post_form_to(&stu2(&hub), &form).await).await;
    let get = app.next().await;
    assert_eq!(get.param("hub.lease_seconds").as_deref(), Some("1"));
    hub_event(&mut events, connected(&topic)).await;
    // The lease timer fires after a second; we wait for its effect.
    let denial = app.next().await;
    assert_eq!(denial.param("hub.mode").as_deref(), Some("denied"));
    assert!(denial.param("hub.reason").unwrap().contains("lease"));
    assert_eq!(hub.hub.counts().0, 0);
}

/// A callback that went away (connection refused, after bounded retries)
/// is a failed delivery like any other: SyncError naming it, unsubscribed.
#[tokio::test]
async fn dead_callback_is_a_sync_error() {
    let (hub, topic, mut ws, mut app) =
        websocket_and_webhook("Patient-open,SyncError", "Watcher", Answer::Status(200)).await;
    app.kill().await;

    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(ws.next_event().await["id"], open["id"]);
    let sync = ws.next_json().await;
    let issue = &sync["event"]["context"][0]["resource"]["issue"][0];
    let diagnostics = issue["diagnostics"].as_str().unwrap();
    assert!(
        diagnostics.contains(&format!("webhook at {}", app.addr))
            && diagnostics.contains("unreachable"),
        "{diagnostics}"
    );
    assert_eq!(hub.hub.counts().0, 1, "only the WebSocket is left");
}

/// Checklist 16-18 for webhooks: a verified re-subscribe while a
/// notification is in flight keeps the subscription and its queue (nothing
/// already queued is lost), and the new hub.secret signs what follows.
#[tokio::test]
async fn renewal_keeps_the_queue_and_takes_the_new_secret() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut app = App::start(Verify::Echo, Answer::Hang, None).await;
    join_webhook(&hub, &mut app, &topic, "Patient-open", "old-secret").await;
    let p1 = patient_open(&topic, "p1");
    hub.publish_ok(&p1).await;
    let held = app.next().await;
    assert_signed(&held, "old-secret");
    let p2 = patient_open(&topic, "p2");
    hub.publish_ok(&p2).await;

    let get = join_webhook(
        &hub,
        &mut app,
        &topic,
        "Patient-open,Patient-close",
        "new-secret",
    )
    .await;
    assert_eq!(
        get.param("hub.events").as_deref(),
        Some("Patient-open,Patient-close")
    );
    assert_eq!(hub.hub.counts().0, 1, "renewed, not duplicated");
    app.release();
    let queued = app.next().await;
    assert_eq!(
        queued.json()["id"],
        p2["id"],
        "queued before the renewal, still delivered"
    );
    assert_signed(&queued, "new-secret");
    let close = patient_close(&topic, "p2");
    hub.publish_ok(&close).await;
    let post = app.next().await;
    assert_eq!(post.json()["id"], close["id"], "the newly granted event");
    assert_signed(&post, "new-secret");
}

/// A hub keeping its data in `dir` and its secrets in `store`, which
/// outlive it (as the OS keyring does): a second one is the first restarted.
async fn hub_in(dir: &std::path::Path, store: &Arc<dyn SecretStore>) -> TestHub {
    let keyring = store.clone();
    TestHub::start_in(dir, move |c| c.secret_store = keyring).await
}

/// Issue 6 for webhook apps, which cannot reconnect by themselves: their
/// subscriptions survive a hub restart. The hub verifies intent again,
/// replays the current context, and signs with the same `hub.secret`, which
/// was kept in the secret store (the OS keyring; here one shared store
/// stands in for it), never in the data folder.
#[tokio::test]
async fn webhook_subscriptions_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    let hub = hub_in(dir.path(), &store).await;
    let topic = topic();
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    let secret = "kept-across-restarts-5d1e";
    join_webhook(&hub, &mut app, &topic, "Patient-open,Patient-close", secret).await;
    let open = patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_signed(&app.next().await, secret);
    hub.stop().await;
    for file in files_under(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(!bytes_contain(&bytes, secret), "hub.secret in {file:?}");
    }

    let hub = hub_in(dir.path(), &store).await;
    let again = app.next().await;
    assert_eq!(again.method, Method::GET);
    assert_eq!(again.param("hub.mode").as_deref(), Some("subscribe"));
    assert_eq!(again.param("hub.topic").as_deref(), Some(topic.as_str()));
    assert_eq!(
        again.param("hub.events").as_deref(),
        Some("Patient-open,Patient-close")
    );
    let replay = app.next().await;
    assert_eq!(replay.method, Method::POST);
    assert_signed(&replay, secret);
    assert_eq!(
        replay.json()["id"],
        open["id"],
        "the current context, replayed"
    );

    let close = patient_close(&topic, "p1");
    hub.publish_ok(&close).await;
    let post = app.next().await;
    assert_signed(&post, secret);
    assert_eq!(post.json()["id"], close["id"]);
    hub.stop().await;
}

/// After a restart, a stored webhook whose app is gone is dropped; the
/// topic kept for it then has no subscriber and goes, with its context,
/// after the idle time (issue 19: never at once, so a restart of the app
/// itself would not lose the patient).
#[tokio::test]
async fn a_stored_webhook_whose_app_is_gone_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    let hub = hub_in(dir.path(), &store).await;
    let topic = topic();
    let mut app = App::start(Verify::Echo, Answer::Status(200), None).await;
    join_webhook(&hub, &mut app, &topic, "Patient-open", "s").await;
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    app.next().await;
    hub.stop().await;
    app.kill().await;

    let keyring = store.clone();
    let hub = TestHub::start_in(dir.path(), move |c| {
        c.secret_store = keyring;
        c.topic_idle = std::time::Duration::from_millis(300);
    })
    .await;
    let mut events = hub.hub.events();
    let ended = tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(lockstep_hub::HubEvent::TopicEnded { topic: t }) if t == topic => break,
                Ok(_) => {}
                Err(e) => panic!("hub events: {e}"),
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the topic goes after its idle time, once the webhook did not come back"
    );
    assert_eq!(hub.context(&topic).await["context"], serde_json::json!([]));
    hub.stop().await;
}
