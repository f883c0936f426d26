//! The storage layer on real SQLite files in temp dirs: round trips of each
//! table, the journal under concurrency and across reopening, recovery from
//! corrupt files, migrations, and (in `storage/`) the audit trail and a
//! real `kill -9` of a writing process. Writes are awaited, never slept on.

#[path = "storage/audit.rs"]
mod audit;
#[path = "storage/crash.rs"]
mod crash;

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockstep_hub::storage::{
    to_unix_ms, App, Storage, StorageError, StoredSubscription, DB_FILE, MIGRATIONS,
};
use serde_json::json;

pub fn open(dir: &Path) -> Storage {
    let (storage, report) = Storage::open(dir).expect("open storage");
    assert_eq!(report.moved_aside, None, "{report:?}");
    storage
}

/// A time with millisecond precision, as stored.
pub fn at(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

fn subscription(endpoint_id: &str, lease_ms: i64) -> StoredSubscription {
    StoredSubscription {
        endpoint_id: endpoint_id.into(),
        topic: "topic-1".into(),
        events: "Patient-open,Patient-close".into(),
        subscriber_name: Some("PACS".into()),
        client_id: None,
        lease_until: at(lease_ms),
        created_at: at(1_000),
    }
}

#[tokio::test]
async fn apps_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let mut app = App {
        client_id: "ris".into(),
        name: "The RIS".into(),
        scopes: "fhircast/Patient-open.write fhircast/*.read".into(),
        topics: vec!["topic-1".into(), "topic, with comma".into()],
        created_at: at(5_000),
        revoked_at: None,
    };
    storage.save_app(&app).await.unwrap();
    assert_eq!(storage.load_apps().unwrap(), vec![app.clone()]);

    // A second save updates everything but created_at.
    let mut changed = app.clone();
    changed.name = "RIS 2".into();
    changed.created_at = at(9_000);
    storage.save_app(&changed).await.unwrap();
    app.name = "RIS 2".into();
    assert_eq!(storage.load_apps().unwrap(), vec![app.clone()]);

    assert!(storage.revoke_app("ris", at(7_000)).await.unwrap());
    assert!(!storage.revoke_app("nobody", at(7_000)).await.unwrap());
    drop(storage);

    let storage = open(dir.path());
    app.revoked_at = Some(at(7_000));
    assert_eq!(storage.load_apps().unwrap(), vec![app]);
    assert!(storage.delete_app("ris").await.unwrap());
    assert!(!storage.delete_app("ris").await.unwrap());
    assert!(storage.load_apps().unwrap().is_empty());
}

#[tokio::test]
async fn subscriptions_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let a = subscription("a".repeat(40).as_str(), 100_000);
    let mut b = subscription("b".repeat(40).as_str(), 200_000);
    b.subscriber_name = None;
    b.client_id = Some("pacs".into());
    storage.upsert_subscription(&a).await.unwrap();
    storage.upsert_subscription(&b).await.unwrap();

    // Renewal: new lease and events, created_at kept.
    let mut renewed = a.clone();
    renewed.lease_until = at(300_000);
    renewed.events = "Patient-open".into();
    renewed.created_at = at(50_000);
    storage.upsert_subscription(&renewed).await.unwrap();
    renewed.created_at = a.created_at;

    assert!(storage.delete_subscription(&b.endpoint_id).await.unwrap());
    assert!(!storage.delete_subscription("gone").await.unwrap());
    drop(storage);

    let storage = open(dir.path());
    assert_eq!(storage.load_subscriptions().unwrap(), vec![renewed]);
}

#[tokio::test]
async fn contexts_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let before = SystemTime::now() - Duration::from_millis(1);
    let first = json!({"open": [{"anchor": "Patient/p1", "versionId": "v1"}]});
    let second = json!({"open": [{"anchor": "Patient/p2", "versionId": "v2",
                                  "content": {"entry": ["ünïcødé"]}}], "current": true});
    storage.save_contexts("t1", &first).await.unwrap();
    storage.save_contexts("t1", &second).await.unwrap();
    storage.save_contexts("t2", &first).await.unwrap();
    storage.save_contexts("t3", &first).await.unwrap();
    storage.delete_contexts("t3").await.unwrap();
    drop(storage);

    let storage = open(dir.path());
    let loaded = storage.load_contexts().unwrap();
    let topics: Vec<_> = loaded.iter().map(|(t, v, _)| (t.as_str(), v)).collect();
    assert_eq!(topics, vec![("t1", &second), ("t2", &first)]);
    for (_, _, saved_at) in &loaded {
        assert!(*saved_at >= before && *saved_at <= SystemTime::now());
    }
}

