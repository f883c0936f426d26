//! Issue 14.4: nothing lost on a damaged database. With the real binary: an
//! app registered with `lockstep-hub apps add` still gets its token after
//! `lockstep.db` is emptied or overwritten with garbage (the registrations
//! come back from the verified copy `lockstep.db.backup`, and the log says
//! so, naming both files); with no copy either, the hub refuses to start
//! and names the file. Never a silent empty start.

mod common;

use std::path::Path;

use common::binary::{HubCommand, HubProcess};
use common::{apps_add, token_by_basic};
use lockstep_hub::storage::{Storage, BACKUP_FILE, DB_FILE};

/// Starts the hub on a free port (file secret store, as `apps_add` uses),
/// its stderr (the log) going to the file `log`.
async fn start(dir: &Path, log: &Path) -> HubProcess {
    HubCommand::new(dir)
        .args(["--listen", "127.0.0.1:0", "--secret-store", "file"])
        .arg("--no-dashboard-link")
        .stderr_to(log)
        .start()
        .await
}

async fn token_status(base: &str, client_id: &str, secret: &str) -> u16 {
    let http = lockstep_hub::tls::http_client().build().unwrap();
    token_by_basic(&http, &format!("{base}/oauth/token"), client_id, secret)
        .await
        .status()
        .as_u16()
}

/// An app registered, the hub started and stopped once: the state a
/// workstation is in when its database gets damaged.
async fn registered_install(dir: &Path) -> (String, String) {
    let (client_id, secret) = apps_add(dir, "PowerScribe");
    let log = dir.join("first.log");
    let mut hub = start(dir, &log).await;
    assert_eq!(
        token_status(&hub.base_url(), &client_id, &secret).await,
        200
    );
    // SIGTERM: a clean stop, as an installed hub gets at logout.
    hub.stop().await;
    assert!(dir.join(BACKUP_FILE).exists(), "the hub keeps a copy");
    (client_id, secret)
}

/// Damages the database with `damage`, starts the hub, and asserts the app
/// still gets its token and the log names the restore and both files.
async fn survives(damage: impl FnOnce(&Path), leaves_a_file: bool) {
    let dir = tempfile::tempdir().unwrap();
    let (client_id, secret) = registered_install(dir.path()).await;
    let db = dir.path().join(DB_FILE);
    damage(&db);

    let log = dir.path().join("second.log");
    let mut hub = start(dir.path(), &log).await;
    assert_eq!(
        token_status(&hub.base_url(), &client_id, &secret).await,
        200,
        "the registered app's token is still issued"
    );
    hub.stop().await;
    let log = std::fs::read_to_string(&log).unwrap();
    let restore = log
        .lines()
        .find(|l| l.contains("RESTORED"))
        .unwrap_or_else(|| panic!("no restore in the log:\n{log}"));
    assert!(restore.contains("ERROR"), "{restore}");
    assert!(restore.contains(&db.display().to_string()), "{restore}");
    let copy = dir.path().join(BACKUP_FILE);
    assert!(restore.contains(&copy.display().to_string()), "{restore}");
    assert!(restore.contains("1 registered app"), "{restore}");
    let kept = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("lockstep.db.corrupt-")
        });
    assert_eq!(
        kept, leaves_a_file,
        "the bad file is kept for a post-mortem"
    );

    // The restored database is the one the next start uses, quietly.
    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.restored_from, None);
    assert_eq!(storage.load_apps().unwrap()[0].client_id, client_id);
}

#[tokio::test]
async fn an_emptied_database_is_restored_from_the_copy() {
    survives(
        |db| {
            std::fs::File::options()
                .write(true)
                .open(db)
                .unwrap()
                .set_len(0)
                .unwrap();
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_database_overwritten_with_garbage_is_restored_from_the_copy() {
    survives(
        |db| {
            let len = std::fs::metadata(db).unwrap().len() as usize;
            std::fs::write(db, b"garbage! ".repeat(len / 9 + 1)).unwrap();
        },
        true,
    )
    .await;
}

#[tokio::test]
async fn a_deleted_database_is_restored_from_the_copy() {
    survives(|db| std::fs::remove_file(db).unwrap(), false).await;
}

/// No good copy and a file that may hold registrations: the hub exits
/// non-zero, names the file, says what to do, and leaves the file alone.
#[tokio::test]
async fn without_a_copy_the_hub_refuses_to_start_and_names_the_file() {
    for damage in ["truncate", "garbage", "bad copy"] {
        let dir = tempfile::tempdir().unwrap();
        registered_install(dir.path()).await;
        let db = dir.path().join(DB_FILE);
        let copy = dir.path().join(BACKUP_FILE);
        match damage {
            "truncate" => std::fs::write(&db, b"").unwrap(),
            _ => std::fs::write(&db, b"garbage! ".repeat(1000)).unwrap(),
        }
        match damage {
            "bad copy" => std::fs::write(&copy, b"not a database either").unwrap(),
            _ => std::fs::remove_file(&copy).unwrap(),
        }
        let before = std::fs::read(&db).unwrap();
        let out = HubCommand::new(dir.path())
            .args(["--listen", "127.0.0.1:0", "--secret-store", "file"])
            .output()
            .await;
        assert!(!out.status.success(), "{damage}: the hub must not start");
        assert!(out.stdout.is_empty(), "{damage}: no ready line");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&db.display().to_string()),
            "{damage}: {stderr}"
        );
        assert!(stderr.contains("registered again"), "{damage}: {stderr}");
        assert_eq!(std::fs::read(&db).unwrap(), before, "{damage}: untouched");
    }
}

/// A new install (no database, no copy) starts empty as always, and the
/// `apps` CLI refreshes the copy after every change it makes.
#[tokio::test]
async fn a_new_install_starts_empty_and_the_cli_keeps_the_copy_current() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.moved_aside, None);
    assert_eq!(report.restored_from, None);
    assert!(storage.load_apps().unwrap().is_empty());
    drop(storage);

    let (first, _) = apps_add(dir.path(), "RIS");
    let (second, _) = apps_add(dir.path(), "PACS");
    std::fs::remove_file(dir.path().join(DB_FILE)).unwrap();
    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.restored_from.as_ref().map(|r| r.1), Some(2));
    let ids: Vec<String> = storage
        .load_apps()
        .unwrap()
        .into_iter()
        .map(|a| a.client_id)
        .collect();
    assert_eq!(ids, [first, second]);
}
