//! `StorageError`: everything that can go wrong in the storage layer, as a
//! value. Errors are `Clone` (shared by `Arc`) because one failed commit is
//! reported to every caller whose write was in that batch.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StorageError {
    /// SQLite refused an operation (disk full, I/O error, bad SQL...).
    #[error("database error: {0}")]
    Sqlite(Arc<rusqlite::Error>),
    /// A file or folder of the data directory could not be used.
    #[error("cannot use {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: Arc<io::Error>,
    },
    /// The audit export could not be written to its destination.
    #[error("writing the audit export failed: {0}")]
    Export(Arc<io::Error>),
    /// `PRAGMA integrity_check` found damage.
    #[error("the database is damaged: {0}")]
    Corrupt(String),
    /// The file was written by a newer Lockstep with a schema we don't know.
    #[error("the database has schema version {found}; this Lockstep knows up to {known}")]
    TooNew { found: i64, known: usize },
    /// Migration to `version` failed.
    #[error("upgrading the database to schema version {version} failed: {source}")]
    Migration {
        version: usize,
        source: Arc<rusqlite::Error>,
    },
    /// A write was in a transaction that SQLite rolled back because a later
    /// write in the same batch failed badly (e.g. the disk is full).
    /// (The message of the error that caused it.)
    #[error("the write was rolled back: {0}")]
    RolledBack(String),
    /// The database cannot be used, it may hold registrations, and there is
    /// no good copy to restore them from: the hub must not start empty.
    #[error(
        "{} cannot be used ({reason}) and there is no good copy of the registered apps ({no_backup}). \
         Lockstep does not start, so that no registered app is silently lost. Put back lockstep.db \
         from your own backups, or move {} away to start with an empty database (every app must then \
         be registered again)",
        path.display(),
        path.display()
    )]
    Unrecoverable {
        path: PathBuf,
        reason: String,
        no_backup: String,
    },
    /// The writer thread is gone (the storage was closed or it crashed).
    #[error("the storage is closed")]
    Closed,
}

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Sqlite(Arc::new(e))
    }
}

impl StorageError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        StorageError::Io {
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// Another connection (another Lockstep?) holds the database locked:
    /// the file is fine and must not be moved aside.
    pub fn is_busy(&self) -> bool {
        let e = match self {
            StorageError::Sqlite(e) | StorageError::Migration { source: e, .. } => e,
            _ => return false,
        };
        matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}
