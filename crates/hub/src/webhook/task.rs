//! One webhook subscriber's delivery task, the counterpart of `channel.rs`:
//! it drains the subscription's bounded queue in order, POSTs each
//! notification to the callback signed with `hub.secret` (checklist 117,
//! 118), and treats the HTTP status as the ACK (hub-digest §3): an error
//! status or no answer in time is a failure to follow, reported through
//! the same SyncError path as a WebSocket's error ACK (checklist 49-51, 56).
//!
//! Only this task waits on the callback; publishers only enqueue, so a
//! slow or dead callback delays nobody else. Connection errors (nothing
//! was delivered) are retried a few times with backoff inside the same
//! time limit; anything else is not retried, as the app may have acted.

use std::sync::Arc;

use axum::body::Bytes;
use fhircast::AckStatus;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout, Duration, Instant};
use tracing::{debug, warn};

use super::denial::deny;
use super::{Hook, Secret, Target};
use crate::ids::short;
use crate::sync_error::{Expect, Failure};
use crate::topic::AckStats;
use crate::topic::{Close, Frame};
use crate::Hub;

/// Attempts per notification when the callback refuses connections.
const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
/// The denial GET at the end may take this long; nobody waits on it.
const DENIAL_TIMEOUT: Duration = Duration::from_secs(2);

pub(crate) struct Delivery {
    pub hub: Hub,
    pub topic: String,
    pub endpoint_id: String,
    pub conn_id: u64,
    /// The granted events at the start, for the denial.
    pub events: String,
    pub target: Target,
    /// The secret is read from here for each POST: a renewal may change it.
    pub hook: Arc<Hook>,
    /// The context replay, sent before anything from the queue.
    pub initial: Vec<Frame>,
    pub rx: mpsc::Receiver<Frame>,
    pub close_rx: oneshot::Receiver<Close>,
    pub acks: Arc<AckStats>,
}

enum Outcome {
    Status(u16),
    Timeout,
    Unreachable(String),
}

pub(crate) async fn run(d: Delivery) {
    let Delivery {
        hub,
        topic,
        endpoint_id,
        conn_id,
        events,
        target,
        hook,
        initial,
        mut rx,
        mut close_rx,
        acks,
    } = d;
    let shutdown = hub.shutdown_token().clone();
    let limit = hub.config().ack_timeout;
    let mut initial = initial.into_iter();
    // How the hub ended this subscription; `None` when the task is simply
    // replaced (renewal, unsubscribe) or the hub stops: nothing to tell.
    let ending: Option<Close> = loop {
        let frame = match initial.next() {
            Some(f) => f,
            None => tokio::select! {
                biased;
                _ = shutdown.cancelled() => break None,
                close = &mut close_rx => break close.ok(),
                f = rx.recv() => match f {
                    Some(f) => f,
                    None => break None,
                },
            },
        };
        if !is_notification(&frame) {
            continue;
        }
        let sent = Instant::now();
        let secret = hook.secret();
        let outcome = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break None,
            close = &mut close_rx => break close.ok(),
            o = post(&target, secret.as_ref(), &frame, limit) => o,
        };
        let diagnostics = match outcome {
            Outcome::Status(code) if (200..300).contains(&code) => {
                acks.record(&AckStatus::Success(code), sent.elapsed());
                continue;
            }
            Outcome::Status(code) => {
                acks.record(&AckStatus::Failure(code), sent.elapsed());
                match code {
                    409 => "refused to follow (HTTP 409)".to_owned(),
                    300..=399 => format!("answered HTTP {code} (redirects are not followed)"),
                    500.. => format!("could not process the event (HTTP {code})"),
                    _ => format!("refused the event (HTTP {code})"),
                }
            }
            Outcome::Timeout => format!("no answer within {} ms", limit.as_millis()),
            Outcome::Unreachable(e) => format!("callback unreachable: {e}"),
        };
        let Some((event_id, event_name)) = &frame.ack else {
            // SyncErrors about others are not ACK-tracked (no cascade).
            debug!(endpoint = short(&endpoint_id), reason = %diagnostics, "untracked webhook notification failed");
            continue;
        };
        hub.fail_all(vec![Failure {
            topic: topic.clone(),
            endpoint_id: endpoint_id.clone(),
            expect: Expect::Conn(conn_id),
            event_id: event_id.to_string(),
            event_name: event_name.to_string(),
            diagnostics,
        }]);
        // The hub now sends `close` (if the failure still applied); the
        // rest of the replay must not go out meanwhile.
        initial.by_ref().for_each(drop);
    };
    if let Some(close) = ending {
        // The events at removal time (a renewal may have changed them).
        let events = close
            .denial
            .as_deref()
            .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .and_then(|d| d["hub.events"].as_str().map(str::to_owned))
            .unwrap_or(events);
        deny(&target, &topic, &events, close.reason, DENIAL_TIMEOUT).await;
    }
    // The subscription is over, unless the hub is only stopping: then it
    // is restored at the next start and needs its secret.
    if !shutdown.is_cancelled() {
        hub.store_webhook_secret(&endpoint_id, None);
    }
    debug!(endpoint = short(&endpoint_id), "webhook delivery ended");
}

/// Events get POSTed; the confirmation frames WebSockets get do not
/// (verification took their place).
fn is_notification(frame: &Frame) -> bool {
    frame.ack.is_some() || !frame.text.starts_with("{\"hub.mode\"")
}

/// One notification, within `limit` overall: connection errors are
/// retried with doubling backoff; the first HTTP answer is final.
async fn post(target: &Target, secret: Option<&Secret>, frame: &Frame, limit: Duration) -> Outcome {
    let body = Bytes::from(frame.text.clone());
    let signature = secret.map(|s| signature(s, &body));
    let attempts = async {
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let mut req = target
                .client
                .post(target.url.clone())
                .header("content-type", "application/json")
                .body(body.clone());
            if let Some(sig) = &signature {
                req = req.header("x-hub-signature", sig);
            }
            match req.send().await {
                Ok(res) => return Outcome::Status(res.status().as_u16()),
                Err(e) if e.is_connect() && attempt < ATTEMPTS => {
                    debug!(callback = %target.label(), attempt, "webhook connection failed; retrying");
                    sleep(backoff).await;
                    backoff *= 2;
                    attempt += 1;
                }
                Err(e) if e.is_timeout() => return Outcome::Timeout,
                Err(e) => {
                    let e = e.without_url().to_string();
                    warn!(callback = %target.label(), error = %e, "webhook notification not delivered");
                    return Outcome::Unreachable(e);
                }
            }
        }
    };
    timeout(limit, attempts).await.unwrap_or(Outcome::Timeout)
}

/// `X-Hub-Signature: sha256=<hex HMAC-SHA256 of the raw body>` (checklist 117).
pub(crate) fn signature(secret: &Secret, body: &[u8]) -> String {
    // HMAC accepts keys of any length; this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.0) else {
        return String::new();
    };
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + tag.len() * 2);
    out.push_str("sha256=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231 test case 2 (HMAC-SHA-256).
    #[test]
    fn signature_is_hex_hmac_sha256() {
        let sig = signature(&Secret(b"Jefe".to_vec()), b"what do ya want for nothing?");
        assert_eq!(
            sig,
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
