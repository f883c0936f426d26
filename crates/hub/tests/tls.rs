//! `--tls` (checklist 2, 4, 5, 22): the hub serves `https://` and `wss://`
//! with this install's self-signed certificate. Real TLS clients (reqwest
//! over rustls, tokio-tungstenite over tokio-rustls) trust that certificate
//! alone, as an installer that imported it would.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::binary::HubCommand;
use common::{endpoint_of, get_json, patient_open, subscribe_form, topic, WAIT};
use futures_util::{SinkExt, StreamExt};
use lockstep_hub::auth::{MemoryStore, SecretStore};
use lockstep_hub::{server, tls, Config, Hub};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::crypto::ring;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A hub with TLS on, data in `dir` and its key in `store`.
struct TlsHub {
    port: u16,
    hub: Hub,
    /// Trusts this install's certificate and nothing else.
    http: reqwest::Client,
    cert_pem: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TlsHub {
    async fn start(dir: &Path, store: Arc<dyn SecretStore>) -> TlsHub {
        Self::start_with(dir, store, |_| {}).await
    }

    async fn start_with(
        dir: &Path,
        store: Arc<dyn SecretStore>,
        configure: impl FnOnce(&mut Config),
    ) -> TlsHub {
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.to_path_buf());
        config.no_auth = true;
        config.tls = true;
        config.secret_store = store.clone();
        configure(&mut config);
        // What the binary does before it says it is ready; `run` then finds
        // the same certificate.
        let identity = tls::load_or_create(store.as_ref(), dir).expect("TLS identity");
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hub = Hub::new(config);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, hub.clone(), async move {
            let _ = rx.await;
        }));
        TlsHub {
            port,
            hub,
            http: trusting_client(&identity.cert_pem),
            cert_pem: identity.cert_pem,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn hub_url(&self) -> String {
        self.url("/fhircast/STU3")
    }

    async fn stop(mut self) {
        let _ = self.shutdown.take().unwrap().send(());
        tokio::time::timeout(WAIT * 2, self.task.take().unwrap())
            .await
            .expect("hub stops in time")
            .expect("run task")
            .expect("run returns Ok");
    }
}

fn trusting_client(cert_pem: &str) -> reqwest::Client {
    lockstep_hub::tls::http_client()
        .tls_certs_only([reqwest::Certificate::from_pem(cert_pem.as_bytes()).unwrap()])
        .build()
        .unwrap()
}

/// A rustls client config whose only root is `cert_pem`.
fn client_config(cert_pem: &str) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap())
        .unwrap();
    Arc::new(
        ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

type Wss = WebSocketStream<TlsStream<TcpStream>>;

/// Opens `endpoint` (a `wss://localhost:PORT/...` URL) over TLS.
async fn connect_wss(endpoint: &str, cert_pem: &str) -> Wss {
    let url = reqwest::Url::parse(endpoint).unwrap();
    assert_eq!(url.scheme(), "wss", "{endpoint}");
    let host = url.host_str().unwrap().to_owned();
    let tcp = TcpStream::connect((host.as_str(), url.port().unwrap()))
        .await
        .unwrap();
    let tls = TlsConnector::from(client_config(cert_pem))
        .connect(ServerName::try_from(host).unwrap(), tcp)
        .await
        .expect("TLS handshake with the hub's certificate");
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::client_async(endpoint, tls))
        .await
        .expect("upgrade in time")
        .expect("WebSocket upgrade over TLS");
    ws
}

async fn next_json(ws: &mut Wss) -> Value {
    loop {
        let msg = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        match msg {
            Message::Text(t) => return serde_json::from_str(&t).unwrap(),
            Message::Ping(_) | Message::Pong(_) => continue,
            other => panic!("expected text, got {other:?}"),
        }
    }
}

fn key_of(store: &dyn SecretStore) -> String {
    store.get(tls::KEY_NAME).unwrap().expect("key in the store")
}

fn cert_file(dir: &Path) -> PathBuf {
    tls::cert_path(dir)
}

/// Checklist 2, 4, 5, 22: discovery over https, a wss:// endpoint, an event
/// over wss, and shutdown still closes the socket with 1001.
#[tokio::test]
async fn discovery_subscribe_and_events_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TlsHub::start(dir.path(), Arc::new(MemoryStore::default())).await;

    let res = hub
        .http
        .get(hub.url("/fhircast/STU3/.well-known/fhircast-configuration"))
        .send()
        .await
        .expect("https request trusting the hub's certificate");
    assert_eq!(res.status(), 200);
    let discovery: Value = res.json().await.unwrap();
    assert_eq!(discovery["websocketSupport"], true);

    let t = topic();
    let res = hub
        .http
        .post(hub.hub_url())
        .form(&subscribe_form(&t, "Patient-open"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let endpoint = endpoint_of(res).await;
    let expected = format!("wss://localhost:{}/fhircast/STU3/ws/", hub.port);
    assert!(endpoint.starts_with(&expected), "{endpoint}");

    let mut ws = connect_wss(&endpoint, &hub.cert_pem).await;
    let confirmation = next_json(&mut ws).await;
    assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");

    let event = patient_open(&t, "tls-1");
    let res = hub
        .http
        .post(hub.hub_url())
        .json(&event)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "{}", res.status());
    let frame = next_json(&mut ws).await;
    assert_eq!(frame["id"], event["id"]);
    assert_eq!(frame["event"]["hub.event"], "Patient-open");
    ws.send(Message::Text(
        json!({"id": frame["id"], "status": 200}).to_string().into(),
    ))
    .await
    .unwrap();

    hub.stop().await;
    let close = loop {
        match tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("close in time")
        {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1001), "going away");
}

