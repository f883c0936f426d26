//! Publishing: apply an accepted event to the topic's contexts, then fan it
//! out. Fan-out only enqueues onto each subscriber's bounded queue, so a slow
//! or dead app never delays a publish or the other apps; a full queue is a
//! failed delivery (SyncError, then the app is dropped), never a silent loss.
//!
//! The event is serialized once and the same bytes go to every recipient,
//! the sender included, with the request's `id` and `timestamp` (checklist
//! 63-65).

use axum::extract::ws::Utf8Bytes;
use axum::http::StatusCode;
use fhircast::{notification, Event, EventKind, EventSet};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::error::TrySendError;
use tracing::info;

use crate::error::ApiError;
use crate::ids::{self, short};
use crate::recorder::{Accepted, Durable};
use crate::state::HubEvent;
use crate::sync_error::{Expect, Failure};
use crate::topic::{AcceptedId, Frame, Topic};
use crate::Hub;
use fhircast::{ContextError, ContextStack, OpenContext};

/// An accepted publish: the event as broadcast, and selected resources the
/// hub did not know (answered with 206).
pub struct Published {
    pub message: Value,
    /// A retry of an event this topic accepted already: nothing was applied
    /// or broadcast again; `message` holds what the first answer said.
    pub duplicate: bool,
    pub unknown_selected: Vec<String>,
    /// The write the 2xx waits for (durability rule: an event that got a
    /// 2xx is never lost), from the recorders.
    pub durable: Option<Durable>,
}

