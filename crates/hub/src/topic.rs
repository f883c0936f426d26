//! A topic (one clinician's session) and its subscriptions.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use axum::extract::ws::Utf8Bytes;
use fhircast::message::AckStatus;
use fhircast::EventSet;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use fhircast::ContextStack;

#[derive(Default)]
pub struct Topic {
    /// By endpoint id.
    pub subscriptions: HashMap<String, Subscription>,
    pub contexts: ContextStack,
    /// Since when nobody has subscribed: the topic, with its contexts, is
    /// dropped `Config::topic_idle` later (never the session topic).
    pub idle_since: Option<Instant>,
    /// The last accepted event ids, so that a publisher's retry of the same
    /// event is answered without a second broadcast (checklist 43).
    pub recent_ids: RecentIds,
}

impl Topic {
    /// A topic nobody follows yet: idle from now.
    pub fn unfollowed() -> Self {
        Topic {
            idle_since: Some(Instant::now()),
            ..Topic::default()
        }
    }
}

/// The ids of the last `RecentIds::WINDOW` events a topic accepted, each
/// with what its 2xx said (the versionId assigned, if any).
#[derive(Default)]
pub struct RecentIds(VecDeque<AcceptedId>);

pub struct AcceptedId {
    pub id: String,
    /// The event's name, lower-cased: the same id for another event is a
    /// client bug, not a retry.
    pub event: String,
    pub version_id: Option<String>,
}

impl RecentIds {
    /// Long enough for any retry after a timeout; short enough that the
    /// linear search costs nothing next to a publish.
    pub const WINDOW: usize = 256;

    pub fn get(&self, id: &str) -> Option<&AcceptedId> {
        self.0.iter().rev().find(|a| a.id == id)
    }

    pub fn push(&mut self, accepted: AcceptedId) {
        if self.0.len() == Self::WINDOW {
            self.0.pop_front();
        }
        self.0.push_back(accepted);
    }
}

pub struct Subscription {
    pub endpoint_id: String,
    pub topic: String,
    pub events: EventSet,
    pub name: Option<String>,
    /// The app whose token created it (None with --no-auth).
    pub client_id: Option<String>,
    pub lease_until: Instant,
    /// Bumped on every renewal so that old expiry timers know they are stale.
    pub lease_generation: u64,
    pub ever_connected: bool,
    pub conn: Option<Connection>,
    /// Set when the last connection dropped abnormally: its id.
    pub lost: Option<u64>,
    /// `(id, name)` of the last event we tried to give it, for SyncErrors
    /// about it. Shared bytes: no allocation per delivery.
    pub last_event: Option<(Utf8Bytes, Utf8Bytes)>,
    /// For the dashboard: when the socket connected, or when it went away.
    pub since: Option<SystemTime>,
    /// The last ACK and what is still unacknowledged, recorded by the
    /// channel task (the sync state the dashboard and tray show).
    pub acks: Arc<AckStats>,
    /// `display_name()`, made once and shared by the dashboard's event log
    /// (no allocation per delivery); reset when a renewal renames it.
    pub label: OnceLock<Arc<str>>,
    /// A frame to send right after the next confirmation (a SyncError
    /// telling a reconnecting app its context was discarded at restart).
    pub notice: Option<Frame>,
    /// A legacy webhook subscription's callback and secret (identified by
    /// topic + callback); `None` for WebSocket subscriptions.
    pub webhook: Option<Arc<Hook>>,
    /// Every timer task of this subscription (lease, unused endpoint,
    /// reconnect grace) ends when this is cancelled, which dropping the
    /// subscription does: no task outlives what it belongs to.
    pub timers: CancellationToken,
    /// The running lease timer, replaced on renewal.
    pub lease_timer: Option<CancellationToken>,
    /// The unused-endpoint and grace timers, ended by a (re)connect.
    pub connect_timer: Option<CancellationToken>,
    /// `Some` while support has broken this app's link: it is sent no
    /// context changes; the closes it missed wait here (bounded) and go
    /// out on rejoin, before the current context.
    pub unlinked: Option<Vec<Frame>>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.timers.cancel();
    }
}

/// Ends the timer in `slot`, if any, and puts a fresh one there: the token
/// the new timer task waits on.
pub fn rearm(
    slot: &mut Option<CancellationToken>,
    parent: &CancellationToken,
) -> CancellationToken {
    if let Some(old) = slot.take() {
        old.cancel();
    }
    let token = parent.child_token();
    *slot = Some(token.clone());
    token
}

