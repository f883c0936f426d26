//! No secret in any log line or file (issue 5): the real `lockstep-hub`
//! binary, at `--log debug`, goes through a whole session (token,
//! subscribe, WebSocket, publish, Get Current Context, unsubscribe) and
//! some attacks (a wrong client secret, forged tokens, a cross-site
//! WebSocket). Afterwards neither its output nor its data folder may hold
//! the client secret, the access token or its signature, the full endpoint
//! id (logs show 8 characters), or the token signing key.

mod common;

use std::path::Path;
use std::time::Duration;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::binary::{HubCommand, HubProcess};
use common::{
    endpoint_of, patient_open, post_token_form, subscribe_form, token_by_basic, unsubscribe_form,
    Ws, WAIT,
};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The binary at `--log debug`, its output collected as it comes.
async fn start(data_dir: &Path) -> HubProcess {
    HubCommand::new(data_dir)
        .args(["--listen", "127.0.0.1:0", "--secret-store", "file"])
        .args(["--log", "debug"])
        .start()
        .await
}

/// SIGTERM, as a service manager stops it; returns stdout + stderr.
async fn stop(mut hub: HubProcess) -> String {
    let exit = hub.terminate().await;
    assert!(exit.success(), "clean exit on SIGTERM");
    hub.output_to_end().await
}

/// A token with its payload changed (more scope, another topic) and the
/// original signature kept.
fn tampered(token: &str) -> String {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).expect("JSON claims");
    claims["scope"] = "fhircast/*.*".into();
    claims["topics"] = json!(["*"]);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{}.{payload}.{}", parts[0], parts[2])
}

/// The same claims signed HS256 with a key the hub does not have.
fn signed_with_other_key(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let key: [u8; 32] = rand::random();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(&key).unwrap(),
    )
    .unwrap()
}

/// `alg: none`, no signature.
fn unsigned(token: &str) -> String {
    let payload = token.split('.').nth(1).unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    format!("{header}.{payload}.")
}

fn signature(token: &str) -> &str {
    token.rsplit('.').next().unwrap()
}

/// Where `needle` shows up in `text`, masked, for the failure message.
fn offending_line(text: &str, needle: &str) -> String {
    text.lines()
        .find(|l| l.contains(needle))
        .map(|l| l.replace(needle, "<SECRET>"))
        .unwrap_or_default()
}

/// The next request the webhook app received: its method and signature.
async fn called(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<(axum::http::Method, Option<String>)>,
) -> (axum::http::Method, Option<String>) {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("the webhook app is called in time")
        .expect("the app is running")
}

/// What a session and the attacks on it left to look at.
struct Traces {
    client_id: String,
    secret: String,
    wrong_secret: String,
    token: String,
    second_token: String,
    forged: Vec<String>,
    endpoint_id: String,
    webhook_secret: String,
}

