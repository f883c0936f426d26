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
//!
//! By concern: `request.rs` the subscribe and unsubscribe requests,
//! `intent.rs` intent verification, `admit.rs` making a verified webhook
//! live (new or renewed), `hook.rs` what a subscription keeps of its
//! webhook, `restore.rs` its secret in the store and the restart,
//! `task.rs` the delivery task, `denial.rs` the denial GET, `target.rs`
//! where callbacks may go.
//!
//! [`Subscription`]: crate::topic::Subscription

mod admit;
mod denial;
mod hook;
mod intent;
mod request;
mod restore;
mod target;
mod task;

use fhircast::{ChannelType, SubscriptionRequest};

pub(crate) use crate::topic::{Hook, Secret};
pub(crate) use restore::{forget_secret, Restore};
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
