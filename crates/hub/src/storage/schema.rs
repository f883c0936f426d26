//! The database file: its schema and migrations, connection settings, and
//! what happens to a file that cannot be used (it is moved aside).

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, TransactionBehavior};

use super::{read, StorageError};

/// The database file's name in the data folder.
pub const DB_FILE: &str = "lockstep.db";

/// Schema migrations: entry `i` upgrades `PRAGMA user_version` `i` to `i + 1`
/// and runs in one transaction with the version bump. A released entry never
/// changes (the migration test holds a hand-written copy of version 1); a
/// schema change is a new entry at the end. Times are Unix milliseconds.
pub const MIGRATIONS: &[&str] = &[
    // 1: the hub's state and the journal.
    "CREATE TABLE apps (
        client_id TEXT PRIMARY KEY NOT NULL,
        name TEXT NOT NULL,
        scopes TEXT NOT NULL,
        topics TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    ) STRICT;
    CREATE TABLE subscriptions (
        endpoint_id TEXT PRIMARY KEY NOT NULL,
        topic TEXT NOT NULL,
        events TEXT NOT NULL,
        subscriber_name TEXT,
        client_id TEXT,
        lease_until_unix_ms INTEGER NOT NULL,
        created_at INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE contexts (
        topic TEXT PRIMARY KEY NOT NULL,
        state_json TEXT NOT NULL,
        saved_at_unix_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE journal (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        topic TEXT NOT NULL,
        event_id TEXT NOT NULL,
        event_name TEXT NOT NULL,
        accepted_at_unix_ms INTEGER NOT NULL,
        message_json TEXT NOT NULL
    ) STRICT;
    CREATE INDEX journal_accepted_at ON journal (accepted_at_unix_ms);
    CREATE TABLE hub_meta (
        key TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    ) STRICT;",
    // 2: the audit trail.
    "CREATE TABLE audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        at_unix_ms INTEGER NOT NULL,
        action TEXT NOT NULL,
        client_id TEXT,
        subscriber_name TEXT,
        token_subject TEXT,
        topic TEXT,
        event_name TEXT,
        event_id TEXT,
        resource_ids TEXT,
        outcome TEXT NOT NULL,
        detail TEXT
    ) STRICT;
    CREATE INDEX audit_at ON audit (at_unix_ms);",
    // 3: a secret rotation invalidates the app's earlier tokens.
    "ALTER TABLE apps ADD COLUMN secret_generation INTEGER NOT NULL DEFAULT 0;",
    // 4: public keys for private_key_jwt client authentication.
    "ALTER TABLE apps ADD COLUMN jwks TEXT;
     ALTER TABLE apps ADD COLUMN jwks_url TEXT;",
    // 5: legacy webhook subscriptions survive a restart (their hub.secret
    // is in the secret store, never here).
    "ALTER TABLE subscriptions ADD COLUMN callback TEXT;",
    // 6: apps known never to send an ACK (issue 19).
    "ALTER TABLE apps ADD COLUMN acknowledges INTEGER NOT NULL DEFAULT 1;",
    // 7: a context snapshot names the last journal seq it includes; at
    // recovery the journal rows after it are replayed (issue 18). Snapshots
    // written before were written per event: they include the whole journal.
    "ALTER TABLE contexts ADD COLUMN journal_seq INTEGER NOT NULL DEFAULT 0;
     UPDATE contexts SET journal_seq = (SELECT coalesce(max(seq), 0) FROM journal);",
];

/// How long a connection waits for another one's lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection ready for the writer, and what opening it found.
pub(crate) struct Prepared {
    pub conn: Connection,
    pub upgraded_from: Option<usize>,
    pub last_alive: Option<SystemTime>,
}

/// Opens `target` (a path, or a `memdb` URI when `wal` is false), checks it,
/// upgrades its schema and reads what the report needs.
pub(crate) fn prepare(target: &Path, wal: bool) -> Result<Prepared, StorageError> {
    let mut conn = Connection::open(target)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if wal {
        // The first statement that reads the file: garbage fails here.
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(
                mode,
                "storage: WAL is not available; using journal mode {mode}"
            );
        }
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // No checkpoint inside a COMMIT (that is, on one publish's answer): the
    // writer thread runs them after answering (`writer.rs`).
    conn.pragma_update(None, "wal_autocheckpoint", 0)?;
    bound_memory(&conn)?;
    // After a checkpoint the WAL is cut back to this, rather than kept at
    // the size of the largest transaction ever written.
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    check_integrity(&conn)?;
    let upgraded_from = migrate(&mut conn)?;
    let last_alive = read::last_alive(&conn)?;
    Ok(Prepared {
        conn,
        upgraded_from,
        last_alive,
    })
}

/// A second connection for reads. `query_only` makes a write through it an
/// error: all writes go through the writer thread.
pub(crate) fn open_reader(target: &Path) -> Result<Connection, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_URI
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(target, flags)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    bound_memory(&conn)?;
    Ok(conn)
}

/// Bytes of WAL kept after a checkpoint.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

/// Each connection's page cache, in KiB (SQLite's default, stated: the
/// bound is a decision, not an accident). Journal messages of 100 KB pass
/// through it page by page; it never holds more than this.
const PAGE_CACHE_KIB: i64 = 2048;

fn bound_memory(conn: &Connection) -> Result<(), StorageError> {
    conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    Ok(())
}

pub(crate) fn check_integrity(conn: &Connection) -> Result<(), StorageError> {
    let mut stmt = conn.prepare("PRAGMA integrity_check")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    match problems.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        _ => Err(StorageError::Corrupt(problems.join("; "))),
    }
}

/// Applies the missing migrations; returns the version we started from if
/// any migration ran (`Some(0)` for a new file).
pub(crate) fn migrate(conn: &mut Connection) -> Result<Option<usize>, StorageError> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len();
    let from = match usize::try_from(found) {
        Ok(v) if v <= known => v,
        _ => return Err(StorageError::TooNew { found, known }),
    };
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(from) {
        let version = i + 1;
        let fail = |e: rusqlite::Error| StorageError::Migration {
            version,
            source: e.into(),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(fail)?;
        tx.execute_batch(sql).map_err(fail)?;
        tx.pragma_update(None, "user_version", version as i64)
            .map_err(fail)?;
        tx.commit().map_err(fail)?;
    }
    Ok((from < known).then_some(from))
}

/// Renames `path` and its `-wal`/`-shm` companions to
/// `<path>.corrupt-<unix-ts>` (plus the same suffixes, so SQLite can still
/// open the copy with its WAL for a post-mortem). Returns the new path.
/// (Closing the unusable file may already have made SQLite fold its WAL into
/// it, or drop a WAL that belongs to no database; what is left moves.)
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, StorageError> {
    let ts = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut target = PathBuf::from(format!("{}.corrupt-{ts}", path.display()));
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{}.corrupt-{ts}-{n}", path.display()));
        n += 1;
    }
    std::fs::rename(path, &target).map_err(|e| StorageError::io(path, e))?;
    for suffix in ["-wal", "-shm"] {
        let from = PathBuf::from(format!("{}{suffix}", path.display()));
        if from.exists() {
            let to = PathBuf::from(format!("{}{suffix}", target.display()));
            std::fs::rename(&from, to).map_err(|e| StorageError::io(&from, e))?;
        }
    }
    Ok(target)
}
