//! `Hub`: the shared state of a running hub, one cheap-to-clone handle.
//!
//! All topics live behind one std `Mutex`: every operation on them is short
//! and synchronous (no `.await` while it is held), and one lock makes each
//! publish atomic with respect to subscribes, reconnects and other publishes
//! on the same topic, which content sharing requires (checklist 97).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::recorder::{Recorder, Recorders};
use crate::topic::Topic;
use crate::Config;

/// A running hub: one cheap-to-clone handle (an `Arc`), as mini-redis's
/// `Db`. What the binaries, the tray and the tests may do with it is this,
/// and only this (everything else is `pub(crate)`, for the routes):
///
/// - **Start**: [`Hub::new`] (opens storage, recovers, wires the recorders);
///   then `server::run` serves it, or `launch` does both.
/// - **Read**: [`Hub::config`], [`Hub::session_topic`], [`Hub::local_addr`],
///   [`Hub::current_context`] (Get Current Context of a topic),
///   [`Hub::counts`] (topics, subscriptions), [`Hub::subscribers`],
///   [`Hub::ack_timeout`] / [`Hub::grace_period`] (live values),
///   [`Hub::is_paused`].
/// - **Watch**: [`Hub::events`], a broadcast of [`HubEvent`]s (joined,
///   left, SyncError, published, paused...) for the tray and the dashboard.
/// - **Act, as support would**: [`Hub::pause`] / [`Hub::resume`],
///   [`Hub::close_all`], [`Hub::drop_subscription`], [`Hub::break_link`] /
///   [`Hub::rejoin`], [`Hub::audit_admin`].
/// - **Its parts**: [`Hub::auth`], [`Hub::apps`] (registrations),
///   [`Hub::storage`] (`None` with `--no-persist`), [`Hub::admin_token`] /
///   [`Hub::one_time_link`] (the dashboard's credentials),
///   [`Hub::launch_url`] / [`Hub::launchable_apps`] (SMART launch of
///   browser apps).
///
/// Publishing and subscribing are not here: apps do those over HTTP and
/// WebSocket, and tests do them the same way.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    state: Mutex<State>,
    events: broadcast::Sender<HubEvent>,
    shutdown: CancellationToken,
    /// Channel tasks, so that shutdown can wait for their close frames.
    tasks: TaskTracker,
    local_addr: OnceLock<SocketAddr>,
    /// Tokens, scopes and registered apps.
    auth: crate::auth::Auth,
    /// Who is told what happened (durability, the dashboard).
    record: Recorders,
    /// The timeouts the dashboard may change while the hub runs.
    live: LiveTimeouts,
}

#[derive(Default)]
pub(crate) struct State {
    pub topics: HashMap<String, Topic>,
    /// Endpoint id → topic.
    pub endpoints: HashMap<String, String>,
    pub next_conn: u64,
    /// `Some` while delivery is paused from the dashboard: publishes are
    /// applied but not delivered; the closes among them wait here.
    pub paused: Option<Vec<crate::delivery::Held>>,
    /// The hub's recorders, reachable from code that holds the lock.
    pub record: Recorders,
    /// This workstation's session topic: always present, never idle.
    pub session_topic: String,
}

impl State {
    /// A fresh state: the session topic and nothing else. The session
    /// exists from the start: the first app of the day may publish before
    /// any other has subscribed.
    pub(crate) fn new(session_topic: String) -> State {
        let mut state = State {
            session_topic,
            ..State::default()
        };
        state
            .topics
            .insert(state.session_topic.clone(), Topic::default());
        state
    }
}

/// What happened on the hub, for the tray and the dashboard. Patient data
/// never travels here: names of apps and events only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HubEvent {
    /// A subscriber's WebSocket connected (or reconnected).
    Connected { topic: String, subscriber: String },
    /// A subscriber's WebSocket went away; `clean` for 1000/1001 closes.
    Disconnected {
        topic: String,
        subscriber: String,
        clean: bool,
    },
    /// A subscription ended (unsubscribe, lease expiry, failure).
    Left {
        topic: String,
        subscriber: String,
        reason: String,
    },
    /// The hub reported a subscriber that failed to follow.
    SyncError {
        topic: String,
        subscriber: String,
        event: String,
        reason: String,
    },
    /// An event was accepted and distributed.
    Published { topic: String, event: String },
    /// Delivery was paused from the dashboard (publishes still apply).
    Paused,
    /// Delivery resumed; subscribers were sent the current context again.
    Resumed,
    /// Support broke an app's link: it follows no context change until
    /// it is rejoined.
    LinkBroken { topic: String, subscriber: String },
    /// Support rejoined an app: it was sent the current context.
    Rejoined { topic: String, subscriber: String },
    /// An app announced `UserHibernate` (the user's session is suspended,
    /// e.g. the workstation locks): forwarded to the apps, shown here.
    Hibernated { topic: String },
    /// A topic other than the session's was dropped, with its contexts,
    /// after `Config::topic_idle` without a subscriber.
    TopicEnded { topic: String },
    /// A browser app asks for the clinician's consent (SMART launch); the
    /// consent page is open in the browser. `app` is its display name.
    ConsentRequested { app: String },
}

