//! Making a verified webhook live: a new subscription with its delivery
//! task, or the renewal of the one with the same callback; the audit
//! record and hub event either way, or why it was not admitted.

use std::sync::Arc;
use std::time::SystemTime;

use fhircast::EventSet;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Duration, Instant};
use tracing::info;

use super::hook::is_hook;
use super::intent::verify;
use super::{task, Target};
use super::{Hook, Secret};
use crate::ids::{self, short};
use crate::recorder::SubscriptionChange;
use crate::state::HubEvent;
use crate::storage::{AuditAction, AuditRecord};
use crate::subscriptions::mark_if_unfollowed;
use crate::sync_error::{Expect, Failure};
use crate::topic::{Connection, Frame, Subscription};
use crate::Hub;

/// What `admit` did: a new subscription whose delivery task is to start,
/// or a renewal of a live one (its task carries on).
enum Admitted {
    New {
        id: String,
        conn_id: u64,
        lease_until: Instant,
        hook: Arc<Hook>,
        acks: Arc<crate::topic::AckStats>,
        events: String,
        initial: Vec<Frame>,
        rx: mpsc::Receiver<Frame>,
        close_rx: oneshot::Receiver<crate::topic::Close>,
    },
    Renewed {
        id: String,
        lease_until: Instant,
        generation: u64,
        failure: Option<Failure>,
    },
}

/// A verified-pending subscribe.
pub(super) struct Pending {
    pub topic: String,
    pub events: EventSet,
    pub name: String,
    pub client_id: Option<String>,
    pub lease: Duration,
    pub callback: String,
    pub target: Target,
    pub secret: Option<Secret>,
}

impl Hub {
    pub(super) async fn verify_and_admit(self, p: Pending) {
        let events = p.events.to_string();
        let lease = p.lease.as_secs().max(1);
        let verdict = tokio::select! {
            v = verify(&p.target, "subscribe", &p.topic, &events, Some(lease), self.config().ack_timeout) => v,
            _ = self.shutdown_token().cancelled() => return,
        };
        let outcome = match verdict {
            Ok(()) => self.admit(&p),
            Err(why) => Err(format!("intent verification failed: {why}")),
        };
        match outcome {
            Ok(admitted) => self.admitted(p, admitted),
            Err(why) => self.not_admitted(p, why),
        }
    }

    fn not_admitted(&self, p: Pending, why: String) {
        info!(topic = short(&p.topic), callback = %p.target.label(), reason = %why, "webhook not subscribed");
        // A topic kept for a restored webhook that did not come back.
        mark_if_unfollowed(&mut self.lock(), &p.topic);
        let mut audit = AuditRecord::new(AuditAction::Subscribe, "refused");
        audit.topic = Some(p.topic.clone());
        audit.subscriber_name = Some(p.name.clone());
        audit.client_id = p.client_id.clone();
        audit.detail = Some(why.clone());
        self.audit(audit);
        self.emit(HubEvent::Left {
            topic: p.topic,
            subscriber: p.name,
            reason: why,
        });
    }

