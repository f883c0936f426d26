//! Durable state: registered apps, subscriptions, each topic's open
//! contexts, the journal of accepted events, the audit trail, and when the
//! hub was last alive. One SQLite file, `lockstep.db`, in the data folder.
//!
//! - **Durability.** WAL mode with `synchronous = NORMAL`: a write whose
//!   [`Pending`] resolved is committed to the WAL file, so it survives the
//!   process dying at any point (crash, `kill -9`). A power cut or OS crash
//!   may lose the last moments of commits (not yet synced by a checkpoint)
//!   but never corrupts the file.
//! - **Writes** go to one writer thread (`writer.rs`) that commits whatever
//!   is queued in one transaction (group commit) and then answers each
//!   caller. The write methods enqueue *when called*, synchronously, so their
//!   order is the call order (call them under the hub's lock to keep the
//!   journal in publish order), and return a [`Pending`] to `.await` (or
//!   [`Pending::wait`] outside async code) once the lock is dropped.
//! - **Reads** use a second connection behind a std `Mutex` (short,
//!   synchronous queries; never held across `.await`). They see every write
//!   whose `Pending` has resolved.
//! - **Opening** (`schema.rs`) applies the schema migrations. A file that is
//!   missing, empty (0 bytes), not a database, fails `PRAGMA
//!   integrity_check`, or cannot be migrated is moved aside and the
//!   registrations come back from the verified copy `lockstep.db.backup`
//!   (`backup.rs`), with an ERROR naming both files. Without a good copy
//!   the hub starts empty only if the bad file shows no registered app;
//!   otherwise opening fails ([`StorageError::Unrecoverable`]) and the hub
//!   does not start: never a silent empty start ([`OpenReport`]).
//! - **Audit** (`audit.rs`): fire-and-forget records, export, pruning, and
//!   [`resource_ids`], the patient-data rule.
//!
//! Nothing secret is stored: app secrets live in the OS keyring.

mod audit;
mod backup;
mod error;
mod read;
mod records;
mod schema;
mod writer;

use std::collections::HashMap;
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{JoinHandle, Thread};
use std::time::SystemTime;

use rusqlite::Connection;
use serde_json::Value;
use tokio::sync::oneshot;

pub use audit::{resource_ids, AuditAction, AuditRecord, ExportFormat};
pub use backup::BACKUP_FILE;
pub use error::StorageError;
pub use records::{
    from_unix_ms, to_unix_ms, App, ContextSnapshot, JournalEntry, StoredSubscription, WriterStats,
};
pub use schema::{DB_FILE, MIGRATIONS};

use writer::{Op, Request};

/// A handle on the storage; clones share it. When the last clone is dropped
/// the writer thread finishes the queued writes and the files are closed
/// (the drop waits for that).
#[derive(Clone)]
pub struct Storage {
    inner: Arc<Inner>,
}

struct Inner {
    queue: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
    reader: Mutex<Connection>,
    stats: Arc<writer::Stats>,
    path: Option<PathBuf>,
    /// The journal's size bound in bytes; 0 until set (no bound).
    journal_cap: Arc<AtomicU64>,
    /// Per topic: when its contexts were last saved and how many changes
    /// since (coalesced snapshots, issue 18).
    snapshot_clocks: Mutex<HashMap<String, SnapshotClock>>,
}

/// A topic's contexts are saved at least every this long while they change.
pub const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_millis(200);
/// ... and at least every this many changes: the journal tail replayed at
/// recovery is never longer.
pub const SNAPSHOT_EVERY_EVENTS: u32 = 64;

/// ... and before the unsaved changes' journal rows reach this many bytes:
/// pruning keeps them, so this bounds what the journal holds beyond its
/// size bound (per topic with unsaved changes).
pub const SNAPSHOT_EVERY_BYTES: usize = 256 * 1024;

struct SnapshotClock {
    saved_at: std::time::Instant,
    unsaved: u32,
    unsaved_bytes: usize,
}

