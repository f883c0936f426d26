//! The audit trail: who did what, when, and with which outcome; its export
//! as NDJSON or CSV; and [`resource_ids`], the patient-data rule.
//!
//! **Patient data rule:** the trail names resources by `Type/id` only.
//! Names, birth dates, identifiers (MRNs, accession numbers) and any other
//! content of a resource never enter it; callers pass context through
//! [`resource_ids`] rather than copying anything out of it themselves, and
//! keep `detail` to hub-side facts (reasons, counts), never message content.

use std::io::Write;
use std::time::SystemTime;

use fhircast::validate::{parse_reference, parse_reference_str, resource_type_and_id};
use rusqlite::{params, Connection};
use serde_json::{json, Value};

use super::records::{from_unix_ms, to_unix_ms};
use super::StorageError;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    Subscribe,
    Unsubscribe,
    Publish,
    GetContext,
    AuthFailure,
    DeliveryFailure,
    SyncError,
    LeaseExpired,
    Connect,
    Disconnect,
    /// Something done from the dashboard (or the tray, through the same
    /// `Hub` methods): an action, a registration, a settings change.
    Admin,
}

impl AuditAction {
    pub const ALL: [AuditAction; 11] = [
        AuditAction::Subscribe,
        AuditAction::Unsubscribe,
        AuditAction::Publish,
        AuditAction::GetContext,
        AuditAction::AuthFailure,
        AuditAction::DeliveryFailure,
        AuditAction::SyncError,
        AuditAction::LeaseExpired,
        AuditAction::Connect,
        AuditAction::Disconnect,
        AuditAction::Admin,
    ];

    /// The name stored and exported (`get-context`, `auth-failure`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Subscribe => "subscribe",
            AuditAction::Unsubscribe => "unsubscribe",
            AuditAction::Publish => "publish",
            AuditAction::GetContext => "get-context",
            AuditAction::AuthFailure => "auth-failure",
            AuditAction::DeliveryFailure => "delivery-failure",
            AuditAction::SyncError => "sync-error",
            AuditAction::LeaseExpired => "lease-expired",
            AuditAction::Connect => "connect",
            AuditAction::Disconnect => "disconnect",
            AuditAction::Admin => "admin",
        }
    }

    /// The action named `s`, as [`as_str`](Self::as_str) spells it.
    pub fn parse(s: &str) -> Option<AuditAction> {
        AuditAction::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

impl std::fmt::Display for AuditAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One line of the trail. Build it with [`AuditRecord::new`] and set the
/// fields that apply; everything optional is `None` by default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    pub at: SystemTime,
    pub action: AuditAction,
    pub client_id: Option<String>,
    pub subscriber_name: Option<String>,
    /// The `sub` of the bearer token, when there is one.
    pub token_subject: Option<String>,
    pub topic: Option<String>,
    pub event_name: Option<String>,
    pub event_id: Option<String>,
    /// Comma-separated `Type/id`s, from [`resource_ids`] only.
    pub resource_ids: Option<String>,
    /// The answer given: `"202"`, `"403 missing fhircast/Patient-open.write"`.
    pub outcome: String,
    /// Hub-side facts (a reason, a count); never message content.
    pub detail: Option<String>,
}

impl AuditRecord {
    /// A record of `action` now, with `outcome` and nothing else.
    pub fn new(action: AuditAction, outcome: impl Into<String>) -> Self {
        AuditRecord {
            at: SystemTime::now(),
            action,
            client_id: None,
            subscriber_name: None,
            token_subject: None,
            topic: None,
            event_name: None,
            event_id: None,
            resource_ids: None,
            outcome: outcome.into(),
            detail: None,
        }
    }
}

/// How [`Storage::export_audit`](super::Storage::export_audit) writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line, keys in column order, absent values `null`.
    Ndjson,
    /// RFC 4180: a header line, CRLF line ends, quoted where needed.
    Csv,
}

const COLUMNS: [&str; 12] = [
    "seq",
    "at",
    "action",
    "client_id",
    "subscriber_name",
    "token_subject",
    "topic",
    "event_name",
    "event_id",
    "resource_ids",
    "outcome",
    "detail",
];

