//! The real `lockstep-hub` binary as a child process: flags, the loopback
//! guard, the ready line, logging, and a clean shutdown on SIGTERM.

mod common;

use common::binary::{HubCommand, HubProcess};
use common::{endpoint_of, patient_open, run_to_exit, subscribe_form, topic, Ws};

/// A hub with `args` on a data folder of its own.
async fn start(dir: &tempfile::TempDir, args: &[&str]) -> HubProcess {
    HubCommand::new(dir.path()).args(args).start().await
}

/// No checklist id (command-line surface): every setting is a flag.
#[tokio::test]
async fn help_lists_every_flag() {
    let out = run_to_exit(&["--help"]).await;
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for flag in [
        "--listen",
        "--data-dir",
        "--allow-remote",
        "--allow-webhook-host",
        "--no-auth",
        "--ack-timeout-ms",
        "--grace-period-ms",
        "--lease-default-secs",
        "--lease-max-secs",
        "--max-body-bytes",
        "--queue-capacity",
        "--ping-interval-ms",
        "--log",
        "--version",
        "--help",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

/// No checklist id (command-line surface).
#[tokio::test]
async fn version_prints_the_version() {
    let out = run_to_exit(&["--version"]).await;
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("lockstep-hub"), "{text}");
}

/// Checklist 5 in spirit; hub-digest 10 (loopback only unless explicitly allowed).
#[tokio::test]
async fn non_loopback_listen_is_refused_without_allow_remote() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let out = run_to_exit(&["--listen", "0.0.0.0:0", "--no-auth", "--data-dir", data]).await;
    assert!(!out.status.success(), "{:?}", out.status);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
    assert!(out.stdout.is_empty(), "never ready");
}

/// Hub-digest 10: `--allow-remote` starts, with a warning (no checklist id).
#[tokio::test]
async fn allow_remote_starts_and_warns() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = start(
        &dir,
        &["--listen", "0.0.0.0:0", "--allow-remote", "--no-auth"],
    )
    .await;
    assert!(
        hub.ready.starts_with("Lockstep hub ready at http://"),
        "{}",
        hub.ready
    );
    let warning = hub.stderr_line("non-loopback").await;
    assert!(warning.contains("WARN"), "{warning}");
    hub.child.kill().await.unwrap();
}

async fn subscribe(http: &reqwest::Client, url: &str, topic: &str, name: &str) -> String {
    let mut form = subscribe_form(topic, "Patient-open");
    form.push(("subscriber.name", name));
    let res = http.post(url).form(&form).send().await.unwrap();
    assert_eq!(res.status(), 202);
    endpoint_of(res).await
}

/// Checklist 8, 22, 26, 41, 60; shutdown: SIGTERM closes every socket with
/// 1001 (going away) and the process exits 0; one log line per subscribe
/// and per publish.
#[tokio::test]
async fn sigterm_closes_sockets_with_1001_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = start(&dir, &["--listen", "127.0.0.1:0", "--no-auth"]).await;
    let url = hub.hub_url.clone();
    let http = lockstep_hub::tls::http_client().build().unwrap();
    let topic = topic();
    let mut apps = Vec::new();
    for name in ["RIS", "PACS"] {
        let mut ws = Ws::connect(&subscribe(&http, &url, &topic, name).await).await;
        assert_eq!(ws.next_json().await["hub.mode"], "subscribe");
        apps.push(ws);
    }
    for p in ["p1", "p2", "p3"] {
        let open = patient_open(&topic, p);
        let res = http.post(&url).json(&open).send().await.unwrap();
        assert!(res.status().is_success(), "{}", res.status());
        for ws in &mut apps {
            assert_eq!(ws.next_event().await["id"], open["id"]);
        }
    }

    let status = hub.terminate().await;
    for ws in &mut apps {
        let (texts, close) = ws.closed().await;
        assert!(texts.is_empty(), "{texts:?}");
        assert_eq!(close.map(|c| u16::from(c.code)), Some(1001), "going away");
    }
    assert_eq!(status.code(), Some(0), "{status:?}");

    let log = hub.log_to_end().await;
    let log: Vec<&str> = log.lines().collect();
    let count = |message: &str| {
        let needle = format!(": {message} ");
        log.iter().filter(|l| l.contains(&needle)).count()
    };
    assert_eq!(count("subscribed"), 2, "one line per subscribe:\n{log:#?}");
    assert_eq!(count("published"), 3, "one line per publish:\n{log:#?}");
}

/// Issue 19: `apps add --no-ack`, `apps set-ack` and `apps list` round-trip
/// the "does not acknowledge" flag through the database.
#[tokio::test]
async fn apps_cli_marks_an_app_that_never_acknowledges() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let cli = |args: &[&str]| {
        let mut all = vec!["apps"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--secret-store", "file", "--data-dir", data]);
        all.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| async move {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run_to_exit(&args).await;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    };
    let added = run(cli(&["add", "OHIF", "--no-ack"])).await;
    assert!(added.contains("acks:          no"), "{added}");
    let id = common::printed_field(&added, "client_id:");
    let listed = run(cli(&["list"])).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("\tno-ack")),
        "{listed}"
    );

    let set = run(cli(&["set-ack", &id, "true"])).await;
    assert_eq!(set.trim(), format!("{id} acknowledges"));
    let listed = run(cli(&["list"])).await;
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("\tacks")),
        "{listed}"
    );

    let args = cli(&["set-ack", "nobody", "false"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    assert!(
        !run_to_exit(&args).await.status.success(),
        "unknown app refused"
    );
}
