//! The timers of a subscription: lease expiry (checklist 31, 32), unused
//! endpoints (checklist 24) and the grace period after an abnormal drop
//! (checklist 54, 56). Each is a small task that sleeps, then re-checks the
//! state: a renewal, reconnect or unsubscribe in between makes it a no-op.

use tokio::time::{sleep, sleep_until, Instant};
use tracing::info;

use crate::ids::short;
use crate::state::HubEvent;
use crate::storage::{AuditAction, AuditRecord};
use crate::subscriptions::remove;
use crate::sync_error::{Expect, Failure};
use crate::Hub;

impl Hub {
    pub(crate) fn watch_lease(
        &self,
        topic: String,
        endpoint_id: String,
        until: Instant,
        generation: u64,
    ) {
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep_until(until) => {}
                _ = hub.shutdown_token().cancelled() => return,
            }
            let mut state = hub.lock();
            let current = state
                .topics
                .get(&topic)
                .and_then(|t| t.subscriptions.get(&endpoint_id))
                .is_some_and(|s| s.lease_generation == generation);
            if !current {
                return;
            }
            if let Some(sub) = remove(
                &mut state,
                &topic,
                &endpoint_id,
                Some(("subscription lease expired", 1000)),
            ) {
                drop(state);
                info!(
                    topic = short(&topic),
                    endpoint = short(&endpoint_id),
                    "lease expired"
                );
                let mut audit = AuditRecord::new(AuditAction::LeaseExpired, "unsubscribed");
                audit.topic = Some(topic.clone());
                audit.subscriber_name = Some(sub.display_name());
                audit.client_id = sub.client_id.clone();
                hub.audit(audit);
                hub.emit(HubEvent::Left {
                    topic,
                    subscriber: sub.display_name(),
                    reason: "lease expired".into(),
                });
            }
        });
    }

    pub(crate) fn watch_unused(&self, topic: String, endpoint_id: String) {
        let hub = self.clone();
        let window = self.config().connect_window;
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep(window) => {}
                _ = hub.shutdown_token().cancelled() => return,
            }
            let mut state = hub.lock();
            let unused = state
                .topics
                .get(&topic)
                .and_then(|t| t.subscriptions.get(&endpoint_id))
                .is_some_and(|s| !s.ever_connected);
            if unused && remove(&mut state, &topic, &endpoint_id, None).is_some() {
                info!(
                    topic = short(&topic),
                    endpoint = short(&endpoint_id),
                    "endpoint never connected; discarded"
                );
            }
        });
    }

    pub(crate) fn watch_grace(&self, topic: String, endpoint_id: String, conn_id: u64) {
        let hub = self.clone();
        let grace = self.grace_period();
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep(grace) => {}
                _ = hub.shutdown_token().cancelled() => return,
            }
            // What it missed: the last event it was sent, else the context it
            // is out of (FHIR codes must not be empty).
            let last = {
                let state = hub.lock();
                let Some(topic_state) = state.topics.get(&topic) else {
                    return;
                };
                let Some(sub) = topic_state.subscriptions.get(&endpoint_id) else {
                    return;
                };
                let current = topic_state.contexts.current().map(|c| {
                    let ev = &c.open_message;
                    (
                        ev["id"].as_str().unwrap_or("unknown").to_owned(),
                        ev["event"]["hub.event"]
                            .as_str()
                            .unwrap_or("unknown")
                            .to_owned(),
                    )
                });
                sub.last_event
                    .as_ref()
                    .map(|(id, name)| (id.to_string(), name.to_string()))
                    .or(current)
                    .unwrap_or_else(|| ("unknown".to_owned(), "unknown".to_owned()))
            };
            hub.fail_all(vec![Failure {
                topic,
                endpoint_id,
                expect: Expect::Lost(conn_id),
                event_id: last.0,
                event_name: last.1,
                diagnostics: format!(
                    "connection lost and not re-established within {} s",
                    grace.as_secs_f64()
                ),
            }]);
        });
    }
}
