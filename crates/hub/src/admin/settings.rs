//! `GET /admin/api/settings`: every setting with its value, where it comes
//! from (default, system file, user file, flag) and whether IT manages it.
//! `PUT /admin/api/settings`: changes to the user's file (never the system
//! file); a key IT locked is refused with 403. Files are re-read on each
//! call, so the answer shows what the next start will use beside what the
//! hub runs with now. The ACK timeout and the grace period apply at once
//! (`state::LiveTimeouts`); every other change when the hub (or, for the
//! tray keys, the tray app) next starts: the hub reads its `Config` once.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::auth::json_error;
use crate::settings::{self, Settings, SettingsFiles, Source, UpdateError, KEYS, TRAY_KEYS};
use crate::Hub;

pub(crate) fn routes() -> Router<Hub> {
    Router::new().route("/settings", get(read).put(write))
}

/// Label, input kind and unit of each key, for the dashboard.
fn describe(key: &str) -> (&'static str, &'static str, &'static str) {
    match key {
        "port" => ("Port", "number", ""),
        "address" => ("Listening address", "text", ""),
        "tls" => ("TLS (HTTPS)", "bool", ""),
        "ack_timeout_ms" => ("ACK timeout", "number", "ms"),
        "grace_period_ms" => ("Reconnect grace period", "number", "ms"),
        "notifications" => ("Desktop notifications", "bool", ""),
        "start_at_login" => ("Start at login", "bool", ""),
        "allowed_origins" => ("Allowed web origins", "list", ""),
        "lease_default_secs" => ("Default lease", "number", "s"),
        "lease_max_secs" => ("Longest lease", "number", "s"),
        "token_lifetime_secs" => ("Token lifetime", "number", "s"),
        "topic_idle_secs" => ("Keep an unfollowed topic", "number", "s"),
        "journal_max_mb" => ("Event journal size limit", "number", "MB"),
        "peer_check" => ("Serve only this OS user (peer check)", "bool", ""),
        _ => ("", "text", ""),
    }
}

/// What the running hub uses for `key`; `None` for keys it does not read.
fn running(hub: &Hub, key: &str) -> Option<Value> {
    let c = hub.config();
    let addr = hub.local_addr().unwrap_or(c.listen);
    Some(match key {
        "port" => json!(addr.port()),
        "address" => json!(addr.ip().to_string()),
        "ack_timeout_ms" => json!(hub.ack_timeout().as_millis() as u64),
        "grace_period_ms" => json!(hub.grace_period().as_millis() as u64),
        "allowed_origins" => json!(c.allowed_origins),
        "lease_default_secs" => json!(c.lease_default.as_secs()),
        "lease_max_secs" => json!(c.lease_max.as_secs()),
        "token_lifetime_secs" => json!(c.token_lifetime.as_secs()),
        "topic_idle_secs" => json!(c.topic_idle.as_secs()),
        "journal_max_mb" => json!(c.journal_max_bytes / (1024 * 1024)),
        "peer_check" => json!(c.peer_check),
        _ => return None,
    })
}

/// `allowed_origins` is kept without trailing slashes in `Config`.
fn same(a: &Value, b: &Value) -> bool {
    let norm = |v: &Value| match v {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| json!(i.as_str().unwrap_or_default().trim_end_matches('/')))
                .collect(),
        ),
        other => other.clone(),
    };
    norm(a) == norm(b)
}

fn view(hub: &Hub, files: Option<&SettingsFiles>, s: &Settings) -> Value {
    let from_flags: &[&str] = files.map(|f| f.from_flags.as_slice()).unwrap_or(&[]);
    let items: Vec<Value> = KEYS
        .iter()
        .map(|&key| {
            let (label, kind, unit) = describe(key);
            let now = running(hub, key);
            let flag = from_flags.contains(&key);
            let (value, source) = match (&now, flag || files.is_none()) {
                (Some(v), true) => (v.clone(), if flag { Source::Flag } else { Source::Default }),
                _ => (s.value_json(key), s.sources[key]),
            };
            let pending = now.as_ref().is_some_and(|n| !same(n, &value));
            json!({
                "key": key,
                "label": label,
                "kind": kind,
                "unit": unit,
                "value": value,
                "source": source,
                "managed": s.is_locked(key),
                "running": now,
                // Saved, but the hub still runs with the old value.
                "pendingRestart": pending,
                "readBy": if TRAY_KEYS.contains(&key) { "tray" } else { "hub" },
            })
        })
        .collect();
    json!({
        "files": files.map(|f| json!({
            "system": f.layout.system.display().to_string(),
            "user": f.layout.user.display().to_string(),
        })),
        "editable": files.is_some(),
        "settings": items,
        "warnings": s.warnings,
    })
}