impl Hub {
    /// The core from its parts: `state` as recovered at start (or
    /// `State::new`), and the recorders it reports to. `Hub::new` (in
    /// `wiring.rs`) builds them.
    pub(crate) fn from_parts(
        config: Config,
        auth: crate::auth::Auth,
        mut state: State,
        record: Recorders,
    ) -> Hub {
        let (events, _) = broadcast::channel(1024);
        state.record = record.clone();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            // Revoking an app cuts off its subscriptions at once.
            let weak = weak.clone();
            auth.apps().on_revoke(move |client_id| {
                if let Some(inner) = weak.upgrade() {
                    Hub { inner }.drop_client(client_id);
                }
            });
            Inner {
                auth,
                live: LiveTimeouts::new(&config),
                config,
                state: Mutex::new(state),
                record,
                events,
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                local_addr: OnceLock::new(),
            }
        });
        Hub { inner }
    }

    /// The recorder of type `T` this hub reports to, if it has one: how
    /// the layers above the core find their own again.
    pub(crate) fn recorder<T: Recorder>(&self) -> Option<&T> {
        self.inner.record.find::<T>()
    }

    /// Everyone this hub reports to.
    pub(crate) fn record(&self) -> &Recorders {
        &self.inner.record
    }

    pub fn auth(&self) -> &crate::auth::Auth {
        &self.inner.auth
    }

    /// The registered apps (dashboard, CLI).
    pub fn apps(&self) -> &crate::auth::AppRegistry {
        self.inner.auth.apps()
    }

    /// The topic of this workstation's session, handed out with tokens.
    pub fn session_topic(&self) -> &str {
        self.inner.auth.session_topic()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The ACK timeout now: `Config::ack_timeout` unless the dashboard
    /// changed it since (it then applies to events sent afterwards).
    pub fn ack_timeout(&self) -> std::time::Duration {
        self.inner.live.ack_timeout()
    }

    /// The reconnect grace period now, for connections lost from now on.
    pub fn grace_period(&self) -> std::time::Duration {
        self.inner.live.grace_period()
    }

    pub(crate) fn live(&self) -> &LiveTimeouts {
        &self.inner.live
    }

    /// Follow what happens on the hub. Slow readers skip ahead (lagged).
    pub fn events(&self) -> broadcast::Receiver<HubEvent> {
        self.inner.events.subscribe()
    }

    pub(crate) fn emit(&self, event: HubEvent) {
        self.inner.record.announced(&event);
        // No receivers is the normal headless case.
        let _ = self.inner.events.send(event);
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would be a bug; the state is still
        // the best we have, so keep serving rather than poisoning every call.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn tasks(&self) -> &TaskTracker {
        &self.inner.tasks
    }

    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.inner.local_addr.set(addr);
    }

    /// The address the server is bound to, once `run` has started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.local_addr.get().copied()
    }

    /// The Get Current Context answer for a topic (empty form if unknown).
    pub fn current_context(&self, topic: &str) -> serde_json::Value {
        match self.lock().topics.get(topic) {
            Some(t) => t.contexts.snapshot(),
            None => serde_json::json!({"context.type": "", "context": []}),
        }
    }

    /// Number of live subscriptions and connected sockets, over all topics.
    pub fn counts(&self) -> (usize, usize) {
        let state = self.lock();
        let subs = state.topics.values().map(|t| t.subscriptions.len()).sum();
        let conns = state
            .topics
            .values()
            .flat_map(|t| t.subscriptions.values())
            .filter(|s| s.conn.is_some())
            .count();
        (subs, conns)
    }
}

/// The settings a running hub applies at once when the dashboard saves
/// them: read per event (ACK timeout) or per lost connection (grace
/// period), so an atomic each is enough. Everything else in `Config` is
/// read once, at start.
#[derive(Debug)]
pub(crate) struct LiveTimeouts {
    ack_timeout_us: AtomicU64,
    grace_period_us: AtomicU64,
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

impl LiveTimeouts {
    pub(crate) fn new(config: &Config) -> LiveTimeouts {
        LiveTimeouts {
            ack_timeout_us: AtomicU64::new(micros(config.ack_timeout)),
            grace_period_us: AtomicU64::new(micros(config.grace_period)),
        }
    }

    pub(crate) fn ack_timeout(&self) -> Duration {
        Duration::from_micros(self.ack_timeout_us.load(Ordering::Relaxed))
    }

    pub(crate) fn grace_period(&self) -> Duration {
        Duration::from_micros(self.grace_period_us.load(Ordering::Relaxed))
    }

    pub(crate) fn set_ack_timeout(&self, d: Duration) {
        self.ack_timeout_us.store(micros(d), Ordering::Relaxed);
    }

    pub(crate) fn set_grace_period(&self, d: Duration) {
        self.grace_period_us.store(micros(d), Ordering::Relaxed);
    }
}
