//! The settings layer on a real hub (issues 7 and 9): `GET/PUT
//! /admin/api/settings` over HTTP with the admin credential, the user file
//! on disk, IT-locked keys refused; and the binary with its settings files
//! (a broken system file stops it, flags win over files, locked keys hold).

mod admin_support;
mod common;

use std::path::Path;

use admin_support::{admin_get, bearer};
use common::binary::HubCommand;
use common::{post_token_form, TestHub};
use lockstep_hub::settings::{Layout, Settings, SettingsFiles};
use serde_json::{json, Value};

const SYSTEM: &str =
    "grace_period_ms = 20000\nnotifications = false\nlocked = [\"notifications\", \"port\"]\n";
const USER: &str = "ack_timeout_ms = 4000\n";

/// A hub started as the binary starts one: files loaded, applied to the
/// config, attached for the admin API.
async fn hub_with_files(
    dir: &Path,
    system: &str,
    user: &str,
    from_flags: Vec<&'static str>,
) -> (TestHub, Layout) {
    let layout = Layout {
        system: dir.join("system.toml"),
        user: dir.join("user").join("lockstep.toml"),
    };
    std::fs::write(&layout.system, system).unwrap();
    std::fs::create_dir_all(layout.user.parent().unwrap()).unwrap();
    std::fs::write(&layout.user, user).unwrap();
    let settings = Settings::load(&layout).expect("valid files");
    let files = SettingsFiles {
        layout: layout.clone(),
        from_flags,
    };
    let hub = TestHub::start_with(move |c| {
        let port = c.listen.port(); // keep port 0: the file's port is for real starts
        settings.apply(c);
        c.listen.set_port(port);
        c.settings_files = Some(files);
    })
    .await;
    (hub, layout)
}

async fn get(hub: &TestHub) -> Value {
    admin_get(hub, "/admin/api/settings").await
}

async fn put(hub: &TestHub, body: &str) -> (u16, Value) {
    let res = hub
        .http
        .put(hub.url("/admin/api/settings"))
        .header("authorization", bearer(hub))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

/// PUTs `body`, asserts 200; the answer.
async fn put_ok(hub: &TestHub, body: &str) -> Value {
    let (status, answer) = put(hub, body).await;
    assert_eq!(status, 200, "{answer}");
    answer
}

/// The keys listed in `answer[field]`, sorted.
fn sorted_keys<'a>(answer: &'a Value, field: &str) -> Vec<&'a str> {
    let mut keys: Vec<&str> = answer[field]
        .as_array()
        .unwrap_or_else(|| panic!("no {field} list in {answer}"))
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    keys.sort();
    keys
}

fn item<'a>(answer: &'a Value, key: &str) -> &'a Value {
    answer["settings"]
        .as_array()
        .expect("settings list")
        .iter()
        .find(|i| i["key"] == key)
        .unwrap_or_else(|| panic!("no {key} in {answer}"))
}

#[tokio::test]
async fn get_shows_each_value_with_its_source_and_what_it_manages() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, layout) = hub_with_files(dir.path(), SYSTEM, USER, vec![]).await;
    let s = get(&hub).await;
    assert_eq!(s["editable"], true);
    assert_eq!(s["files"]["user"], layout.user.display().to_string());
    assert_eq!(s["files"]["system"], layout.system.display().to_string());

    let ack = item(&s, "ack_timeout_ms");
    assert_eq!(
        (&ack["value"], &ack["source"], &ack["managed"]),
        (&json!(4000), &json!("user"), &json!(false))
    );
    assert_eq!(ack["running"], 4000, "the hub runs with the file's value");
    assert_eq!(ack["pendingRestart"], false);
    let grace = item(&s, "grace_period_ms");
    assert_eq!(
        (&grace["value"], &grace["source"]),
        (&json!(20000), &json!("system"))
    );
    let notifications = item(&s, "notifications");
    assert_eq!(
        (
            &notifications["value"],
            &notifications["managed"],
            &notifications["readBy"]
        ),
        (&json!(false), &json!(true), &json!("tray"))
    );
    assert_eq!(item(&s, "port")["managed"], true);
    let tls = item(&s, "tls");
    assert_eq!(
        (&tls["value"], &tls["source"]),
        (&json!(false), &json!("default"))
    );
    assert_eq!(item(&s, "ack_timeout_ms")["label"], "ACK timeout");
}

