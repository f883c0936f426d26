//! The rows the storage keeps, as plain structs, and the conversion of
//! times to the Unix milliseconds stored in the database.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A registered app: metadata only. Its secret lives in the OS keyring,
/// never here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct App {
    pub client_id: String,
    pub name: String,
    /// Granted scopes, space-separated as in OAuth (RFC 6749 §3.3).
    pub scopes: String,
    /// Topics the app may use (stored as a JSON array).
    pub topics: Vec<String>,
    pub created_at: SystemTime,
    pub revoked_at: Option<SystemTime>,
    /// Bumped on every secret rotation; tokens carry the generation.
    pub secret_generation: u64,
    /// Public keys (a JWK set as JSON) for `private_key_jwt`. Public, so
    /// the database is the place for them.
    pub jwks: Option<String>,
    /// Or the URL where the app publishes them.
    pub jwks_url: Option<String>,
    /// `false` for a known client that never sends an ACK (issue 19): the
    /// hub does not drop or report it for a missing ACK.
    pub acknowledges: bool,
}

/// A subscription as it must come back after a restart. The endpoint id is
/// what lets an app reconnect to its own endpoint; like every other id it is
/// never logged in full.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSubscription {
    pub endpoint_id: String,
    pub topic: String,
    /// The `hub.events` string as granted.
    pub events: String,
    pub subscriber_name: Option<String>,
    pub client_id: Option<String>,
    pub lease_until: SystemTime,
    pub created_at: SystemTime,
    /// A webhook's `hub.callback`; `None` for a WebSocket subscription.
    pub callback: Option<String>,
}

/// One accepted event, as journaled before the hub answered 2xx for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    /// Increases with every append, never reused.
    pub seq: u64,
    pub topic: String,
    pub event_id: String,
    pub event_name: String,
    pub accepted_at: SystemTime,
    /// The event message as the hub distributed it.
    pub message_json: String,
}

/// A topic's saved open contexts: `state` includes every journal row up
/// to `journal_seq`; the topic's rows after it are still to be applied.
#[derive(Clone, Debug, PartialEq)]
pub struct ContextSnapshot {
    pub topic: String,
    pub state: serde_json::Value,
    pub saved_at: SystemTime,
    pub journal_seq: u64,
}

/// Counters of the writer thread: `writes / commits` is the mean batch size
/// of the group commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions committed (or attempted).
    pub commits: u64,
    /// Write requests handled.
    pub writes: u64,
    /// WAL checkpoints the writer ran (SQLite's automatic one is off).
    pub checkpoints: u64,
    /// Pages in the WAL after the last commit or complete checkpoint.
    pub wal_pages: u64,
}

/// Milliseconds since the Unix epoch; times before it are negative, times
/// beyond `i64` milliseconds saturate.
pub fn to_unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(e.duration().as_millis()).map_or(i64::MIN, |ms| -ms),
    }
}

/// The inverse of [`to_unix_ms`]; out-of-range values clamp to the epoch
/// rather than panic.
pub fn from_unix_ms(ms: i64) -> SystemTime {
    let d = Duration::from_millis(ms.unsigned_abs());
    let t = if ms >= 0 {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    };
    t.unwrap_or(UNIX_EPOCH)
}