impl Subscription {
    pub fn new(
        endpoint_id: String,
        topic: String,
        events: EventSet,
        name: Option<String>,
        client_id: Option<String>,
        lease_until: Instant,
    ) -> Self {
        Subscription {
            endpoint_id,
            topic,
            events,
            name,
            client_id,
            lease_until,
            lease_generation: 0,
            ever_connected: false,
            conn: None,
            lost: None,
            last_event: None,
            since: None,
            acks: Default::default(),
            label: OnceLock::new(),
            notice: None,
            webhook: None,
            timers: CancellationToken::new(),
            lease_timer: None,
            connect_timer: None,
            unlinked: None,
        }
    }

    /// How the subscriber is named in SyncErrors (checklist 74).
    pub fn display_name(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("subscriber {}", crate::ids::short(&self.endpoint_id)))
    }

    pub fn label(&self) -> Arc<str> {
        self.label
            .get_or_init(|| self.display_name().into())
            .clone()
    }
}

/// The live WebSocket of a subscription.
pub struct Connection {
    pub id: u64,
    pub tx: mpsc::Sender<Frame>,
    /// Tells the channel task to deny and close. Dropping it (a newer
    /// connection took over) closes the socket too.
    pub close: oneshot::Sender<Close>,
}

/// One text frame for a subscriber. The text is shared by all recipients.
#[derive(Clone, Debug)]
pub struct Frame {
    pub text: Utf8Bytes,
    /// `(event id, event name)` when the subscriber must ACK it.
    pub ack: Option<(Utf8Bytes, Utf8Bytes)>,
    /// The `context.versionId` the event carries, for the sync state of
    /// whoever acknowledges it.
    pub version: Option<Utf8Bytes>,
}

#[derive(Debug)]
pub struct Close {
    /// The denial frame to send first, if any.
    pub denial: Option<String>,
    pub code: u16,
    pub reason: &'static str,
}

/// What a legacy webhook subscription keeps: its callback (its identity,
/// with the topic) and its secret, which a verified re-subscribe may
/// change. The webhook layer (`webhook/`) makes and uses it.
pub(crate) struct Hook {
    pub callback: String,
    pub(crate) secret: Mutex<Option<Secret>>,
}

impl Hook {
    pub(crate) fn new(callback: String, secret: Option<Secret>) -> Hook {
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

    pub(crate) fn set_secret(&self, secret: Option<Secret>) {
        *self.secret.lock().unwrap_or_else(|e| e.into_inner()) = secret;
    }
}

/// `hub.secret`: never printed, not even by `{:?}`.
#[derive(Clone)]
pub(crate) struct Secret(pub(crate) Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// The last ACK of a subscription and how many notifications wait for
/// one: delivery state, written by its channel (or webhook) task without
/// the hub lock (atomics), read for its sync state.
#[derive(Debug, Default)]
pub(crate) struct AckStats {
    /// HTTP-style status of the last ACK; 0 until the first one.
    status: AtomicU32,
    latency_us: AtomicU64,
    count: AtomicU64,
    /// Notifications sent and not yet acknowledged.
    pending: AtomicU32,
    /// The last notification acknowledged with success: what the app shows.
    acked: Mutex<Option<Acked>>,
}

/// An event an app acknowledged with success, for its sync state.
#[derive(Clone, Debug)]
pub(crate) struct Acked {
    pub event: Utf8Bytes,
    pub id: Utf8Bytes,
    pub version: Option<Utf8Bytes>,
    pub at: SystemTime,
}

impl AckStats {
    /// After a success ACK: the app now shows this event's context.
    pub(crate) fn acked(&self, acked: Acked) {
        *self.acked.lock().unwrap_or_else(|e| e.into_inner()) = Some(acked);
    }

    pub(crate) fn last_acked(&self) -> Option<Acked> {
        self.acked.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn set_pending(&self, n: usize) {
        self.pending
            .store(u32::try_from(n).unwrap_or(u32::MAX), Ordering::Relaxed);
    }

    pub(crate) fn pending(&self) -> u32 {
        self.pending.load(Ordering::Relaxed)
    }

    /// The status of the last ACK, if there was one.
    pub(crate) fn last_status(&self) -> Option<u32> {
        self.last().map(|(status, _, _)| status)
    }

    pub(crate) fn record(&self, status: &AckStatus, latency: Duration) {
        let code = match status {
            AckStatus::Success(c) | AckStatus::Failure(c) => *c,
        };
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_us.store(micros, Ordering::Relaxed);
        self.status.store(u32::from(code), Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// `(status, latency in ms, number of ACKs)`, once there was an ACK.
    pub(crate) fn last(&self) -> Option<(u32, f64, u64)> {
        let count = self.count.load(Ordering::Relaxed);
        (count > 0).then(|| {
            (
                self.status.load(Ordering::Relaxed),
                self.latency_us.load(Ordering::Relaxed) as f64 / 1000.0,
                count,
            )
        })
    }
}
