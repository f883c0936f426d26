//! The secret stores for real (issue 5): the OS keyring (a real Secret
//! Service, checked from outside with `secret-tool`) and the 0600 file
//! store of `--secret-store file`.
//!
//! The keyring tests need a Secret Service that is unlocked and private to
//! the run, so they skip (with a notice) unless `LOCKSTEP_KEYRING_TEST=1`;
//! `scripts/keyring-test` starts a throwaway gnome-keyring under
//! `dbus-run-session` and sets it. The file-store test always runs.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use common::*;
use lockstep_hub::auth::store::{KeyringStore, SecretStore};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// True when the real-keyring tests should run; otherwise prints why not.
fn keyring_test_enabled(test: &str) -> bool {
    if std::env::var("LOCKSTEP_KEYRING_TEST").as_deref() == Ok("1") {
        return true;
    }
    // Straight to stderr: libtest captures `eprintln!`, and a skip must show.
    let _ = writeln!(
        std::io::stderr(),
        "note: {test} skipped: set LOCKSTEP_KEYRING_TEST=1 to run it against a real Secret \
         Service (scripts/keyring-test starts a throwaway one)"
    );
    false
}

/// A keyring service name no other run uses.
fn unique_service() -> String {
    format!("lockstep-test-{}", uuid::Uuid::new_v4())
}

/// What the Secret Service itself holds for `(service, name)`, read with
/// `secret-tool` (libsecret), not through the `keyring` crate.
fn secret_tool_lookup(service: &str, name: &str) -> Option<String> {
    let out = Command::new("secret-tool")
        .args(["lookup", "service", service, "username", name])
        .output()
        .expect("secret-tool runs (Debian package libsecret-tools)");
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).expect("UTF-8 secret"))
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn keyring_store_round_trips() {
    if !keyring_test_enabled("keyring_store_round_trips") {
        return;
    }
    let service = unique_service();
    let store = KeyringStore::open(&service).expect("a Secret Service answers");
    assert_eq!(store.describe(), "OS keyring");

    assert_eq!(store.get("absent").unwrap(), None);
    store.set("alpha", "first").unwrap();
    assert_eq!(store.get("alpha").unwrap().as_deref(), Some("first"));
    assert_eq!(
        secret_tool_lookup(&service, "alpha").as_deref(),
        Some("first"),
        "the entry is in the Secret Service, filed under (service, name)"
    );
    store.set("alpha", "second").unwrap();
    assert_eq!(store.get("alpha").unwrap().as_deref(), Some("second"));

    let long = format!("ünïcødé 🔑 {}", "x".repeat(4096));
    store.set("beta", &long).unwrap();
    assert_eq!(store.get("beta").unwrap(), Some(long.clone()));

    // A second handle on the same service (another process, a restart)
    // sees the same entries.
    let again = KeyringStore::open(&service).unwrap();
    assert_eq!(again.get("alpha").unwrap().as_deref(), Some("second"));

    store.delete("alpha").unwrap();
    assert_eq!(store.get("alpha").unwrap(), None);
    assert_eq!(secret_tool_lookup(&service, "alpha"), None);
    store.delete("alpha").unwrap(); // deleting what is gone is fine
    assert_eq!(store.get("beta").unwrap(), Some(long));
    store.delete("beta").unwrap();
    assert_eq!(again.get("beta").unwrap(), None);

    // Another service's entries are separate.
    let other = KeyringStore::open(&unique_service()).unwrap();
    store.set("gamma", "mine").unwrap();
    assert_eq!(other.get("gamma").unwrap(), None);
    store.delete("gamma").unwrap();
}

