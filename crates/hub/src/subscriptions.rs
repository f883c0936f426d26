//! Admitting, renewing and ending subscriptions, and attaching their
//! WebSockets (2-4). Timers for leases, unused endpoints and reconnect grace
//! run as small tasks that re-check the state when they wake.

use fhircast::message::{confirmation, denial};
use fhircast::{ChannelType, EventSet, SubscriptionRequest};
use std::time::SystemTime;
use tokio::sync::{mpsc, oneshot};

use tokio::time::{Duration, Instant};
use tracing::info;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::ids::{self, short};
use crate::recorder::SubscriptionChange;
use crate::state::{HubEvent, State};
use crate::sync_error::{Expect, Failure};
use crate::topic::{AckStats, Close, Connection, Frame, Subscription, Topic};
use crate::Hub;
use axum::http::StatusCode;

/// What a channel task needs once its socket is attached.
pub struct Attached {
    pub conn_id: u64,
    pub topic: String,
    pub initial: Vec<Frame>,
    pub rx: mpsc::Receiver<Frame>,
    pub close_rx: oneshot::Receiver<Close>,
    pub wants_heartbeat: bool,
    pub acks: std::sync::Arc<AckStats>,
    /// False for apps registered as not acknowledging (issue 19): nothing
    /// they are sent is ACK-tracked; a dead socket still counts.
    pub expects_acks: bool,
}

