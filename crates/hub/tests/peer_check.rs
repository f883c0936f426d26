//! Issue 17: one user, one hub. The hub serves processes of the OS user it
//! runs as and refuses every other account's, before any HTTP is read.
//!
//! The refusal tests need a second account: run as root (the CI suite is),
//! they run `curl` as `nobody` (uid 65534); otherwise they say they are
//! skipped. `scripts/two-users-test` covers the same with two real logins
//! and the `lockstep-hub` binary.
#![cfg(unix)]

mod common;

use common::TestHub;
use lockstep_hub::storage::ExportFormat;
use serde_json::Value;

const NOBODY: u32 = 65534;
const REFUSAL: &str = "this Lockstep hub serves only the user who started it";

fn is_root() -> bool {
    // SAFETY: no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `curl` as `uid` against `urls`: the status codes and bodies, one
/// connection per URL.
async fn curl_as(uid: u32, urls: &[String]) -> Option<String> {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.uid(uid).gid(uid).arg("-sS").arg("--max-time").arg("5");
    for url in urls {
        cmd.arg("-w").arg("\n%{http_code}\n").arg(url);
    }
    let out = match cmd.output().await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: cannot run curl: {e}");
            return None;
        }
    };
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn audit_records(hub: &TestHub) -> Vec<Value> {
    let storage = hub.hub.storage().expect("a database");
    storage.flush().await.unwrap();
    let mut out = Vec::new();
    storage
        .export_audit(None, None, ExportFormat::Ndjson, &mut out)
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| {
            r["action"] == "auth-failure"
                && r["detail"]
                    .as_str()
                    .is_some_and(|d| d.starts_with("peer check"))
        })
        .collect()
}

/// The hub's own user is served with the check on (the default), over
/// HTTP and WebSocket: every other test file runs through it too.
#[tokio::test]
async fn own_user_is_served_with_the_peer_check_on() {
    let hub = TestHub::start().await;
    assert!(hub.hub.config().peer_check, "on by default");
    let res = hub
        .http
        .get(hub.url("/fhircast/STU3/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.text().await.unwrap();
    assert!(!body.contains(REFUSAL), "{body}");
    assert!(audit_records(&hub).await.is_empty());
}

/// Another account gets a 403 with a readable reason even with
/// `no_auth`, the refusal is audited, and a flood is audited a bounded
/// number of times (the rest counted).
#[tokio::test]
async fn another_user_is_refused_and_audited_with_a_bound() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let hub = TestHub::start().await; // no_auth: the check stands alone
    let Some(out) = curl_as(NOBODY, &[hub.hub_url()]).await else {
        return;
    };
    assert!(out.contains(REFUSAL), "{out}");
    assert!(out.trim_end().ends_with("403"), "{out}");
    let records = audit_records(&hub).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let detail = records[0]["detail"].as_str().unwrap();
    assert!(detail.contains(&format!("uid {NOBODY}")), "{detail}");
    assert!(records[0]["outcome"].as_str().unwrap().starts_with("403"));

    // 30 more: all refused, at most 10 audited in this 10 s window.
    let urls: Vec<String> = (0..30).map(|_| hub.hub_url()).collect();
    let out = curl_as(NOBODY, &urls).await.unwrap();
    assert_eq!(out.matches(REFUSAL).count(), 30, "{out}");
    let records = audit_records(&hub).await;
    assert_eq!(records.len(), 10, "{records:?}");

    // The hub's own user is still served.
    let res = hub
        .http
        .get(hub.url("/fhircast/STU3/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// `peer_check = false`: a site that shares one hub between accounts.
#[tokio::test]
async fn peer_check_off_serves_every_user() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let hub = TestHub::start_with(|c| c.peer_check = false).await;
    let Some(out) = curl_as(NOBODY, &[hub.url("/fhircast/STU3/x")]).await else {
        return;
    };
    assert!(!out.contains(REFUSAL), "{out}");
    assert!(out.trim_end().ends_with("200"), "{out}");
    assert!(audit_records(&hub).await.is_empty());
}

/// With `--tls` the refusal comes after the handshake, in HTTPS: the
/// client still reads the sentence, not a TLS error.
#[tokio::test]
async fn another_user_is_refused_over_tls_too() {
    if !is_root() {
        eprintln!("skipped: needs root to run a client as another user");
        return;
    }
    let hub = TestHub::start_with(|c| c.tls = true).await;
    let url = format!("https://{}/fhircast/STU3/x", hub.addr);
    let mut cmd = tokio::process::Command::new("curl");
    // -k: this test is about the refusal, not about trusting the certificate.
    cmd.uid(NOBODY)
        .gid(NOBODY)
        .args(["-sSk", "--max-time", "5", "-w", "\n%{http_code}", &url]);
    let Ok(out) = cmd.output().await else {
        eprintln!("skipped: cannot run curl");
        return;
    };
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(out.contains(REFUSAL), "{out}");
    assert!(out.ends_with("403"), "{out}");
    assert_eq!(audit_records(&hub).await.len(), 1);
}

/// The discovery file contract, with the real binary: written (0600) with
/// the hub's own port before the ready line, a second hub of the same user
/// on that port is an error (not a move), and a clean stop removes the file.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn binary_writes_the_discovery_file_and_removes_it_at_stop() {
    use std::os::unix::fs::PermissionsExt;

    use common::binary::{free_port, HubCommand};

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let binary = || {
        HubCommand::new(&dir.path().join("data"))
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args([
                "--secret-store",
                "memory",
                "--no-auth",
                "--no-dashboard-link",
            ])
            .env("HOME", dir.path())
            .env("XDG_RUNTIME_DIR", dir.path().join("run"))
    };
    let mut hub = binary().start().await;
    let ready = hub.ready.clone();
    assert!(ready.contains(&format!("127.0.0.1:{port}/")), "{ready}");

    let file = dir.path().join("run/lockstep/hub.json");
    let found: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(found["port"], port);
    assert_eq!(found["perUserPort"], false);
    assert_eq!(found["pid"], hub.pid());
    assert_eq!(
        found["hubUrl"],
        format!("http://127.0.0.1:{port}/fhircast/STU3")
    );
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // The same user again on the same port: Lockstep runs already.
    let second = binary().output().await;
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("in use by another program of yours"), "{err}");
    assert!(file.exists(), "the first hub's file stays");

    let status = hub.terminate().await;
    assert!(status.success());
    assert!(!file.exists(), "removed at a clean stop");
}

/// What the check adds to a whole connection (connect, one request, the
/// answer, close), against the same hub without it. A measurement for
/// DEPLOYMENT.md: `cargo test -p lockstep-hub --test peer_check
/// connection_cost -- --ignored --nocapture`.
#[tokio::test]
#[ignore = "a measurement, not a check"]
async fn connection_cost_with_and_without_the_peer_check() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const CONNECTIONS: u32 = 2000;
    for peer_check in [false, true, false, true] {
        let hub = TestHub::start_with(|c| c.peer_check = peer_check).await;
        let request = format!(
            "GET /fhircast/STU3/x HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            hub.addr
        );
        let start = std::time::Instant::now();
        for _ in 0..CONNECTIONS {
            let mut s = tokio::net::TcpStream::connect(hub.addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut answer = Vec::new();
            s.read_to_end(&mut answer).await.unwrap();
            assert!(answer.starts_with(b"HTTP/1.1 200"));
        }
        println!(
            "peer_check = {peer_check}: {:?} per connection",
            start.elapsed() / CONNECTIONS
        );
    }
}
