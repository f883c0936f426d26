//! The dashboard's read model: `GET /admin/api/state` (topics, open
//! contexts with versions and content, subscriptions, departed apps,
//! recent events, settings) and `GET /admin/api/events.ndjson`.
//!
//! Everything is copied out under the hub lock (shared bytes for events);
//! event JSON is parsed after the lock is released.

use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::Recorded;
use crate::ids::short;
use crate::topic::{Subscription, Topic};
use crate::{paths, Hub};

#[derive(Deserialize)]
pub(crate) struct StateQuery {
    /// Only events after this sequence number (the UI's last one).
    since: Option<u64>,
}

pub(crate) async fn state(State(hub): State<Hub>, Query(q): Query<StateQuery>) -> Response {
    axum::Json(read_model(&hub, q.since.unwrap_or(0))).into_response()
}

/// Everything the dashboard shows, as JSON.
pub(crate) fn read_model(hub: &Hub, since: u64) -> Value {
    let (mut topics, events, paused, last_seq) = {
        let state = hub.lock();
        let paused = state.paused.is_some();
        let topics: Vec<Value> = state
            .topics
            .iter()
            .map(|(id, t)| topic_json(hub, id, t, paused))
            .collect();
        // Under the hub lock, so the events match the topics.
        let recent = hub.admin().recent();
        (
            topics,
            recent.since(since),
            state.paused.is_some(),
            recent.next_seq,
        )
    };
    // The clinician's session first, then the others by id.
    topics.sort_by_key(|t| {
        let session = t["session"].as_bool().unwrap_or(false);
        (!session, t["topic"].as_str().unwrap_or_default().to_owned())
    });
    let events: Vec<Value> = events.iter().map(event_json).collect();
    json!({
        "hub": {
            "version": env!("CARGO_PKG_VERSION"),
            "url": hub_url(hub),
            "paused": paused,
            "now": crate::ids::now(),
            // lockstep.db and its WAL, in bytes (issue 14.7); null without
            // durable state.
            "databaseBytes": hub.storage().map(|s| s.size_on_disk()),
            "journalMaxBytes": hub.storage().map(|_| hub.config().journal_max_bytes),
        },
        "settings": settings(hub),
        "topics": topics,
        "gone": hub.admin().gone(),
        "syncErrors": hub.admin().open_alarms(),
        "events": events,
        "lastSeq": last_seq,
    })
}

fn hub_url(hub: &Hub) -> String {
    let addr = hub.local_addr().unwrap_or(hub.config().listen);
    let scheme = hub.config().http_scheme();
    format!("{scheme}://{addr}{}", paths::STU3_PATH)
}

fn topic_json(hub: &Hub, id: &str, topic: &Topic, paused: bool) -> Value {
    let current = topic.contexts.current().map(|c| c.version_id.clone());
    let contexts: Vec<Value> = topic
        .contexts
        .open_contexts()
        .iter()
        .rev()
        .map(|c| {
            // The same rules as the tray's label (crate::summary): the
            // dashboard formats no patient itself.
            let summary = crate::summary::summarize(&json!({
                "context.type": c.anchor_type,
                "context": c.open_message["event"]["context"],
            }));
            json!({
                "summary": summary,
                "anchorType": c.anchor_type,
                "anchorId": c.anchor_id,
                "versionId": c.version_id,
                "current": current.as_deref() == Some(c.version_id.as_str()),
                "open": c.open_message,
                "content": c.content.to_bundle(&c.version_id),
                "history": c.history,
            })
        })
        .collect();
    let mut subs: Vec<&Subscription> = topic.subscriptions.values().collect();
    subs.sort_by_key(|s| s.display_name());
    let snapshot = topic.contexts.snapshot();
    json!({
        "topic": id,
        "session": id == hub.session_topic(),
        "summary": crate::summary::summarize(&snapshot),
        "current": snapshot,
        "contexts": contexts,
        "subscriptions": subs.iter().map(|s| subscription_json(hub, s, paused)).collect::<Vec<_>>(),
    })
}

fn subscription_json(hub: &Hub, sub: &Subscription, paused: bool) -> Value {
    let now = Instant::now();
    let grace = hub.grace_period();
    let since = sub.since.map(crate::ids::format_time);
    let (state, label) = connection_state(sub);
    let grace_left = match (sub.lost, sub.since) {
        (Some(_), Some(t)) if sub.conn.is_none() => {
            let gone_for = t.elapsed().unwrap_or_default();
            Some(grace.saturating_sub(gone_for).as_secs_f64())
        }
        _ => None,
    };
    let last_ack = sub.acks.last().map(
        |(status, latency, count)| json!({"status": status, "latencyMs": latency, "count": count}),
    );
    let queue_depth = sub
        .conn
        .as_ref()
        .map(|c| c.tx.max_capacity() - c.tx.capacity());
    json!({
        "endpoint": short(&sub.endpoint_id),
        "name": sub.display_name(),
        "named": sub.name.is_some(),
        "channel": if sub.webhook.is_some() { "webhook" } else { "websocket" },
        "events": sub.events.iter().map(|e| e.as_str()).collect::<Vec<_>>(),
        "leaseLeftSecs": sub.lease_until.saturating_duration_since(now).as_secs(),
        "connected": sub.conn.is_some(),
        "connectedSince": if sub.conn.is_some() { since.clone() } else { None },
        "disconnectedSince": if sub.conn.is_none() { since } else { None },
        "graceLeftSecs": grace_left,
        "state": state,
        "stateLabel": label,
        "sync": sync_json(hub, sub, paused),
        "lastAck": last_ack,
        "queueDepth": queue_depth,
        "queueCapacity": hub.config().queue_capacity,
    })
}

