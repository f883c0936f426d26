//! The verified copy of the registrations (issue 14): `lockstep.db.backup`
//! beside `lockstep.db`, so an emptied or damaged database never silently
//! turns into a hub where every registered app gets 401.
//!
//! - **What it holds:** the `apps` table only, in a database with the same
//!   schema. Subscriptions and contexts are left out on purpose: the copy is
//!   older than the live file by construction, and an old context must never
//!   come back as the current patient; apps subscribe again.
//! - **When it is written:** at every start whose database passed its
//!   integrity check, and by the writer thread after each committed change
//!   to the registrations (including those the `apps` CLI makes).
//! - **How:** a fresh file next to it is filled, passes `PRAGMA
//!   integrity_check`, is synced, and only then renamed over the previous
//!   copy: a crash or a failed check leaves the previous copy as it was.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags};

use super::{schema, StorageError};

/// The copy's name in the data folder.
pub const BACKUP_FILE: &str = "lockstep.db.backup";

/// The tables copied. Only registrations: see the module comment.
const TABLES: &[&str] = &["apps"];

/// Writes a new verified copy of `db`'s registrations to `backup`; returns
/// how many apps it holds. `db` must be a database at the current schema.
pub(crate) fn write(db: &Path, backup: &Path) -> Result<usize, StorageError> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // Unique per process and call: the hub and `lockstep-hub apps` may
    // write at once; the last rename wins with a complete file either way.
    let tmp = PathBuf::from(format!(
        "{}.tmp-{}-{}",
        backup.display(),
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let result = fill(db, &tmp).and_then(|apps| {
        std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| StorageError::io(&tmp, e))?;
        std::fs::rename(&tmp, backup).map_err(|e| StorageError::io(backup, e))?;
        Ok(apps)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

fn fill(db: &Path, tmp: &Path) -> Result<usize, StorageError> {
    let mut conn = Connection::open(tmp)?;
    schema::migrate(&mut conn)?;
    conn.execute("ATTACH DATABASE ?1 AS live", [db.to_string_lossy()])?;
    let tx = conn.transaction()?;
    for table in TABLES {
        // Same migrations on both sides: the columns are in the same order.
        tx.execute_batch(&format!(
            "INSERT INTO main.{table} SELECT * FROM live.{table};"
        ))?;
    }
    tx.commit()?;
    conn.execute_batch("DETACH DATABASE live")?;
    schema::check_integrity(&conn)?;
    let apps: i64 = conn.query_row("SELECT count(*) FROM apps", [], |r| r.get(0))?;
    Ok(apps.max(0) as usize)
}

/// A copy that can be restored: it opens, passes its integrity check, is
/// not from a newer Lockstep, and has an `apps` table. Returns how many
/// apps it holds, or why it cannot be used.
pub(crate) fn verify(backup: &Path) -> Result<usize, String> {
    if !backup.exists() {
        return Err(format!("there is no {}", backup.display()));
    }
    let check = || -> Result<usize, StorageError> {
        let conn = Connection::open_with_flags(backup, OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        schema::check_integrity(&conn)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if usize::try_from(version).map_or(true, |v| v > schema::MIGRATIONS.len()) {
            return Err(StorageError::TooNew {
                found: version,
                known: schema::MIGRATIONS.len(),
            });
        }
        let apps: i64 = conn.query_row("SELECT count(*) FROM apps", [], |r| r.get(0))?;
        Ok(apps.max(0) as usize)
    };
    check().map_err(|e| format!("{} cannot be used: {e}", backup.display()))
}

/// How many apps a database that failed to open still shows, if its `apps`
/// table can be read at all. `Err` means nobody can tell.
pub(crate) fn apps_in_damaged(db: &Path) -> Result<usize, StorageError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(db, flags)?;
    let apps: i64 = conn.query_row("SELECT count(*) FROM apps", [], |r| r.get(0))?;
    Ok(apps.max(0) as usize)
}

/// Puts a copy of `backup` in place of `db` (which is gone or moved aside):
/// copied to a temporary name first, so a crash never leaves half a file
/// under the database's name.
pub(crate) fn restore(backup: &Path, db: &Path) -> Result<(), StorageError> {
    let tmp = PathBuf::from(format!("{}.restoring", db.display()));
    std::fs::copy(backup, &tmp).map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| StorageError::io(&tmp, e))?;
    std::fs::rename(&tmp, db).map_err(|e| StorageError::io(db, e))
}
