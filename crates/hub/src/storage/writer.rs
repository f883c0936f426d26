//! The writer thread: the only connection that writes. It takes whatever
//! requests are queued (up to [`MAX_BATCH`]), applies them in one
//! transaction (group commit), commits, and only then answers each caller.
//! One commit per batch is what makes durable publishes cheap under load.
//!
//! It also checkpoints the WAL itself (SQLite's automatic checkpoint is off,
//! `schema.rs`): that one runs inside the `COMMIT` that crosses 1 000 pages,
//! so one publish in a few hundred waited for it and its fsync. Here a
//! checkpoint runs only after the batch's callers were answered: a PASSIVE
//! one when nothing is queued, or right away once the WAL is well past the
//! threshold (a writer never idle), and a TRUNCATE one at a hard cap (readers
//! kept the passive ones from finishing).

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::wal::CheckpointMode;
use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::audit::AuditRecord;
use super::read::LAST_ALIVE_KEY;
use super::records::{to_unix_ms, App, StoredSubscription, WriterStats};
use super::StorageError;

/// The most requests in one transaction, so a flood never makes one commit
/// (and the wait of its first caller) unbounded.
pub(crate) const MAX_BATCH: usize = 1024;

/// And the most event bytes in one: a batch of 1024 messages of 100 KB
/// would hold 100 MB at once, and the allocator keeps such a peak (RSS
/// after a burst, issue 14.7).
const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// How long writes nobody waits for (audit records) may wait for company.
const LINGER: Duration = Duration::from_millis(5);

/// WAL pages (frames) after which a PASSIVE checkpoint is due, run when
/// the writer has nothing queued: SQLite's own automatic threshold, ~4 MB.
pub(crate) const CHECKPOINT_PAGES: i64 = 1000;

/// WAL pages after which the checkpoint runs right after the batch is
/// answered, queued work or not: under sustained load the writer is never
/// idle, and the WAL must not grow until the hard cap.
const CHECKPOINT_NOW_PAGES: i64 = 4 * CHECKPOINT_PAGES;

/// The WAL's hard cap, 64 MB of 4 KB pages: PASSIVE checkpoints could not
/// keep up (a reader held old pages), so a TRUNCATE one waits for the
/// readers (up to the busy timeout) and empties the file.
const WAL_CAP_PAGES: i64 = 16 * 1024;

/// Adds what is queued to `batch`, within its bounds.
fn take_queued(rx: &Receiver<Request>, batch: &mut Vec<Request>, bytes: &mut u64) {
    while batch.len() < MAX_BATCH && *bytes < MAX_BATCH_BYTES as u64 {
        match rx.try_recv() {
            Ok(req) => {
                *bytes += req.op.journal_bytes();
                batch.push(req);
            }
            Err(_) => break,
        }
    }
}

/// What a journal row costs besides its message: the other columns, the
/// row header and b-tree cells, roughly. Only has to be the right size.
const JOURNAL_ROW_OVERHEAD: u64 = 128;

/// Rows looked at per pruning step: each step is one short transaction,
/// taken only when no write is waiting.
const PRUNE_STEP_ROWS: i64 = 256;

/// A journal row `j` that no saved context still needs: rows after their
/// topic's snapshot are replayed at recovery, so pruning (by size or age)
/// keeps them. There are at most `SNAPSHOT_EVERY_EVENTS` per topic.
const NOT_IN_A_TAIL: &str = "NOT EXISTS (SELECT 1 FROM contexts AS c
     WHERE c.topic = j.topic AND c.journal_seq < j.seq)";

pub(crate) type Reply = oneshot::Sender<Result<u64, StorageError>>;

/// One write. Each answers a `u64`: a journal seq, a row count, or 0.
pub(crate) enum Op {
    SaveApp(App),
    RevokeApp {
        client_id: String,
        at_ms: i64,
    },
    DeleteApp(String),
    UpsertSubscription(StoredSubscription),
    DeleteSubscription(String),
    SaveContexts {
        topic: String,
        json: String,
        at_ms: i64,
    },
    DeleteContexts(String),
    AppendEvent {
        topic: String,
        event_id: String,
        event_name: String,
        at_ms: i64,
        message_json: String,
    },
    Audit(Box<AuditRecord>),
    PruneAudit(i64),
    PruneJournal(i64),
    MarkAlive(i64),
    /// Nothing: answers once everything queued before it is committed.
    Flush,
}