/// The endpoint id inside an endpoint URL (or a bare id); tolerant of the
/// spec example's trailing newline and of query strings.
pub fn endpoint_id_of(endpoint: &str) -> &str {
    let path = endpoint.trim().split(['?', '#']).next().unwrap_or_default();
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

impl Hub {
    /// Subscribe, or renew when `hub.channel.endpoint` names a live
    /// subscription (checklist 16-18). Returns the endpoint id.
    pub(crate) fn subscribe(
        &self,
        req: SubscriptionRequest,
        caller: Option<&Principal>,
    ) -> Result<String, ApiError> {
        check_channel(&req)?;
        let config = self.config();
        let lease = self.granted_lease(&req, caller);
        let lease_until = Instant::now() + lease;
        let client_id = caller.map(|c| c.client_id.clone());
        let mut state = self.lock();
        if let Some(endpoint) = &req.endpoint {
            let id = endpoint_id_of(endpoint).to_owned();
            let renewed = renew(&mut state, &id, &req, lease_until, client_id.as_deref())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "hub.channel.endpoint does not name a live subscription on this topic",
                    )
                })?;
            drop(state);
            info!(topic = short(&req.topic), endpoint = short(&id), events = %req.events, "subscription renewed");
            let (generation, failure) = renewed;
            self.watch_lease(req.topic, id.clone(), lease_until, generation);
            self.fail_all(failure.into_iter().collect());
            return Ok(id);
        }
        check_limits(&state, config, &req.topic)?;
        let mut id = ids::endpoint_id();
        while state.endpoints.contains_key(&id) {
            id = ids::endpoint_id();
        }
        let sub = Subscription::new(
            id.clone(),
            req.topic.clone(),
            req.events.clone(),
            // SyncErrors name the app: its own name, else its registered one.
            req.subscriber_name
                .clone()
                .or_else(|| caller.map(|c| c.app_name.clone())),
            client_id,
            lease_until,
        );
        state
            .record
            .subscription(&sub, SubscriptionChange::Subscribed);
        state.endpoints.insert(id.clone(), req.topic.clone());
        state
            .followed_topic(&req.topic)
            .subscriptions
            .insert(id.clone(), sub);
        drop(state);
        info!(
            topic = short(&req.topic),
            endpoint = short(&id),
            events = %req.events,
            subscriber = req.subscriber_name.as_deref().unwrap_or("-"),
            lease_secs = lease.as_secs(),
            "subscribed"
        );
        self.watch_lease(req.topic.clone(), id.clone(), lease_until, 0);
        self.watch_unused(req.topic, id.clone());
        Ok(id)
    }

    /// The lease a subscribe gets: asked for, else the default; capped by
    /// the hub's maximum and by the token's remaining life (checklist 14, 15).
    pub(crate) fn granted_lease(
        &self,
        req: &SubscriptionRequest,
        caller: Option<&Principal>,
    ) -> Duration {
        let config = self.config();
        let mut lease = req
            .lease_seconds
            .map(Duration::from_secs)
            .unwrap_or(config.lease_default)
            .min(config.lease_max);
        if let Some(caller) = caller {
            // A lease never outlives the token that asked for it (checklist 14).
            lease = lease.min(
                caller
                    .expires_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default(),
            );
        }
        lease
    }

    /// Ends a subscription: 202, then a denial on its socket and a close
    /// (checklist 36-40).
    pub(crate) fn unsubscribe(
        &self,
        req: &SubscriptionRequest,
        caller: Option<&Principal>,
    ) -> Result<String, ApiError> {
        check_channel(req)?;
        let endpoint = req.endpoint.as_deref().ok_or_else(|| {
            ApiError::bad_request(
                "missing required field: hub.channel.endpoint (the endpoint to unsubscribe)",
            )
        })?;
        let id = endpoint_id_of(endpoint).to_owned();
        let mut state = self.lock();
        let owner = state
            .topics
            .get(&req.topic)
            .and_then(|t| t.subscriptions.get(&id))
            .map(|s| s.client_id.clone());
        let known = match owner {
            None => false,
            Some(owner) => {
                owner.is_none() || owner.as_deref() == caller.map(|c| c.client_id.as_str())
            }
        };
        if !known {
            return Err(ApiError::bad_request(
                "hub.channel.endpoint does not name a live subscription on this topic",
            ));
        }
        let sub = remove(&mut state, &req.topic, &id, Some(("unsubscribed", 1000)));
        drop(state);
        if let Some(sub) = sub {
            info!(
                topic = short(&req.topic),
                endpoint = short(&id),
                "unsubscribed"
            );
            self.emit(HubEvent::Left {
                topic: req.topic.clone(),
                subscriber: sub.display_name(),
                reason: "unsubscribed".into(),
            });
        }
        Ok(id)
    }

    /// Attaches a new WebSocket to an endpoint: confirmation, then the
    /// current context (checklist 26-29). A newer connection takes over
    /// from an older one at once (hub-digest §2.8).
    pub(crate) fn attach(&self, endpoint_id: &str) -> Option<Attached> {
        let capacity = self.config().queue_capacity;
        let mut guard = self.lock();
        let state = &mut *guard;
        let topic_id = state.endpoints.get(endpoint_id)?.clone();
        state.next_conn += 1;
        let conn_id = state.next_conn;
        let topic = state.topics.get_mut(&topic_id)?;
        let (tx, rx) = mpsc::channel(capacity);
        let (close, close_rx) = oneshot::channel();
        let replay = {
            let sub = topic.subscriptions.get(endpoint_id)?;
            if sub.webhook.is_some() {
                return None; // A webhook's endpoint id is internal, never a socket.
            }
            // An app whose link support broke gets no context until rejoined.
            crate::delivery::replay(&topic.contexts, &sub.events, |_| sub.unlinked.is_none())
        };
        let sub = topic.subscriptions.get_mut(endpoint_id)?;
        let lease_left = sub
            .lease_until
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let mut initial = vec![Frame {
            text: confirmation(&topic_id, &sub.events.to_string(), lease_left).into(),
            ack: None,
            version: None,
        }];
        // After a restart past the recovery window: say the context was discarded.
        initial.extend(sub.notice.take());
        initial.extend(replay);
        // Dropping the older connection's close sender closes its socket.
        sub.conn = Some(Connection {
            id: conn_id,
            tx,
            close,
        });
        sub.ever_connected = true;
        sub.lost = None;
        // Connected: the unused-endpoint or grace timer has nothing to do.
        if let Some(timer) = sub.connect_timer.take() {
            timer.cancel();
        }
        sub.since = Some(std::time::SystemTime::now());
        let acks = sub.acks.clone();
        let expects_acks = self.expects_acks(sub.client_id.as_deref());
        let name = sub.display_name();
        let wants_heartbeat = sub.events.contains_folded("heartbeat");
        state.record.subscription(sub, SubscriptionChange::Attached);
        drop(guard);
        info!(topic = short(&topic_id), endpoint = short(endpoint_id), subscriber = %name, "connected");
        self.emit(HubEvent::Connected {
            topic: topic_id.clone(),
            subscriber: name,
        });
        Some(Attached {
            conn_id,
            topic: topic_id,
            initial,
            rx,
            close_rx,
            wants_heartbeat,
            acks,
            expects_acks,
        })
    }

    /// A channel task ended. A clean close (1000/1001) keeps the
    /// subscription for a later reconnect without complaint (checklist 55);
    /// an abnormal one starts the grace period.
    pub(crate) fn channel_closed(&self, endpoint_id: &str, conn_id: u64, clean: bool) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let Some(topic_id) = state.endpoints.get(endpoint_id).cloned() else {
            return;
        };
        let Some(sub) = state
            .topics
            .get_mut(&topic_id)
            .and_then(|t| t.subscriptions.get_mut(endpoint_id))
        else {
            return;
        };
        if sub.conn.as_ref().map(|c| c.id) != Some(conn_id) {
            return; // A newer connection took over, or the subscription ended.
        }
        sub.conn = None;
        sub.since = Some(std::time::SystemTime::now());
        let name = sub.display_name();
        if !clean {
            sub.lost = Some(conn_id);
        }
        state
            .record
            .subscription(sub, SubscriptionChange::Closed { clean });
        drop(guard);
        info!(topic = short(&topic_id), endpoint = short(endpoint_id), subscriber = %name, clean, "disconnected");
        self.emit(HubEvent::Disconnected {
            topic: topic_id.clone(),
            subscriber: name,
            clean,
        });
        if !clean {
            self.watch_grace(topic_id, endpoint_id.to_owned(), conn_id);
        }
    }

    /// Ends every subscription of a revoked app: denial and close.
    pub(crate) fn drop_client(&self, client_id: &str) {
        let mut state = self.lock();
        let doomed: Vec<(String, String)> = state
            .topics
            .iter()
            .flat_map(|(t, topic)| topic.subscriptions.values().map(move |s| (t, s)))
            .filter(|(_, s)| s.client_id.as_deref() == Some(client_id))
            .map(|(t, s)| (t.clone(), s.endpoint_id.clone()))
            .collect();
        let mut gone = Vec::new();
        for (topic, endpoint) in doomed {
            if let Some(sub) = remove(
                &mut state,
                &topic,
                &endpoint,
                Some(("access revoked", 1008)),
            ) {
                gone.push((topic, sub.display_name()));
            }
        }
        drop(state);
        for (topic, subscriber) in gone {
            info!(
                topic = short(&topic),
                client = client_id,
                "subscription ended: access revoked"
            );
            self.emit(HubEvent::Left {
                topic,
                subscriber,
                reason: "access revoked".into(),
            });
        }
    }
}

