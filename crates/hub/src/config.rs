//! Settings of a running hub. The binary fills them from its flags; tests
//! and the tray app build them directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::auth::{Issuer, JwksPolicy, MemoryStore, SecretStore};

#[derive(Clone, Debug)]
pub struct Config {
    /// Where to listen; loopback unless `allow_remote`.
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Keep subscriptions, contexts, the event journal and the audit trail
    /// in `lockstep.db` in the data folder.
    pub persist: bool,
    /// Open contexts survive a restart only if the hub was down for less
    /// than this; older ones may be stale and are discarded.
    pub recovery_window: Duration,
    /// How long audit records (and the journal) are kept.
    pub audit_retention: Duration,
    /// The event journal's size bound: past it the oldest events are
    /// pruned (issue 14.7). The audit trail is not bound by it.
    pub journal_max_bytes: u64,
    pub allow_remote: bool,
    /// Web origins (e.g. `https://viewer.hospital.org`) allowed to call the
    /// hub from a browser; empty by default: native apps send no Origin.
    pub allowed_origins: Vec<String>,
    /// Most topics, and most subscriptions on one topic, the hub holds.
    pub max_topics: usize,
    pub max_subscriptions_per_topic: usize,
    /// No bearer tokens required. Off by default: auth is on.
    pub no_auth: bool,
    /// Where the signing key and client-secret hashes live.
    pub secret_store: Arc<dyn SecretStore>,
    /// Lifetime of the access tokens the hub issues; leases never outlive them.
    pub token_lifetime: Duration,
    /// How long a subscriber has to ACK a notification (2-5: 10 s).
    pub ack_timeout: Duration,
    /// How long an abnormally dropped subscriber may take to reconnect
    /// before it is reported with a SyncError and removed.
    pub grace_period: Duration,
    /// Lease when the subscriber asks for none, and the most it can get.
    pub lease_default: Duration,
    pub lease_max: Duration,
    /// An endpoint nobody connects to within this time is discarded (4-3).
    pub connect_window: Duration,
    /// A topic other than the session topic is dropped, with its contexts,
    /// once it has had no subscriber for this long: long enough that an app
    /// restart never loses the patient (the session topic is never dropped
    /// this way; it ends with `UserLogout` or "Close all contexts").
    pub topic_idle: Duration,
    /// Largest HTTP body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Bytes of request bodies held at once across all connections (503
    /// above it): many stalled uploads cannot fill the memory.
    pub max_buffered_body_bytes: usize,
    /// A request body must arrive in full within this time (408 after).
    pub body_timeout: Duration,
    /// A request head (line and headers) must arrive in full within this
    /// time, however slowly its bytes trickle in; then the connection closes.
    pub header_timeout: Duration,
    /// Frames a subscriber may have waiting before it counts as stuck.
    pub queue_capacity: usize,
    /// WebSocket ping interval; a socket silent for two intervals is dead.
    pub ping_interval: Duration,
    /// Period of the legacy `heartbeat` event, for subscribers that ask for it.
    pub heartbeat_period: Duration,
    /// A connection on which no byte moved, either way, for this long is
    /// closed: an idle keep-alive, or a client that connected and never
    /// sent its request, gives back its place under `max_connections`.
    /// WebSockets stay busy with the hub's pings; the hub uses at least
    /// two ping intervals.
    pub idle_timeout: Duration,
    /// Serve `https://`/`wss://` with this install's self-signed
    /// certificate (see `tls.rs`). Off by default: plain HTTP on loopback.
    pub tls: bool,
    /// Most TCP connections (WebSockets included) served at once; more are
    /// answered 503 and closed, never left hanging. The default is well
    /// above the 1000 apps the hub is sized for (the OS's file-descriptor
    /// limit may bite first: then accept pauses, see `listener.rs`).
    pub max_connections: usize,
    /// Failed `/oauth/token` authentications allowed per client id, and in
    /// all, within a minute; after that the endpoint answers 429.
    pub token_failures_per_client: u32,
    pub token_failures_total: u32,
    /// The settings files this hub was started from, for the dashboard's
    /// *Settings* view; `None` when built in code (tests, embedders).
    pub settings_files: Option<crate::settings::SettingsFiles>,
    /// Authorization servers (e.g. the hospital's SMART server) whose
    /// access tokens the hub accepts, verified against their JWKS.
    pub external_issuers: Vec<Issuer>,
    /// How those JWKS are cached and re-fetched.
    pub jwks_policy: JwksPolicy,
    /// Hosts (names or IP addresses) that legacy webhook callbacks may
    /// point at besides loopback addresses; empty by default.
    pub webhook_allowed_hosts: Vec<String>,
    /// Serve only processes of the OS user the hub runs as (issue 17):
    /// every connection's client socket is looked up right after accept;
    /// another user's gets a 403 and is closed. On by default; off only
    /// for a site that must share one hub between accounts.
    pub peer_check: bool,
}

impl Config {
    pub const DEFAULT_LISTEN: &'static str = "127.0.0.1:4747";
    /// 64 MB of journal: days of a radiologist's events at ~1 KB each, and
    /// a bound a workstation's disk never notices.
    pub const DEFAULT_JOURNAL_MAX_MB: u64 = 64;

    /// Defaults for everything, listening on `listen` with data in `data_dir`.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> Self {
        Config {
            listen,
            data_dir,
            persist: true,
            recovery_window: Duration::from_secs(60),
            audit_retention: Duration::from_secs(30 * 24 * 3600),
            journal_max_bytes: Config::DEFAULT_JOURNAL_MAX_MB * 1024 * 1024,
            allow_remote: false,
            allowed_origins: Vec::new(),
            max_topics: 1000,
            max_subscriptions_per_topic: 1000,
            no_auth: false,
            secret_store: Arc::new(MemoryStore::default()),
            token_lifetime: Duration::from_secs(8 * 3600),
            ack_timeout: Duration::from_secs(10),
            grace_period: Duration::from_secs(30),
            lease_default: Duration::from_secs(24 * 3600),
            lease_max: Duration::from_secs(7 * 24 * 3600),
            connect_window: Duration::from_secs(300),
            topic_idle: Duration::from_secs(15 * 60),
            max_body_bytes: 1024 * 1024,
            max_buffered_body_bytes: 32 * 1024 * 1024,
            body_timeout: Duration::from_secs(20),
            header_timeout: Duration::from_secs(10),
            queue_capacity: 1024,
            ping_interval: Duration::from_secs(30),
            heartbeat_period: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            tls: false,
            max_connections: 4096,
            token_failures_per_client: 10,
            token_failures_total: 100,
            settings_files: None,
            external_issuers: Vec::new(),
            jwks_policy: JwksPolicy::default(),
            webhook_allowed_hosts: Vec::new(),
            peer_check: true,
        }
    }

    /// `https` with `--tls`, else `http`: the scheme of every URL handed out.
    pub fn http_scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    /// `wss` with `--tls`, else `ws`: the scheme of `hub.channel.endpoint`.
    pub fn ws_scheme(&self) -> &'static str {
        if self.tls {
            "wss"
        } else {
            "ws"
        }
    }

    /// The OS data folder for Lockstep (e.g. `~/.local/share/lockstep`).
    pub fn default_data_dir() -> Option<PathBuf> {
        directories::ProjectDirs::from("org", "Lockstep", "lockstep")
            .map(|d| d.data_dir().to_path_buf())
    }
}
