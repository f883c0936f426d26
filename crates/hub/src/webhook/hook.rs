//! What a webhook subscription keeps of its webhook: the callback and the
//! `hub.secret` that signs its notifications.

use std::fmt;
use std::sync::Mutex;

use crate::topic::Subscription;

/// `hub.secret`: never printed, not even by `{:?}`.
#[derive(Clone)]
pub(crate) struct Secret(pub(super) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What a webhook subscription keeps: its callback (its identity, with the
/// topic) and its secret, which a verified re-subscribe may change.
pub(crate) struct Hook {
    pub callback: String,
    secret: Mutex<Option<Secret>>,
}

impl Hook {
    pub(super) fn new(callback: String, secret: Option<Secret>) -> Hook {
        Hook {
            callback,
            secret: Mutex::new(secret),
        }
    }

    pub fn secret(&self) -> Option<Secret> {
        self.secret
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(super) fn set_secret(&self, secret: Option<Secret>) {
        *self.secret.lock().unwrap_or_else(|e| e.into_inner()) = secret;
    }
}

/// Whether `sub` is the webhook subscription with this callback.
pub(super) fn is_hook(sub: &Subscription, callback: &str) -> bool {
    sub.webhook.as_ref().is_some_and(|h| h.callback == callback)
}
