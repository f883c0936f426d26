//! The radiologist's day (issue 19): each test is one story, told with
//! real WebSocket clients, authorization on, and asserts what *every* app
//! saw, in order. The RIS drives the worklist, the PACS shows images, the
//! dictation system writes the report.

mod common;

use std::time::Duration;

use common::*;
use lockstep_hub::HubEvent;
use serde_json::{json, Value};

const ALL_EVENTS: &str = "Patient-open,Patient-close,DiagnosticReport-open,DiagnosticReport-close,DiagnosticReport-update,UserLogout,SyncError";

/// One app on the workstation: registered, with a token for the session.
struct App {
    token: String,
    topic: String,
}

impl App {
    async fn register(hub: &TestHub, name: &str) -> App {
        Self::register_for(hub, name, vec![]).await
    }

    /// An app allowed on `topics` (none: this workstation's session).
    async fn register_for(hub: &TestHub, name: &str, topics: Vec<String>) -> App {
        let scopes = "fhircast/*.read fhircast/*.write";
        let (app, secret) = hub.hub.apps().register(name, scopes, topics).unwrap();
        let res = hub.token_with_secret(&app.client_id, &secret).await;
        assert_eq!(res.status(), 200);
        let token: Value = res.json().await.unwrap();
        App {
            token: token["access_token"].as_str().unwrap().to_owned(),
            topic: token["hub.topic"].as_str().unwrap().to_owned(),
        }
    }

    /// Subscribes (as `name`), connects and reads the confirmation.
    async fn join(&self, hub: &TestHub, events: &str, name: &str) -> Ws {
        self.join_topic(hub, &self.topic, events, name).await
    }

    async fn join_topic(&self, hub: &TestHub, topic: &str, events: &str, name: &str) -> Ws {
        let mut form = subscribe_form(topic, events);
        form.push(("subscriber.name", name));
        let res = hub
            .http
            .post(hub.hub_url())
            .bearer_auth(&self.token)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202, "{name} subscribes");
        let endpoint = endpoint_of(res).await;
        let mut ws = Ws::connect(&endpoint).await;
        let confirmation = ws.next_json().await;
        assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
        ws.endpoint = endpoint;
        ws
    }

    async fn publish(&self, hub: &TestHub, message: &Value) -> Value {
        let res = hub.publish_with_token(&self.token, message).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "publish refused: {status} {body}");
        body
    }

    async fn context(&self, hub: &TestHub, topic: &str) -> Value {
        let res = hub.context_with_token(&self.token, topic).await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    async fn unsubscribe(&self, hub: &TestHub, topic: &str, endpoint: &str) {
        let res = hub
            .http
            .post(hub.hub_url())
            .bearer_auth(&self.token)
            .form(&unsubscribe_form(topic, endpoint))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
    }
}

/// What an app saw: `event name / id of the anchor resource`, for the next
/// `n` events (each ACKed).
async fn saw(ws: &mut Ws, n: usize) -> Vec<String> {
    let mut seen = Vec::new();
    for _ in 0..n {
        seen.push(label(&ws.next_event().await));
    }
    seen
}

fn label(event: &Value) -> String {
    let name = event["event"]["hub.event"].as_str().unwrap_or_default();
    let anchor = event["event"]["context"]
        .as_array()
        .and_then(|c| c.first())
        .map(|item| {
            item["resource"]["id"]
                .as_str()
                .or_else(|| {
                    let reference = item["reference"]["reference"].as_str()?;
                    reference.rsplit('/').next()
                })
                .unwrap_or_default()
                .to_owned()
        })
        .unwrap_or_default();
    format!("{name} {anchor}")
}

fn logout(topic: &str) -> Value {
    event(
        topic,
        "UserLogout",
        json!([{"key": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
            {"name": "code", "valueCoding": {"system": "http://hl7.org/fhir/uv/fhircast/CodeSystem/fhircast-logout-codesystem", "code": "user-initiated"}}]}}]),
    )
}

