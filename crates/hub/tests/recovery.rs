//! Durable state with the real binary (issue 6): `kill -9` in the middle of
//! a publish stream loses no acknowledged event, subscriptions come back,
//! context comes back only within the recovery window, a corrupt database
//! is moved aside, and the audit trail can be exported.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use lockstep_hub::storage::Storage;
use serde_json::Value;

/// A free loopback port: the restarted hub must come back on the same one,
/// as the installed hub does (4747), so apps reconnect to their endpoints.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// No connection pooling: after a restart on the same port a pooled
/// keep-alive connection would point at the dead process.
fn client() -> reqwest::Client {
    lockstep_hub::tls::http_client()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

struct Running {
    child: Child,
    hub_url: String,
}

impl Drop for Running {
    /// A failing test must not leave a hub running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, port: u16, extra: &[&str]) -> Running {
    start_with(dir, port, &["--no-auth", "--secret-store", "memory"], extra)
}

fn start_with(dir: &Path, port: u16, mode: &[&str], extra: &[&str]) -> Running {
    let mut child = Command::new(env!("CARGO_BIN_EXE_lockstep-hub"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .arg("--no-dashboard-link")
        .args(mode)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start lockstep-hub");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let hub_url = line.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(
        hub_url.starts_with("http://127.0.0.1:"),
        "ready line: {line:?}"
    );
    Running { child, hub_url }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Publishes and asserts a 2xx; returns the answer.
async fn publish(http: &reqwest::Client, hub_url: &str, event: &Value) -> Value {
    let res = http.post(hub_url).json(event).send().await.unwrap();
    assert!(
        res.status().is_success(),
        "publish refused: {}",
        res.status()
    );
    res.json().await.unwrap()
}

async fn context(http: &reqwest::Client, hub_url: &str, topic: &str) -> Value {
    get_json(http, &format!("{hub_url}/{topic}")).await
}

async fn subscribe(http: &reqwest::Client, hub_url: &str, topic: &str, events: &str) -> String {
    subscribe_as(http, hub_url, None, topic, events).await
}

async fn subscribe_as(
    http: &reqwest::Client,
    hub_url: &str,
    token: Option<&str>,
    topic: &str,
    events: &str,
) -> String {
    let mut req = http.post(hub_url);
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    let mut form = subscribe_form(topic, events);
    form.push(("subscriber.name", "PACS"));
    let res = req.form(&form).send().await.unwrap();
    assert_eq!(res.status(), 202);
    endpoint_of(res).await
}

/// Every event that got a 2xx is in the journal after `kill -9`; the
/// subscription comes back and a reconnecting app gets its confirmation and
/// the current context.
#[tokio::test]
async fn kill_9_mid_stream_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = start(dir.path(), port, &[]);
    let http = client();
    let topic = topic();
    let endpoint = subscribe(&http, &hub.hub_url, &topic, "Patient-open,syncerror").await;
    let mut ws = Ws::connect(&endpoint).await;
    ws.next_json().await;

    let (tx, mut acked) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (url, t, client) = (hub.hub_url.clone(), topic.clone(), http.clone());
    let stream = tokio::spawn(async move {
        for n in 0.. {
            let event = patient_open(&t, &format!("p{n}"));
            match client.post(&url).json(&event).send().await {
                Ok(res) if res.status().is_success() => {
                    let _ = tx.send(event["id"].as_str().unwrap().to_owned());
                }
                _ => return, // The hub is gone.
            }
        }
    });
    let mut ids = Vec::new();
    while ids.len() < 30 {
        ids.push(acked.recv().await.expect("publishes acknowledged"));
    }
    signal(&hub.child, "-9");
    let _ = stream.await;
    while let Ok(id) = acked.try_recv() {
        ids.push(id);
    }
    let _ = hub.child.wait();
    drop(hub);

    let journal: Vec<String> = {
        let (storage, _) = Storage::open(dir.path()).unwrap();
        storage
            .journal_after(0, 100_000)
            .unwrap()
            .into_iter()
            .map(|e| e.event_id)
            .collect()
    };
    for id in &ids {
        assert!(
            journal.contains(id),
            "acknowledged event {id} missing from the journal"
        );
    }

    let hub = start(dir.path(), port, &[]);
    let mut ws = Ws::connect(&endpoint).await;
    let confirmation = ws.next_json().await;
    assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
    let replayed = ws.next_json().await;
    assert_eq!(replayed["event"]["hub.event"], "Patient-open");
    // The current context is one of the last events the hub accepted before
    // it died (the context write may trail the journal by one).
    let at = journal
        .iter()
        .position(|id| replayed["id"] == id.as_str())
        .expect("replayed event is journaled");
    assert!(
        at + 2 >= journal.len(),
        "replayed {at} of {}",
        journal.len()
    );
    signal(&hub.child, "-TERM");
}

/// Past the recovery window the context is not restored; the reconnecting
/// app is told with a SyncError, and Get Current Context is empty.
#[tokio::test]
async fn restart_past_the_window_discards_context_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = start(dir.path(), port, &["--recovery-window-secs", "0"]);
    let http = client();
    let topic = topic();
    let endpoint = subscribe(&http, &hub.hub_url, &topic, "Patient-open,syncerror").await;
    let open = patient_open(&topic, "p-stale");
    publish(&http, &hub.hub_url, &open).await;
    signal(&hub.child, "-TERM");
    hub.child.wait().unwrap();
    drop(hub);

    let hub = start(dir.path(), port, &["--recovery-window-secs", "0"]);
    let mut ws = Ws::connect(&endpoint).await;
    assert_eq!(ws.next_json().await["hub.mode"], "subscribe");
    let notice = ws.next_json().await;
    assert_eq!(notice["event"]["hub.event"], "SyncError", "{notice}");
    let issue = &notice["event"]["context"][0]["resource"]["issue"][0];
    assert!(
        issue["diagnostics"].as_str().unwrap().contains("discarded"),
        "{issue}"
    );
    assert_eq!(issue["details"]["coding"][0]["code"], open["id"]);
    let ctx = context(&http, &hub.hub_url, &topic).await;
    assert_eq!(ctx["context.type"], "");
    signal(&hub.child, "-TERM");
}

/// A clean restart within the window brings the context back exactly.
#[tokio::test]
async fn restart_within_the_window_restores_context() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut hub = start(dir.path(), port, &[]);
    let http = client();
    let topic = topic();
    let endpoint = subscribe(
        &http,
        &hub.hub_url,
        &topic,
        "DiagnosticReport-open,syncerror",
    )
    .await;
    let open = report_open(&topic, "r1", "p1");
    let answer = publish(&http, &hub.hub_url, &open).await;
    let version = answer["event"]["event"]["context.versionId"].clone();
    signal(&hub.child, "-TERM");
    hub.child.wait().unwrap();
    drop(hub);

    let hub = start(dir.path(), port, &[]);
    let ctx = context(&http, &hub.hub_url, &topic).await;
    assert_eq!(ctx["context.type"], "DiagnosticReport");
    assert_eq!(ctx["context.versionId"], version);
    let mut ws = Ws::connect(&endpoint).await;
    ws.next_json().await;
    let replayed = ws.next_json().await;
    assert_eq!(replayed["id"], open["id"]);
    signal(&hub.child, "-TERM");
}