#[tokio::test]
async fn journal_seqs_increase_and_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let mut seqs = Vec::new();
    for n in 0..50 {
        let message = json!({"id": format!("e{n}"), "event": {"hub.event": "Patient-open"}});
        let seq = storage
            .append_event("t", &format!("e{n}"), "Patient-open", &message.to_string())
            .await
            .unwrap();
        seqs.push(seq);
    }
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    drop(storage);

    let storage = open(dir.path());
    let entries = storage.journal_after(0, 1000).unwrap();
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), seqs);
    for (n, e) in entries.iter().enumerate() {
        assert_eq!(e.event_id, format!("e{n}"));
        assert_eq!(e.event_name, "Patient-open");
        assert_eq!(e.topic, "t");
        let message: serde_json::Value = serde_json::from_str(&e.message_json).unwrap();
        assert_eq!(message["id"], format!("e{n}"));
    }
    // Paging, and seqs are never reused after a restart.
    assert_eq!(storage.journal_after(seqs[47], 10).unwrap().len(), 2);
    let next = storage
        .append_event("t", "e50", "Patient-close", "{}")
        .await
        .unwrap();
    assert!(next > seqs[49]);

    // Pruning by age removes the old entries only.
    let pruned = storage
        .prune_journal(SystemTime::now() + Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(pruned, 51);
    assert!(storage.journal_after(0, 10).unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_concurrent_appends_are_group_committed() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    let tasks: Vec<_> = (0..1000)
        .map(|n| {
            let storage = storage.clone();
            tokio::spawn(async move {
                let id = format!("e{n}");
                let seq = storage.append_event("t", &id, "Patient-open", "{}").await;
                (seq.unwrap(), id)
            })
        })
        .collect();
    let mut done = Vec::new();
    for task in tasks {
        done.push(task.await.unwrap());
    }
    let stats = storage.stats();
    eprintln!("1000 appends in {} commits", stats.commits);
    assert!(stats.writes >= 1000 && stats.commits <= stats.writes);
    drop(storage);

    let storage = open(dir.path());
    let mut entries = storage.journal_after(0, 2000).unwrap();
    assert_eq!(entries.len(), 1000);
    done.sort();
    entries.sort_by_key(|e| e.seq);
    for ((seq, id), entry) in done.iter().zip(&entries) {
        assert_eq!((*seq, id), (entry.seq, &entry.event_id));
    }
}

#[tokio::test]
async fn a_failed_write_is_reported_and_the_rest_of_the_batch_commits() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    storage.flush().await.unwrap();
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute_batch("DROP TABLE contexts").unwrap();
    drop(db);

    let ok = storage.append_event("t", "e1", "Patient-open", "{}");
    let bad = storage.save_contexts("t", &json!({}));
    let ok_too = storage.mark_alive(at(42_000));
    assert!(ok.await.is_ok());
    let err = bad.await.unwrap_err();
    assert!(matches!(err, StorageError::Sqlite(_)), "{err}");
    assert!(err.to_string().contains("contexts"), "{err}");
    ok_too.await.unwrap();
    assert_eq!(storage.journal_after(0, 10).unwrap().len(), 1);
    assert_eq!(storage.last_alive().unwrap(), Some(at(42_000)));
}

#[tokio::test]
async fn last_alive_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.last_alive, None);
    assert_eq!(report.upgraded_from, Some(0));
    assert_eq!(storage.last_alive().unwrap(), None);
    storage.mark_alive(at(1_700_000_000_123)).await.unwrap();
    storage.mark_alive(at(1_700_000_005_456)).await.unwrap();
    drop(storage);

    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.last_alive, Some(at(1_700_000_005_456)));
    assert_eq!(report.upgraded_from, None);
    assert_eq!(report.moved_aside, None);
    assert_eq!(storage.last_alive().unwrap(), report.last_alive);
}

#[test]
fn pending_wait_works_outside_a_runtime() {
    let storage = Storage::open_in_memory().unwrap();
    let seq = storage.append_event("t", "e1", "Patient-open", "{}").wait();
    assert_eq!(seq.unwrap(), 1);
    storage.mark_alive(at(5)).wait().unwrap();
    assert_eq!(storage.last_alive().unwrap(), Some(at(5)));
}

#[tokio::test]
async fn in_memory_storage_keeps_everything_until_dropped() {
    let storage = Storage::open_in_memory().unwrap();
    let other = Storage::open_in_memory().unwrap();
    assert_eq!(storage.path(), None);
    storage
        .upsert_subscription(&subscription("e", 1))
        .await
        .unwrap();
    storage.save_contexts("t", &json!([1])).await.unwrap();
    assert_eq!(storage.load_subscriptions().unwrap().len(), 1);
    assert_eq!(storage.load_contexts().unwrap().len(), 1);
    assert!(other.load_subscriptions().unwrap().is_empty(), "private");
}