#[tokio::test]
async fn put_writes_the_user_file_applies_timeouts_now_and_says_what_needs_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, layout) = hub_with_files(dir.path(), SYSTEM, USER, vec![]).await;
    let answer = put_ok(
        &hub,
        r#"{"ack_timeout_ms": 2500, "allowed_origins": ["https://viewer.example.org"], "start_at_login": false}"#,
    ).await;
    assert_eq!(
        sorted_keys(&answer, "restartNeeded"),
        ["allowed_origins", "start_at_login"]
    );
    assert_eq!(answer["appliedNow"], json!(["ack_timeout_ms"]));

    let text = std::fs::read_to_string(&layout.user).unwrap();
    assert!(text.contains("ack_timeout_ms = 2500"), "{text}");
    assert!(text.contains("https://viewer.example.org"), "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&layout.user)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "only the user reads the file");
    }

    // Read back: the ACK timeout is in use; the origins wait for a restart.
    let s = get(&hub).await;
    let ack = item(&s, "ack_timeout_ms");
    assert_eq!(
        (&ack["value"], &ack["running"]),
        (&json!(2500), &json!(2500))
    );
    assert_eq!(ack["pendingRestart"], false);
    assert_eq!(hub.hub.ack_timeout().as_millis(), 2500);
    let origins = item(&s, "allowed_origins");
    assert_eq!(origins["running"], json!([]));
    assert_eq!(origins["pendingRestart"], true);
    assert!(hub.hub.config().allowed_origins.is_empty());

    // null removes the key from the user file: the system value applies again.
    let answer = put_ok(&hub, r#"{"grace_period_ms": null, "ack_timeout_ms": 4000}"#).await;
    assert_eq!(item(&answer, "grace_period_ms")["source"], "system");
    assert_eq!(answer["restartNeeded"], json!([]));
    assert_eq!(
        sorted_keys(&answer, "appliedNow"),
        ["ack_timeout_ms", "grace_period_ms"]
    );
    assert_eq!(hub.hub.grace_period().as_millis(), 20_000);
    assert_eq!(hub.hub.ack_timeout().as_millis(), 4000);
}

/// 2-5: the ACK timeout saved from the dashboard is the one the next event
/// is held to. The hub starts with 60 s; after the change, a silent app is
/// reported within the test's 5 s wait, with the new timeout in the
/// diagnostics.
#[tokio::test]
async fn a_saved_ack_timeout_applies_to_the_next_event() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _) = hub_with_files(dir.path(), "", "ack_timeout_ms = 60000\n", vec![]).await;
    put_ok(&hub, r#"{"ack_timeout_ms": 300}"#).await;
    let topic = common::topic();
    let mut silent = hub.join(&topic, "Patient-open", "Silent App").await;
    let mut observer = hub.join(&topic, "SyncError", "Observer").await;
    let open = common::patient_open(&topic, "p1");
    hub.publish_ok(&open).await;
    assert_eq!(silent.next_json().await["id"], open["id"]); // never ACKed
    let sync = observer.next_json().await;
    let diagnostics = &sync["event"]["context"][0]["resource"]["issue"][0]["diagnostics"];
    assert!(
        diagnostics
            .as_str()
            .is_some_and(|d| d.ends_with("no ACK within 300 ms")),
        "{sync}"
    );
}

/// A flag typed at start keeps winning over a saved value, live too.
#[tokio::test]
async fn a_flag_set_timeout_is_not_changed_live() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _) = hub_with_files(dir.path(), "", USER, vec!["ack_timeout_ms"]).await;
    let answer = put_ok(&hub, r#"{"ack_timeout_ms": 300}"#).await;
    assert_eq!(answer["overriddenByFlag"], json!(["ack_timeout_ms"]));
    assert_eq!(answer["appliedNow"], json!([]));
    assert_eq!(hub.hub.ack_timeout().as_millis(), 4000);
}