/// The hub's signing key and an app's secret hash live in the keyring and
/// nowhere on disk; after a restart (a new hub, a new keyring handle, the
/// same data folder) the app gets a token with the same secret, and a token
/// issued before the restart is still honoured.
#[tokio::test]
async fn hub_keeps_its_secrets_in_the_keyring_across_a_restart() {
    if !keyring_test_enabled("hub_keeps_its_secrets_in_the_keyring_across_a_restart") {
        return;
    }
    let service = unique_service();
    let data = tempfile::tempdir().unwrap();
    let open = |service: &str| -> Arc<dyn SecretStore> {
        Arc::new(KeyringStore::open(service).expect("a Secret Service answers"))
    };

    let store = open(&service);
    let hub = TestHub::start_in(data.path(), |c| {
        c.no_auth = false;
        c.secret_store = store;
    })
    .await;
    let (app, secret) = hub
        .hub
        .apps()
        .register(
            "Keyring RIS",
            "fhircast/*.read fhircast/*.write",
            Vec::new(),
        )
        .expect("register");

    let stored_hash = secret_tool_lookup(&service, &format!("client-secret:{}", app.client_id))
        .expect("the client secret's hash is in the Secret Service");
    assert_eq!(stored_hash, sha256_hex(&secret), "only the hash is kept");
    let signing_key = secret_tool_lookup(&service, "token-signing-key")
        .expect("the signing key is in the Secret Service");
    assert!(
        signing_key.len() >= 43,
        "a 256-bit key, base64: {signing_key:?}"
    );

    let res = hub.token_with_secret(&app.client_id, &secret).await;
    assert_eq!(res.status(), 200);
    let first: Value = res.json().await.unwrap();
    let first_token = first["access_token"].as_str().unwrap().to_owned();
    let topic = first["hub.topic"].as_str().unwrap().to_owned();
    assert_eq!(
        hub.context_with_token(&first_token, &topic).await.status(),
        200
    );
    hub.stop().await;

    assert_no_secret_on_disk(data.path(), &[&secret, &stored_hash, &signing_key]);

    // Restart: nothing carried over in memory.
    let hub = TestHub::start_in(data.path(), |c| {
        c.no_auth = false;
        c.secret_store = open(&service);
    })
    .await;
    let res = hub.token_with_secret(&app.client_id, &secret).await;
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let second: Value = res.json().await.unwrap();
    assert_eq!(second["hub.topic"], topic.as_str(), "same session topic");
    let second_token = second["access_token"].as_str().unwrap();
    assert_eq!(
        hub.context_with_token(second_token, &topic).await.status(),
        200
    );
    assert_eq!(
        hub.context_with_token(&first_token, &topic).await.status(),
        200,
        "the signing key survived the restart, so earlier tokens still verify"
    );
    let wrong = hub
        .token_with_secret(&app.client_id, &format!("{secret}x"))
        .await;
    assert_eq!(wrong.status(), 401);
    assert_eq!(
        secret_tool_lookup(&service, "token-signing-key").as_deref(),
        Some(signing_key.as_str()),
        "the restarted hub reused the key rather than making a new one"
    );

    // Revoking the app deletes its secret from the keyring.
    hub.hub.apps().revoke(&app.client_id).unwrap();
    assert_eq!(
        secret_tool_lookup(&service, &format!("client-secret:{}", app.client_id)),
        None
    );
    assert_eq!(
        hub.token_with_secret(&app.client_id, &secret)
            .await
            .status(),
        401
    );
    hub.stop().await;

    let cleanup = open(&service);
    cleanup.delete("token-signing-key").unwrap();
    assert_eq!(secret_tool_lookup(&service, "token-signing-key"), None);
}

/// No file under `dir` contains any of `needles`.
fn assert_no_secret_on_disk(dir: &Path, needles: &[&str]) {
    for entry in common::files_under(dir) {
        let bytes = std::fs::read(&entry).unwrap();
        for needle in needles {
            assert!(
                !common::bytes_contain(&bytes, needle),
                "{} holds a secret",
                entry.display()
            );
        }
    }
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `--secret-store file` keeps secrets in `secrets.json`, readable by its
/// owner only, and the hash of a client secret rather than the secret.
#[test]
fn file_store_is_owner_only_and_holds_no_plain_secret() {
    let data = tempfile::tempdir().unwrap();
    let (client_id, secret) = apps_add(data.path(), "File RIS");
    let secrets = data.path().join("secrets.json");
    #[cfg(unix)]
    assert_eq!(mode(&secrets), 0o600, "secrets.json must be 0600");
    let stored: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
    assert_eq!(
        stored[format!("client-secret:{client_id}")],
        sha256_hex(&secret).as_str()
    );
    // Registrations live in the database, without their secret.
    let (db, _) = lockstep_hub::storage::Storage::open(data.path()).unwrap();
    assert!(db
        .load_apps()
        .unwrap()
        .iter()
        .any(|a| a.client_id == client_id));
    drop(db);
    assert_no_secret_on_disk(
        data.path(),
        &[&secret], // secrets.json holds only the hash
    );

    // A secrets.json that someone left readable is made private again on
    // the next write (it is replaced, not rewritten in place).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (second, _) = apps_add(data.path(), "File PACS");
        assert_eq!(mode(&secrets), 0o600);
        let stored: Value = serde_json::from_slice(&std::fs::read(&secrets).unwrap()).unwrap();
        assert!(stored.get(format!("client-secret:{client_id}")).is_some());
        assert!(stored.get(format!("client-secret:{second}")).is_some());
    }
}
