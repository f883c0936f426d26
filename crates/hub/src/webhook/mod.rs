//! Legacy webhook subscribers (STU1/STU2 WebSub; hub-digest §3, checklist
//! 116-119), on `/fhircast/STU2` only: STU3 removed webhooks.
//!
//! A subscribe is answered 202 with no body at once; intent verification
//! (`GET {hub.callback}?hub.mode=subscribe&…&hub.challenge=…`, exact echo
//! with 2xx required) runs afterwards. Once verified, the webhook becomes
//! an ordinary [`Subscription`] whose "connection" is a delivery task
//! (`task.rs`) fed by the same bounded queue as a WebSocket: `delivery.rs`
//! fans out to both alike, renewals and context replay work the same way,
//! and the callback's HTTP status is its ACK, feeding the same SyncError
//! path.
//!
//! Webhook subscriptions survive a restart: the subscription is stored
//! with its callback like any other, its `hub.secret` in the secret store
//! (never in the database), and at the next start each one is verified
//! again — the app may be gone — and then lives on as if just subscribed,
//! with the current context replayed.

mod target;
mod task;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use fhircast::{ChannelType, EventSet, Mode, SubscriptionRequest};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout, Duration, Instant};
use tracing::{info, warn};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::ids::{self, short};
use crate::recorder::SubscriptionChange;
use crate::state::HubEvent;
use crate::storage::{AuditAction, AuditRecord};
use crate::subscriptions::{check_limits, mark_if_unfollowed, remove};
use crate::sync_error::{Expect, Failure};
use crate::topic::{Connection, Frame, Subscription};
use crate::Hub;

pub(crate) use crate::topic::{Hook, Secret};
pub(crate) use target::Target;

/// Whether a request asks for a webhook: `hub.channel.type=webhook`, or an
/// STU1 request (which has no channel type) carrying `hub.callback`.
pub(crate) fn wants(req: &SubscriptionRequest) -> bool {
    match req.channel {
        Some(ChannelType::Webhook) => true,
        Some(ChannelType::WebSocket) => false,
        None => req.callback.is_some(),
    }
}

fn is_hook(sub: &Subscription, callback: &str) -> bool {
    sub.webhook.as_ref().is_some_and(|h| h.callback == callback)
}

/// The secret store's name for a webhook's `hub.secret`.
fn secret_name(endpoint_id: &str) -> String {
    format!("webhook-secret:{endpoint_id}")
}

/// A webhook subscription stored before a restart, for `restore_webhook`.
pub(crate) struct Restore {
    pub topic: String,
    pub events: EventSet,
    pub name: Option<String>,
    pub client_id: Option<String>,
    /// What was left of the lease.
    pub lease: Duration,
    pub callback: String,
    pub secret: Option<Secret>,
}

impl Restore {
    /// The stored subscription `stored`, with its secret taken out of the
    /// store (the restored subscription stores it again under its new id).
    /// `None` when the secret cannot be read: unsigned notifications would
    /// be refused by an app that checks them.
    pub(crate) fn take(
        stored: crate::storage::StoredSubscription,
        callback: String,
        events: EventSet,
        lease: Duration,
        store: &dyn crate::auth::SecretStore,
    ) -> Option<Restore> {
        let name = secret_name(&stored.endpoint_id);
        let secret = match store.get(&name) {
            Ok(s) => s.map(|s| Secret(s.into_bytes())),
            Err(e) => {
                warn!(error = %e, "cannot read a webhook's secret: the subscription is not restored");
                return None;
            }
        };
        let _ = store.delete(&name);
        Some(Restore {
            topic: stored.topic,
            events,
            name: stored.subscriber_name,
            client_id: stored.client_id,
            lease,
            callback,
            secret,
        })
    }
}

/// Forgets the secret of a stored webhook that is not restored.
pub(crate) fn forget_secret(store: &dyn crate::auth::SecretStore, endpoint_id: &str) {
    let _ = store.delete(&secret_name(endpoint_id));
}

/// STU1: "random, less than 200 bytes".
const MAX_SECRET: usize = 199;
/// A challenge echo is short; anything longer is not one.
const MAX_ECHO: usize = 1024;

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
struct Pending {
    topic: String,
    events: EventSet,
    name: String,
    client_id: Option<String>,
    lease: Duration,
    callback: String,
    target: Target,
    secret: Option<Secret>,
}

