//! One settings file: read, parsed and checked (types, ranges, `locked`,
//! `[[apps]]`), with errors naming the file and line but never quoting a
//! line that may hold a secret.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{AppEntry, KEYS};

/// One file as written: every key optional. The typed fields are only
/// read to check the file (with line numbers); layering uses the table.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileDoc {
    port: Option<u16>,
    address: Option<IpAddr>,
    tls: Option<bool>,
    ack_timeout_ms: Option<u64>,
    grace_period_ms: Option<u64>,
    notifications: Option<bool>,
    start_at_login: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    lease_default_secs: Option<u64>,
    lease_max_secs: Option<u64>,
    token_lifetime_secs: Option<u64>,
    topic_idle_secs: Option<u64>,
    journal_max_mb: Option<u64>,
    peer_check: Option<bool>,
    #[serde(default)]
    pub(super) locked: Vec<String>,
    #[serde(default)]
    pub(super) apps: Vec<AppEntry>,
}

/// A file that could not be used: which file, and what is wrong (with the
/// line and column for syntax and type errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

/// A parsed, checked file.
pub(super) struct Parsed {
    pub(super) table: toml::Table,
    pub(super) doc: FileDoc,
}

fn file_error(path: &Path, message: impl Into<String>) -> FileError {
    FileError {
        path: path.to_path_buf(),
        message: message.into().trim_end().to_owned(),
    }
}

/// Reads `path`; `Ok(None)` when there is no such file.
pub(super) fn read(path: &Path, system: bool) -> Result<Option<Parsed>, FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, format!("cannot read: {e}"))),
    };
    parse(path, &text, system).map(Some)
}

/// "line N, column M: what is wrong (the line)". toml's own Display quotes
/// the line too, but a line holding a client secret must not reach a log.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
    if source.contains("secret") {
        format!("line {line}, column {column}: this line is not valid (not shown: it may hold a secret)")
    } else {
        format!(
            "line {line}, column {column}: {} (`{source}`)",
            e.message().trim_end()
        )
    }
}

pub(super) fn parse(path: &Path, text: &str, system: bool) -> Result<Parsed, FileError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| file_error(path, describe(text, &e)))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| file_error(path, describe(text, &e)))?;
    if !system && !doc.locked.is_empty() {
        return Err(file_error(path, "`locked` belongs in the system file only"));
    }
    for key in &doc.locked {
        if !KEYS.contains(&key.as_str()) {
            // A typo would leave the key unlocked without anyone noticing.
            return Err(file_error(
                path,
                format!("locked: unknown key {key:?} (known: {})", KEYS.join(", ")),
            ));
        }
    }
    check_table(&table).map_err(|m| file_error(path, m))?;
    if !system && doc.apps.iter().any(|a| a.secret.is_some()) {
        // The hub would have to keep it in a plain file it owns; the CLI
        // makes secrets that go straight to the secret store instead.
        return Err(file_error(
            path,
            "[[apps]]: a secret belongs in the system file only; use `lockstep-hub apps rotate-secret CLIENT_ID`",
        ));
    }
    if !system && doc.apps.iter().any(|a| a.preapproved) {
        // Only IT may decide for the clinician.
        return Err(file_error(
            path,
            "[[apps]]: preapproved belongs in the system file only",
        ));
    }
    let mut ids = BTreeSet::new();
    for app in &doc.apps {
        check_app(app).map_err(|m| file_error(path, m))?;
        if !ids.insert(app.client_id.as_str()) {
            return Err(file_error(
                path,
                format!("[[apps]]: client_id {:?} appears twice", app.client_id),
            ));
        }
    }
    Ok(Parsed { table, doc })
}

/// Range checks on the values a file (or the dashboard) sets.
fn check_table(table: &toml::Table) -> Result<(), String> {
    for (key, value) in table {
        if key == "locked" || key == "apps" {
            continue;
        }
        check_value(key, value)?;
    }
    Ok(())
}

fn int(key: &str, value: &toml::Value) -> Result<i64, String> {
    value
        .as_integer()
        .ok_or_else(|| format!("{key}: expected a whole number"))
}

pub(super) fn check_value(key: &str, value: &toml::Value) -> Result<(), String> {
    let range = |lo: i64, hi: i64, unit: &str| -> Result<(), String> {
        let n = int(key, value)?;
        if (lo..=hi).contains(&n) {
            Ok(())
        } else {
            Err(format!("{key}: {n} is out of range ({lo} to {hi} {unit})"))
        }
    };
    match key {
        "port" => range(1, 65535, ""),
        "ack_timeout_ms" => range(100, 600_000, "ms"),
        "grace_period_ms" => range(0, 3_600_000, "ms"),
        "lease_default_secs" | "lease_max_secs" => range(1, 365 * 24 * 3600, "s"),
        "token_lifetime_secs" => range(60, 30 * 24 * 3600, "s"),
        "topic_idle_secs" => range(1, 7 * 24 * 3600, "s"),
        "journal_max_mb" => range(1, 1024 * 1024, "MB"),
        "address" => value
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(|_| ())
            .ok_or_else(|| format!("{key}: expected an IP address, e.g. \"127.0.0.1\"")),
        "tls" | "notifications" | "start_at_login" | "peer_check" => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| format!("{key}: expected true or false")),
        "allowed_origins" => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("{key}: expected a list of origins"))?;
            for o in list {
                let s = o
                    .as_str()
                    .ok_or_else(|| format!("{key}: expected a list of origins"))?;
                if !(s.starts_with("https://") || s.starts_with("http://")) || s.contains(' ') {
                    return Err(format!(
                        "{key}: {s:?} is not an origin like https://viewer.hospital.org"
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "unknown setting {other:?} (known: {})",
            KEYS.join(", ")
        )),
    }
}

fn check_app(app: &AppEntry) -> Result<(), String> {
    let id_ok = !app.client_id.is_empty()
        && app.client_id.len() <= 64
        && app
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !id_ok {
        return Err(format!(
            "[[apps]]: client_id {:?} must be 1-64 letters, digits, '-', '_' or '.'",
            app.client_id
        ));
    }
    if app.name.trim().is_empty() {
        return Err(format!("[[apps]] {}: a name is needed", app.client_id));
    }
    if crate::auth::scopes::Scopes::parse(&app.scopes).is_empty() {
        return Err(format!(
            "[[apps]] {}: at least one fhircast/ scope is needed, e.g. \"fhircast/*.read\"",
            app.client_id
        ));
    }
    if !app.redirect_uris.is_empty() {
        crate::auth::smart::BrowserApp {
            redirect_uris: app.redirect_uris.clone(),
            launch_url: app.launch_url.clone(),
            preapproved: app.preapproved,
        }
        .checked()
        .map_err(|e| format!("[[apps]] {}: {e}", app.client_id))?;
    } else if app.launch_url.is_some() || app.preapproved {
        return Err(format!(
            "[[apps]] {}: launch_url and preapproved are for browser apps: add redirect_uris",
            app.client_id
        ));
    }
    if app.secret.as_ref().is_some_and(|s| s.len() < 32) {
        // The store keeps a plain SHA-256: only long random secrets are safe.
        return Err(format!(
            "[[apps]] {}: the secret must be at least 32 characters (e.g. `openssl rand -base64 32`)",
            app.client_id
        ));
    }
    Ok(())
}