#[tokio::test]
async fn put_refuses_locked_keys_with_403_naming_them_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, layout) = hub_with_files(dir.path(), SYSTEM, USER, vec![]).await;
    let (status, answer) = put(
        &hub,
        r#"{"notifications": true, "port": 5000, "ack_timeout_ms": 1000}"#,
    )
    .await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(sorted_keys(&answer, "locked"), ["notifications", "port"]);
    assert!(answer["error"]
        .as_str()
        .unwrap()
        .contains("managed by your IT"));
    assert_eq!(std::fs::read_to_string(&layout.user).unwrap(), USER);
}

#[tokio::test]
async fn put_refuses_bad_input_with_400_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, layout) = hub_with_files(dir.path(), SYSTEM, USER, vec![]).await;
    for body in [
        r#"{"ack_timeout_ms": -5}"#,
        r#"{"ack_timeout_ms": "soon"}"#,
        r#"{"ack_timeout_ms": 99999999999}"#,
        r#"{"no_such_key": 1}"#,
        r#"{"address": "not an ip"}"#,
        r#"{"allowed_origins": ["javascript:alert(1)"]}"#,
        r#"{"locked": ["ack_timeout_ms"]}"#,
        r#"[1, 2]"#,
        r#"not json"#,
    ] {
        let (status, answer) = put(&hub, body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert!(answer["error"].is_string(), "{body}: {answer}");
    }
    assert_eq!(std::fs::read_to_string(&layout.user).unwrap(), USER);
}

#[tokio::test]
async fn a_flag_wins_over_the_files_and_the_answer_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _) = hub_with_files(dir.path(), SYSTEM, USER, vec!["grace_period_ms"]).await;
    let s = get(&hub).await;
    assert_eq!(item(&s, "grace_period_ms")["source"], "flag");
    let answer = put_ok(&hub, r#"{"grace_period_ms": 1000}"#).await;
    assert_eq!(answer["overriddenByFlag"], json!(["grace_period_ms"]));
    assert_eq!(answer["restartNeeded"], json!([]));
}

