//! The flags and subcommands of `lockstep-hub`, and how the flags go into
//! `Config` (under them, the settings files: `FLAG_KEYS`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use lockstep_hub::auth::store::StoreChoice;
use lockstep_hub::settings::Layout;
use lockstep_hub::{auth, Config};

/// Lockstep: a FHIRcast 3.0.0 hub for the clinician's workstation.
///
/// Apps find the hub at http://HOST:PORT/fhircast/STU3 (https with --tls;
/// STU2 clients at /fhircast/STU2, OHIF at /api/hub). Logs go to stderr; one line on
/// stdout says where the hub is once it is ready.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = Config::DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where the hub keeps its data [default: the OS data folder].
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// A web origin allowed to call the hub from a browser (repeatable),
    /// e.g. https://viewer.hospital.org. None by default.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// Allow listening on a non-loopback address (exposes the session to the network).
    #[arg(long)]
    pub allow_remote: bool,
    /// A host (name or IP address) that legacy webhook callbacks may point
    /// at besides this computer (repeatable). Notifications to it travel as
    /// plain HTTP. None by default: webhooks go to loopback only.
    #[arg(long = "allow-webhook-host", value_name = "HOST")]
    pub allow_webhook_hosts: Vec<String>,
    /// Accept requests without a bearer token (development only: any local
    /// process or web page could then read and change the patient context).
    #[arg(long)]
    pub no_auth: bool,
    /// Serve processes of every OS user on this machine, not only yours
    /// (turns off the peer check; for a site that shares one hub between
    /// accounts). `peer_check = false` in lockstep.toml does the same.
    #[arg(long)]
    pub no_peer_check: bool,
    /// Where secrets live: auto (the OS keyring, else memory), keyring,
    /// file (secrets.json, 0600, for headless servers), memory.
    #[arg(long, default_value = "auto", value_name = "STORE", global = true)]
    pub secret_store: StoreChoice,
    /// Keep nothing on disk: no recovery after a restart, no journal, no audit
    /// trail (benchmarks and throw-away test hubs).
    #[arg(long)]
    pub no_persist: bool,
    /// Open contexts survive a restart only if the hub was down for less than this.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub recovery_window_secs: u64,
    /// How long audit records and the event journal are kept.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    pub audit_retention_days: u64,
    /// Size bound of the event journal in lockstep.db: past it the oldest
    /// events are pruned (the audit trail is kept by age only).
    #[arg(long, default_value_t = Config::DEFAULT_JOURNAL_MAX_MB, value_name = "MB")]
    pub journal_max_mb: u64,
    /// Lifetime of the access tokens the hub issues; leases never outlive them.
    #[arg(long, default_value_t = 8 * 3600, value_name = "SECONDS")]
    pub token_lifetime_secs: u64,
    /// How long an app has to ACK a notification before a SyncError.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    pub ack_timeout_ms: u64,
    /// How long an app whose connection dropped may take to reconnect before a SyncError.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub grace_period_ms: u64,
    /// Lease granted when an app asks for none.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    pub lease_default_secs: u64,
    /// Longest lease granted.
    #[arg(long, default_value_t = 604_800, value_name = "SECONDS")]
    pub lease_max_secs: u64,
    /// How long a topic other than the session's keeps its contexts with no
    /// app subscribed (an app restart never loses the patient).
    #[arg(long, default_value_t = 15 * 60, value_name = "SECONDS")]
    pub topic_idle_secs: u64,
    /// Largest request body accepted (413 above it).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub max_body_bytes: usize,
    /// Notifications an app may leave unread before it is dropped.
    #[arg(long, default_value_t = 1024, value_name = "FRAMES")]
    pub queue_capacity: usize,
    /// WebSocket ping interval; a socket silent for two intervals is dead.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    pub ping_interval_ms: u64,
    /// Serve https:// and wss:// with this install's self-signed certificate
    /// (made on first start; `lockstep-hub tls cert` prints it for trusting).
    #[arg(long)]
    pub tls: bool,
    /// Most connections (WebSockets included) served at once; more get a 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub max_connections: usize,
    /// Accept access tokens from this authorization server (repeatable):
    /// ISSUER=JWKS_URL, e.g. https://auth.hospital.org=https://auth.hospital.org/jwks.
    /// Tokens are verified against its published keys.
    #[arg(long = "trust-issuer", value_name = "ISSUER=JWKS_URL", value_parser = auth::Issuer::parse)]
    pub trust_issuers: Vec<auth::Issuer>,
    /// The aud a trusted issuer's tokens must carry (repeatable):
    /// ISSUER=AUDIENCE. Without it, any aud is accepted from that issuer.
    #[arg(long = "issuer-audience", value_name = "ISSUER=AUDIENCE")]
    pub issuer_audiences: Vec<String>,
    /// Do not print the one-time dashboard link after the ready line.
    #[arg(long)]
    pub no_dashboard_link: bool,
    /// Your settings file, instead of lockstep.toml in the OS config folder
    /// (the dashboard saves there). Flags win over both settings files.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The system (IT-managed) settings file, instead of the OS one (e.g.
    /// /etc/lockstep/lockstep.toml): to try a file before deploying it.
    #[arg(long, value_name = "FILE")]
    pub system_config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `lockstep_hub=debug` (or set RUST_LOG).
    #[arg(long, default_value = "info")]
    pub log: String,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Export the audit trail (who did what, when) as NDJSON or CSV.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
    /// Manage the apps allowed to get tokens from this hub.
    Apps {
        #[command(subcommand)]
        action: AppsAction,
    },
    /// The certificate `--tls` serves, for installers and IT to trust.
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
}