impl Op {
    /// Journal bytes this write adds (0 for everything but an append).
    fn journal_bytes(&self) -> u64 {
        match self {
            Op::AppendEvent { message_json, .. } => {
                message_json.len() as u64 + JOURNAL_ROW_OVERHEAD
            }
            _ => 0,
        }
    }

    fn changes_registrations(&self) -> bool {
        matches!(
            self,
            Op::SaveApp(_) | Op::RevokeApp { .. } | Op::DeleteApp(_)
        )
    }

    fn kind(&self) -> &'static str {
        match self {
            Op::SaveApp(_) => "save app",
            Op::RevokeApp { .. } => "revoke app",
            Op::DeleteApp(_) => "delete app",
            Op::UpsertSubscription(_) => "save subscription",
            Op::DeleteSubscription(_) => "delete subscription",
            Op::SaveContexts { .. } => "save contexts",
            Op::DeleteContexts(_) => "delete contexts",
            Op::AppendEvent { .. } => "append event",
            Op::Audit(_) => "audit",
            Op::PruneAudit(_) => "prune audit",
            Op::PruneJournal(_) => "prune journal",
            Op::MarkAlive(_) => "mark alive",
            Op::Flush => "flush",
        }
    }
}

pub(crate) struct Request {
    pub op: Op,
    /// `None` for fire-and-forget writes (audit): failures are only logged.
    pub reply: Option<Reply>,
}

#[derive(Default)]
pub(crate) struct Stats {
    commits: AtomicU64,
    writes: AtomicU64,
    checkpoints: AtomicU64,
    /// Pages in the WAL after the last commit, set by the WAL hook.
    wal_pages: Arc<AtomicI64>,
}

impl Stats {
    pub fn get(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            checkpoints: self.checkpoints.load(Ordering::Relaxed),
            wal_pages: self.wal_pages.load(Ordering::Relaxed).max(0) as u64,
        }
    }
}

/// `files`: the database and the copy of its registrations, refreshed
/// after every committed change to them (`backup.rs`). `journal_cap`: the
/// journal's size bound in bytes (0: none), read after every batch.
pub(crate) fn spawn(
    mut conn: Connection,
    rx: Receiver<Request>,
    stats: Arc<Stats>,
    files: Option<(PathBuf, PathBuf)>,
    journal_cap: Arc<AtomicU64>,
) -> std::io::Result<JoinHandle<()>> {
    watch_wal(&mut conn, &stats.wal_pages);
    std::thread::Builder::new()
        .name("lockstep-storage".into())
        .spawn(move || run(conn, rx, &stats, files, &journal_cap))
}

/// Has SQLite report the WAL's size in pages after every commit. The hook
/// replaces the automatic checkpoint (itself a WAL hook), which
/// `schema::prepare` turned off too. Should it fail, the automatic
/// checkpoint comes back rather than a WAL that grows without bound.
fn watch_wal(conn: &mut Connection, wal_pages: &Arc<AtomicI64>) {
    let pages_now = wal_pages.clone();
    let hooked = conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
        pages_now.store(i64::from(pages), Ordering::Relaxed);
        Ok(())
    }));
    if let Err(e) = hooked {
        tracing::error!(
            "storage: cannot watch the WAL ({e}); SQLite checkpoints it inside commits"
        );
        let _ = conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES);
    }
}