/// An unreadable database is moved aside and the hub serves (restored
/// from its copy of the registrations; without one it refuses to start:
/// tests/damaged_db.rs).
#[tokio::test]
async fn corrupt_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    drop(Storage::open(dir.path()).unwrap()); // leaves the copy
    std::fs::write(
        dir.path().join("lockstep.db"),
        b"this is not a database, just garbage bytes",
    )
    .unwrap();
    let hub = start(dir.path(), free_port(), &[]);
    let http = client();
    subscribe(&http, &hub.hub_url, &topic(), "Patient-open").await;
    let moved = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lockstep.db.corrupt-")
        });
    assert!(moved, "the bad file was moved aside");
    signal(&hub.child, "-TERM");
}

/// `lockstep-hub audit export` lists a scripted session.
#[tokio::test]
async fn audit_export_lists_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = start(dir.path(), free_port(), &[]);
    let http = client();
    let topic = topic();
    let endpoint = subscribe(&http, &hub.hub_url, &topic, "Patient-open").await;
    let mut ws = Ws::connect(&endpoint).await;
    ws.next_json().await;
    let open = patient_open(&topic, "p42");
    publish(&http, &hub.hub_url, &open).await;
    ws.next_event().await;
    http.get(format!("{}/{topic}", hub.hub_url))
        .send()
        .await
        .unwrap();
    let res = http
        .post(&hub.hub_url)
        .form(&unsubscribe_form(&topic, &endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 202);
    ws.closed().await;
    signal(&hub.child, "-TERM");
    hub.child.wait().unwrap();
    drop(hub);

    let out = Command::new(env!("CARGO_BIN_EXE_lockstep-hub"))
        .args(["audit", "export", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let records: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<&str> = records
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    for expected in [
        "subscribe",
        "connect",
        "publish",
        "get-context",
        "unsubscribe",
    ] {
        assert!(actions.contains(&expected), "no {expected} in {actions:?}");
    }
    let publish = records.iter().find(|r| r["action"] == "publish").unwrap();
    assert_eq!(publish["event_name"], "Patient-open");
    assert_eq!(publish["event_id"], open["id"]);
    assert_eq!(publish["resource_ids"], "Patient/p42");
    assert!(
        !serde_json::to_string(&records).unwrap().contains("urn:mrn"),
        "no identifiers in the trail"
    );
}

/// The admin API exports the same trail (issue 6), behind the admin credential.
#[tokio::test]
async fn audit_export_through_the_admin_api() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "Patient-open", "RIS").await;
    let open = patient_open(&topic, "p7");
    hub.publish_ok(&open).await;
    ws.next_event().await;
    let url = hub.url("/admin/api/audit?format=ndjson");
    assert_eq!(hub.http.get(&url).send().await.unwrap().status(), 401);
    let res = hub
        .http
        .get(&url)
        .bearer_auth(hub.hub.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let publish = records
        .iter()
        .find(|r| r["action"] == "publish")
        .expect("publish recorded");
    assert_eq!(publish["event_id"], open["id"]);
    assert!(records
        .iter()
        .any(|r| r["action"] == "subscribe" && r["subscriber_name"] == "RIS"));
    let csv = hub
        .http
        .get(hub.url("/admin/api/audit?format=csv"))
        .bearer_auth(hub.hub.admin_token())
        .send()
        .await
        .unwrap();
    assert!(csv.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/csv"));
    assert!(csv.text().await.unwrap().lines().count() > records.len() - 1);
}

/// The data folder holds live endpoint ids and patient context: the hub
/// makes it private to its user, whatever mode it was created with.
#[cfg(unix)]
#[tokio::test]
async fn data_folder_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = start(&dir, free_port(), &[]);
    subscribe(&client(), &hub.hub_url, &topic(), "Patient-open").await;
    let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "data folder mode {mode:o}");
}