/// The `Type/id` of every resource or reference in an event's `context`,
/// comma-separated, in order, without repeats: `Patient/p1,ImagingStudy/s9`.
/// Bundles (content sharing) contribute their entries' `Type/id`s. This is
/// all of a context the audit trail may keep (see the module docs): nothing
/// else of a resource is read, and an id that is not a FHIR id
/// (`[A-Za-z0-9.-]{1,64}`) is left out rather than risk carrying a name.
pub fn resource_ids(context: &[Value]) -> String {
    let mut ids: Vec<String> = Vec::new();
    let mut push = |t: &str, id: &str| {
        let ok_type = !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphabetic());
        let ok_id = (1..=64).contains(&id.len())
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let key = format!("{t}/{id}");
        if ok_type && ok_id && !ids.contains(&key) {
            ids.push(key);
        }
    };
    for item in context {
        if let Some((t, id)) = item.get("reference").and_then(parse_reference) {
            push(t, id);
        }
        let Some(resource) = item.get("resource") else {
            continue;
        };
        if let Some((t, id)) = resource_type_and_id(resource) {
            push(t, id);
        }
        if resource["resourceType"] == "Bundle" {
            for entry in resource["entry"].as_array().into_iter().flatten() {
                let found = entry
                    .get("resource")
                    .and_then(resource_type_and_id)
                    .or_else(|| {
                        entry["request"]["url"]
                            .as_str()
                            .and_then(parse_reference_str)
                    });
                if let Some((t, id)) = found {
                    push(t, id);
                }
            }
        }
    }
    ids.join(",")
}

/// Streams the records with `since <= at < until`, oldest first; returns
/// how many were written.
pub(crate) fn export(
    conn: &Connection,
    since: Option<SystemTime>,
    until: Option<SystemTime>,
    format: ExportFormat,
    out: &mut impl Write,
) -> Result<usize, StorageError> {
    let since = since.map_or(i64::MIN, to_unix_ms);
    let until = until.map_or(i64::MAX, to_unix_ms);
    let mut stmt = conn.prepare(
        "SELECT seq, at_unix_ms, action, client_id, subscriber_name, token_subject, topic,
                event_name, event_id, resource_ids, outcome, detail
         FROM audit WHERE at_unix_ms >= ?1 AND at_unix_ms < ?2
         ORDER BY at_unix_ms, seq",
    )?;
    let mut rows = stmt.query(params![since, until])?;
    let w = |r: std::io::Result<()>| r.map_err(|e| StorageError::Export(e.into()));
    if format == ExportFormat::Csv {
        w(write!(out, "{}\r\n", COLUMNS.join(",")))?;
    }
    let mut n = 0;
    while let Some(row) = rows.next()? {
        let seq: i64 = row.get(0)?;
        let at = rfc3339(row.get(1)?);
        let mut cells: Vec<Option<String>> = vec![Some(seq.to_string()), Some(at)];
        for i in 2..COLUMNS.len() {
            cells.push(row.get(i)?);
        }
        match format {
            ExportFormat::Ndjson => {
                let mut obj = serde_json::Map::new();
                obj.insert("seq".into(), json!(seq));
                for (name, cell) in COLUMNS.iter().zip(cells).skip(1) {
                    obj.insert((*name).into(), cell.map_or(Value::Null, Value::String));
                }
                w(writeln!(out, "{}", Value::Object(obj)))?;
            }
            ExportFormat::Csv => {
                let line: Vec<String> = cells
                    .iter()
                    .map(|c| csv_cell(c.as_deref().unwrap_or("")))
                    .collect();
                w(write!(out, "{}\r\n", line.join(",")))?;
            }
        }
        n += 1;
    }
    w(out.flush())?;
    Ok(n)
}

/// A CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line
/// break, quotes doubled. A cell that a spreadsheet would run as a formula
/// (starting with `=`, `+`, `-`, `@`, tab or CR; subscriber names come from
/// the apps) gets a leading `'`, as OWASP advises against CSV injection.
pub(crate) fn csv_cell(s: &str) -> String {
    let guarded;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{s}");
        guarded.as_str()
    } else {
        s
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// `2026-11-22T10:42:00.123Z`.
fn rfc3339(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    let nanos = i128::from(ms) * 1_000_000;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_else(|| format!("{:?}", from_unix_ms(ms)))
}