/// Until every sender is dropped: wait for a request, take all queued ones,
/// commit them together. Between batches, when nothing waits, checkpoint
/// the WAL once it passed [`CHECKPOINT_PAGES`] and prune the journal back
/// under its size bound, one short step at a time: neither runs ahead of a
/// queued write, so both stay off the publish path.
fn run(
    conn: Connection,
    rx: Receiver<Request>,
    stats: &Stats,
    files: Option<(PathBuf, PathBuf)>,
    journal_cap: &AtomicU64,
) {
    let mut journal = JournalSize::measure(&conn);
    let mut pruning = false;
    let mut checkpoint_due = false;
    loop {
        let first = if pruning || checkpoint_due {
            match rx.try_recv() {
                Ok(req) => req,
                Err(TryRecvError::Empty) if checkpoint_due => {
                    checkpoint(&conn, stats, CheckpointMode::PASSIVE);
                    checkpoint_due = false;
                    continue;
                }
                Err(TryRecvError::Empty) => {
                    pruning = journal.prune_step(&conn, journal_cap.load(Ordering::Relaxed));
                    // A pruning step commits too.
                    checkpoint_due = stats.wal_pages.load(Ordering::Relaxed) >= CHECKPOINT_PAGES;
                    continue;
                }
                Err(TryRecvError::Disconnected) => {
                    // Closing: leave the file within its bound.
                    let cap = journal_cap.load(Ordering::Relaxed);
                    while journal.prune_step(&conn, cap) {}
                    break;
                }
            }
        } else {
            match rx.recv() {
                Ok(req) => req,
                Err(_) => break,
            }
        };
        let mut bytes = first.op.journal_bytes();
        let mut batch = vec![first];
        take_queued(&rx, &mut batch, &mut bytes);
        if batch.iter().all(|r| r.reply.is_none()) {
            // Nobody waits on these (audit records): they ride with the
            // next write that somebody waits on, one commit instead of
            // two per publish, unless none comes within LINGER.
            if let Ok(req) = rx.recv_timeout(LINGER) {
                bytes += req.op.journal_bytes();
                batch.push(req);
                take_queued(&rx, &mut batch, &mut bytes);
            }
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let registrations_changed = batch.iter().any(|r| r.op.changes_registrations());
        let pruned_by_age = batch.iter().any(|r| matches!(r.op, Op::PruneJournal(_)));
        commit(&conn, batch);
        if pruned_by_age {
            journal = JournalSize::measure(&conn);
        } else {
            // A rolled-back append is counted too: the bound errs low.
            journal.bytes += bytes;
        }
        if bytes >= MAX_BATCH_BYTES as u64 / 2 {
            // A big batch filled SQLite's page cache with message pages
            // nobody reads again: give that memory back.
            let _ = conn.execute_batch("PRAGMA shrink_memory");
        }
        if let (true, Some((db, copy))) = (registrations_changed, &files) {
            // After the callers were answered: a registration is rare and
            // the copy is small, but no caller waits for it.
            if let Err(e) = super::backup::write(db, copy) {
                tracing::error!(
                    "storage: could not refresh the copy of the registrations {}: {e}; the previous copy is kept",
                    copy.display()
                );
            }
        }
        pruning = journal.over(journal_cap.load(Ordering::Relaxed));
        // The callers of this batch have their answers: a checkpoint now
        // delays only what is queued behind it.
        let wal_pages = stats.wal_pages.load(Ordering::Relaxed);
        if wal_pages >= WAL_CAP_PAGES {
            checkpoint(&conn, stats, CheckpointMode::TRUNCATE);
        } else if wal_pages >= CHECKPOINT_NOW_PAGES {
            checkpoint(&conn, stats, CheckpointMode::PASSIVE);
        } else {
            checkpoint_due = wal_pages >= CHECKPOINT_PAGES;
        }
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!("storage: PRAGMA optimize on close failed: {e}");
    }
}

/// Copies the WAL's pages into the database file (and syncs it). PASSIVE
/// stops at pages a reader still uses and never waits; TRUNCATE waits for
/// readers (the busy timeout) and leaves an empty WAL. Once every page is
/// copied, the next commit starts the WAL from its beginning again.
fn checkpoint(conn: &Connection, stats: &Stats, mode: CheckpointMode) {
    stats.checkpoints.fetch_add(1, Ordering::Relaxed);
    match conn.wal_checkpoint_v2(None::<&str>, mode) {
        Ok((in_wal, copied)) if copied < in_wal => tracing::debug!(
            "storage: checkpoint copied {copied} of {in_wal} WAL pages (readers hold the rest)"
        ),
        Ok(_) => stats.wal_pages.store(0, Ordering::Relaxed),
        // Busy (a reader for TRUNCATE): the next batch tries again.
        Err(e) => tracing::warn!("storage: WAL checkpoint failed: {e}"),
    }
}

/// The journal's size as the bound counts it: message bytes plus
/// [`JOURNAL_ROW_OVERHEAD`] per row. Measured at start and after pruning by
/// age, kept up to date by the writer in between.
struct JournalSize {
    bytes: u64,
}

impl JournalSize {
    /// `octet_length` reads a value's size from its record header, not its
    /// (overflow) pages: cheap even for a large journal.
    fn measure(conn: &Connection) -> JournalSize {
        let sql = format!(
            "SELECT coalesce(sum(octet_length(message_json) + {JOURNAL_ROW_OVERHEAD}), 0) FROM journal"
        );
        let bytes = conn
            .query_row(&sql, [], |r| r.get::<_, i64>(0))
            .unwrap_or_else(|e| {
                tracing::error!("storage: cannot measure the journal: {e}");
                0
            });
        JournalSize {
            bytes: bytes.max(0) as u64,
        }
    }

    fn over(&self, cap: u64) -> bool {
        cap > 0 && self.bytes > cap
    }

    /// Deletes the oldest rows of one step, aiming at 90% of `cap` so that
    /// pruning does not start again at the next append. Returns whether
    /// more steps are needed.
    fn prune_step(&mut self, conn: &Connection, cap: u64) -> bool {
        if cap == 0 {
            return false;
        }
        let target = cap - cap / 10;
        let result = (|| -> rusqlite::Result<bool> {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT seq, octet_length(message_json) + {JOURNAL_ROW_OVERHEAD}
                 FROM journal AS j WHERE {NOT_IN_A_TAIL} ORDER BY seq LIMIT ?1"
            ))?;
            let rows = stmt.query_map([PRUNE_STEP_ROWS], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))
            })?;
            let (mut last, mut freed, mut seen) = (None, 0u64, 0);
            for row in rows {
                let (seq, size) = row?;
                seen += 1;
                last = Some(seq);
                freed += size.max(0) as u64;
                if self.bytes.saturating_sub(freed) <= target {
                    break;
                }
            }
            let Some(last) = last else {
                self.bytes = 0; // Empty: the count had drifted.
                return Ok(false);
            };
            conn.prepare_cached(&format!(
                "DELETE FROM journal AS j WHERE seq <= ?1 AND {NOT_IN_A_TAIL}"
            ))?
            .execute([last])?;
            self.bytes = self.bytes.saturating_sub(freed);
            Ok(seen == PRUNE_STEP_ROWS && self.bytes > target)
        })();
        result.unwrap_or_else(|e| {
            tracing::error!("storage: pruning the journal to its size bound failed: {e}");
            false
        })
    }
}

