//! The dashboard's side of the hub: an admin API under `/admin/api` (read
//! model, live feed, support actions), the one-time login link, and the UI
//! files served at `/ui/`.
//!
//! - `auth.rs`: the admin token, one-time links, session cookies.
//! - `model.rs`: `GET /admin/api/state`, the read model, and the NDJSON export.
//! - `live.rs`: `GET /admin/api/live`, a WebSocket fed by `Hub::events()`.
//! - `actions.rs`: close all contexts, drop a subscription, pause/resume.
//! - `settings.rs`: `GET`/`PUT /admin/api/settings`, the settings files.
//! - `roster.rs`: the subscriptions as a plain list, for the tray's menu.
//! - `ui.rs`: the bundled UI (`ui/dist`, embedded in the binary).
//!
//! This module only observes the protocol state and calls `Hub` methods.
//! `Admin` is the dashboard's recorder (`crate::recorder`): the core tells
//! it what happened; what it keeps (recent events, departed apps, open
//! alarms) is small and bounded so that a busy hub does not grow.

mod actions;
mod apps;
mod audit;
mod auth;
mod live;
mod model;
mod roster;
mod settings;
mod ui;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use axum::extract::ws::Utf8Bytes;
use axum::middleware;
use axum::routing::{get, post};
use axum::Router;

pub use actions::ActionError;
pub use roster::SubscriberInfo;

use crate::recorder::{Accepted, Durable, Recorder, SyncErrorSent};
use crate::state::HubEvent;
use crate::storage::{AuditAction, AuditRecord};
use crate::topic::Frame;
use crate::Hub;

/// A change made through the admin API, in the audit trail with the
/// status it was answered with (see `Hub::audit_admin`).
pub(crate) fn audited(
    hub: &Hub,
    topic: Option<&str>,
    detail: impl Into<String>,
    answer: axum::response::Response,
) -> axum::response::Response {
    let outcome = answer.status().as_u16().to_string();
    hub.audit_admin("dashboard", topic, &detail.into(), &outcome);
    answer
}

impl Hub {
    /// Records what support changed by hand (action `admin`): `by` is the
    /// front end ("dashboard", "tray"; the admin credential names no
    /// person), `detail` what was done in hub-side facts only (a client id,
    /// settings keys, a count; never a secret or patient data), `outcome`
    /// the answer.
    pub fn audit_admin(&self, by: &str, topic: Option<&str>, detail: &str, outcome: &str) {
        let mut r = AuditRecord::new(AuditAction::Admin, outcome);
        r.subscriber_name = Some(by.to_owned());
        r.topic = topic.map(str::to_owned);
        r.detail = Some(detail.to_owned());
        self.audit(r);
    }
}

/// Recent events kept for the dashboard and its NDJSON export.
const RECENT_MAX: usize = 200;
/// Departed subscriptions kept for the *Apps* view.
const GONE_MAX: usize = 50;

/// Dashboard state that lives beside the topics: credentials, the recent
/// events, the apps that left and the open alarms. It is the dashboard's
/// recorder: the core tells it what happened.
pub(crate) struct Admin {
    creds: auth::Credentials,
    /// The last events accepted or generated, in delivery order (the core
    /// reports them under the hub lock).
    recent: Mutex<Recent>,
    gone: Mutex<VecDeque<Gone>>,
    /// SyncErrors not yet acknowledged on the dashboard.
    alarms: Mutex<Alarms>,
}

/// SyncErrors shown until acknowledged; more than this many unacknowledged
/// means something is badly wrong, and the oldest go first.
const ALARMS_MAX: usize = 100;

#[derive(Default)]
struct Alarms {
    next: u64,
    open: VecDeque<Alarm>,
}

/// A SyncError as the Now view shows it until someone acknowledges it.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Alarm {
    pub seq: u64,
    pub topic: String,
    pub app: String,
    pub event: String,
    pub reason: String,
    pub when: String,
}