fn moved_aside_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".corrupt-"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is not a database, it is a shopping list\n".repeat(200);
    std::fs::write(dir.path().join(DB_FILE), &garbage).unwrap();
    std::fs::write(dir.path().join(format!("{DB_FILE}-wal")), b"junk").unwrap();

    let (storage, report) = Storage::open(dir.path()).unwrap();
    let moved = report.moved_aside.clone().expect("moved aside");
    let name = moved.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("lockstep.db.corrupt-"), "{name}");
    assert_eq!(
        std::fs::read(&moved).unwrap(),
        garbage,
        "kept for a post-mortem"
    );
    // SQLite may drop a WAL that belongs to no database when it closes the
    // file; whatever is left goes aside under the same name.
    for file in moved_aside_files(dir.path()) {
        assert!([name.clone(), format!("{name}-wal"), format!("{name}-shm")].contains(&file));
    }
    let junk = std::fs::read(dir.path().join(format!("{DB_FILE}-wal"))).unwrap_or_default();
    assert_ne!(
        junk, b"junk",
        "the fresh database must not inherit the old WAL"
    );
    assert!(report
        .moved_aside_reason
        .unwrap()
        .contains("not a database"));
    assert_eq!(report.last_alive, None);

    // The fresh database works and is the one reopened next time.
    storage
        .append_event("t", "e1", "Patient-open", "{}")
        .await
        .unwrap();
    drop(storage);
    let storage = open(dir.path());
    assert_eq!(storage.journal_after(0, 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_damaged_database_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    for n in 0..2000 {
        std::mem::drop(storage.append_event(
            "t",
            &format!("e{n}"),
            "Patient-open",
            &"x".repeat(200),
        ));
    }
    storage.flush().await.unwrap();
    drop(storage);
    // Scribble over pages in the middle of the (checkpointed) file.
    let path = dir.path().join(DB_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    let len = bytes.len();
    assert!(len > 64 * 1024, "{len}");
    bytes[len / 2..len / 2 + 8192].fill(0x5a);
    std::fs::write(&path, bytes).unwrap();

    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert!(report.moved_aside.is_some(), "{report:?}");
    assert!(storage.journal_after(0, 10).unwrap().is_empty());
    storage
        .append_event("t", "e1", "Patient-open", "{}")
        .await
        .unwrap();
}

#[test]
fn a_database_from_a_newer_lockstep_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
        .unwrap();
    drop(db);
    let (_storage, report) = Storage::open(dir.path()).unwrap();
    assert!(report.moved_aside.is_some());
    assert!(report
        .moved_aside_reason
        .unwrap()
        .contains("schema version 99"));
}

/// Schema version 1 exactly as released; never edit this copy.
const V1: &str = "
    CREATE TABLE apps (client_id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,
        scopes TEXT NOT NULL, topics TEXT NOT NULL, created_at INTEGER NOT NULL,
        revoked_at INTEGER) STRICT;
    CREATE TABLE subscriptions (endpoint_id TEXT PRIMARY KEY NOT NULL, topic TEXT NOT NULL,
        events TEXT NOT NULL, subscriber_name TEXT, client_id TEXT,
        lease_until_unix_ms INTEGER NOT NULL, created_at INTEGER NOT NULL) STRICT;
    CREATE TABLE contexts (topic TEXT PRIMARY KEY NOT NULL, state_json TEXT NOT NULL,
        saved_at_unix_ms INTEGER NOT NULL) STRICT;
    CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,
        event_id TEXT NOT NULL, event_name TEXT NOT NULL,
        accepted_at_unix_ms INTEGER NOT NULL, message_json TEXT NOT NULL) STRICT;
    CREATE INDEX journal_accepted_at ON journal (accepted_at_unix_ms);
    CREATE TABLE hub_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL) STRICT;
    PRAGMA user_version = 1;";

#[tokio::test]
async fn a_version_1_database_is_upgraded_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute_batch(V1).unwrap();
    db.execute_batch(
        "INSERT INTO subscriptions VALUES ('ep1', 't', 'Patient-open', 'RIS', NULL, 99000, 1000);
         INSERT INTO journal (topic, event_id, event_name, accepted_at_unix_ms, message_json)
             VALUES ('t', 'e1', 'Patient-open', 5000, '{}');
         INSERT INTO hub_meta VALUES ('last_alive_unix_ms', '123456');",
    )
    .unwrap();
    drop(db);

    let (storage, report) = Storage::open(dir.path()).unwrap();
    assert_eq!(report.upgraded_from, Some(1));
    assert_eq!(report.moved_aside, None);
    assert_eq!(report.last_alive, Some(at(123_456)));
    assert_eq!(
        storage.load_subscriptions().unwrap()[0].lease_until,
        at(99_000)
    );
    assert_eq!(storage.journal_after(0, 10).unwrap()[0].event_id, "e1");
    // Version 2 added the audit trail.
    storage.audit(lockstep_hub::storage::AuditRecord::new(
        lockstep_hub::storage::AuditAction::Connect,
        "101",
    ));
    storage.flush().await.unwrap();
    let mut out = Vec::new();
    let n = storage
        .export_audit(
            None,
            None,
            lockstep_hub::storage::ExportFormat::Ndjson,
            &mut out,
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(storage);

    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, MIGRATIONS.len());
}

#[test]
fn times_convert_to_unix_milliseconds() {
    assert_eq!(to_unix_ms(at(1_234)), 1_234);
    assert_eq!(to_unix_ms(UNIX_EPOCH - Duration::from_millis(5)), -5);
    assert_eq!(
        lockstep_hub::storage::from_unix_ms(-5),
        UNIX_EPOCH - Duration::from_millis(5)
    );
    // Absurd values from a damaged row never panic.
    let _ = lockstep_hub::storage::from_unix_ms(i64::MIN);
    let _ = lockstep_hub::storage::from_unix_ms(i64::MAX);
}