fn commit(conn: &Connection, batch: Vec<Request>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        tracing::error!(
            "storage: cannot start a transaction for {} writes: {e}",
            batch.len()
        );
        let e = StorageError::from(e);
        return answer(batch, |_| Err(e.clone()));
    }
    let mut results: Vec<Result<u64, StorageError>> = Vec::with_capacity(batch.len());
    for req in &batch {
        let result = apply(conn, &req.op);
        if let Err(e) = &result {
            tracing::error!("storage: {} failed: {e}", req.op.kind());
            if conn.is_autocommit() {
                // SQLite rolled the whole transaction back (disk full, I/O
                // error): the earlier writes of this batch are lost too.
                let why = e.to_string();
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(StorageError::RolledBack(why.clone()));
                }
                if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
                    // The rest runs in autocommit mode: still committed
                    // before it is answered.
                    tracing::error!("storage: cannot restart the transaction: {e}");
                }
            }
        }
        results.push(result.map_err(StorageError::from));
    }
    if !conn.is_autocommit() {
        if let Err(e) = conn.execute_batch("COMMIT") {
            tracing::error!("storage: commit of {} writes failed: {e}", batch.len());
            if !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            let e = StorageError::from(e);
            for r in results.iter_mut().filter(|r| r.is_ok()) {
                *r = Err(e.clone());
            }
        }
    }
    let mut results = results.into_iter();
    answer(batch, |_| {
        results.next().unwrap_or(Err(StorageError::Closed))
    });
}