#[derive(Subcommand, Debug)]
pub enum TlsAction {
    /// Print the certificate (PEM) on stdout and its file on stderr; makes
    /// it, and its key in the secret store, if the hub has none yet.
    Cert {
        /// Print only the file's path.
        #[arg(long)]
        path: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditAction {
    /// Write audit records to stdout (or --output), oldest first.
    Export {
        /// ndjson or csv.
        #[arg(long, default_value = "ndjson")]
        format: String,
        /// Only records at or after this time (RFC 3339, e.g. 2026-11-22T10:00:00Z).
        #[arg(long)]
        since: Option<String>,
        /// Only records before this time (RFC 3339).
        #[arg(long)]
        until: Option<String>,
        /// Write to this file instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
pub enum AppsAction {
    /// Register an app; prints its client id and secret (shown once).
    Add {
        /// A name people recognise, e.g. "PowerScribe".
        name: String,
        /// Space-separated scopes, e.g. "fhircast/*.read fhircast/Patient-open.write".
        #[arg(long, default_value = "fhircast/*.read fhircast/*.write")]
        scopes: String,
        /// Topics it may join (repeatable); default: this workstation's session.
        #[arg(long = "topic")]
        topics: Vec<String>,
        /// The app's public keys (a JWK set file): it authenticates with
        /// signed assertions (private_key_jwt) and gets no secret unless
        /// --secret is given too.
        #[arg(long, value_name = "FILE", conflicts_with = "jwks_url")]
        jwks: Option<PathBuf>,
        /// Or where the app publishes its public keys (https, or http on
        /// loopback); fetched when it signs with a new key.
        #[arg(long, value_name = "URL")]
        jwks_url: Option<String>,
        /// With --jwks or --jwks-url: also issue a client secret.
        #[arg(long)]
        secret: bool,
        /// The app never sends ACKs (e.g. OHIF's cast client, a validator
        /// CLI): it is not dropped or reported for a missing ACK.
        #[arg(long)]
        no_ack: bool,
        /// A browser app (SMART App Launch with PKCE, a public client with
        /// no secret): an exact redirect URI (repeatable). Its origin is
        /// then allowed for CORS.
        #[arg(long = "redirect-uri", value_name = "URL", conflicts_with_all = ["jwks", "jwks_url", "secret"])]
        redirect_uris: Vec<String>,
        /// With --redirect-uri: where the tray's "Open app" opens it
        /// (SMART EHR launch, `launch` and `iss` are appended).
        #[arg(long, value_name = "URL", requires = "redirect_uris")]
        launch_url: Option<String>,
    },
    /// Forget the clinician's consent for a browser app: its refresh
    /// tokens end and the next sign-in asks again.
    ForgetConsent { client_id: String },
    /// List registered apps: client id, name, state, scopes, topics, and
    /// whether the hub expects ACKs (`acks` or `no-ack`).
    List,
    /// Say whether an app sends ACKs: `false` for a client that never does
    /// (it is then not dropped or reported for a missing ACK).
    SetAck {
        client_id: String,
        #[arg(action = clap::ArgAction::Set, value_name = "true|false")]
        acknowledges: bool,
    },
    /// Revoke an app: its tokens stop working and its subscriptions end.
    Remove { client_id: String },
    /// Give an app a new secret; tokens from the old one stop working.
    RotateSecret { client_id: String },
    /// Replace an app's public keys (a JWK set file, or a JWKS URL); its
    /// tokens stop working.
    SetJwks {
        client_id: String,
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "jwks_url",
            conflicts_with = "jwks_url"
        )]
        jwks: Option<PathBuf>,
        #[arg(long, value_name = "URL")]
        jwks_url: Option<String>,
    },
}

impl Args {
    /// The flags' share of `config` (the settings files come after, for the
    /// keys no flag was typed for).
    pub fn apply(&self, config: &mut Config) {
        config.allow_remote = self.allow_remote;
        config.allowed_origins = self
            .allow_origins
            .iter()
            .map(|o| o.trim_end_matches('/').to_owned())
            .collect();
        config.no_auth = self.no_auth;
        config.peer_check = !self.no_peer_check;
        config.webhook_allowed_hosts = self.allow_webhook_hosts.clone();
        config.recovery_window = Duration::from_secs(self.recovery_window_secs);
        config.persist = !self.no_persist;
        config.audit_retention = Duration::from_secs(self.audit_retention_days.max(1) * 24 * 3600);
        config.token_lifetime = Duration::from_secs(self.token_lifetime_secs.max(60));
        config.journal_max_bytes = self.journal_max_mb.max(1).saturating_mul(1024 * 1024);
        config.ack_timeout = Duration::from_millis(self.ack_timeout_ms);
        config.grace_period = Duration::from_millis(self.grace_period_ms);
        config.lease_default = Duration::from_secs(self.lease_default_secs);
        config.topic_idle = Duration::from_secs(self.topic_idle_secs.max(1));
        config.lease_max = Duration::from_secs(self.lease_max_secs.max(1));
        config.max_body_bytes = self.max_body_bytes;
        config.queue_capacity = self.queue_capacity.max(1);
        config.ping_interval = Duration::from_millis(self.ping_interval_ms.max(100));
        config.tls = self.tls;
        config.max_connections = self.max_connections.max(1);
    }

    /// The OS's settings files, with `--config` / `--system-config` in their
    /// place. Without a config folder (no HOME), both sit in the data folder.
    pub fn settings_layout(&self, data_dir: &std::path::Path) -> Layout {
        Layout::resolve(
            self.system_config.clone(),
            self.config.clone(),
            Some(data_dir),
        )
        .expect("a data folder is given")
    }
}

/// Flags (clap ids) that set a settings-file key; typed on the command
/// line, they win over both files.
pub const FLAG_KEYS: &[(&str, &str)] = &[
    ("listen", "port"),
    ("listen", "address"),
    ("allow_origins", "allowed_origins"),
    ("token_lifetime_secs", "token_lifetime_secs"),
    ("ack_timeout_ms", "ack_timeout_ms"),
    ("grace_period_ms", "grace_period_ms"),
    ("lease_default_secs", "lease_default_secs"),
    ("lease_max_secs", "lease_max_secs"),
    ("tls", "tls"),
    ("topic_idle_secs", "topic_idle_secs"),
    ("journal_max_mb", "journal_max_mb"),
    ("no_peer_check", "peer_check"),
];
