//! Webhook subscriptions across a restart: the `hub.secret` kept in the
//! secret store (never in the database), and a stored subscription checked
//! and verified again at the next start.

use fhircast::EventSet;
use tokio::time::Duration;
use tracing::{info, warn};

use super::admit::Pending;
use super::target;
use super::Secret;
use crate::ids::short;
use crate::subscriptions::mark_if_unfollowed;
use crate::Hub;

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

impl Hub {
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
}
