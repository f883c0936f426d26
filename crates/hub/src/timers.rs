//! The timers of a subscription: lease expiry (checklist 31, 32), unused
//! endpoints (checklist 24) and the grace period after an abnormal drop
//! (checklist 54, 56). Each is a small task that sleeps, then re-checks the
//! state: a renewal, reconnect or unsubscribe in between makes it a no-op.
//!
//! Each task also waits on a token of its subscription (`Subscription::
//! timers` and the slot it was armed in), so an unsubscribe, a renewal or a
//! reconnect ends the task at once instead of leaving it asleep for hours:
//! thousands of subscribe/unsubscribe cycles leave no task behind.

use fhircast::notification;
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::ids::short;
use crate::recorder::SubscriptionChange;
use crate::state::HubEvent;
use crate::subscriptions::remove;
use crate::sync_error::{Expect, Failure};
use crate::topic::{rearm, Subscription};
use crate::Hub;

/// Which timer slot of a subscription a new timer replaces.
enum Slot {
    Lease,
    Connect,
}

impl Hub {
    /// Arms a timer of the subscription: ends the one it replaces and
    /// returns the token the new task waits on; `None` if the subscription
    /// is gone already.
    fn arm(&self, topic: &str, endpoint_id: &str, slot: Slot) -> Option<CancellationToken> {
        let mut state = self.lock();
        let sub: &mut Subscription = state
            .topics
            .get_mut(topic)?
            .subscriptions
            .get_mut(endpoint_id)?;
        let timers = sub.timers.clone();
        Some(match slot {
            Slot::Lease => rearm(&mut sub.lease_timer, &timers),
            Slot::Connect => rearm(&mut sub.connect_timer, &timers),
        })
    }

    pub(crate) fn watch_lease(
        &self,
        topic: String,
        endpoint_id: String,
        until: Instant,
        generation: u64,
    ) {
        let Some(cancel) = self.arm(&topic, &endpoint_id, Slot::Lease) else {
            return;
        };
        let hub = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep_until(until) => {}
                _ = cancel.cancelled() => return,
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
                hub.record()
                    .subscription(&sub, SubscriptionChange::LeaseExpired);
                hub.emit(HubEvent::Left {
                    topic,
                    subscriber: sub.display_name(),
                    reason: "lease expired".into(),
                });
            }
        });
    }

    pub(crate) fn watch_unused(&self, topic: String, endpoint_id: String) {
        let Some(cancel) = self.arm(&topic, &endpoint_id, Slot::Connect) else {
            return;
        };
        let hub = self.clone();
        let window = self.config().connect_window;
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep(window) => {}
                _ = cancel.cancelled() => return,
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
        let Some(cancel) = self.arm(&topic, &endpoint_id, Slot::Connect) else {
            return;
        };
        let hub = self.clone();
        let grace = self.grace_period();
        tokio::spawn(async move {
            tokio::select! {
                _ = sleep(grace) => {}
                _ = cancel.cancelled() => return,
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
                        notification::id(ev).unwrap_or("unknown").to_owned(),
                        notification::event_name(ev).unwrap_or("unknown").to_owned(),
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

impl Hub {
    /// Drops the topics that have had no subscriber for `Config::topic_idle`,
    /// with their contexts, for as long as the hub runs. One task for all
    /// topics: it wakes a few times per idle period (at most every 30 s),
    /// so a topic goes within a quarter of the idle time after its due.
    pub(crate) fn sweep_idle_topics(&self) {
        let hub = self.clone();
        let idle = self.config().topic_idle;
        let every = (idle / 4).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(30),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = hub.shutdown_token().cancelled() => return,
                }
                for topic in hub.drop_idle_topics(Instant::now(), idle) {
                    info!(
                        topic = short(&topic),
                        idle_secs = idle.as_secs(),
                        "topic dropped after its idle time"
                    );
                    hub.emit(HubEvent::TopicEnded { topic });
                }
            }
        });
    }

    /// Removes the topics idle since `idle` before `now`; returns their ids.
    fn drop_idle_topics(&self, now: Instant, idle: std::time::Duration) -> Vec<String> {
        let mut state = self.lock();
        let session = state.session_topic.clone();
        let due: Vec<String> = state
            .topics
            .iter()
            .filter(|(id, t)| {
                **id != session
                    && t.subscriptions.is_empty()
                    && t.idle_since
                        .is_some_and(|since| now.duration_since(since) >= idle)
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &due {
            state.topics.remove(id);
            state.record.topic_dropped(id);
        }
        due
    }
}