#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Gone {
    topic: String,
    name: String,
    when: String,
    why: String,
}

impl Admin {
    pub(crate) fn new() -> Admin {
        Admin {
            creds: auth::Credentials::new(),
            recent: Mutex::new(Recent::default()),
            gone: Mutex::new(VecDeque::new()),
            alarms: Mutex::new(Alarms::default()),
        }
    }

    /// Sees every `HubEvent` as it is emitted; remembers who left and why.
    pub(crate) fn observe(&self, event: &HubEvent) {
        if let HubEvent::Left {
            topic,
            subscriber,
            reason,
        } = event
        {
            let mut gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
            if gone.len() >= GONE_MAX {
                gone.pop_front();
            }
            gone.push_back(Gone {
                topic: topic.clone(),
                name: subscriber.clone(),
                when: crate::ids::now(),
                why: reason.clone(),
            });
        }
        if let HubEvent::SyncError {
            topic,
            subscriber,
            event,
            reason,
        } = event
        {
            let mut alarms = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
            alarms.next += 1;
            let seq = alarms.next;
            if alarms.open.len() >= ALARMS_MAX {
                alarms.open.pop_front();
            }
            alarms.open.push_back(Alarm {
                seq,
                topic: topic.clone(),
                app: subscriber.clone(),
                event: event.clone(),
                reason: reason.clone(),
                when: crate::ids::now(),
            });
        }
    }

    /// The SyncErrors nobody has acknowledged on the dashboard yet, newest
    /// first: they stay on the Now view until someone does.
    pub(crate) fn open_alarms(&self) -> Vec<Alarm> {
        let alarms = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
        alarms.open.iter().rev().cloned().collect()
    }

    /// Acknowledges one SyncError (or all with `None`); what was cleared.
    pub(crate) fn acknowledge_alarms(&self, seq: Option<u64>) -> Vec<Alarm> {
        let mut alarms = self.alarms.lock().unwrap_or_else(|e| e.into_inner());
        let (cleared, kept): (Vec<Alarm>, Vec<Alarm>) = alarms
            .open
            .drain(..)
            .partition(|a| seq.is_none_or(|s| a.seq == s));
        alarms.open = kept.into();
        cleared
    }

    /// The recent events. Taken under the hub lock by the read model, as
    /// the core does when it reports: always hub lock first.
    pub(crate) fn recent(&self) -> MutexGuard<'_, Recent> {
        self.recent.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn gone(&self) -> Vec<Gone> {
        let gone = self.gone.lock().unwrap_or_else(|e| e.into_inner());
        gone.iter().rev().cloned().collect()
    }
}

/// The last events the hub accepted or generated, oldest first, recorded
/// under the hub lock so that their order is the delivery order.
#[derive(Default)]
pub(crate) struct Recent {
    items: VecDeque<Recorded>,
    next_seq: u64,
}

/// One event as the dashboard shows it. The text is the broadcast bytes,
/// shared with the delivery (no copy).
#[derive(Clone, Default)]
pub(crate) struct Recorded {
    seq: u64,
    /// Formatted when read, not on the publish path.
    received: Option<SystemTime>,
    topic: String,
    /// `in` (published by an app), `derived` (implied open events), `out`
    /// (made by the hub: SyncError).
    direction: &'static str,
    name: String,
    /// The app an `out` event is about.
    app: Option<String>,
    delivered_to: Vec<Arc<str>>,
    /// Accepted while delivery was paused.
    held: bool,
    text: Utf8Bytes,
}

impl Recorded {
    /// An event the hub made itself.
    pub(crate) fn out(
        topic: &str,
        name: &str,
        text: &Utf8Bytes,
        app: Option<String>,
        delivered_to: Vec<Arc<str>>,
    ) -> Recorded {
        Recorded {
            topic: topic.to_owned(),
            direction: "out",
            name: name.to_owned(),
            app,
            delivered_to,
            text: text.clone(),
            ..Recorded::default()
        }
    }
}