/// Every URL the hub hands out says https: SMART configuration, token
/// endpoint, hub.url, the dashboard link.
#[tokio::test]
async fn handed_out_urls_use_https() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TlsHub::start(dir.path(), Arc::new(MemoryStore::default())).await;
    let smart = get_json(&hub.http, &hub.url("/.well-known/smart-configuration")).await;
    assert_eq!(smart["token_endpoint"], hub.url("/oauth/token"));
    assert_eq!(smart["hub.url"], hub.hub_url());
    let link = hub.hub.one_time_link();
    assert!(
        link.starts_with(&format!("https://127.0.0.1:{}/admin/login?code=", hub.port)),
        "{link}"
    );
    // The session cookie the link gives is never sent over plain HTTP.
    let no_redirects = lockstep_hub::tls::http_client()
        .tls_certs_only([reqwest::Certificate::from_pem(hub.cert_pem.as_bytes()).unwrap()])
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let res = no_redirects.get(&link).send().await.unwrap();
    assert_eq!(res.status(), 303);
    let cookie = res.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    hub.stop().await;
}

/// The certificate is made once per install: a restart with the same data
/// folder and secret store serves the same certificate from the same key,
/// so whatever trust IT set up keeps working.
#[tokio::test]
async fn certificate_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn SecretStore> = Arc::new(MemoryStore::default());
    let first = TlsHub::start(dir.path(), store.clone()).await;
    let key = key_of(store.as_ref());
    let pem = first.cert_pem.clone();
    assert_eq!(std::fs::read_to_string(cert_file(dir.path())).unwrap(), pem);
    assert!(
        !std::fs::read_to_string(cert_file(dir.path()))
            .unwrap()
            .contains("PRIVATE KEY"),
        "the key never goes to the data folder"
    );
    first.stop().await;

    let second = TlsHub::start(dir.path(), store.clone()).await;
    assert_eq!(second.cert_pem, pem, "same certificate after a restart");
    assert_eq!(key_of(store.as_ref()), key, "same key");
    // A client that trusted the first hub's certificate trusts this one.
    let res = trusting_client(&pem)
        .get(second.url("/fhircast/STU3/.well-known/fhircast-configuration"))
        .send()
        .await
        .expect("the old trust still works");
    assert_eq!(res.status(), 200);
    second.stop().await;
}

/// Plain HTTP to the TLS port gets a plain-HTTP answer saying to use https,
/// and a client that does not trust the certificate fails the handshake.
#[tokio::test]
async fn plain_http_and_untrusting_clients_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TlsHub::start(dir.path(), Arc::new(MemoryStore::default())).await;

    let res = lockstep_hub::tls::http_client()
        .build()
        .unwrap()
        .get(format!("http://127.0.0.1:{}/fhircast/STU3", hub.port))
        .send()
        .await
        .expect("an answer, not a hang or a reset");
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.contains("https://"), "{text}");

    let untrusting = lockstep_hub::tls::http_client()
        .tls_certs_only([])
        .build()
        .unwrap();
    let err = untrusting
        .get(hub.hub_url())
        .send()
        .await
        .expect_err("an unknown certificate is refused");
    assert!(err.is_connect(), "{err:?}");

    // Neither broke the hub for clients that trust it.
    let res = hub.http.get(hub.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    hub.stop().await;
}

/// Over the connection cap, a TLS client still gets its answer: a 503 with
/// a sentence, after the handshake, rather than a dropped connection.
#[tokio::test]
async fn over_the_limit_is_503_over_tls_too() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TlsHub::start_with(dir.path(), Arc::new(MemoryStore::default()), |c| {
        c.max_connections = 1
    })
    .await;
    // hub.http keeps its connection open in its pool: the one place.
    let res = hub.http.get(hub.url("/")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.text().await.unwrap();
    let res = trusting_client(&hub.cert_pem)
        .get(hub.url("/"))
        .send()
        .await
        .expect("an answer over TLS");
    assert_eq!(res.status(), 503);
    let text = res.text().await.unwrap();
    assert!(text.contains("maximum of 1 connections"), "{text}");
    hub.stop().await;
}

/// The binary: `tls cert` prints the certificate IT imports, and a hub
/// started with `--tls` on the same data folder serves that certificate,
/// with https in its ready line and dashboard link.
#[tokio::test]
async fn binary_tls_cert_then_serve_it() {
    let dir = tempfile::tempdir().unwrap();
    let binary = || HubCommand::new(dir.path()).args(["--secret-store", "file"]);

    let out = binary().args(["tls", "cert", "--path"]).output().await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert_eq!(PathBuf::from(&path), cert_file(dir.path()));
    let out = binary().args(["tls", "cert"]).output().await;
    assert!(out.status.success());
    let pem = String::from_utf8(out.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    assert_eq!(pem, std::fs::read_to_string(&path).unwrap(), "made once");

    let mut hub = binary()
        .args(["--tls", "--listen", "127.0.0.1:0", "--no-persist"])
        .discard_log()
        .start()
        .await;
    let hub_url = hub.hub_url.clone();
    assert!(hub_url.starts_with("https://127.0.0.1:"), "{hub_url}");
    let link = hub.stdout_line().await.expect("a line");
    assert!(link.contains(": https://127.0.0.1:"), "{link}");

    let res = trusting_client(&pem)
        .get(format!("{hub_url}/.well-known/fhircast-configuration"))
        .send()
        .await
        .expect("the printed certificate is the one served");
    assert_eq!(res.status(), 200);
    hub.kill().await;
}