impl From<ContextError> for ApiError {
    fn from(e: ContextError) -> Self {
        let status = match e {
            ContextError::NotOpen(_) => StatusCode::CONFLICT,
            ContextError::StaleVersion { .. } | ContextError::Content(_) => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

impl Hub {
    pub(crate) fn publish(&self, mut event: Event) -> Result<Published, ApiError> {
        let kind = event.name.kind();
        let logout = event.name.folded() == "userlogout";
        if logout {
            // The clinician's session ends: every context closes first, so
            // apps that follow only *-close events leave the patient too;
            // then the UserLogout itself goes out.
            let _ = self.close_all(&event.topic);
        }
        let mut unknown_selected = Vec::new();
        let durable;
        let failures = {
            let mut guard = self.lock();
            let state = &mut *guard;
            if !state.topics.contains_key(&event.topic) {
                // An authorized caller's topic is never refused as unknown:
                // the first publish creates it (the session topic always
                // exists), and it stays for the idle time with no subscriber.
                crate::subscriptions::check_limits(state, self.config(), &event.topic)?;
                state
                    .topics
                    .insert(event.topic.clone(), Topic::unfollowed());
            }
            let topic = state.topics.get_mut(&event.topic).expect("inserted above");
            if let Some(first) = topic.recent_ids.get(&event.id) {
                if first.event != event.name.folded() {
                    return Err(ApiError::new(
                        StatusCode::CONFLICT,
                        format!(
                            "event id {:?} was already used on this topic for {}; a retry must repeat the same event, a new event needs a new id",
                            event.id, first.event
                        ),
                    ));
                }
                // A publisher's retry after a timeout: answered, not repeated.
                let mut answer = json!({"id": event.id, "event": {"hub.topic": event.topic, "hub.event": event.name.as_str()}});
                if let Some(v) = &first.version_id {
                    answer["event"]["context.versionId"] = json!(v);
                }
                return Ok(Published {
                    message: answer,
                    duplicate: true,
                    unknown_selected: Vec::new(),
                    durable: None,
                });
            }
            match &kind {
                EventKind::Open(resource) => {
                    let version = topic.contexts.open(&event, resource, ids::uuid())?;
                    event
                        .event_mut()
                        .insert("context.versionId".into(), version.into());
                }
                EventKind::Close(resource) => {
                    topic.contexts.close(&event, resource)?;
                    event.event_mut().remove("context.versionId");
                }
                EventKind::Update(resource) => {
                    let updated = topic.contexts.update(&event, resource, ids::uuid())?;
                    let ev = event.event_mut();
                    ev.insert("context.versionId".into(), updated.version.into());
                    ev.insert(
                        "context.priorVersionId".into(),
                        updated.prior_version.into(),
                    );
                }
                EventKind::Select(resource) => {
                    unknown_selected = topic.contexts.select(&event, resource)?
                }
                _ => {}
            }
            topic.recent_ids.push(AcceptedId {
                id: event.id.clone(),
                event: event.name.folded().to_owned(),
                version_id: event
                    .event()
                    .get("context.versionId")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            });
            if logout {
                // Whatever an app opened between the closes and now.
                topic.contexts = ContextStack::default();
            }
            let frame = frame_of(&event.message, &kind);
            let derived = match &kind {
                EventKind::Open(resource) => {
                    let derived = notification::derived_opens(&event, resource, ids::uuid);
                    topic.contexts.set_derived(derived.clone());
                    derived
                }
                _ => Vec::new(),
            };
            let derived: Vec<(String, Frame)> = derived
                .iter()
                .map(|m| (folded_name(m), frame_of(m, &EventKind::Open(String::new()))))
                .collect();
            let held = state.paused.is_some();
            // Who was told, for the dashboard's log (collected by `deliver`).
            let mut told = Vec::new();
            let failures = match &mut state.paused {
                Some(held) => {
                    if matches!(kind, EventKind::Close(_)) {
                        held.push(Held {
                            topic: event.topic.clone(),
                            name: event.name.folded().to_owned(),
                            frame: frame.clone(),
                        });
                    }
                    Vec::new()
                }
                None => deliver(
                    topic,
                    event.name.folded(),
                    &frame,
                    &derived,
                    (&event.id, event.name.as_str()),
                    Some(&mut told),
                ),
            };
            // Recorded after delivery (subscribers first), still under the
            // lock, so that recorders see events in publish order (the
            // journal) and delivery order (the dashboard's log).
            durable = state.record.accepted(&Accepted {
                event: &event,
                topic,
                frame: &frame,
                derived: &derived,
                told: &told,
                held,
                contexts_changed: matches!(
                    kind,
                    EventKind::Open(_) | EventKind::Close(_) | EventKind::Update(_)
                ) || logout,
            });
            failures
        };
        info!(topic = short(&event.topic), event = %event.name, id = %event.id, "published");
        self.emit(HubEvent::Published {
            topic: event.topic.clone(),
            event: event.name.to_string(),
        });
        if event.name.folded() == "userhibernate" {
            self.emit(HubEvent::Hibernated {
                topic: event.topic.clone(),
            });
        }
        self.fail_all(failures);
        Ok(Published {
            message: Value::Object(event.message),
            duplicate: false,
            unknown_selected,
            durable,
        })
    }
}

fn folded_name(message: &Map<String, Value>) -> String {
    notification::event_name(message)
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Serializes a message once; `kind` decides whether the subscriber must ACK it.
pub(crate) fn frame_of(message: &Map<String, Value>, kind: &EventKind) -> Frame {
    let mut text = serde_json::to_string(message).unwrap_or_default();
    // The frame outlives the publish (queues, the dashboard's log): without
    // this it keeps the serializer's spare capacity, up to twice its size.
    text.shrink_to_fit();
    let text: Utf8Bytes = text.into();
    // SyncErrors about others and heartbeats are not ACK-tracked: a missing
    // ACK for them must not cascade into more SyncErrors.
    let ack = (!matches!(kind, EventKind::SyncError | EventKind::Heartbeat)).then(|| {
        let id = notification::id(message).unwrap_or_default();
        let name = notification::event_name(message).unwrap_or_default();
        (Utf8Bytes::from(id), Utf8Bytes::from(name))
    });
    let version = notification::version_id(message).map(Utf8Bytes::from);
    Frame { text, ack, version }
}

/// Enqueues `frame` for every connected subscriber of `name`, and derived
/// opens for those who hold only the derived events (checklist 30, 41, 57).
/// Returns the subscribers whose queue was full. `told`, if given, gets
/// the names of those sent `frame` itself (for the dashboard).
pub(crate) fn deliver(
    topic: &mut Topic,
    name: &str,
    frame: &Frame,
    derived: &[(String, Frame)],
    (event_id, event_name): (&str, &str),
    mut told: Option<&mut Vec<std::sync::Arc<str>>>,
) -> Vec<Failure> {
    let mut failures = Vec::new();
    for sub in topic.subscriptions.values_mut() {
        if let Some(held) = &mut sub.unlinked {
            // Link broken by support: nothing now; a close it would have
            // had is kept so that rejoining never leaves a patient behind.
            if name.ends_with("-close") && sub.events.contains_folded(name) {
                if held.len() == MAX_HELD_CLOSES {
                    held.remove(0);
                }
                held.push(frame.clone());
            }
            continue;
        }
        let Some(conn) = &sub.conn else { continue };
        let direct = sub.events.contains_folded(name);
        if let (true, Some(told)) = (direct, told.as_deref_mut()) {
            told.push(sub.label());
        }
        let mut frames = std::iter::once(frame).filter(|_| direct).chain(
            derived
                .iter()
                .filter(|(n, _)| !direct && sub.events.contains_folded(n))
                .map(|(_, f)| f),
        );
        for f in &mut frames {
            if let Some(ack) = &f.ack {
                sub.last_event = Some(ack.clone());
            }
            match conn.tx.try_send(f.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    failures.push(Failure {
                        topic: sub.topic.clone(),
                        endpoint_id: sub.endpoint_id.clone(),
                        expect: Expect::Conn(conn.id),
                        event_id: event_id.to_owned(),
                        event_name: event_name.to_owned(),
                        diagnostics: format!(
                            "not keeping up: {} notifications waiting unread",
                            conn.tx.max_capacity()
                        ),
                    });
                    break;
                }
                // The channel task is ending; `channel_closed` handles it.
                Err(TrySendError::Closed(_)) => break,
            }
        }
    }
    failures
}

/// The frames that bring a newly connected subscriber up to date: for each
/// anchor type, its most recent open context (checklist 28), oldest first
/// so that the current one comes last, with the original id and timestamp
/// and the current versionId (checklist 29). Nothing when no context is
/// current: after a close, apps show nothing (2-9), and a late joiner must
/// not be shown a suspended patient.
pub(crate) fn replay(
    contexts: &ContextStack,
    events: &EventSet,
    include: impl Fn(&str) -> bool,
) -> Vec<Frame> {
    if contexts.current().is_none() {
        return Vec::new();
    }
    let mut latest: Vec<&OpenContext> = Vec::new();
    for ctx in contexts.open_contexts().iter().rev() {
        if !latest
            .iter()
            .any(|c| c.anchor_type.eq_ignore_ascii_case(&ctx.anchor_type))
        {
            latest.push(ctx);
        }
    }
    let mut frames = Vec::new();
    for ctx in latest.into_iter().rev() {
        let name = folded_name(&ctx.open_message);
        if events.contains_folded(&name) {
            if include(&name) {
                let mut message = ctx.open_message.clone();
                if let Some(ev) = message.get_mut("event").and_then(Value::as_object_mut) {
                    ev.insert("context.versionId".into(), ctx.version_id.clone().into());
                }
                frames.push(frame_of(&message, &EventKind::Open(String::new())));
            }
        } else {
            for derived in &ctx.derived {
                let name = folded_name(derived);
                if events.contains_folded(&name) && include(&name) {
                    frames.push(frame_of(derived, &EventKind::Open(String::new())));
                }
            }
        }
    }
    frames
}

/// Closes kept for one app whose link is broken; a reading session has a
/// handful of open contexts, so older closes than these are moot.
const MAX_HELD_CLOSES: usize = 64;

/// A close published while delivery was paused, sent on resume.
pub(crate) struct Held {
    topic: String,
    name: String,
    frame: Frame,
}

impl Hub {
    /// Stops delivering: publishes are still validated and applied to the
    /// contexts, but no app is told until [`Hub::resume`].
    pub fn pause(&self) {
        let mut state = self.lock();
        if state.paused.is_some() {
            return;
        }
        state.paused = Some(Vec::new());
        drop(state);
        info!("delivery paused");
        self.emit(HubEvent::Paused);
    }

    /// Delivers again: the closes published meanwhile, then each topic's
    /// current context (the replay a new connection gets) to every
    /// connected subscriber, so that all apps end where the hub is.
    pub fn resume(&self) {
        let failures = {
            let mut guard = self.lock();
            let state = &mut *guard;
            let Some(held) = state.paused.take() else {
                return;
            };
            let mut failures = Vec::new();
            for h in held {
                if let Some(topic) = state.topics.get_mut(&h.topic) {
                    let (id, name) = h.frame.ack.clone().unwrap_or_default();
                    let at = (id.as_str(), name.as_str());
                    failures.extend(deliver(topic, &h.name, &h.frame, &[], at, None));
                }
            }
            for topic in state.topics.values_mut() {
                for sub in topic.subscriptions.values_mut() {
                    if sub.unlinked.is_some() {
                        continue; // Its link stays broken until rejoined.
                    }
                    let Some(conn) = &sub.conn else { continue };
                    for frame in replay(&topic.contexts, &sub.events, |_| true) {
                        if let Some(ack) = &frame.ack {
                            sub.last_event = Some(ack.clone());
                        }
                        if let Err(TrySendError::Full(f)) = conn.tx.try_send(frame) {
                            let (id, name) = f.ack.unwrap_or_default();
                            failures.push(Failure {
                                topic: sub.topic.clone(),
                                endpoint_id: sub.endpoint_id.clone(),
                                expect: Expect::Conn(conn.id),
                                event_id: id.to_string(),
                                event_name: name.to_string(),
                                diagnostics: "not keeping up: queue full on resume".to_owned(),
                            });
                            break;
                        }
                    }
                }
            }
            failures
        };
        info!("delivery resumed");
        self.emit(HubEvent::Resumed);
        self.fail_all(failures);
    }

    pub fn is_paused(&self) -> bool {
        self.lock().paused.is_some()
    }
}
