//! Which subscription is a given webhook. The `Hook` a subscription keeps
//! (callback + `hub.secret`) is core data and lives in `topic.rs`; the
//! core knows nothing of webhook delivery.

use crate::topic::Subscription;

/// Whether `sub` is the webhook subscription with this callback.
pub(super) fn is_hook(sub: &Subscription, callback: &str) -> bool {
    sub.webhook.as_ref().is_some_and(|h| h.callback == callback)
}
