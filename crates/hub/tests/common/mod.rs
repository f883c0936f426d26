//! Test harness: a real hub on `127.0.0.1:0`, a real HTTP client and real
//! WebSocket clients. Every wait is bounded and waits on the event itself.
#![allow(dead_code)]

pub mod binary;

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use lockstep_hub::{server, Config, Hub};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

// Not every test that includes the harness uses these.
#[allow(unused_imports)]
pub use binary::{apps_add, printed_field, run_to_exit};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestHub {
    pub addr: SocketAddr,
    pub hub: Hub,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
    _dir: tempfile::TempDir,
}

impl TestHub {
    pub async fn start() -> TestHub {
        Self::start_with(|_| {}).await
    }

    /// Starts a hub with authorization on: requests need a token.
    pub async fn start_with_auth() -> TestHub {
        Self::start_with(|c| c.no_auth = false).await
    }

    /// Starts a hub with defaults changed by `configure` (short timeouts, …).
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> TestHub {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        // Protocol tests run without tokens; tests/auth.rs turns auth on.
        config.no_auth = true;
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .expect("bind");
        let addr = listener.local_addr().unwrap();
        let hub = Hub::new(config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, hub.clone(), async move {
            let _ = rx.await;
        }));
        TestHub {
            addr,
            hub,
            http: lockstep_hub::tls::http_client().build().unwrap(),
            shutdown: Some(tx),
            task: Some(task),
            _dir: dir,
        }
    }

    /// `hub.url` of the STU3 path.
    pub fn hub_url(&self) -> String {
        format!("http://{}/fhircast/STU3", self.addr)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// POSTs a form to `hub.url`.
    pub async fn post_form(&self, fields: &[(&str, &str)]) -> reqwest::Response {
        self.post_form_to(&self.hub_url(), fields).await
    }

    pub async fn post_form_to(&self, url: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let body: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        self.http
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Subscribes and returns the endpoint URL.
    pub async fn subscribe(&self, topic: &str, events: &str) -> String {
        self.subscribe_named(topic, events, None).await
    }

    pub async fn subscribe_named(&self, topic: &str, events: &str, name: Option<&str>) -> String {
        let mut fields = subscribe_form(topic, events);
        if let Some(name) = name {
            fields.push(("subscriber.name", name));
        }
        let res = self.post_form(&fields).await;
        assert_eq!(
            res.status(),
            202,
            "subscribe refused: {}",
            res.text().await.unwrap_or_default()
        );
        endpoint_of(res).await
    }

    /// Subscribes, connects, and reads the confirmation.
    pub async fn join(&self, topic: &str, events: &str, name: &str) -> Ws {
        let endpoint = self.subscribe_named(topic, events, Some(name)).await;
        let mut ws = Ws::connect(&endpoint).await;
        let confirmation = ws.next_json().await;
        assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
        ws.endpoint = endpoint;
        ws
    }

    pub async fn unsubscribe(&self, topic: &str, endpoint: &str) -> reqwest::Response {
        self.post_form(&unsubscribe_form(topic, endpoint)).await
    }

    /// POSTs an event message as JSON to `hub.url`.
    pub async fn publish(&self, message: &Value) -> reqwest::Response {
        self.publish_raw(
            &self.hub_url(),
            "application/json",
            message.to_string().into_bytes(),
        )
        .await
    }

    pub async fn publish_raw(
        &self,
        url: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> reqwest::Response {
        self.http
            .post(url)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    /// Publishes and asserts a 2xx; returns the body.
    pub async fn publish_ok(&self, message: &Value) -> Value {
        let res = self.publish(message).await;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "publish refused with {status}: {body}");
        body
    }

    /// Get Current Context.
    pub async fn context(&self, topic: &str) -> Value {
        let res = self
            .http
            .get(format!("{}/{}", self.hub_url(), topic))
            .send()
            .await
            .expect("GET");
        assert_eq!(res.status(), 200);
        res.json().await.expect("JSON")
    }

    /// Subscribes with `token` as the bearer; the answer as it comes.
    pub async fn subscribe_with_token(
        &self,
        token: &str,
        topic: &str,
        events: &str,
    ) -> reqwest::Response {
        self.http
            .post(self.hub_url())
            .bearer_auth(token)
            .form(&subscribe_form(topic, events))
            .send()
            .await
            .expect("POST")
    }

    /// Publishes `message` with `token` as the bearer; the answer as it comes.
    pub async fn publish_with_token(&self, token: &str, message: &Value) -> reqwest::Response {
        self.http
            .post(self.hub_url())
            .bearer_auth(token)
            .json(message)
            .send()
            .await
            .expect("POST")
    }

    /// Get Current Context with `token` as the bearer; the answer as it comes.
    pub async fn context_with_token(&self, token: &str, topic: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/{topic}", self.hub_url()))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// The hub's own token endpoint.
    pub fn token_url(&self) -> String {
        self.url("/oauth/token")
    }

    /// POSTs `form` to the token endpoint, the client authenticated only by
    /// what the form carries; the status and the JSON answer (Null if none).
    pub async fn token_request(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let res = post_token_form(&self.http, &self.token_url(), form).await;
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// Asks for a client-credentials token with `client_id`'s `secret` in
    /// HTTP Basic (client_secret_basic); the answer as it comes.
    pub async fn token_with_secret(&self, client_id: &str, secret: &str) -> reqwest::Response {
        token_by_basic(&self.http, &self.token_url(), client_id, secret).await
    }

    /// The SMART configuration (`/.well-known/smart-configuration`).
    pub async fn smart_configuration(&self) -> Value {
        get_json(&self.http, &self.url("/.well-known/smart-configuration")).await
    }

    /// Stops the hub the way Ctrl-C does and waits for `run` to return.
    pub async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        let result = tokio::time::timeout(WAIT * 2, self.task.take().unwrap()).await;
        result
            .expect("hub stops in time")
            .expect("run task")
            .expect("run returns Ok");
    }
}

pub struct Ws {
    pub stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub endpoint: String,
}

impl Ws {
    pub async fn connect(endpoint: &str) -> Ws {
        let (stream, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(endpoint))
            .await
            .expect("connect in time")
            .expect("WebSocket connect");
        Ws {
            stream,
            endpoint: endpoint.to_owned(),
        }
    }

    /// The next text frame as JSON (pings and pongs skipped). Panics on
    /// close or timeout.
    pub async fn next_json(&mut self) -> Value {
        loop {
            let msg = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("a frame in time")
                .expect("socket open")
                .expect("frame");
            match msg {
                Message::Text(t) => return serde_json::from_str(&t).expect("text frames are JSON"),
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next event notification; ACKs it with 200.
    pub async fn next_event(&mut self) -> Value {
        let frame = self.next_json().await;
        assert!(
            frame.get("event").is_some(),
            "expected an event, got {frame}"
        );
        self.ack(frame["id"].as_str().unwrap(), json!(200)).await;
        frame
    }

    pub async fn ack(&mut self, id: &str, status: Value) {
        self.send(json!({"id": id, "status": status}).to_string())
            .await;
    }

    pub async fn send(&mut self, text: String) {
        self.stream
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Waits for the hub to close the socket; returns its close frame.
    /// Text frames before it are returned too (e.g. a denial).
    pub async fn closed(&mut self) -> (Vec<Value>, Option<CloseFrame>) {
        let mut texts = Vec::new();
        loop {
            let next = tokio::time::timeout(WAIT, self.stream.next())
                .await
                .expect("close in time");
            match next {
                Some(Ok(Message::Text(t))) => texts.push(serde_json::from_str(&t).expect("JSON")),
                Some(Ok(Message::Close(frame))) => return (texts, frame),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return (texts, None),
            }
        }
    }

    pub async fn close(mut self, code: u16) {
        let frame = CloseFrame {
            code: code.into(),
            reason: "bye".into(),
        };
        let _ = self.stream.close(Some(frame)).await;
    }
}

/// The form of a WebSocket subscribe to `events` on `topic`.
pub fn subscribe_form<'a>(topic: &'a str, events: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.events", events),
    ]
}

/// The form of a WebSocket unsubscribe of `endpoint` from `topic`.
pub fn unsubscribe_form<'a>(topic: &'a str, endpoint: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", topic),
        ("hub.channel.endpoint", endpoint),
    ]
}

/// `hub.channel.endpoint` of a subscribe answer (its status is the
/// caller's to check).
pub async fn endpoint_of(res: reqwest::Response) -> String {
    let body: Value = res.json().await.expect("JSON body");
    body["hub.channel.endpoint"]
        .as_str()
        .expect("hub.channel.endpoint")
        .to_owned()
}

/// GETs `url` and reads the answer as JSON, whatever its status.
pub async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

/// POSTs `form` to the token endpoint at `token_url` (client_secret_post
/// and private_key_jwt put the client's credentials in the form).
pub async fn post_token_form(
    http: &reqwest::Client,
    token_url: &str,
    form: &[(&str, &str)],
) -> reqwest::Response {
    http.post(token_url)
        .form(form)
        .send()
        .await
        .expect("POST token")
}

/// Asks the token endpoint at `token_url` for a client-credentials token,
/// the client authenticated by HTTP Basic (client_secret_basic).
pub async fn token_by_basic(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    secret: &str,
) -> reqwest::Response {
    http.post(token_url)
        .basic_auth(client_id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .expect("POST token")
}

/// A fresh, unguessable topic.
pub fn topic() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A spec example from `tests/fixtures` (copied from the FHIRcast spec).
pub fn fixture(path: &str) -> Value {
    let full = format!("{}/tests/fixtures/{path}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{full}: {e}"));
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A spec example event, re-addressed to `topic` with a fresh id.
pub fn fixture_event(path: &str, topic: &str) -> Value {
    let mut v = fixture(path);
    v["event"]["hub.topic"] = topic.into();
    v["id"] = uuid::Uuid::new_v4().to_string().into();
    v
}

pub fn event(topic: &str, name: &str, context: Value) -> Value {
    json!({
        "timestamp": "2026-11-22T10:42:00.000Z",
        "id": uuid::Uuid::new_v4().to_string(),
        "event": {"hub.topic": topic, "hub.event": name, "context": context},
    })
}

pub fn patient(id: &str) -> Value {
    json!({"resourceType": "Patient", "id": id, "identifier": [{"system": "urn:mrn", "value": id}]})
}

pub fn patient_open(topic: &str, id: &str) -> Value {
    event(
        topic,
        "Patient-open",
        json!([{"key": "patient", "resource": patient(id)}]),
    )
}

pub fn patient_close(topic: &str, id: &str) -> Value {
    event(
        topic,
        "Patient-close",
        json!([{"key": "patient", "resource": patient(id)}]),
    )
}

pub fn report_open(topic: &str, report: &str, patient_id: &str) -> Value {
    event(
        topic,
        "DiagnosticReport-open",
        json!([
            {"key": "report", "resource": {"resourceType": "DiagnosticReport", "id": report, "status": "preliminary",
                                          "subject": {"reference": format!("Patient/{patient_id}")}}},
            {"key": "patient", "resource": patient(patient_id)},
        ]),
    )
}

pub fn report_update(topic: &str, report: &str, version: &str, entries: Value) -> Value {
    let mut e = event(
        topic,
        "DiagnosticReport-update",
        json!([
            {"key": "report", "reference": {"reference": format!("DiagnosticReport/{report}")}},
            {"key": "updates", "resource": {"resourceType": "Bundle", "id": uuid::Uuid::new_v4().to_string(),
                                           "type": "transaction", "entry": entries}},
        ]),
    );
    e["event"]["context.versionId"] = version.into();
    e
}

pub fn put_observation(id: &str) -> Value {
    json!({"request": {"method": "PUT", "url": format!("Observation/{id}")},
           "resource": {"resourceType": "Observation", "id": id, "status": "preliminary"}})
}

/// A barrier on one socket: the hub answers a ping only after it has handled
/// every frame sent before it. Returns the text frames that came meanwhile.
pub async fn ping_barrier(ws: &mut Ws) -> Vec<Value> {
    let payload = uuid::Uuid::new_v4().as_bytes().to_vec();
    ws.stream
        .send(Message::Ping(payload.clone().into()))
        .await
        .expect("ping");
    let mut texts = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, ws.stream.next())
            .await
            .expect("pong in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Pong(p) if p.as_ref() == payload.as_slice() => return texts,
            Message::Text(t) => texts.push(serde_json::from_str(&t).expect("JSON")),
            Message::Close(c) => panic!("closed while waiting for the pong: {c:?}"),
            _ => {}
        }
    }
}

impl TestHub {
    /// Like `start_with`, but keeps its data (apps.json, session topic, …)
    /// in `data_dir`, which outlives the hub: a second hub started on the
    /// same folder is the first one restarted.
    pub async fn start_in(
        data_dir: &std::path::Path,
        configure: impl FnOnce(&mut Config),
    ) -> TestHub {
        let data_dir = data_dir.to_path_buf();
        Self::start_with(move |c| {
            c.data_dir = data_dir;
            configure(c);
        })
        .await
    }
}

/// Every file below `dir`, for tests that search the data folder.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// Whether `needle` occurs in `haystack` (a file's bytes).
pub fn bytes_contain(haystack: &[u8], needle: &str) -> bool {
    let needle = needle.as_bytes();
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}