impl SnapshotClock {
    fn saved(at: std::time::Instant) -> SnapshotClock {
        SnapshotClock {
            saved_at: at,
            unsaved: 0,
            unsaved_bytes: 0,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

/// What [`Storage::open`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Where an unusable database file was moved.
    pub moved_aside: Option<PathBuf>,
    /// Why it was moved aside (or why a missing one was replaced).
    pub moved_aside_reason: Option<String>,
    /// The verified copy the registrations were restored from, and how
    /// many apps it held; `None` when nothing was restored.
    pub restored_from: Option<(PathBuf, usize)>,
    /// The schema version the file had, when migrations ran (0: new file).
    pub upgraded_from: Option<usize>,
    /// The last [`Storage::mark_alive`] before this start: how long the hub
    /// was down is `now - last_alive`. `None` for a fresh database.
    pub last_alive: Option<SystemTime>,
}

impl Storage {
    /// Opens (or creates) `data_dir/lockstep.db`, upgrading its schema, and
    /// refreshes the verified copy of the registrations beside it. A file
    /// that is missing (while the copy exists), empty, or unusable is moved
    /// aside to `lockstep.db.corrupt-<unix-ts>` and the registrations are
    /// restored from the copy, with an error in the log naming both; the
    /// report says so. Without a good copy, an empty database replaces the
    /// bad file only if that file shows no registered app; otherwise this
    /// fails with [`StorageError::Unrecoverable`] and touches nothing.
    /// Fails too if the folder cannot be used or the database is locked by
    /// another process.
    pub fn open(data_dir: &Path) -> Result<(Storage, OpenReport), StorageError> {
        std::fs::create_dir_all(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
        let path = data_dir.join(DB_FILE);
        let copy = data_dir.join(BACKUP_FILE);
        let mut report = OpenReport::default();
        let prepared = match damage_before_open(&path, &copy) {
            Some(reason) => recover(&path, &copy, reason, &mut report)?,
            None => match schema::prepare(&path, true) {
                Ok(p) => p,
                Err(e) if e.is_busy() || !path.exists() => return Err(e),
                Err(e) => recover(&path, &copy, e.to_string(), &mut report)?,
            },
        };
        report.upgraded_from = prepared.upgraded_from;
        report.last_alive = prepared.last_alive;
        if let Some(from) = prepared.upgraded_from.filter(|v| *v > 0) {
            tracing::info!(
                "storage: upgraded {} from schema version {from} to {}",
                path.display(),
                MIGRATIONS.len()
            );
        }
        // The file passed its check: it becomes the copy to restore from.
        if let Err(e) = backup::write(&path, &copy) {
            tracing::error!(
                "storage: could not refresh the copy of the registrations {}: {e}; the previous copy is kept",
                copy.display()
            );
        }
        let reader = schema::open_reader(&path)?;
        let storage = Storage::start(prepared.conn, reader, Some((path, copy)))?;
        Ok((storage, report))
    }

    /// A private database in memory (SQLite's `memdb`), for tests. Same
    /// schema and writer; nothing is durable.
    pub fn open_in_memory() -> Result<Storage, StorageError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let uri = format!("file:/lockstep-{}-{n}?vfs=memdb", std::process::id());
        let prepared = schema::prepare(Path::new(&uri), false)?;
        let reader = schema::open_reader(Path::new(&uri))?;
        Storage::start(prepared.conn, reader, None)
    }

    /// `files`: the database and its copy of the registrations.
    fn start(
        conn: Connection,
        reader: Connection,
        files: Option<(PathBuf, PathBuf)>,
    ) -> Result<Storage, StorageError> {
        let (queue, rx) = mpsc::channel();
        let stats = Arc::new(writer::Stats::default());
        let path = files.as_ref().map(|(db, _)| db.clone());
        let journal_cap = Arc::new(AtomicU64::new(0));
        let writer = writer::spawn(conn, rx, stats.clone(), files, journal_cap.clone())
            .map_err(|e| StorageError::io(path.clone().unwrap_or_default(), e))?;
        Ok(Storage {
            inner: Arc::new(Inner {
                queue: Some(queue),
                writer: Some(writer),
                reader: Mutex::new(reader),
                stats,
                path,
                journal_cap,
                snapshot_clocks: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The database file (`None` in memory).
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// Bounds the event journal to about `bytes` (message bytes plus a
    /// fixed cost per row; 0: no bound). Past it, the writer thread deletes
    /// the oldest events down to 90% of it, between batches, when no write
    /// is waiting. The audit trail is not affected.
    pub fn set_journal_max_bytes(&self, bytes: u64) {
        self.inner.journal_cap.store(bytes, Ordering::Relaxed);
        // Wakes the writer, which checks the bound after every batch.
        self.flush().detach();
    }

    /// What the database takes on disk: the file and its WAL, in bytes
    /// (0 in memory).
    pub fn size_on_disk(&self) -> u64 {
        let Some(path) = self.path() else { return 0 };
        let wal = PathBuf::from(format!("{}-wal", path.display()));
        [path, wal.as_path()]
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// Batches committed and writes handled so far.
    pub fn stats(&self) -> WriterStats {
        self.inner.stats.get()
    }

    fn submit<T>(&self, op: Op, map: fn(u64) -> T) -> Pending<T> {
        let (reply, rx) = oneshot::channel();
        let sent = self.inner.queue.as_ref().is_some_and(|q| {
            q.send(Request {
                op,
                reply: Some(reply),
            })
            .is_ok()
        });
        Pending {
            rx: sent.then_some(rx),
            map,
        }
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // Reads leave the connection consistent even if one panicked.
        self.inner.reader.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Inserts or replaces the app with this `client_id` (its `created_at`
    /// is kept from the first save).
    pub fn save_app(&self, app: &App) -> Pending<()> {
        self.submit(Op::SaveApp(app.clone()), drop)
    }

    /// Marks an app revoked; `false` if there is no such app.
    pub fn revoke_app(&self, client_id: &str, at: SystemTime) -> Pending<bool> {
        let op = Op::RevokeApp {
            client_id: client_id.to_owned(),
            at_ms: to_unix_ms(at),
        };
        self.submit(op, |n| n > 0)
    }

    /// Forgets an app; `false` if there was none.
    pub fn delete_app(&self, client_id: &str) -> Pending<bool> {
        self.submit(Op::DeleteApp(client_id.to_owned()), |n| n > 0)
    }

    /// All registered apps, revoked ones included, oldest first.
    pub fn load_apps(&self) -> Result<Vec<App>, StorageError> {
        read::apps(&self.reader())
    }

    /// Inserts or replaces the subscription with this endpoint id (a
    /// renewal); `created_at` is kept from the first save.
    pub fn upsert_subscription(&self, sub: &StoredSubscription) -> Pending<()> {
        self.submit(Op::UpsertSubscription(sub.clone()), drop)
    }

    /// `false` if there was no such subscription.
    pub fn delete_subscription(&self, endpoint_id: &str) -> Pending<bool> {
        self.submit(Op::DeleteSubscription(endpoint_id.to_owned()), |n| n > 0)
    }

    /// Every stored subscription, expired leases included (the caller
    /// decides), oldest first.
    pub fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StorageError> {
        read::subscriptions(&self.reader())
    }

    /// Replaces the saved open contexts of `topic` with `state` (whatever
    /// JSON the caller makes of its `ContextStack`), stamped now.
    pub fn save_contexts(&self, topic: &str, state: &Value) -> Pending<()> {
        self.save_contexts_json(topic, state.to_string())
    }

    /// [`Storage::save_contexts`] for a caller that serialized the state itself.
    pub fn save_contexts_json(&self, topic: &str, json: String) -> Pending<()> {
        let op = Op::SaveContexts {
            topic: topic.to_owned(),
            json,
            at_ms: to_unix_ms(SystemTime::now()),
        };
        self.submit(op, drop)
    }

    pub fn delete_contexts(&self, topic: &str) -> Pending<()> {
        self.snapshot_clocks().remove(topic);
        self.submit(Op::DeleteContexts(topic.to_owned()), drop)
    }

    /// `(topic, state, saved_at)` for every topic with saved contexts.
    pub fn load_contexts(&self) -> Result<Vec<(String, Value, SystemTime)>, StorageError> {
        Ok(self
            .load_context_snapshots()?
            .into_iter()
            .map(|c| (c.topic, c.state, c.saved_at))
            .collect())
    }

    /// Every topic's saved contexts with the journal seq they include: the
    /// topic's journal rows after it ([`Storage::journal_tail`]) are to be
    /// applied on top.
    pub fn load_context_snapshots(&self) -> Result<Vec<ContextSnapshot>, StorageError> {
        read::contexts(&self.reader())
    }

    /// Up to `limit` journal entries of `topic` with `seq > after_seq`, in order.
    pub fn journal_tail(
        &self,
        topic: &str,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StorageError> {
        read::journal_rows(&self.reader(), Some(topic), after_seq, limit)
    }

    /// Whether a change to `topic`'s contexts should be saved now. Saves are
    /// coalesced: one when [`SNAPSHOT_EVERY_EVENTS`] changes are unsaved or
    /// the topic's last save is [`SNAPSHOT_EVERY`] old (so at human pace
    /// every change is saved at once); the changes in between are in the
    /// journal, replayed onto the snapshot at recovery. `false` means the
    /// change was counted; [`Storage::overdue_snapshots`] names the topic
    /// once it should be saved.
    ///
    /// `journal_bytes`: the size of the change's journal row. The rows
    /// after a snapshot are kept from pruning, so they are bounded in bytes
    /// too ([`SNAPSHOT_EVERY_BYTES`]), not only in number.
    pub fn snapshot_due(&self, topic: &str, journal_bytes: usize) -> bool {
        let now = std::time::Instant::now();
        let mut clocks = self.snapshot_clocks();
        match clocks.get_mut(topic) {
            Some(c)
                if c.unsaved + 1 < SNAPSHOT_EVERY_EVENTS
                    && c.unsaved_bytes + journal_bytes < SNAPSHOT_EVERY_BYTES
                    && now - c.saved_at < SNAPSHOT_EVERY =>
            {
                c.unsaved += 1;
                c.unsaved_bytes += journal_bytes;
                false
            }
            Some(c) => {
                *c = SnapshotClock::saved(now);
                true
            }
            None => {
                clocks.insert(topic.to_owned(), SnapshotClock::saved(now));
                true
            }
        }
    }

    /// Topics with changes not saved for [`SNAPSHOT_EVERY`]: save them
    /// (and call [`Storage::snapshot_due`] or this again only after).
    /// Their clocks restart now.
    pub fn overdue_snapshots(&self) -> Vec<String> {
        let now = std::time::Instant::now();
        let mut clocks = self.snapshot_clocks();
        let mut due = Vec::new();
        for (topic, c) in clocks.iter_mut() {
            if c.unsaved > 0 && now - c.saved_at >= SNAPSHOT_EVERY {
                *c = SnapshotClock::saved(now);
                due.push(topic.clone());
            }
        }
        // Idle topics are forgotten: their next change is saved at once.
        clocks.retain(|_, c| c.unsaved > 0 || now - c.saved_at < SNAPSHOT_EVERY * 4);
        due
    }

    /// Every topic with unsaved changes, however recent (at shutdown).
    pub fn overdue_snapshots_all(&self) -> Vec<String> {
        let mut clocks = self.snapshot_clocks();
        let due = clocks
            .iter()
            .filter(|(_, c)| c.unsaved > 0)
            .map(|(t, _)| t.clone())
            .collect();
        clocks.clear();
        due
    }

    fn snapshot_clocks(&self) -> MutexGuard<'_, HashMap<String, SnapshotClock>> {
        self.inner
            .snapshot_clocks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an accepted event to the journal, stamped now. Resolves to
    /// its sequence number once committed: answer 2xx only after that.
    pub fn append_event(
        &self,
        topic: &str,
        event_id: &str,
        event_name: &str,
        message_json: &str,
    ) -> Pending<u64> {
        let op = Op::AppendEvent {
            topic: topic.to_owned(),
            event_id: event_id.to_owned(),
            event_name: event_name.to_owned(),
            at_ms: to_unix_ms(SystemTime::now()),
            message_json: message_json.to_owned(),
        };
        self.submit(op, |seq| seq)
    }

    /// Up to `limit` journal entries with `seq > after_seq`, in order.
    pub fn journal_after(
        &self,
        after_seq: u64,
        limit: usize,
    ) -> Result<Vec<JournalEntry>, StorageError> {
        read::journal_after(&self.reader(), after_seq, limit)
    }

    /// Deletes journal entries accepted before `older_than`; resolves to
    /// how many.
    pub fn prune_journal(&self, older_than: SystemTime) -> Pending<usize> {
        self.submit(Op::PruneJournal(to_unix_ms(older_than)), count)
    }

    /// Records `record` without waiting: a failure is logged, never
    /// reported. [`flush`](Self::flush) waits for it.
    pub fn audit(&self, record: AuditRecord) {
        if let Some(q) = &self.inner.queue {
            let request = Request {
                op: Op::Audit(Box::new(record)),
                reply: None,
            };
            if q.send(request).is_err() {
                tracing::error!("storage: audit record lost: the storage is closed");
            }
        }
    }

    /// Writes the audit records with `since <= at < until` (either bound
    /// optional), oldest first; returns how many. Holds the reader for the
    /// whole export: call it from `spawn_blocking` in async code.
    pub fn export_audit(
        &self,
        since: Option<SystemTime>,
        until: Option<SystemTime>,
        format: ExportFormat,
        out: &mut impl Write,
    ) -> Result<usize, StorageError> {
        audit::export(&self.reader(), since, until, format, out)
    }

    /// Deletes audit records older than `older_than` (retention); resolves
    /// to how many.
    pub fn prune_audit(&self, older_than: SystemTime) -> Pending<usize> {
        self.submit(Op::PruneAudit(to_unix_ms(older_than)), count)
    }

    /// Records that the hub is alive at `now`; the next [`open`](Self::open)
    /// reports it as `last_alive`.
    pub fn mark_alive(&self, now: SystemTime) -> Pending<()> {
        self.submit(Op::MarkAlive(to_unix_ms(now)), drop)
    }

    /// The last `mark_alive` time stored.
    pub fn last_alive(&self) -> Result<Option<SystemTime>, StorageError> {
        read::last_alive(&self.reader())
    }

    /// Resolves once every write queued before it is committed (or failed).
    pub fn flush(&self) -> Pending<()> {
        self.submit(Op::Flush, drop)
    }
}

/// Why the database file cannot be opened as it is, when that shows before
/// SQLite reads it: SQLite takes a missing or empty file for a new, empty
/// database, which would silently drop every registration.
fn damage_before_open(path: &Path, copy: &Path) -> Option<String> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() == 0 => Some("it is empty (0 bytes)".into()),
        Ok(_) => None,
        Err(_) if copy.exists() => Some(format!("it is missing while {} exists", copy.display())),
        Err(_) => None, // A new install.
    }
}

/// The database at `path` cannot be used (`reason`): moves it aside and
/// restores the registrations from the verified copy, or, without one,
/// starts empty if the file shows no registered app, or refuses.
fn recover(
    path: &Path,
    copy: &Path,
    reason: String,
    report: &mut OpenReport,
) -> Result<schema::Prepared, StorageError> {
    let copy_state = backup::verify(copy);
    if copy_state.is_err() && !matches!(backup::apps_in_damaged(path), Ok(0)) {
        return Err(StorageError::Unrecoverable {
            path: path.to_owned(),
            reason,
            no_backup: copy_state.err().unwrap_or_default(),
        });
    }
    let moved = match path.exists() {
        true => Some(schema::move_aside(path)?),
        false => None,
    };
    let kept = moved.as_ref().map_or(String::new(), |m| {
        format!("; the bad file is kept as {}", m.display())
    });
    match copy_state {
        Ok(apps) => {
            backup::restore(copy, path)?;
            tracing::error!(
                "storage: the database {} cannot be used ({reason}){kept}. RESTORED the {apps} \
                 registered app(s) from the verified copy {}. Subscriptions, open contexts, the \
                 event journal and the audit trail start over: apps subscribe again",
                path.display(),
                copy.display()
            );
            report.restored_from = Some((copy.to_owned(), apps));
        }
        Err(no_copy) => tracing::error!(
            "storage: the database {} cannot be used ({reason}){kept}. It shows no registered \
             app and there is no good copy ({no_copy}): starting with an empty database; \
             subscriptions, contexts and the audit trail start over",
            path.display()
        ),
    }
    report.moved_aside = moved;
    report.moved_aside_reason = Some(reason);
    schema::prepare(path, true)
}

fn count(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// A queued write: resolves once it is committed, or with why it is not.
/// Dropping it does not cancel the write.
#[must_use = "a write is durable only once its Pending resolves"]
#[derive(Debug)]
pub struct Pending<T> {
    /// `None`: the writer was gone when the write was submitted.
    rx: Option<oneshot::Receiver<Result<u64, StorageError>>>,
    map: fn(u64) -> T,
}

impl<T> Future for Pending<T> {
    type Output = Result<T, StorageError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let map = self.map;
        let Some(rx) = self.rx.as_mut() else {
            return Poll::Ready(Err(StorageError::Closed));
        };
        match Pin::new(rx).poll(cx) {
            Poll::Ready(Ok(result)) => Poll::Ready(result.map(map)),
            Poll::Ready(Err(_)) => Poll::Ready(Err(StorageError::Closed)),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Pending<T> {
    /// Lets the write go on without waiting for it: it is queued already and
    /// commits in order behind the calls before it (bookkeeping writes).
    pub fn detach(self) {}

    /// Whether the writer is done with it (committed or failed), without
    /// waiting; the result itself is dropped.
    pub fn settled(&mut self) -> bool {
        match self.rx.as_mut() {
            None => true,
            Some(rx) => !matches!(rx.try_recv(), Err(oneshot::error::TryRecvError::Empty)),
        }
    }

    /// Blocks the thread until the write is committed: for code outside an
    /// async runtime (the CLI, shutdown hooks). Never call it on a runtime
    /// thread; `.await` there.
    pub fn wait(mut self) -> Result<T, StorageError> {
        struct Unpark(Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        loop {
            if let Poll::Ready(result) = Pin::new(&mut self).poll(&mut cx) {
                return result;
            }
            std::thread::park();
        }
    }
}