impl Hub {
    /// A webhook subscribe or unsubscribe, already authorized. `Ok` means
    /// 202 with no body; verification (or the unsubscribe) follows.
    pub(crate) async fn webhook_request(
        &self,
        req: SubscriptionRequest,
        caller: Option<&Principal>,
    ) -> Result<(), ApiError> {
        let stu1 = req.channel.is_none();
        let callback = req.callback.clone().ok_or_else(|| {
            ApiError::bad_request(
                "missing required field: hub.callback (the URL that receives notifications)",
            )
        })?;
        let config = self.config().clone();
        let target =
            target::check(&callback, &config.webhook_allowed_hosts, config.ack_timeout).await?;
        let client_id = caller.map(|c| c.client_id.clone());
        let existing = self.webhook_owner(&req.topic, &callback);
        if let Some(owner) = &existing {
            if owner.is_some() && *owner != client_id {
                return Err(ApiError::bad_request(
                    "hub.callback is another app's subscription on this topic",
                ));
            }
        }
        match req.mode {
            Mode::Subscribe => {
                let secret =
                    match req.secret.as_deref() {
                        Some(s) if s.len() > MAX_SECRET => {
                            return Err(ApiError::bad_request(
                                "hub.secret must be shorter than 200 bytes",
                            ))
                        }
                        Some(s) if !s.is_empty() => Some(Secret(s.as_bytes().to_vec())),
                        _ if stu1 => return Err(ApiError::bad_request(
                            "missing required field: hub.secret (STU1 webhooks are always signed)",
                        )),
                        _ => None,
                    };
                if existing.is_none() {
                    check_limits(&self.lock(), &config, &req.topic)?;
                }
                let lease = self.granted_lease(&req, caller);
                let name = req
                    .subscriber_name
                    .clone()
                    .or_else(|| caller.map(|c| c.app_name.clone()))
                    .unwrap_or_else(|| format!("webhook at {}", target.label()));
                let pending = Pending {
                    topic: req.topic,
                    events: req.events,
                    name,
                    client_id,
                    lease,
                    callback,
                    target,
                    secret,
                };
                info!(topic = short(&pending.topic), callback = %pending.target.label(), events = %pending.events, "webhook subscribe: verifying intent");
                let hub = self.clone();
                tokio::spawn(async move { hub.verify_and_admit(pending).await });
                Ok(())
            }
            Mode::Unsubscribe => {
                if existing.is_none() {
                    return Err(ApiError::bad_request(
                        "hub.callback does not name a live webhook subscription on this topic",
                    ));
                }
                if !stu1 {
                    // STU2: "the Hub SHALL NOT validate unsubscribe requests".
                    self.end_webhook(&req.topic, &callback, "unsubscribed");
                    return Ok(());
                }
                // STU1 verifies unsubscribes like subscribes.
                let hub = self.clone();
                let events = req.events.to_string();
                tokio::spawn(async move {
                    let verdict = tokio::select! {
                        v = verify(&target, "unsubscribe", &req.topic, &events, None, config.ack_timeout) => v,
                        _ = hub.shutdown_token().cancelled() => return,
                    };
                    match verdict {
                        Ok(()) => hub.end_webhook(&req.topic, &callback, "unsubscribed"),
                        Err(why) => {
                            info!(topic = short(&req.topic), callback = %target.label(), reason = %why, "webhook unsubscribe not confirmed; subscription kept")
                        }
                    }
                });
                Ok(())
            }
        }
    }

    /// A webhook subscription from before a restart: its callback is
    /// checked and its intent verified again (the app may be gone, or no
    /// longer want it), then it lives on as if just subscribed.
    pub(crate) async fn restore_webhook(self, r: Restore) {
        let config = self.config().clone();
        let checked = target::check(
            &r.callback,
            &config.webhook_allowed_hosts,
            config.ack_timeout,
        )
        .await;
        let target = match checked {
            Ok(t) => t,
            Err(e) => {
                warn!(topic = short(&r.topic), reason = %e.message, "stored webhook subscription dropped");
                mark_if_unfollowed(&mut self.lock(), &r.topic);
                return;
            }
        };
        let name = r
            .name
            .unwrap_or_else(|| format!("webhook at {}", target.label()));
        let pending = Pending {
            topic: r.topic,
            events: r.events,
            name,
            client_id: r.client_id,
            lease: r.lease,
            callback: r.callback,
            target,
            secret: r.secret,
        };
        info!(topic = short(&pending.topic), callback = %pending.target.label(), "webhook subscription from before the restart: verifying intent again");
        self.verify_and_admit(pending).await;
    }

