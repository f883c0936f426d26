//! What support can do from the dashboard: close every open context of a
//! topic, drop one subscription, pause and resume delivery. Each is a `Hub`
//! method (the tray can call them too) and a small handler.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhircast::{notification, Event, Version};
use serde_json::{json, Map, Value};
use tracing::info;

use super::audited;
use super::auth::json_error;
use crate::delivery::replay;
use crate::ids::{self, short};
use crate::state::HubEvent;
use crate::state::State as HubState;
use crate::subscriptions::remove;
use crate::sync_error::{sync_error_frame, Expect, Failure};
use crate::Hub;

/// Why a dashboard action was refused.
#[derive(Debug)]
pub enum ActionError {
    NotFound(String),
    Ambiguous(String),
}

impl Hub {
    /// Closes every open context of `topic`, newest first, by publishing
    /// the matching `*-close` events as if an app had: every subscriber is
    /// told, in order. Returns how many were closed.
    pub fn close_all(&self, topic: &str) -> Result<usize, ActionError> {
        let opens: Vec<Map<String, Value>> = {
            let state = self.lock();
            let t = state
                .topics
                .get(topic)
                .ok_or_else(|| ActionError::NotFound(format!("no topic {topic:?}")))?;
            t.contexts
                .open_contexts()
                .iter()
                .rev()
                .map(|c| c.open_message.clone())
                .collect()
        };
        let mut closed = 0;
        for open in opens {
            let Some(mut close) = notification::close_of(&open, &ids::uuid(), &ids::now()) else {
                continue;
            };
            // The topic as the caller named it, as an app would publish it.
            close["event"]["hub.topic"] = topic.into();
            // Built here, not read from a request: validated as a value,
            // without a round trip through text.
            let parsed = Event::from_value(Value::Object(close), Version::Stu3);
            // A context closed meanwhile by an app is simply skipped.
            if let Ok(event) = parsed {
                if self.publish(event).is_ok() {
                    closed += 1;
                }
            }
        }
        info!(
            topic = short(topic),
            closed, "contexts closed from the dashboard"
        );
        Ok(closed)
    }

    /// Ends a subscription named by its full endpoint id or a unique prefix
    /// of at least 8 characters (what the dashboard shows): a denial, a
    /// close, and `HubEvent::Left` with reason "dropped by support".
    pub fn drop_subscription(&self, endpoint: &str) -> Result<String, ActionError> {
        let reason = "dropped by support";
        let mut state = self.lock();
        let (id, topic) = find_endpoint(&state, endpoint)?;
        let sub = remove(&mut state, &topic, &id, Some((reason, 1000)))
            .ok_or_else(|| ActionError::NotFound(format!("no subscription {endpoint:?}")))?;
        drop(state);
        let name = sub.display_name();
        info!(topic = short(&topic), endpoint = short(&id), subscriber = %name, "dropped by support");
        self.emit(HubEvent::Left {
            topic,
            subscriber: name.clone(),
            reason: reason.into(),
        });
        Ok(name)
    }
}

/// The subscription named by its full endpoint id or a unique prefix of at
/// least 8 characters (what the dashboard shows): `(endpoint id, topic)`.
fn find_endpoint(state: &HubState, endpoint: &str) -> Result<(String, String), ActionError> {
    let found: Vec<(&String, &String)> = state
        .endpoints
        .iter()
        .filter(|(id, _)| *id == endpoint || (endpoint.len() >= 8 && id.starts_with(endpoint)))
        .collect();
    match found.as_slice() {
        [(id, topic)] => Ok(((*id).clone(), (*topic).clone())),
        [] => Err(ActionError::NotFound(format!(
            "no subscription {endpoint:?}"
        ))),
        _ => Err(ActionError::Ambiguous(format!(
            "{endpoint:?} names more than one subscription; use more characters"
        ))),
    }
}

impl Hub {
    /// Breaks one app's link (CCOW's "break link"): it is sent no context
    /// change until [`Hub::rejoin`]. It is told with a SyncError naming it,
    /// the one message every FHIRcast app shows; its row says "paused".
    pub fn break_link(&self, endpoint: &str) -> Result<String, ActionError> {
        let mut state = self.lock();
        let (id, topic_id) = find_endpoint(&state, endpoint)?;
        let topic = state.topics.get_mut(&topic_id).expect("endpoint's topic");
        let sub = topic
            .subscriptions
            .get_mut(&id)
            .expect("endpoint's subscription");
        let name = sub.display_name();
        if sub.unlinked.is_none() {
            sub.unlinked = Some(Vec::new());
            if let Some(conn) = &sub.conn {
                let current = topic.contexts.current().map(|c| c.open_message.clone());
                let event_id = current
                    .as_ref()
                    .and_then(notification::id)
                    .unwrap_or("unknown");
                let event_name = current
                    .as_ref()
                    .and_then(fhircast::notification::event_name)
                    .unwrap_or("unknown");
                let (_, frame) = sync_error_frame(
                    &topic_id,
                    event_id,
                    event_name,
                    &name,
                    "Lockstep support paused context sync for this app: it will not follow context changes until it is rejoined",
                );
                // Best effort: a full queue means the app is failing anyway.
                let _ = conn.tx.try_send(frame);
            }
        }
        drop(state);
        info!(topic = short(&topic_id), endpoint = short(&id), subscriber = %name, "link broken by support");
        self.emit(HubEvent::LinkBroken {
            topic: topic_id,
            subscriber: name.clone(),
        });
        Ok(name)
    }