/// A marker only `Patient-open` subscribers follow, published to prove
/// nothing else came before it.
async fn marker(app: &App, hub: &TestHub, topic: &str) -> Value {
    let m = patient_open(topic, "marker");
    app.publish(hub, &m).await;
    m
}

/// Story 1, morning. The RIS is the first program the radiologist opens
/// and publishes the first patient before anything has subscribed (D13
/// revised). The PACS starts later and gets the patient. She starts a
/// report; the dictation system joins while it is open and gets the report
/// context with its shared content. Checklist 26-29, 93-99.
#[tokio::test]
async fn morning_ris_publishes_first_and_late_apps_catch_up() {
    let hub = TestHub::start_with_auth().await;
    let ris = App::register(&hub, "RIS").await;
    let session = ris.topic.clone();
    assert_eq!(session, hub.hub.session_topic());

    let first = patient_open(&session, "p1");
    ris.publish(&hub, &first).await;

    let pacs_app = App::register(&hub, "PACS").await;
    let mut pacs = pacs_app.join(&hub, ALL_EVENTS, "PACS").await;
    let replayed = pacs.next_event().await;
    assert_eq!(
        replayed["id"], first["id"],
        "the PACS gets the first patient"
    );

    let open = report_open(&session, "r1", "p1");
    let answer = ris.publish(&hub, &open).await;
    let v1 = answer["event"]["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = report_update(&session, "r1", &v1, json!([put_observation("o1")]));
    let answer = ris.publish(&hub, &update).await;
    let v2 = answer["event"]["event"]["context.versionId"].clone();
    assert_eq!(
        saw(&mut pacs, 2).await,
        ["DiagnosticReport-open r1", "DiagnosticReport-update r1"]
    );

    let dictation_app = App::register(&hub, "Dictation").await;
    let mut dictation = dictation_app.join(&hub, ALL_EVENTS, "Dictation").await;
    // The most recent open per anchor type, oldest first: the patient, then
    // the report carrying the current version.
    let caught_up = [dictation.next_event().await, dictation.next_event().await];
    assert_eq!(label(&caught_up[0]), "Patient-open p1");
    assert_eq!(label(&caught_up[1]), "DiagnosticReport-open r1");
    assert_eq!(caught_up[1]["event"]["context.versionId"], v2);
    let ctx = dictation_app.context(&hub, &session).await;
    assert_eq!(ctx["context.versionId"], v2);
    let content = ctx["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "content")
        .expect("shared content")
        .clone();
    assert_eq!(content["resource"]["entry"][0]["resource"]["id"], "o1");

    // All three follow the next patient alike.
    let next = patient_open(&session, "p2");
    ris.publish(&hub, &next).await;
    assert_eq!(saw(&mut pacs, 1).await, ["Patient-open p2"]);
    assert_eq!(saw(&mut dictation, 1).await, ["Patient-open p2"]);
    hub.stop().await;
}

/// Story 2, fast switching. The RIS and the PACS both publish, crossing,
/// 100 patient changes each. Every app saw the same events in the same
/// order and ends on the same patient as Get Current Context.
/// Checklist 63, 97.
#[tokio::test]
async fn fast_switching_every_app_sees_the_same_order() {
    let hub = TestHub::start_with_auth().await;
    let ris_app = App::register(&hub, "RIS").await;
    let pacs_app = App::register(&hub, "PACS").await;
    let session = ris_app.topic.clone();
    let mut ris = ris_app.join(&hub, "Patient-open", "RIS").await;
    let mut pacs = pacs_app.join(&hub, "Patient-open", "PACS").await;
    const N: usize = 100;
    let publish_all = |app: &App, prefix: &'static str| {
        let hub = &hub;
        let session = session.clone();
        let token = app.token.clone();
        async move {
            for i in 0..N {
                let e = patient_open(&session, &format!("{prefix}{}", i % 5));
                let res = hub.publish_with_token(&token, &e).await;
                assert_eq!(res.status(), 202);
            }
        }
    };
    let (_, _, ris_saw, pacs_saw) = tokio::join!(
        publish_all(&ris_app, "ris-"),
        publish_all(&pacs_app, "pacs-"),
        read(&mut ris, 2 * N),
        read(&mut pacs, 2 * N),
    );
    assert_eq!(ris_saw, pacs_saw, "the same events in the same order");
    let last = ris_saw.last().unwrap().clone();
    let ctx = ris_app.context(&hub, &session).await;
    assert_eq!(ctx["context"][0]["resource"]["id"], last.as_str());
    hub.stop().await;

    async fn read(ws: &mut Ws, n: usize) -> Vec<String> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let e = ws.next_event().await;
            ids.push(
                e["event"]["context"][0]["resource"]["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    }
}

/// Story 3, app restart. The PACS is the only subscriber; it unsubscribes
/// (it is being restarted) and comes back. The patient is still there and
/// replayed, and the RIS can still publish meanwhile (D11 revised).
#[tokio::test]
async fn the_only_app_restarts_and_the_patient_is_still_there() {
    let hub = TestHub::start_with_auth().await;
    let ris = App::register(&hub, "RIS").await;
    let pacs_app = App::register(&hub, "PACS").await;
    let session = ris.topic.clone();
    let mut pacs = pacs_app.join(&hub, ALL_EVENTS, "PACS").await;
    let open = patient_open(&session, "p1");
    ris.publish(&hub, &open).await;
    assert_eq!(saw(&mut pacs, 1).await, ["Patient-open p1"]);

    pacs_app.unsubscribe(&hub, &session, &pacs.endpoint).await;
    let (texts, _) = pacs.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied");
    // Nobody follows the session now; it keeps its patient.
    let ctx = ris.context(&hub, &session).await;
    assert_eq!(ctx["context"][0]["resource"]["id"], "p1", "{ctx}");
    let study = event(
        &session,
        "Patient-open",
        json!([{"key": "patient", "resource": patient("p2")}]),
    );
    ris.publish(&hub, &study).await;

    let mut pacs = pacs_app.join(&hub, ALL_EVENTS, "PACS").await;
    assert_eq!(
        saw(&mut pacs, 1).await,
        ["Patient-open p2"],
        "the restarted PACS gets the current patient"
    );
    hub.stop().await;
}

/// Story 4, sleep and wake. The dictation laptop's socket dies without a
/// close; it reconnects to its endpoint within the grace period and gets
/// the current context, and the PACS hears of no SyncError. Later it
/// sleeps past the grace period: the PACS gets a SyncError naming it.
/// Checklist 54-56, 70-74.
#[tokio::test]
async fn sleep_and_wake_within_and_past_the_grace_period() {
    let hub = TestHub::start_in(tempfile::tempdir().unwrap().path(), |c| {
        c.no_auth = false;
        c.grace_period = Duration::from_millis(400);
    })
    .await;
    let ris = App::register(&hub, "RIS").await;
    let session = ris.topic.clone();
    let pacs_app = App::register(&hub, "PACS").await;
    let dictation_app = App::register(&hub, "Dictation").await;
    let mut pacs = pacs_app.join(&hub, ALL_EVENTS, "PACS").await;
    let dictation = dictation_app.join(&hub, ALL_EVENTS, "Dictation").await;
    let mut events = hub.hub.events();
    let open = patient_open(&session, "p1");
    ris.publish(&hub, &open).await;
    assert_eq!(saw(&mut pacs, 1).await, ["Patient-open p1"]);

    // The socket goes away without a Close frame (the lid closes).
    let endpoint = dictation.endpoint.clone();
    drop(dictation);
    wait_for(&mut events, |e| {
        matches!(e, HubEvent::Disconnected { subscriber, clean: false, .. } if subscriber == "Dictation")
    })
    .await;
    let mut dictation = Ws::connect(&endpoint).await;
    assert_eq!(dictation.next_json().await["hub.mode"], "subscribe");
    assert_eq!(saw(&mut dictation, 1).await, ["Patient-open p1"]);
    // No SyncError reached the PACS: the next thing it sees is the marker.
    let m = marker(&ris, &hub, &session).await;
    assert_eq!(pacs.next_event().await["id"], m["id"]);
    assert_eq!(dictation.next_event().await["id"], m["id"]);

    // Asleep for longer than the grace period: reported to the others.
    drop(dictation);
    let sync_error = pacs.next_event().await;
    assert_eq!(sync_error["event"]["hub.event"], "SyncError");
    let text = sync_error.to_string();
    assert!(text.contains("Dictation"), "{text}");
    hub.stop().await;
}

/// Story 5, the hub is killed (`kill -9`) in the middle of a report. It
/// comes back within the recovery window; the apps reconnect to their
/// endpoints and carry on with the same report and version.
#[tokio::test]
async fn hub_killed_mid_report_apps_carry_on() {
    let dir = tempfile::tempdir().unwrap();
    let (ris_id, ris_secret) = apps_add(dir.path(), "RIS");
    let (pacs_id, pacs_secret) = apps_add(dir.path(), "PACS");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let http = lockstep_hub::tls::http_client()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut hub = binary::start(dir.path(), port);
    let ris = binary::token(&http, port, &ris_id, &ris_secret).await;
    let pacs_token = binary::token(&http, port, &pacs_id, &pacs_secret).await;
    let session = ris["hub.topic"].as_str().unwrap().to_owned();
    let ris_token = ris["access_token"].as_str().unwrap().to_owned();
    let hub_url = format!("http://127.0.0.1:{port}/fhircast/STU3");
    let endpoint = binary::subscribe(&http, &hub_url, &pacs_token, &session).await;
    let mut pacs = Ws::connect(&endpoint).await;
    pacs.next_json().await;

    let open = report_open(&session, "r1", "p1");
    let answer = binary::publish(&http, &hub_url, &ris_token, &open).await;
    let v1 = answer["event"]["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let update = report_update(&session, "r1", &v1, json!([put_observation("o1")]));
    let answer = binary::publish(&http, &hub_url, &ris_token, &update).await;
    let v2 = answer["event"]["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        saw(&mut pacs, 2).await,
        ["DiagnosticReport-open r1", "DiagnosticReport-update r1"]
    );

    hub.kill();
    let _ = pacs.closed().await;
    let _hub = binary::start(dir.path(), port);
    let mut pacs = Ws::connect(&endpoint).await;
    assert_eq!(pacs.next_json().await["hub.mode"], "subscribe");
    let replayed = pacs.next_event().await;
    assert_eq!(label(&replayed), "DiagnosticReport-open r1");
    assert_eq!(replayed["event"]["context.versionId"], v2.as_str());
    // The RIS carries on from the version it knows.
    let next = report_update(&session, "r1", &v2, json!([put_observation("o2")]));
    let answer = binary::publish(&http, &hub_url, &ris_token, &next).await;
    assert_eq!(
        answer["event"]["event"]["context.priorVersionId"],
        v2.as_str()
    );
    assert_eq!(saw(&mut pacs, 1).await, ["DiagnosticReport-update r1"]);
}

/// Story 6, end of the day. `UserLogout` closes every open context; every
/// app is told (the closes, then the logout), and Get Current Context is
/// empty afterwards.
#[tokio::test]
async fn end_of_day_logout_closes_everything_and_every_app_is_told() {
    let hub = TestHub::start_with_auth().await;
    let ris = App::register(&hub, "RIS").await;
    let session = ris.topic.clone();
    let pacs_app = App::register(&hub, "PACS").await;
    let dictation_app = App::register(&hub, "Dictation").await;
    let mut pacs = pacs_app
        .join(&hub, "Patient-open,Patient-close,UserLogout", "PACS")
        .await;
    // The dictation system does not follow UserLogout; the closes reach it.
    let mut dictation = dictation_app
        .join(
            &hub,
            "Patient-open,Patient-close,DiagnosticReport-open,DiagnosticReport-close",
            "Dictation",
        )
        .await;
    ris.publish(&hub, &patient_open(&session, "p1")).await;
    ris.publish(&hub, &report_open(&session, "r1", "p1")).await;
    assert_eq!(
        saw(&mut pacs, 2).await,
        ["Patient-open p1", "Patient-open p1"]
    );
    assert_eq!(
        saw(&mut dictation, 2).await,
        ["Patient-open p1", "DiagnosticReport-open r1"]
    );

    let bye = logout(&session);
    ris.publish(&hub, &bye).await;
    assert_eq!(
        saw(&mut pacs, 2).await,
        ["Patient-close p1", "UserLogout "],
        "the PACS: the patient closes, then the logout"
    );
    assert_eq!(
        saw(&mut dictation, 2).await,
        ["DiagnosticReport-close r1", "Patient-close p1"],
        "the dictation system: the newest context closes first"
    );
    let ctx = ris.context(&hub, &session).await;
    assert_eq!(ctx["context"], json!([]), "{ctx}");
    hub.stop().await;
}

/// Story 6b, lunch. The workstation locks: the RIS announces
/// `UserHibernate`; it is forwarded to the apps that follow it and shown
/// to the tray and the dashboard (a hub event), and the context stays.
#[tokio::test]
async fn lunch_hibernate_is_forwarded_and_shown_and_the_context_stays() {
    let hub = TestHub::start_with_auth().await;
    let ris = App::register(&hub, "RIS").await;
    let session = ris.topic.clone();
    let pacs_app = App::register(&hub, "PACS").await;
    let mut pacs = pacs_app
        .join(&hub, "Patient-open,UserHibernate", "PACS")
        .await;
    let mut events = hub.hub.events();
    ris.publish(&hub, &patient_open(&session, "p1")).await;
    let hibernate = event(
        &session,
        "UserHibernate",
        json!([{"key": "parameters", "resource": {"resourceType": "Parameters", "parameter": [
            {"name": "code", "valueCoding": {"system": "http://hl7.org/fhir/uv/fhircast/CodeSystem/fhircast-logout-codesystem", "code": "system-timeout"}}]}}]),
    );
    ris.publish(&hub, &hibernate).await;
    assert_eq!(
        saw(&mut pacs, 2).await,
        ["Patient-open p1", "UserHibernate "]
    );
    wait_for(
        &mut events,
        |e| matches!(e, HubEvent::Hibernated { topic } if *topic == session),
    )
    .await;
    let ctx = ris.context(&hub, &session).await;
    assert_eq!(ctx["context"][0]["resource"]["id"], "p1", "{ctx}");
    hub.stop().await;
}

/// Story 7, a topic of its own. A teaching-file app uses a topic other than
/// the session's; with nobody subscribed it keeps its context for the idle
/// time, then goes (a short idle time here, 300 ms; 15 minutes by default).
#[tokio::test]
async fn an_unfollowed_topic_keeps_its_context_for_the_idle_time() {
    let hub = TestHub::start_in(tempfile::tempdir().unwrap().path(), |c| {
        c.no_auth = false;
        c.topic_idle = Duration::from_millis(300);
    })
    .await;
    let teaching = topic();
    let app = App::register_for(&hub, "Teaching files", vec![teaching.clone()]).await;
    let mut events = hub.hub.events();
    let mut viewer = app
        .join_topic(&hub, &teaching, "Patient-open", "Viewer")
        .await;
    app.publish(&hub, &patient_open(&teaching, "t1")).await;
    assert_eq!(saw(&mut viewer, 1).await, ["Patient-open t1"]);
    app.unsubscribe(&hub, &teaching, &viewer.endpoint).await;
    viewer.closed().await;
    let ctx = app.context(&hub, &teaching).await;
    assert_eq!(ctx["context"][0]["resource"]["id"], "t1", "kept while idle");

    wait_for(
        &mut events,
        |e| matches!(e, HubEvent::TopicEnded { topic } if *topic == teaching),
    )
    .await;
    let ctx = app.context(&hub, &teaching).await;
    assert_eq!(ctx["context"], json!([]), "gone after the idle time");
    hub.stop().await;
}

/// Story 8, a retry. The RIS's publish times out on its side and it sends
/// the same event (same id) again: 2xx, and the apps see it once.
/// Checklist 43.
#[tokio::test]
async fn a_retried_publish_is_broadcast_once() {
    let hub = TestHub::start_with_auth().await;
    let ris = App::register(&hub, "RIS").await;
    let session = ris.topic.clone();
    let pacs_app = App::register(&hub, "PACS").await;
    let mut pacs = pacs_app.join(&hub, ALL_EVENTS, "PACS").await;
    let open = report_open(&session, "r1", "p1");
    let first = ris.publish(&hub, &open).await;
    let again = ris.publish(&hub, &open).await;
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(
        again["event"]["event"]["context.versionId"], first["event"]["event"]["context.versionId"],
        "the retry learns the same version"
    );
    let m = marker(&ris, &hub, &session).await;
    assert_eq!(saw(&mut pacs, 1).await, ["DiagnosticReport-open r1"]);
    assert_eq!(
        pacs.next_event().await["id"],
        m["id"],
        "no second broadcast"
    );
    // The same id for another event is a client bug, not a retry.
    let mut other = patient_close(&session, "p1");
    other["id"] = open["id"].clone();
    let res = hub.publish_with_token(&ris.token, &other).await;
    assert_eq!(res.status(), 409);
    hub.stop().await;
}

async fn wait_for(
    events: &mut tokio::sync::broadcast::Receiver<HubEvent>,
    want: impl Fn(&HubEvent) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        loop {
            match events.recv().await {
                Ok(e) if want(&e) => return,
                Ok(_) => {}
                Err(e) => panic!("hub events: {e}"),
            }
        }
    })
    .await
    .expect("the hub event in time");
}

/// The real `lockstep-hub` binary, for the story that kills it.
mod binary {
    use std::io::{BufRead, BufReader};
    use std::path::Path;
    use std::process::{Child, Command, Stdio};

    use serde_json::Value;

    pub struct Running(Child);

    impl Running {
        pub fn kill(&mut self) {
            self.0.kill().unwrap(); // SIGKILL: no shutdown path runs.
            self.0.wait().unwrap();
        }
    }

    impl Drop for Running {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    pub fn start(dir: &Path, port: u16) -> Running {
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-hub"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(dir)
            .args(["--no-dashboard-link", "--secret-store", "file"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start lockstep-hub");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("http://127.0.0.1:"), "ready line: {line:?}");
        Running(child)
    }

    pub async fn token(http: &reqwest::Client, port: u16, id: &str, secret: &str) -> Value {
        let res = super::token_by_basic(
            http,
            &format!("http://127.0.0.1:{port}/oauth/token"),
            id,
            secret,
        )
        .await;
        assert_eq!(res.status(), 200);
        res.json().await.unwrap()
    }

    pub async fn subscribe(
        http: &reqwest::Client,
        hub_url: &str,
        token: &Value,
        topic: &str,
    ) -> String {
        let res = http
            .post(hub_url)
            .bearer_auth(token["access_token"].as_str().unwrap())
            .form(&super::subscribe_form(topic, super::ALL_EVENTS))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        super::endpoint_of(res).await
    }

    pub async fn publish(
        http: &reqwest::Client,
        hub_url: &str,
        token: &str,
        event: &Value,
    ) -> Value {
        let res = http
            .post(hub_url)
            .bearer_auth(token)
            .json(event)
            .send()
            .await
            .unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        res.json().await.unwrap()
    }
}
