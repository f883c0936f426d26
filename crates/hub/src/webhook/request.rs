//! A webhook subscribe or unsubscribe request (checklist 116, 118): checked,
//! answered 202 at once, then verified (subscribe, STU1 unsubscribe) or
//! carried out (STU2 unsubscribe).

use fhircast::{Mode, SubscriptionRequest};
use tracing::info;

use super::admit::Pending;
use super::hook::is_hook;
use super::intent::verify;
use super::target;
use super::Secret;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::ids::short;
use crate::state::HubEvent;
use crate::subscriptions::{check_limits, remove};
use crate::Hub;

/// STU1: "random, less than 200 bytes".
const MAX_SECRET: usize = 199;

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