async fn session(hub: &HubProcess, client_id: &str, secret: &str) -> Traces {
    let http = lockstep_hub::tls::http_client().build().unwrap();
    let token_url = format!("{}/oauth/token", hub.base_url());

    // A token by client_secret_basic, and one by client_secret_post.
    let res = token_by_basic(&http, &token_url, client_id, secret).await;
    assert_eq!(res.status(), 200);
    let issued: Value = res.json().await.unwrap();
    let token = issued["access_token"].as_str().unwrap().to_owned();
    let topic = issued["hub.topic"].as_str().unwrap().to_owned();
    let res = post_token_form(
        &http,
        &token_url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", secret),
            ("scope", "fhircast/Patient-open.read"),
        ],
    )
    .await;
    assert_eq!(res.status(), 200);
    let second: Value = res.json().await.unwrap();
    let second_token = second["access_token"].as_str().unwrap().to_owned();

    // Subscribe, connect, publish, read the context, unsubscribe.
    let mut form = subscribe_form(&topic, "Patient-open,Patient-close");
    form.push(("subscriber.name", "Log Audit RIS"));
    let res = http
        .post(&hub.hub_url)
        .bearer_auth(&token)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let endpoint = endpoint_of(res).await;
    let endpoint_id = endpoint.rsplit('/').next().unwrap().to_owned();
    assert!(
        endpoint_id.len() >= 40,
        "160-bit endpoint id: {endpoint_id}"
    );
    let mut ws = Ws::connect(&endpoint).await;
    assert_eq!(ws.next_json().await["hub.mode"], "subscribe");

    // Cross-site WebSocket hijacking: a web page that learnt the endpoint.
    let mut request = endpoint.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let hijack = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("an answer in time");
    assert!(hijack.is_err(), "a foreign web origin gets no WebSocket");

    let res = http
        .post(&hub.hub_url)
        .bearer_auth(&token)
        .json(&patient_open(&topic, "pat-log-1"))
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success(), "publish: {}", res.status());
    let event = ws.next_event().await;
    assert_eq!(event["event"]["hub.event"], "Patient-open");
    let res = http
        .get(format!("{}/{topic}", hub.hub_url))
        .bearer_auth(&second_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // A legacy webhook app with a hub.secret (issue 10): verified, then
    // replayed the open patient, signed.
    let webhook_secret = format!("whsec-{}", uuid::Uuid::new_v4().simple());
    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let callback = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(
        move |method: axum::http::Method, uri: axum::http::Uri, headers: axum::http::HeaderMap| {
            let seen_tx = seen_tx.clone();
            async move {
                let query = uri.query().unwrap_or_default().to_owned();
                let challenge = form_urlencoded::parse(query.as_bytes())
                    .find(|(k, _)| k == "hub.challenge")
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default();
                let signature = headers
                    .get("x-hub-signature")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned);
                let _ = seen_tx.send((method, signature));
                challenge
            }
        },
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let stu2 = hub.hub_url.replace("/fhircast/STU3", "/fhircast/STU2");
    let webhook = |mode: &'static str| {
        vec![
            ("hub.channel.type", "webhook".to_owned()),
            ("hub.mode", mode.to_owned()),
            ("hub.topic", topic.clone()),
            ("hub.events", "Patient-open".to_owned()),
            ("hub.callback", callback.clone()),
            ("hub.secret", webhook_secret.clone()),
        ]
    };
    let res = http
        .post(&stu2)
        .bearer_auth(&token)
        .form(&webhook("subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        202,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let (method, _) = called(&mut seen_rx).await;
    assert_eq!(method, axum::http::Method::GET, "intent verification");
    let (method, signature) = called(&mut seen_rx).await;
    assert_eq!(method, axum::http::Method::POST, "the current context");
    assert!(signature.is_some_and(|s| s.starts_with("sha256=")));
    let res = http
        .post(&stu2)
        .bearer_auth(&token)
        .form(&webhook("unsubscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    let res = http
        .post(&hub.hub_url)
        .bearer_auth(&token)
        .form(&unsubscribe_form(&topic, &endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    ws.closed().await;

    // A wrong secret (one character off: a typo of the real one).
    let mut wrong_secret = secret.to_owned();
    let last = wrong_secret.pop().unwrap();
    wrong_secret.push(if last == 'A' { 'B' } else { 'A' });
    let res = token_by_basic(&http, &token_url, client_id, &wrong_secret).await;
    assert_eq!(res.status(), 401);
    let res = post_token_form(
        &http,
        &token_url,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", client_id),
            ("client_secret", &wrong_secret),
        ],
    )
    .await;
    assert_eq!(res.status(), 401);

    // Forged tokens, on each kind of request.
    let forged = vec![
        tampered(&token),
        signed_with_other_key(&token),
        unsigned(&token),
    ];
    for bad in &forged {
        let res = http
            .post(&hub.hub_url)
            .bearer_auth(bad)
            .form(&subscribe_form(&topic, "Patient-open"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "forged token on subscribe");
        let res = http
            .post(&hub.hub_url)
            .bearer_auth(bad)
            .json(&patient_open(&topic, "pat-log-2"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "forged token on publish");
        let res = http
            .get(format!("{}/{topic}", hub.hub_url))
            .bearer_auth(bad)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401, "forged token on get context");
    }

    Traces {
        client_id: client_id.to_owned(),
        secret: secret.to_owned(),
        wrong_secret,
        token,
        second_token,
        forged,
        endpoint_id,
        webhook_secret,
    }
}

#[tokio::test]
async fn no_secret_in_logs_or_data_files() {
    let data = tempfile::tempdir().unwrap();
    let (client_id, secret) = common::apps_add(data.path(), "Log Audit RIS");
    let hub = start(data.path()).await;
    let traces = tokio::time::timeout(Duration::from_secs(60), session(&hub, &client_id, &secret))
        .await
        .expect("the session finishes in time");
    let logs = stop(hub).await;

    let secrets: Value =
        serde_json::from_slice(&std::fs::read(data.path().join("secrets.json")).unwrap()).unwrap();
    let signing_key = secrets["token-signing-key"]
        .as_str()
        .expect("the signing key is in secrets.json")
        .to_owned();

    // The log did record the session: this test is not passing on silence.
    for expected in [
        "token issued",
        "request refused",
        "token refused",
        &traces.client_id,
        &traces.endpoint_id[..8],
    ] {
        assert!(
            logs.contains(expected),
            "the log should mention {expected:?}:\n{logs}"
        );
    }

    let basic = STANDARD.encode(format!("{}:{}", traces.client_id, traces.secret));
    let mut needles: Vec<(&str, &str)> = vec![
        ("the client secret", &traces.secret),
        ("a webhook's hub.secret", &traces.webhook_secret),
        ("a wrong client secret", &traces.wrong_secret),
        ("the HTTP Basic credentials", &basic),
        ("the access token", &traces.token),
        ("the access token's signature", signature(&traces.token)),
        ("the second access token", &traces.second_token),
        (
            "the second token's signature",
            signature(&traces.second_token),
        ),
        ("the full endpoint id", &traces.endpoint_id),
        ("the token signing key", &signing_key),
    ];
    // Tokens and secrets must not be in data files either.
    let on_disk = needles.len() - 2;
    for forged in &traces.forged {
        needles.push(("a forged token", forged));
    }
    // Every leak at once, each with the line it is on (masked).
    let leaks: Vec<String> = needles
        .iter()
        .filter(|(_, needle)| logs.contains(needle))
        .map(|(what, needle)| format!("{what}: {}", offending_line(&logs, needle)))
        .collect();
    assert!(
        leaks.is_empty(),
        "secrets in the log:\n{}",
        leaks.join("\n")
    );

    // On disk: only secrets.json holds anything secret, and never the
    // client secret itself (its hash).
    let mut seen_db = false;
    for file in common::files_under(data.path()) {
        let bytes = std::fs::read(&file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        seen_db |= name == "lockstep.db";
        for (what, needle) in &needles[..on_disk] {
            assert!(
                !common::bytes_contain(&bytes, needle),
                "{what} is in {}",
                file.display()
            );
        }
        if name != "secrets.json" {
            assert!(
                !common::bytes_contain(&bytes, &signing_key),
                "the signing key is in {}",
                file.display()
            );
            if let Some(hash) = secrets[format!("client-secret:{}", traces.client_id)].as_str() {
                assert!(
                    !common::bytes_contain(&bytes, hash),
                    "the secret's hash is in {}",
                    file.display()
                );
            }
        }
    }
    assert!(
        seen_db,
        "the database (registrations, audit) was written and scanned"
    );
}
