//! The writer thread: the only connection that writes. It takes whatever
//! requests are queued (up to [`MAX_BATCH`]), applies them in one
//! transaction (group commit), commits, and only then answers each caller.
//! One commit per batch is what makes durable publishes cheap under load.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::{params, Connection};
use tokio::sync::oneshot;

use super::audit::AuditRecord;
use super::read::LAST_ALIVE_KEY;
use super::records::{to_unix_ms, App, StoredSubscription, WriterStats};
use super::StorageError;

/// The most requests in one transaction, so a flood never makes one commit
/// (and the wait of its first caller) unbounded.
pub(crate) const MAX_BATCH: usize = 1024;

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
}

impl Stats {
    pub fn get(&self) -> WriterStats {
        WriterStats {
            commits: self.commits.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
        }
    }
}

/// `files`: the database and the copy of its registrations, refreshed
/// after every committed change to them (`backup.rs`).
pub(crate) fn spawn(
    conn: Connection,
    rx: Receiver<Request>,
    stats: Arc<Stats>,
    files: Option<(PathBuf, PathBuf)>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("lockstep-storage".into())
        .spawn(move || run(conn, rx, &stats, files))
}

/// Until every sender is dropped: wait for a request, take all queued ones,
/// commit them together.
fn run(conn: Connection, rx: Receiver<Request>, stats: &Stats, files: Option<(PathBuf, PathBuf)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(req) => batch.push(req),
                Err(_) => break,
            }
        }
        stats.commits.fetch_add(1, Ordering::Relaxed);
        stats
            .writes
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let registrations_changed = batch.iter().any(|r| r.op.changes_registrations());
        commit(&conn, batch);
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
    }
    if let Err(e) = conn.execute_batch("PRAGMA optimize") {
        tracing::debug!("storage: PRAGMA optimize on close failed: {e}");
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
        Op::SaveContexts { topic, json, at_ms } => conn
            .prepare_cached(
                "INSERT INTO contexts (topic, state_json, saved_at_unix_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (topic) DO UPDATE SET state_json = excluded.state_json,
                   saved_at_unix_ms = excluded.saved_at_unix_ms",
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
            .prepare_cached("DELETE FROM journal WHERE accepted_at_unix_ms < ?1")?
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