#[tokio::test]
async fn the_settings_api_needs_the_admin_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, layout) = hub_with_files(dir.path(), SYSTEM, USER, vec![]).await;
    let res = hub
        .http
        .get(hub.url("/admin/api/settings"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let res = hub
        .http
        .put(hub.url("/admin/api/settings"))
        .header("authorization", "Bearer not-the-token")
        .body(r#"{"ack_timeout_ms": 1000}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    assert_eq!(std::fs::read_to_string(&layout.user).unwrap(), USER);
}

#[tokio::test]
async fn a_hub_without_settings_files_shows_its_values_read_only() {
    let hub = TestHub::start().await;
    let s = get(&hub).await;
    assert_eq!(s["editable"], false);
    assert_eq!(s["files"], Value::Null);
    assert_eq!(item(&s, "ack_timeout_ms")["value"], 10_000);
    let (status, _) = put(&hub, r#"{"ack_timeout_ms": 1000}"#).await;
    assert_eq!(status, 409);
}

/// The binary with `args`, its data folder and settings files
/// (`system.toml`, `user.toml`) in `dir`, secrets in memory.
fn binary(dir: &Path, args: &[&str]) -> HubCommand {
    HubCommand::new(&dir.join("data"))
        .args(args)
        .args(["--secret-store", "memory", "--no-dashboard-link"])
        .arg("--system-config")
        .arg(dir.join("system.toml"))
        .arg("--config")
        .arg(dir.join("user.toml"))
}

/// Runs the binary to its ready line (or its exit); returns stdout's first
/// line or the exit code, and stderr so far.
async fn run_binary(dir: &Path, args: &[&str]) -> (Result<String, i32>, String) {
    match binary(dir, args).start_or_exit().await {
        Ok(mut hub) => {
            hub.kill().await;
            let stderr = hub.log_to_end().await;
            (Ok(hub.ready.clone()), stderr)
        }
        Err((status, stderr)) => (Err(status.code().unwrap_or(-1)), stderr),
    }
}

#[tokio::test]
async fn the_binary_refuses_a_broken_system_file_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("system.toml"),
        "port = 4800\nack_timeout_ms = \"soon\"\n",
    )
    .unwrap();
    let (outcome, stderr) = run_binary(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    assert_eq!(outcome, Err(2), "{stderr}");
    assert!(stderr.contains("system.toml"), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(stderr.contains("managed by your IT"), "{stderr}");
}

#[tokio::test]
async fn the_binary_ignores_a_broken_user_file_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user.toml"), "ack_timeout_ms = [\n").unwrap();
    let (outcome, stderr) = run_binary(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    let ready = outcome.unwrap_or_else(|code| panic!("exited {code}: {stderr}"));
    assert!(ready.starts_with("Lockstep hub ready at"), "{ready}");
    assert!(stderr.contains("ignoring your settings file"), "{stderr}");
    assert!(stderr.contains("user.toml"), "{stderr}");
}

#[tokio::test]
async fn the_binary_listens_where_the_files_say_unless_a_flag_says_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    // A free port for the system file to name.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::write(
        dir.path().join("system.toml"),
        format!("port = {port}\nlocked = [\"port\"]\n"),
    )
    .unwrap();
    // The user's port is ignored: IT locked it.
    std::fs::write(dir.path().join("user.toml"), "port = 1\n").unwrap();
    let (outcome, stderr) = run_binary(dir.path(), &[]).await;
    let ready = outcome.unwrap_or_else(|code| panic!("exited {code}: {stderr}"));
    assert!(
        ready.contains(&format!("127.0.0.1:{port}/")),
        "{ready} ({stderr})"
    );
    assert!(stderr.contains("port is managed by your IT"), "{stderr}");

    // A typed flag wins, even over a locked key.
    let (outcome, stderr) = run_binary(dir.path(), &["--listen", "127.0.0.1:0"]).await;
    let ready = outcome.unwrap_or_else(|code| panic!("exited {code}: {stderr}"));
    assert!(!ready.contains(&format!(":{port}/")), "{ready}");

    // An address from a file is checked like --listen: loopback only.
    std::fs::write(dir.path().join("user.toml"), "address = \"0.0.0.0\"\n").unwrap();
    let (outcome, stderr) = run_binary(dir.path(), &[]).await;
    assert_eq!(outcome, Err(2), "{stderr}");
    assert!(stderr.contains("not loopback"), "{stderr}");
}

/// Issue 9: an app IT lists in the system file can get a token with the
/// secret from the file, on a hub with authorization on; the secret never
/// appears in the logs.
#[tokio::test]
async fn an_app_from_the_system_file_gets_a_token_with_its_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "it-deployed-secret-0123456789abcdefghijkl";
    std::fs::write(
        dir.path().join("system.toml"),
        format!(
            "[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
        ),
    )
    .unwrap();
    let mut hub = binary(dir.path(), &["--listen", "127.0.0.1:0", "--log", "debug"])
        .start()
        .await;
    let base = hub.base_url();
    let (http, token_url) = (
        lockstep_hub::tls::http_client().build().unwrap(),
        format!("{base}/oauth/token"),
    );
    let form = |secret| {
        [
            ("grant_type", "client_credentials"),
            ("client_id", "ris"),
            ("client_secret", secret),
        ]
    };
    let res = post_token_form(&http, &token_url, &form(secret)).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert!(body["access_token"].is_string(), "{body}");
    let wrong = post_token_form(&http, &token_url, &form("wrong-secret")).await;
    assert_eq!(wrong.status(), 401);

    hub.kill().await;
    let stderr = hub.log_to_end().await;
    assert!(stderr.contains("registered app ris"), "{stderr}");
    assert!(!stderr.contains(secret), "the secret is never logged");
}