/// Is the app on the hub's context? Computed from what it acknowledged:
/// `in-sync` (nothing sent is waiting for its ACK), `behind` (something
/// is, or it has not connected yet), `refused` (its last ACK was an
/// error), `unresponsive` (its socket is gone), `paused` (its link, or all
/// delivery, is paused by support), `no-ack` (registered as an app that
/// does not acknowledge: connected, state unknowable). With the context
/// it last acknowledged.
pub(crate) fn sync_state(
    hub: &Hub,
    sub: &Subscription,
    hub_paused: bool,
) -> (&'static str, &'static str) {
    let refused = sub.acks.last_status().is_some_and(|s| s >= 400);
    match () {
        _ if sub.unlinked.is_some() => ("paused", "Link broken by support"),
        _ if hub_paused => ("paused", "Sync paused"),
        _ if sub.conn.is_none() && !sub.ever_connected => ("behind", "Not connected yet"),
        _ if sub.conn.is_none() => ("unresponsive", "Not connected"),
        _ if refused => ("refused", "Refused the last event"),
        _ if !hub.expects_acks(sub.client_id.as_deref()) => ("no-ack", "Does not acknowledge"),
        _ if sub.acks.pending() > 0 => ("behind", "Waiting for its ACK"),
        _ => ("in-sync", "In sync"),
    }
}

fn sync_json(hub: &Hub, sub: &Subscription, paused: bool) -> Value {
    let (state, label) = sync_state(hub, sub, paused);
    let acked = sub.acks.last_acked().map(|a| {
        json!({
            "event": a.event.as_str(),
            "id": a.id.as_str(),
            "versionId": a.version.as_ref().map(|v| v.as_str()),
            "at": crate::ids::format_time(a.at),
        })
    });
    json!({"state": state, "label": label, "acked": acked, "pending": sub.acks.pending()})
}

/// A subscription's connection state: `(id, label)`, shared by the
/// dashboard and [`Hub::subscribers`].
pub(super) fn connection_state(sub: &Subscription) -> (&'static str, &'static str) {
    match (&sub.conn, sub.lost) {
        (Some(_), _) => ("connected", "Connected"),
        (None, Some(_)) => ("grace", "Lost, waiting for reconnect"),
        (None, None) if sub.ever_connected => ("disconnected", "Disconnected"),
        (None, None) => ("waiting", "Not connected yet"),
    }
}

fn event_json(r: &Recorded) -> Value {
    json!({
        "seq": r.seq,
        "received": r.received.map(crate::ids::format_time),
        "topic": r.topic,
        "direction": r.direction,
        "name": r.name,
        "app": r.app,
        "deliveredTo": r.delivered_to.iter().map(|s| s.as_ref()).collect::<Vec<&str>>(),
        "held": r.held,
        "event": serde_json::from_str::<Value>(&r.text).unwrap_or(Value::Null),
    })
}

/// What the hub runs with, and where each setting comes from.
fn settings(hub: &Hub) -> Value {
    let c = hub.config();
    let addr = hub.local_addr().unwrap_or(c.listen);
    let flag = |f: &str| format!("flag {f}");
    let tray = "the tray app".to_owned();
    json!({
        "port": {"label": "Port", "value": addr.port(), "source": flag("--listen")},
        "listen": {"label": "Listening on", "value": addr.to_string(), "source": flag("--listen")},
        "remote": {"label": "Reachable from other machines", "value": c.allow_remote, "source": flag("--allow-remote")},
        "tls": {"label": "TLS", "value": c.tls, "source": flag("--tls")},
        "maxConnections": {"label": "Most connections at once", "value": c.max_connections, "source": flag("--max-connections")},
        "auth": {"label": "App authorization", "value": if c.no_auth { "off" } else { "on" }, "source": flag("--no-auth")},
        "ackTimeoutMs": {"label": "ACK timeout (ms)", "value": hub.ack_timeout().as_millis() as u64, "source": flag("--ack-timeout-ms")},
        "gracePeriodMs": {"label": "Reconnect grace period (ms)", "value": hub.grace_period().as_millis() as u64, "source": flag("--grace-period-ms")},
        "leaseDefaultSecs": {"label": "Default lease (s)", "value": c.lease_default.as_secs(), "source": flag("--lease-default-secs")},
        "queueCapacity": {"label": "Queue per app (notifications)", "value": c.queue_capacity, "source": flag("--queue-capacity")},
        "notifications": {"label": "Desktop notifications", "value": Value::Null, "source": tray.clone()},
        "startAtLogin": {"label": "Start at login", "value": Value::Null, "source": tray},
        "dataDir": {"label": "Data folder", "value": c.data_dir.display().to_string(), "source": flag("--data-dir")},
    })
}

/// `GET /admin/api/events.ndjson`: the recent events, oldest first, one
/// JSON object per line.
pub(crate) async fn export(State(hub): State<Hub>) -> Response {
    let events = hub.admin().recent().since(0);
    let mut body = String::new();
    for e in &events {
        body.push_str(&event_json(e).to_string());
        body.push('\n');
    }
    (
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"lockstep-events.ndjson\"",
            ),
        ],
        body,
    )
        .into_response()
}
