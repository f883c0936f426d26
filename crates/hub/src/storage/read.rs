//! Reads, on the reader connection. Rows that cannot be decoded (bad JSON
//! left by a bug or a newer version) are skipped with a warning, so one bad
//! row never stops the hub from restoring the rest.

use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension};

use super::records::{from_unix_ms, App, ContextSnapshot, JournalEntry, StoredSubscription};
use super::StorageError;

pub(crate) const LAST_ALIVE_KEY: &str = "last_alive_unix_ms";

pub(crate) fn last_alive(conn: &Connection) -> Result<Option<SystemTime>, StorageError> {
    let value: Option<String> = conn
        .query_row(
            "SELECT value FROM hub_meta WHERE key = ?1",
            [LAST_ALIVE_KEY],
            |r| r.get(0),
        )
        .optional()?;
    Ok(value.and_then(|v| match v.parse::<i64>() {
        Ok(ms) => Some(from_unix_ms(ms)),
        Err(_) => {
            tracing::warn!("storage: ignoring unreadable {LAST_ALIVE_KEY} {v:?}");
            None
        }
    }))
}

pub(crate) fn apps(conn: &Connection) -> Result<Vec<App>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT client_id, name, scopes, topics, created_at, revoked_at, secret_generation, jwks, jwks_url, acknowledges
         FROM apps ORDER BY created_at, client_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            App {
                client_id: r.get(0)?,
                name: r.get(1)?,
                scopes: r.get(2)?,
                topics: Vec::new(),
                created_at: from_unix_ms(r.get(4)?),
                revoked_at: r.get::<_, Option<i64>>(5)?.map(from_unix_ms),
                secret_generation: r.get::<_, i64>(6)?.max(0) as u64,
                jwks: r.get(7)?,
                jwks_url: r.get(8)?,
                acknowledges: r.get::<_, i64>(9)? != 0,
            },
            r.get::<_, String>(3)?,
        ))
    })?;
    let mut apps = Vec::new();
    for row in rows {
        let (mut app, topics) = row?;
        match serde_json::from_str(&topics) {
            Ok(t) => app.topics = t,
            Err(e) => {
                tracing::warn!(
                    client_id = app.client_id,
                    "storage: skipping app with unreadable topics: {e}"
                );
                continue;
            }
        }
        apps.push(app);
    }
    Ok(apps)
}

pub(crate) fn subscriptions(conn: &Connection) -> Result<Vec<StoredSubscription>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT endpoint_id, topic, events, subscriber_name, client_id,
                lease_until_unix_ms, created_at, callback
         FROM subscriptions ORDER BY created_at, endpoint_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(StoredSubscription {
            endpoint_id: r.get(0)?,
            topic: r.get(1)?,
            events: r.get(2)?,
            subscriber_name: r.get(3)?,
            client_id: r.get(4)?,
            lease_until: from_unix_ms(r.get(5)?),
            created_at: from_unix_ms(r.get(6)?),
            callback: r.get(7)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(crate) fn contexts(conn: &Connection) -> Result<Vec<ContextSnapshot>, StorageError> {
    let mut stmt = conn.prepare(
        "SELECT topic, state_json, saved_at_unix_ms, journal_seq FROM contexts ORDER BY topic",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (topic, json, at, seq) = row?;
        match serde_json::from_str(&json) {
            Ok(state) => out.push(ContextSnapshot {
                topic,
                state,
                saved_at: from_unix_ms(at),
                journal_seq: seq.max(0) as u64,
            }),
            Err(e) => tracing::warn!(
                topic = crate::ids::short(&topic),
                "storage: skipping unreadable saved contexts: {e}"
            ),
        }
    }
    Ok(out)
}

pub(crate) fn journal_after(
    conn: &Connection,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StorageError> {
    journal_rows(conn, None, after_seq, limit)
}

/// `topic`: only that topic's rows (the tail replayed onto its snapshot).
pub(crate) fn journal_rows(
    conn: &Connection,
    topic: Option<&str>,
    after_seq: u64,
    limit: usize,
) -> Result<Vec<JournalEntry>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, topic, event_id, event_name, accepted_at_unix_ms, message_json
         FROM journal WHERE seq > ?1 AND (?3 IS NULL OR topic = ?3) ORDER BY seq LIMIT ?2",
    )?;
    let after = i64::try_from(after_seq).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![after, limit, topic], |r| {
        Ok(JournalEntry {
            seq: r.get::<_, i64>(0)?.try_into().unwrap_or(0),
            topic: r.get(1)?,
            event_id: r.get(2)?,
            event_name: r.get(3)?,
            accepted_at: from_unix_ms(r.get(4)?),
            message_json: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}