    /// Makes a verified webhook live: a new subscription with its delivery
    /// task, or a renewal of the one with the same (topic, callback)
    /// (checklist 16-18), which keeps its task and queue so nothing already
    /// queued is lost. Either way, then the current context it has not
    /// seen yet (checklist 28, 29).
    fn admit(&self, p: &Pending) -> Result<Admitted, String> {
        let capacity = self.config().queue_capacity;
        let lease_until = Instant::now() + p.lease;
        let mut fresh = ids::endpoint_id();
        let mut state = self.lock();
        while state.endpoints.contains_key(&fresh) {
            fresh = ids::endpoint_id();
        }
        state.next_conn += 1;
        let conn_id = state.next_conn;
        let topic = state.followed_topic(&p.topic);
        let existing = topic
            .subscriptions
            .values()
            .find(|s| is_hook(s, &p.callback))
            .map(|s| s.endpoint_id.clone());
        if let Some(id) = existing {
            let contexts = &topic.contexts;
            let Some(sub) = topic.subscriptions.get_mut(&id) else {
                return Err("subscription vanished".to_owned());
            };
            if sub.client_id.is_some() && sub.client_id != p.client_id {
                return Err("hub.callback is another app's subscription".to_owned());
            }
            let old = std::mem::replace(&mut sub.events, p.events.clone());
            sub.lease_until = lease_until;
            sub.lease_generation += 1;
            sub.name = Some(p.name.clone());
            sub.label = Default::default();
            if let Some(hook) = &sub.webhook {
                hook.set_secret(p.secret.clone());
            }
            let replay =
                crate::delivery::replay(contexts, &sub.events, |n| !old.contains_folded(n));
            let mut failure = None;
            if let Some(conn) = &sub.conn {
                for frame in replay {
                    if let Some(ack) = &frame.ack {
                        sub.last_event = Some(ack.clone());
                    }
                    // A full queue is a failed delivery, never a silent drop.
                    if conn.tx.try_send(frame).is_err() {
                        failure = Some(Failure {
                            topic: p.topic.clone(),
                            endpoint_id: id.clone(),
                            expect: Expect::Conn(conn.id),
                            event_id: "unknown".to_owned(),
                            event_name: "subscription renewal".to_owned(),
                            diagnostics: "not keeping up: its queue was full when the subscription was renewed".to_owned(),
                        });
                        break;
                    }
                }
            }
            let generation = sub.lease_generation;
            self.record().subscription(sub, SubscriptionChange::Renewed);
            return Ok(Admitted::Renewed {
                id,
                lease_until,
                generation,
                failure,
            });
        }
        let hook = Arc::new(Hook::new(p.callback.clone(), p.secret.clone()));
        let mut sub = Subscription::new(
            fresh.clone(),
            p.topic.clone(),
            p.events.clone(),
            Some(p.name.clone()),
            p.client_id.clone(),
            lease_until,
        );
        sub.webhook = Some(hook.clone());
        let initial = crate::delivery::replay(&topic.contexts, &sub.events, |_| true);
        if let Some(ack) = initial.iter().rev().find_map(|f| f.ack.clone()) {
            sub.last_event = Some(ack);
        }
        let (tx, rx) = mpsc::channel(capacity);
        let (close, close_rx) = oneshot::channel();
        sub.conn = Some(Connection {
            id: conn_id,
            tx,
            close,
        });
        sub.ever_connected = true;
        sub.since = Some(SystemTime::now());
        let acks = sub.acks.clone();
        let events = sub.events.to_string();
        self.record()
            .subscription(&sub, SubscriptionChange::Subscribed);
        topic.subscriptions.insert(fresh.clone(), sub);
        state.endpoints.insert(fresh.clone(), p.topic.clone());
        Ok(Admitted::New {
            id: fresh,
            conn_id,
            lease_until,
            hook,
            acks,
            events,
            initial,
            rx,
            close_rx,
        })
    }

    fn admitted(&self, p: Pending, admitted: Admitted) {
        let (id, renewed) = match &admitted {
            Admitted::New { id, .. } => (id.clone(), false),
            Admitted::Renewed { id, .. } => (id.clone(), true),
        };
        info!(topic = short(&p.topic), endpoint = short(&id), callback = %p.target.label(), subscriber = %p.name, events = %p.events, lease_secs = p.lease.as_secs(), renewed, "webhook subscribed");
        self.store_webhook_secret(&id, p.secret.clone());
        let mut audit = AuditRecord::new(
            AuditAction::Connect,
            if renewed {
                "webhook renewed"
            } else {
                "webhook verified"
            },
        );
        audit.topic = Some(p.topic.clone());
        audit.subscriber_name = Some(p.name.clone());
        audit.client_id = p.client_id.clone();
        self.audit(audit);
        self.emit(HubEvent::Connected {
            topic: p.topic.clone(),
            subscriber: p.name.clone(),
        });
        match admitted {
            Admitted::Renewed {
                id,
                lease_until,
                generation,
                failure,
            } => {
                self.watch_lease(p.topic, id, lease_until, generation);
                self.fail_all(failure.into_iter().collect());
            }
            Admitted::New {
                id,
                conn_id,
                lease_until,
                hook,
                acks,
                events,
                initial,
                rx,
                close_rx,
            } => {
                self.watch_lease(p.topic.clone(), id.clone(), lease_until, 0);
                let delivery = task::Delivery {
                    hub: self.clone(),
                    topic: p.topic,
                    endpoint_id: id,
                    conn_id,
                    events,
                    target: p.target,
                    hook,
                    initial,
                    rx,
                    close_rx,
                    acks,
                };
                self.tasks().spawn(task::run(delivery));
            }
        }
    }
}