impl Recent {
    pub(crate) fn push(&mut self, mut item: Recorded) {
        self.next_seq += 1;
        item.seq = self.next_seq;
        item.received = Some(SystemTime::now());
        if self.items.len() >= RECENT_MAX {
            self.items.pop_front();
        }
        self.items.push_back(item);
    }

    fn since(&self, seq: u64) -> Vec<Recorded> {
        self.items.iter().filter(|r| r.seq > seq).cloned().collect()
    }
}

impl Recorder for Admin {
    /// Records a publish and the derived opens that went out with it.
    /// `told` is who `deliver` sent the event to (nobody while paused);
    /// for derived opens this follows `deliver`'s rule: a subscriber of
    /// the event itself never gets the derived ones.
    fn accepted(&self, a: &Accepted<'_>) -> Option<Durable> {
        let (topic_id, folded) = (&a.event.topic, a.event.name.folded());
        let name = |f: &Frame| f.ack.as_ref().map(|a| a.1.to_string()).unwrap_or_default();
        let mut recent = self.recent();
        recent.push(Recorded {
            topic: topic_id.to_owned(),
            direction: "in",
            name: a.event.name.to_string(),
            delivered_to: a.told.to_vec(),
            held: a.held,
            text: a.frame.text.clone(),
            ..Recorded::default()
        });
        for (derived_name, f) in a.derived {
            let to: Vec<Arc<str>> = a
                .topic
                .subscriptions
                .values()
                .filter(|s| s.conn.is_some() && !s.events.contains_folded(folded))
                .filter(|s| s.events.contains_folded(derived_name))
                .map(|s| s.label())
                .collect();
            if !to.is_empty() {
                recent.push(Recorded {
                    topic: topic_id.to_owned(),
                    direction: "derived",
                    name: name(f),
                    delivered_to: to,
                    held: a.held,
                    text: f.text.clone(),
                    ..Recorded::default()
                });
            }
        }
        None
    }

    fn sync_error(&self, s: &SyncErrorSent<'_>) {
        let about = Some(s.subscriber.to_owned());
        let told = s.told.to_vec();
        let recorded = Recorded::out(s.topic, "SyncError", &s.frame.text, about, told);
        self.recent().push(recorded);
    }

    fn announced(&self, event: &HubEvent) {
        self.observe(event);
    }
}

impl Hub {
    /// The dashboard's state; `Hub::new` always installs it.
    pub(crate) fn admin(&self) -> &Admin {
        self.recorder::<Admin>()
            .expect("Hub::new installs the dashboard's recorder")
    }
}

/// `/admin/login`, `/admin/api/*` (credential required) and `/ui/`.
pub fn router(hub: Hub) -> Router {
    let api = Router::new()
        .route("/state", get(model::state))
        .route("/events.ndjson", get(model::export))
        .route("/audit", get(audit::export))
        .route("/live", get(live::upgrade))
        .route("/session", post(auth::session))
        .route("/pause", post(actions::pause))
        .route("/resume", post(actions::resume))
        .route("/topics/{topic}/close-all", post(actions::close_all))
        .route(
            "/subscriptions/{endpoint}/drop",
            post(actions::drop_subscription),
        )
        .route("/sync-errors/acknowledge", post(actions::acknowledge_all))
        .route("/sync-errors/{seq}/acknowledge", post(actions::acknowledge))
        .route(
            "/subscriptions/{endpoint}/break-link",
            post(actions::break_link),
        )
        .route("/subscriptions/{endpoint}/rejoin", post(actions::rejoin))
        .merge(apps::routes())
        .merge(settings::routes())
        .fallback(|| async {
            auth::json_error(axum::http::StatusCode::NOT_FOUND, "no such admin endpoint")
        })
        .route_layer(middleware::from_fn_with_state(hub.clone(), auth::require));
    Router::new()
        .route("/admin/login", get(auth::login))
        .nest("/admin/api", api)
        .merge(ui::routes())
        .with_state(hub)
}
