//! Opening the database: `last_alive` across restarts, files that cannot
//! be used (not a database, damaged pages) moved aside with the verified
//! copy of the registrations in their place, refused without one (and a
//! newer schema refused), and migration of a version 1 file.

use std::path::Path;

use lockstep_hub::storage::{
    AuditAction, AuditRecord, ExportFormat, Storage, BACKUP_FILE, DB_FILE, MIGRATIONS,
};

use super::{at, open};

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
    // A first start leaves the verified copy of the registrations.
    drop(open(dir.path()));
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
    assert_eq!(
        report.restored_from,
        Some((dir.path().join(BACKUP_FILE), 0)),
        "restored from the copy"
    );

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

/// Without a copy of the registrations, a file that cannot be used and may
/// hold some is refused, named and left alone (issue 14): never a silent
/// empty start.
#[test]
fn a_file_that_is_not_a_database_without_a_copy_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = b"this is not a database, it is a shopping list\n".repeat(200);
    let path = dir.path().join(DB_FILE);
    std::fs::write(&path, &garbage).unwrap();
    let e = Storage::open(dir.path()).err().expect("refused");
    assert!(
        matches!(e, lockstep_hub::storage::StorageError::Unrecoverable { .. }),
        "{e}"
    );
    let message = e.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("not a database"), "{message}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "left alone");
    assert!(moved_aside_files(dir.path()).is_empty());
}

/// A file from a newer Lockstep (a downgrade) is refused rather than
/// replaced: its registrations are not ours to drop.
#[test]
fn a_database_from_a_newer_lockstep_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    db.execute_batch("CREATE TABLE future (x); PRAGMA user_version = 99;")
        .unwrap();
    drop(db);
    let e = Storage::open(dir.path()).err().expect("refused");
    assert!(e.to_string().contains("schema version 99"), "{e}");
    assert!(moved_aside_files(dir.path()).is_empty());
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
    storage.audit(AuditRecord::new(AuditAction::Connect, "101"));
    storage.flush().await.unwrap();
    let mut out = Vec::new();
    let n = storage
        .export_audit(None, None, ExportFormat::Ndjson, &mut out)
        .unwrap();
    assert_eq!(n, 1);
    drop(storage);

    let db = rusqlite::Connection::open(dir.path().join(DB_FILE)).unwrap();
    let version: i64 = db
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, MIGRATIONS.len());
}