    /// Rejoins an app whose link was broken: the closes it missed, then the
    /// current context (what a new connection gets), so it ends where the
    /// hub is.
    pub fn rejoin(&self, endpoint: &str) -> Result<String, ActionError> {
        let (name, topic_id, failures) = {
            let mut state = self.lock();
            let (id, topic_id) = find_endpoint(&state, endpoint)?;
            let topic = state.topics.get_mut(&topic_id).expect("endpoint's topic");
            let contexts = &topic.contexts;
            let sub = topic
                .subscriptions
                .get_mut(&id)
                .expect("endpoint's subscription");
            let name = sub.display_name();
            let mut failures = Vec::new();
            if let Some(held) = sub.unlinked.take() {
                if let Some(conn) = &sub.conn {
                    let frames = held
                        .into_iter()
                        .chain(replay(contexts, &sub.events, |_| true));
                    for frame in frames {
                        if let Some(ack) = &frame.ack {
                            sub.last_event = Some(ack.clone());
                        }
                        if conn.tx.try_send(frame).is_err() {
                            failures.push(Failure {
                                topic: topic_id.clone(),
                                endpoint_id: id.clone(),
                                expect: Expect::Conn(conn.id),
                                event_id: "unknown".to_owned(),
                                event_name: "rejoin".to_owned(),
                                diagnostics:
                                    "not keeping up: its queue was full when it was rejoined"
                                        .to_owned(),
                            });
                            break;
                        }
                    }
                }
            }
            (name, topic_id, failures)
        };
        info!(topic = short(&topic_id), subscriber = %name, "rejoined by support");
        self.emit(HubEvent::Rejoined {
            topic: topic_id,
            subscriber: name.clone(),
        });
        self.fail_all(failures);
        Ok(name)
    }
}

pub(crate) async fn break_link(State(hub): State<Hub>, Path(endpoint): Path<String>) -> Response {
    let (detail, answer) = match hub.break_link(&endpoint) {
        Ok(name) => (
            format!("break the link of {name}"),
            axum::Json(json!({"unlinked": name})).into_response(),
        ),
        Err(e) => (format!("break link {}", short(&endpoint)), refused(e)),
    };
    audited(&hub, None, detail, answer)
}

pub(crate) async fn rejoin(State(hub): State<Hub>, Path(endpoint): Path<String>) -> Response {
    let (detail, answer) = match hub.rejoin(&endpoint) {
        Ok(name) => (
            format!("rejoin {name}"),
            axum::Json(json!({"rejoined": name})).into_response(),
        ),
        Err(e) => (format!("rejoin {}", short(&endpoint)), refused(e)),
    };
    audited(&hub, None, detail, answer)
}

/// `POST /admin/api/sync-errors/{seq}/acknowledge`: someone saw it.
pub(crate) async fn acknowledge(State(hub): State<Hub>, Path(seq): Path<u64>) -> Response {
    let cleared = hub.admin().acknowledge_alarms(Some(seq));
    let (detail, answer) = match cleared.first() {
        Some(a) => (
            format!("acknowledge the SyncError about {} ({})", a.app, a.event),
            axum::Json(json!({"acknowledged": 1})).into_response(),
        ),
        None => (
            format!("acknowledge SyncError {seq}"),
            json_error(StatusCode::NOT_FOUND, &format!("no open SyncError {seq}")),
        ),
    };
    audited(&hub, None, detail, answer)
}

/// `POST /admin/api/sync-errors/acknowledge`: all of them.
pub(crate) async fn acknowledge_all(State(hub): State<Hub>) -> Response {
    let n = hub.admin().acknowledge_alarms(None).len();
    let answer = axum::Json(json!({"acknowledged": n})).into_response();
    audited(&hub, None, format!("acknowledge {n} SyncErrors"), answer)
}

fn refused(e: ActionError) -> Response {
    match e {
        ActionError::NotFound(m) => json_error(StatusCode::NOT_FOUND, &m),
        ActionError::Ambiguous(m) => json_error(StatusCode::CONFLICT, &m),
    }
}

pub(crate) async fn close_all(State(hub): State<Hub>, Path(topic): Path<String>) -> Response {
    let (detail, answer) = match hub.close_all(&topic) {
        Ok(closed) => (
            format!("close all contexts: {closed} closed"),
            axum::Json(json!({"closed": closed})).into_response(),
        ),
        Err(e) => ("close all contexts".to_owned(), refused(e)),
    };
    audited(&hub, Some(&topic), detail, answer)
}

pub(crate) async fn drop_subscription(
    State(hub): State<Hub>,
    Path(endpoint): Path<String>,
) -> Response {
    let (detail, answer) = match hub.drop_subscription(&endpoint) {
        Ok(name) => (
            format!("drop the subscription of {name}"),
            axum::Json(json!({"dropped": name})).into_response(),
        ),
        Err(e) => (
            format!("drop subscription {}", short(&endpoint)),
            refused(e),
        ),
    };
    audited(&hub, None, detail, answer)
}

pub(crate) async fn pause(State(hub): State<Hub>) -> Response {
    hub.pause();
    let answer = axum::Json(json!({"paused": true})).into_response();
    audited(&hub, None, "pause sync", answer)
}

pub(crate) async fn resume(State(hub): State<Hub>) -> Response {
    hub.resume();
    let answer = axum::Json(json!({"paused": false})).into_response();
    audited(&hub, None, "resume sync", answer)
}
