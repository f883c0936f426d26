//! What support can do from the dashboard: close every open context of a
//! topic, drop one subscription, pause and resume delivery. Each is a `Hub`
//! method (the tray can call them too) and a small handler.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fhircast::{Event, Version};
use serde_json::{json, Value};
use tracing::info;

use super::audited;
use super::auth::json_error;
use crate::ids::{self, short};
use crate::state::HubEvent;
use crate::subscriptions::remove;
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
        let opens: Vec<Value> = {
            let state = self.lock();
            let t = state
                .topics
                .get(topic)
                .ok_or_else(|| ActionError::NotFound(format!("no topic {topic:?}")))?;
            t.contexts
                .open_contexts()
                .iter()
                .rev()
                .map(|c| c.open_message["event"].clone())
                .collect()
        };
        let mut closed = 0;
        for open in opens {
            let name = open["hub.event"].as_str().unwrap_or_default();
            let Some(anchor) = name
                .len()
                .checked_sub(5)
                .filter(|&i| name.is_char_boundary(i) && name[i..].eq_ignore_ascii_case("-open"))
                .map(|i| &name[..i])
            else {
                continue;
            };
            let close = json!({
                "timestamp": ids::now(),
                "id": ids::uuid(),
                "event": {"hub.topic": topic, "hub.event": format!("{anchor}-close"), "context": open["context"]},
            });
            let parsed = Event::parse(close.to_string().as_bytes(), Version::Stu3);
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
        let found: Vec<(String, String)> = state
            .endpoints
            .iter()
            .filter(|(id, _)| *id == endpoint || (endpoint.len() >= 8 && id.starts_with(endpoint)))
            .map(|(id, topic)| (id.clone(), topic.clone()))
            .collect();
        let (id, topic) = match found.as_slice() {
            [one] => one.clone(),
            [] => {
                return Err(ActionError::NotFound(format!(
                    "no subscription {endpoint:?}"
                )))
            }
            _ => {
                return Err(ActionError::Ambiguous(format!(
                    "{endpoint:?} names more than one subscription; use more characters"
                )))
            }
        };
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
    audited(&hub, None, "pause delivery", answer)
}

pub(crate) async fn resume(State(hub): State<Hub>) -> Response {
    hub.resume();
    let answer = axum::Json(json!({"paused": false})).into_response();
    audited(&hub, None, "resume delivery", answer)
}