/// Re-reads the files on the blocking pool.
async fn load(hub: &Hub) -> Result<Settings, Response> {
    let Some(files) = hub.config().settings_files.clone() else {
        return Ok(Settings::default());
    };
    match tokio::task::spawn_blocking(move || Settings::load(&files.layout)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(e)) => Err(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the system settings file is not valid: {e}"),
        )),
        Err(_) => Err(json_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the settings failed",
        )),
    }
}

async fn read(State(hub): State<Hub>) -> Response {
    match load(&hub).await {
        Ok(s) => axum::Json(view(&hub, hub.config().settings_files.as_ref(), &s)).into_response(),
        Err(r) => r,
    }
}

async fn write(State(hub): State<Hub>, body: axum::body::Bytes) -> Response {
    let (keys, answer) = match serde_json::from_slice(&body) {
        // The keys, not the values: a value could be anything the user typed.
        Ok(Value::Object(changes)) => (
            changes.keys().cloned().collect::<Vec<_>>().join(", "),
            save(&hub, changes).await,
        ),
        _ => (
            "(not a JSON object)".to_owned(),
            json_error(
                StatusCode::BAD_REQUEST,
                "expected a JSON object of settings, e.g. {\"ack_timeout_ms\": 5000}",
            ),
        ),
    };
    super::audited(&hub, None, format!("change settings: {keys}"), answer)
}

async fn save(hub: &Hub, changes: Map<String, Value>) -> Response {
    let Some(files) = hub.config().settings_files.clone() else {
        return json_error(
            StatusCode::CONFLICT,
            "this hub was started without settings files; nothing can be saved",
        );
    };
    let layout = files.layout.clone();
    let to_save = changes.clone();
    let result =
        tokio::task::spawn_blocking(move || settings::update_user_file(&layout, &to_save)).await;
    let saved = match result {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            let status = match &e {
                UpdateError::Locked(_) => StatusCode::FORBIDDEN,
                UpdateError::Invalid(_) => StatusCode::BAD_REQUEST,
                UpdateError::User(_) => StatusCode::CONFLICT,
                UpdateError::System(_) | UpdateError::Write(..) => {
                    StatusCode::INTERNAL_SERVER_ERROR
                }
            };
            let mut body = json!({"error": e.to_string()});
            if let UpdateError::Locked(keys) = &e {
                body["locked"] = json!(keys);
            }
            return (status, axum::Json(body)).into_response();
        }
        Err(_) => {
            return json_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "saving the settings failed",
            )
        }
    };
    tracing::info!(keys = ?changes.keys().collect::<Vec<_>>(), "settings saved from the dashboard");
    // A flag typed when the hub was started keeps winning, live too.
    hub.live()
        .apply(&saved.values, |k| files.from_flags.contains(&k));
    let mut answer = view(hub, Some(&files), &saved);
    let (mut restart, mut live, mut flag_wins) = (Vec::new(), Vec::new(), Vec::new());
    if let Some(items) = answer["settings"].as_array() {
        for item in items
            .iter()
            .filter(|i| i["key"].as_str().is_some_and(|k| changes.contains_key(k)))
        {
            let key = item["key"].clone();
            if item["source"] == "flag" {
                flag_wins.push(key);
            } else if settings::LIVE_KEYS.contains(&item["key"].as_str().unwrap_or_default()) {
                live.push(key);
            } else if item["running"].is_null() || item["pendingRestart"] == true {
                // Not read by the running hub (tray keys, tls), or different.
                restart.push(key);
            }
        }
    }
    answer["saved"] = json!(changes.keys().collect::<Vec<_>>());
    answer["restartNeeded"] = json!(restart);
    answer["appliedNow"] = json!(live);
    answer["overriddenByFlag"] = json!(flag_wins);
    axum::Json(answer).into_response()
}
