//! When a subscriber fails to follow (error ACK, no ACK in time, a full
//! queue, or a dropped socket past its grace period), the hub tells the
//! other subscribers of `syncerror` with a SyncError naming it, and ends
//! its subscription (checklist 49-56, 68-74; IHE RAD-155). The context is
//! never changed by a failure.

use std::collections::VecDeque;

use crate::topic::Frame;
use fhircast::sync_error::{event, operation_outcome, IssueCode};
use fhircast::EventKind;
use serde_json::Value;
use tracing::warn;

use crate::delivery::{deliver, frame_of};
use crate::ids::{self, short};
use crate::recorder::SyncErrorSent;
use crate::state::HubEvent;
use crate::subscriptions::remove;
use crate::Hub;

/// Which connection a failure is about, so that a report from a socket a
/// newer one already replaced does not end the subscription.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expect {
    /// The subscription's live connection has this id.
    Conn(u64),
    /// The subscription is disconnected, and this was its last connection.
    Lost(u64),
}

#[derive(Debug)]
pub(crate) struct Failure {
    pub topic: String,
    pub endpoint_id: String,
    pub expect: Expect,
    pub event_id: String,
    pub event_name: String,
    pub diagnostics: String,
}

impl Hub {
    /// Reports each failure and ends the subscription. Delivering a
    /// SyncError can itself find a full queue; those failures are handled
    /// in turn, and each subscriber fails at most once.
    pub(crate) fn fail_all(&self, failures: Vec<Failure>) {
        let mut work: VecDeque<Failure> = failures.into();
        while let Some(f) = work.pop_front() {
            let more = self.fail_one(&f);
            work.extend(more);
        }
    }

    fn fail_one(&self, f: &Failure) -> Vec<Failure> {
        let mut state = self.lock();
        let Some(sub) = state
            .topics
            .get(&f.topic)
            .and_then(|t| t.subscriptions.get(&f.endpoint_id))
        else {
            return Vec::new();
        };
        let applies = match f.expect {
            Expect::Conn(id) => sub.conn.as_ref().map(|c| c.id) == Some(id),
            Expect::Lost(id) => sub.conn.is_none() && sub.lost == Some(id),
        };
        if !applies {
            return Vec::new();
        }
        let name = sub.display_name();
        let diagnostics = format!(
            "{name} failed to follow {} {}: {}",
            f.event_name, f.event_id, f.diagnostics
        );
        let (id, frame) =
            sync_error_frame(&f.topic, &f.event_id, &f.event_name, &name, &diagnostics);
        // Remove first, so the failing app is not among the recipients.
        remove(
            &mut state,
            &f.topic,
            &f.endpoint_id,
            Some(("failed to follow context", 1008)),
        );
        let mut told = Vec::new();
        let more = match state.topics.get_mut(&f.topic) {
            Some(topic) => {
                let at = (id.as_str(), "SyncError");
                deliver(topic, "syncerror", &frame, &[], at, Some(&mut told))
            }
            None => Vec::new(),
        };
        state.record.sync_error(&SyncErrorSent {
            topic: &f.topic,
            subscriber: &name,
            event_id: &f.event_id,
            event_name: &f.event_name,
            diagnostics: &f.diagnostics,
            frame: &frame,
            told: &told,
        });
        drop(state);
        warn!(topic = short(&f.topic), endpoint = short(&f.endpoint_id), subscriber = %name, event = %f.event_name, reason = %f.diagnostics, "SyncError: subscriber failed to follow; unsubscribed");
        self.emit(HubEvent::SyncError {
            topic: f.topic.clone(),
            subscriber: name.clone(),
            event: f.event_name.clone(),
            reason: f.diagnostics.clone(),
        });
        self.emit(HubEvent::Left {
            topic: f.topic.clone(),
            subscriber: name,
            reason: f.diagnostics.clone(),
        });
        more
    }
}

/// A hub-generated SyncError about `subscriber` on `topic` (checklist 70-74),
/// serialized once: its id and its frame. Not ACK-tracked (D6).
pub(crate) fn sync_error_frame(
    topic: &str,
    event_id: &str,
    event_name: &str,
    subscriber: &str,
    diagnostics: &str,
) -> (String, Frame) {
    let outcome = operation_outcome(
        event_id,
        event_name,
        subscriber,
        diagnostics,
        IssueCode::Processing,
    );
    let id = ids::uuid();
    let Value::Object(message) = event(&id, &ids::now(), topic, outcome) else {
        unreachable!("sync_error::event builds an object")
    };
    (id, frame_of(&message, &EventKind::SyncError))
}