/// Sends each request its result. A caller that stopped waiting is fine:
/// its write stands (or its failure was logged).
fn answer(batch: Vec<Request>, mut result: impl FnMut(&Op) -> Result<u64, StorageError>) {
    for req in batch {
        let r = result(&req.op);
        if let Some(reply) = req.reply {
            let _ = reply.send(r);
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> rusqlite::Result<u64> {
    let n = match op {
        Op::SaveApp(app) => conn
            .prepare_cached(
                "INSERT INTO apps (client_id, name, scopes, topics, created_at, revoked_at, secret_generation, jwks, jwks_url, acknowledges)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
                 ON CONFLICT (client_id) DO UPDATE SET name = excluded.name,
                   scopes = excluded.scopes, topics = excluded.topics,
                   revoked_at = excluded.revoked_at,
                   secret_generation = excluded.secret_generation,
                   jwks = excluded.jwks, jwks_url = excluded.jwks_url,
                   acknowledges = excluded.acknowledges",
            )?
            .execute(params![
                app.client_id,
                app.name,
                app.scopes,
                serde_json::Value::from(app.topics.clone()).to_string(),
                to_unix_ms(app.created_at),
                app.revoked_at.map(to_unix_ms),
                app.secret_generation as i64,
                app.jwks,
                app.jwks_url,
                app.acknowledges,
            ])?,
        Op::RevokeApp { client_id, at_ms } => conn
            .prepare_cached("UPDATE apps SET revoked_at = ?2 WHERE client_id = ?1")?
            .execute(params![client_id, at_ms])?,
        Op::DeleteApp(client_id) => conn
            .prepare_cached("DELETE FROM apps WHERE client_id = ?1")?
            .execute([client_id])?,
        Op::UpsertSubscription(s) => conn
            .prepare_cached(
                "INSERT INTO subscriptions (endpoint_id, topic, events, subscriber_name,
                   client_id, lease_until_unix_ms, created_at, callback)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (endpoint_id) DO UPDATE SET topic = excluded.topic,
                   events = excluded.events, subscriber_name = excluded.subscriber_name,
                   client_id = excluded.client_id,
                   lease_until_unix_ms = excluded.lease_until_unix_ms,
                   callback = excluded.callback",
            )?
            .execute(params![
                s.endpoint_id,
                s.topic,
                s.events,
                s.subscriber_name,
                s.client_id,
                to_unix_ms(s.lease_until),
                to_unix_ms(s.created_at),
                s.callback,
            ])?,
        Op::DeleteSubscription(id) => conn
            .prepare_cached("DELETE FROM subscriptions WHERE endpoint_id = ?1")?
            .execute([id])?,
        // Stamped with the last journal seq handed out, in this same
        // transaction: the snapshot was queued after those appends (both
        // under the hub's lock), so it includes them, and a rolled-back
        // append rolls the stamp back with it.
        Op::SaveContexts { topic, json, at_ms } => conn
            .prepare_cached(
                "INSERT INTO contexts (topic, state_json, saved_at_unix_ms, journal_seq)
                 VALUES (?1, ?2, ?3,
                   coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'journal'), 0))
                 ON CONFLICT (topic) DO UPDATE SET state_json = excluded.state_json,
                   saved_at_unix_ms = excluded.saved_at_unix_ms,
                   journal_seq = excluded.journal_seq",
            )?
            .execute(params![topic, json, at_ms])?,
        Op::DeleteContexts(topic) => conn
            .prepare_cached("DELETE FROM contexts WHERE topic = ?1")?
            .execute([topic])?,
        Op::AppendEvent {
            topic,
            event_id,
            event_name,
            at_ms,
            message_json,
        } => {
            conn.prepare_cached(
                "INSERT INTO journal (topic, event_id, event_name, accepted_at_unix_ms, message_json)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![topic, event_id, event_name, at_ms, message_json])?;
            return Ok(u64::try_from(conn.last_insert_rowid()).unwrap_or(0));
        }
        Op::Audit(a) => conn
            .prepare_cached(
                "INSERT INTO audit (at_unix_ms, action, client_id, subscriber_name,
                   token_subject, topic, event_name, event_id, resource_ids, outcome, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                to_unix_ms(a.at),
                a.action.as_str(),
                a.client_id,
                a.subscriber_name,
                a.token_subject,
                a.topic,
                a.event_name,
                a.event_id,
                a.resource_ids,
                a.outcome,
                a.detail,
            ])?,
        Op::PruneAudit(before) => conn
            .prepare_cached("DELETE FROM audit WHERE at_unix_ms < ?1")?
            .execute([before])?,
        Op::PruneJournal(before) => conn
            .prepare_cached(&format!(
                "DELETE FROM journal AS j WHERE accepted_at_unix_ms < ?1 AND {NOT_IN_A_TAIL}"
            ))?
            .execute([before])?,
        Op::MarkAlive(at_ms) => conn
            .prepare_cached(
                "INSERT INTO hub_meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![LAST_ALIVE_KEY, at_ms.to_string()])?,
        Op::Flush => 0,
    };
    Ok(n as u64)
}