/// Room for one more subscription on `topic` (429 when the hub is full).
pub(crate) fn check_limits(
    state: &State,
    config: &crate::Config,
    topic: &str,
) -> Result<(), ApiError> {
    match state.topics.get(topic) {
        Some(t) if t.subscriptions.len() >= config.max_subscriptions_per_topic => {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "this topic already has {} subscriptions, the hub's limit",
                    t.subscriptions.len()
                ),
            ))
        }
        // The session topic is always there and is not counted.
        None if state.topics.len()
            - usize::from(state.topics.contains_key(&state.session_topic))
            >= config.max_topics =>
        {
            Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "the hub already holds {} topics, its limit",
                    config.max_topics
                ),
            ))
        }
        _ => Ok(()),
    }
}

/// STU3 hubs take WebSocket subscriptions only, and ask for the channel
/// type explicitly (checklist 9, 10).
fn check_channel(req: &SubscriptionRequest) -> Result<(), ApiError> {
    match req.channel {
        Some(ChannelType::WebSocket) => Ok(()),
        Some(ChannelType::Webhook) => Err(ApiError::bad_request(
            "hub.channel.type=webhook is not supported here: FHIRcast STU3 removed webhooks; use hub.channel.type=websocket (legacy webhook apps subscribe at /fhircast/STU2)",
        )),
        None => Err(ApiError::bad_request("missing required field: hub.channel.type (use websocket)")),
    }
}