/// `lockstep-hub apps remove` in another process cuts off the app's live
/// WebSocket on the running hub (it re-reads registrations every second).
#[tokio::test]
async fn cli_revocation_reaches_the_running_hub() {
    let dir = tempfile::tempdir().unwrap();
    let (client_id, secret) = apps_add(dir.path(), "Dictation");
    let hub = start_with(dir.path(), free_port(), &["--secret-store", "file"], &[]);
    let http = client();
    let base = hub.hub_url.trim_end_matches("/fhircast/STU3").to_owned();
    let token: Value = token_by_basic(&http, &format!("{base}/oauth/token"), &client_id, &secret)
        .await
        .json()
        .await
        .unwrap();
    let (access, topic) = (
        token["access_token"].as_str().unwrap(),
        token["hub.topic"].as_str().unwrap(),
    );
    let endpoint = subscribe_as(&http, &hub.hub_url, Some(access), topic, "Patient-open").await;
    let mut ws = Ws::connect(&endpoint).await;
    ws.next_json().await;
    let removed = Command::new(env!("CARGO_BIN_EXE_lockstep-hub"))
        .args(["apps", "remove", &client_id, "--secret-store", "file"])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        removed.status.success(),
        "{}",
        String::from_utf8_lossy(&removed.stderr)
    );
    let (texts, _) = ws.closed().await;
    assert_eq!(texts[0]["hub.reason"], "access revoked");
}