    /// Keeps a live webhook's `hub.secret` in the secret store, for a
    /// restart, or (`None`: no secret, or the subscription ended) forgets
    /// it. Off the async workers: the OS keyring may block.
    pub(crate) fn store_webhook_secret(&self, endpoint_id: &str, secret: Option<Secret>) {
        if self.storage().is_none() {
            return; // --no-persist: nothing is restored, nothing to keep
        }
        let store = self.config().secret_store.clone();
        let name = secret_name(endpoint_id);
        tokio::task::spawn_blocking(move || match secret {
            Some(s) => {
                if let Err(e) = store.set(&name, &String::from_utf8_lossy(&s.0)) {
                    warn!(error = %e, "cannot keep a webhook's secret: the subscription will not survive a restart");
                }
            }
            None => {
                if let Err(e) = store.delete(&name) {
                    warn!(error = %e, "cannot delete a webhook's secret from the secret store");
                }
            }
        });
    }

    /// `Some(owner)` if a webhook subscription with this callback lives on the topic.
    fn webhook_owner(&self, topic: &str, callback: &str) -> Option<Option<String>> {
        let state = self.lock();
        state
            .topics
            .get(topic)?
            .subscriptions
            .values()
            .find(|s| is_hook(s, callback))
            .map(|s| s.client_id.clone())
    }

    async fn verify_and_admit(self, p: Pending) {
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
        let hook = Arc::new(Hook {
            callback: p.callback.clone(),
            secret: Mutex::new(p.secret.clone()),
        });
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

    /// Ends the webhook subscription with this callback, quietly: the app
    /// asked for it.
    fn end_webhook(&self, topic: &str, callback: &str, reason: &str) {
        let mut state = self.lock();
        let Some(id) = state.topics.get(topic).and_then(|t| {
            t.subscriptions
                .values()
                .find(|s| is_hook(s, callback))
                .map(|s| s.endpoint_id.clone())
        }) else {
            return;
        };
        // No denial: dropping the connection ends its task silently.
        let sub = remove(&mut state, topic, &id, None);
        drop(state);
        if let Some(sub) = sub {
            info!(
                topic = short(topic),
                endpoint = short(&id),
                "webhook unsubscribed"
            );
            self.emit(HubEvent::Left {
                topic: topic.to_owned(),
                subscriber: sub.display_name(),
                reason: reason.to_owned(),
            });
        }
    }
}

/// Intent verification (checklist 116, 118, 119): `GET` the callback with
/// the hub's parameters appended to its own query string; only a 2xx whose
/// body is exactly the challenge agrees. 404 is the app's "no"; other
/// statuses (redirects are not followed), a wrong body, or no answer in
/// time fail too.
async fn verify(
    target: &Target,
    mode: &str,
    topic: &str,
    events: &str,
    lease: Option<u64>,
    limit: Duration,
) -> Result<(), String> {
    let challenge = ids::endpoint_id();
    let mut url = target.url.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("hub.mode", mode)
            .append_pair("hub.topic", topic)
            .append_pair("hub.events", events)
            .append_pair("hub.challenge", &challenge);
        if let Some(lease) = lease {
            query.append_pair("hub.lease_seconds", &lease.to_string());
        }
    }
    let answer = timeout(limit, async {
        let mut res = target.client.get(url).send().await?;
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res.chunk().await? {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ECHO {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    })
    .await;
    let (status, body) = match answer {
        Err(_) => return Err(format!("no answer within {} ms", limit.as_millis())),
        Ok(Err(e)) => return Err(format!("callback unreachable: {}", e.without_url())),
        Ok(Ok(answer)) => answer,
    };
    if status.as_u16() == 404 {
        return Err("the app refused (HTTP 404)".to_owned());
    }
    if !status.is_success() {
        let note = if status.is_redirection() {
            "; redirects are not followed"
        } else {
            ""
        };
        return Err(format!(
            "the callback answered HTTP {}{note}",
            status.as_u16()
        ));
    }
    if body != challenge.as_bytes() {
        return Err("the callback did not echo hub.challenge exactly".to_owned());
    }
    Ok(())
}

/// Tells a webhook its subscription ended (hub-digest §3 denial):
/// `GET {hub.callback}?hub.mode=denied&…`, bounded; its answer does not matter.
async fn deny(target: &Target, topic: &str, events: &str, reason: &str, limit: Duration) {
    let mut url = target.url.clone();
    url.query_pairs_mut()
        .append_pair("hub.mode", "denied")
        .append_pair("hub.topic", topic)
        .append_pair("hub.events", events)
        .append_pair("hub.reason", reason);
    match timeout(limit, target.client.get(url).send()).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            warn!(callback = %target.label(), error = %e.without_url(), "webhook denial not delivered")
        }
        Err(_) => warn!(callback = %target.label(), "webhook denial not answered in time"),
    }
}