fn renew(
    state: &mut State,
    id: &str,
    req: &SubscriptionRequest,
    lease_until: Instant,
    client_id: Option<&str>,
) -> Option<(u64, Option<Failure>)> {
    let topic = state.topics.get_mut(&req.topic)?;
    let contexts = &topic.contexts;
    let sub = topic.subscriptions.get_mut(id)?;
    if sub.client_id.is_some() && sub.client_id.as_deref() != client_id {
        return None; // Another app's subscription.
    }
    let old: EventSet = std::mem::replace(&mut sub.events, req.events.clone());
    sub.lease_until = lease_until;
    sub.lease_generation += 1;
    if req.subscriber_name.is_some() {
        sub.name = req.subscriber_name.clone();
        sub.label = Default::default();
    }
    let mut failure = None;
    if let Some(conn) = &sub.conn {
        // A fresh confirmation, then the context for events newly granted.
        let lease_left = lease_until
            .saturating_duration_since(Instant::now())
            .as_secs()
            .max(1);
        let text = confirmation(&req.topic, &sub.events.to_string(), lease_left);
        let mut frames = vec![Frame {
            text: text.into(),
            ack: None,
            version: None,
        }];
        frames.extend(crate::delivery::replay(contexts, &sub.events, |name| {
            !old.contains_folded(name)
        }));
        // A full queue is a failed delivery, never a silent drop.
        if frames.into_iter().any(|f| conn.tx.try_send(f).is_err()) {
            failure = Some(Failure {
                topic: req.topic.clone(),
                endpoint_id: id.to_owned(),
                expect: Expect::Conn(conn.id),
                event_id: "unknown".to_owned(),
                event_name: "subscription renewal".to_owned(),
                diagnostics: "not keeping up: its queue was full when the subscription was renewed"
                    .to_owned(),
            });
        }
    }
    state.record.subscription(sub, SubscriptionChange::Renewed);
    Some((sub.lease_generation, failure))
}

/// Marks `topic_id` idle when no subscription is left on it: it keeps its
/// contexts for `Config::topic_idle` (an app restart never loses the
/// patient), then the sweeper drops it. The session topic is never idle:
/// it belongs to the clinician, not to whichever app follows it.
pub(crate) fn mark_if_unfollowed(state: &mut State, topic_id: &str) {
    if topic_id == state.session_topic {
        return;
    }
    if let Some(t) = state.topics.get_mut(topic_id) {
        if t.subscriptions.is_empty() && t.idle_since.is_none() {
            t.idle_since = Some(Instant::now());
        }
    }
}

impl State {
    /// The topic a subscription joins: created if need be, no longer idle.
    pub(crate) fn followed_topic(&mut self, topic_id: &str) -> &mut Topic {
        let topic = self.topics.entry(topic_id.to_owned()).or_default();
        topic.idle_since = None;
        topic
    }
}

/// Removes a subscription; if its socket is up, sends it a denial with
/// `reason` and closes with `code` (checklist 33, 34, 39). A topic left
/// with no subscription becomes idle (`mark_if_unfollowed`).
pub(crate) fn remove(
    state: &mut State,
    topic_id: &str,
    endpoint_id: &str,
    ending: Option<(&'static str, u16)>,
) -> Option<Subscription> {
    let topic = state.topics.get_mut(topic_id)?;
    let mut sub = topic.subscriptions.remove(endpoint_id)?;
    state.endpoints.remove(endpoint_id);
    mark_if_unfollowed(state, topic_id);
    state.record.subscription(&sub, SubscriptionChange::Ended);
    if let (Some(conn), Some((reason, code))) = (sub.conn.take(), ending) {
        let denial = denial(topic_id, &sub.events.to_string(), reason);
        let _ = conn.close.send(Close {
            denial: Some(denial),
            code,
            reason,
        });
    }
    Some(sub)
}

impl Hub {
    /// Whether an app's notifications are ACK-tracked: false only for apps
    /// IT registered as not acknowledging (OHIF's cast client, validator
    /// CLIs); they are never reported for a missing ACK.
    pub(crate) fn expects_acks(&self, client_id: Option<&str>) -> bool {
        client_id.is_none_or(|id| self.apps().acknowledges(id))
    }
}
