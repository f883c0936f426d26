//! `lockstep-hub`: the hub without the tray, for servers, tests and support.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use lockstep_hub::auth::store::StoreChoice;
use lockstep_hub::auth::SecretStore;
use lockstep_hub::discovery_file::{remove_discovery, write_discovery, Discovery};
use lockstep_hub::settings::{Layout, Settings, SettingsFiles, StartError};
use lockstep_hub::storage::{ExportFormat, Storage};
use lockstep_hub::{auth, server, Config, Hub};
use tracing::warn;

/// Lockstep: a FHIRcast 3.0.0 hub for the clinician's workstation.
///
/// Apps find the hub at http://HOST:PORT/fhircast/STU3 (https with --tls;
/// STU2 clients at /fhircast/STU2, OHIF at /api/hub). Logs go to stderr; one line on
/// stdout says where the hub is once it is ready.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on. Only loopback addresses unless --allow-remote.
    #[arg(long, default_value = Config::DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Where the hub keeps its data [default: the OS data folder].
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// A web origin allowed to call the hub from a browser (repeatable),
    /// e.g. https://viewer.hospital.org. None by default.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origins: Vec<String>,
    /// Allow listening on a non-loopback address (exposes the session to the network).
    #[arg(long)]
    allow_remote: bool,
    /// A host (name or IP address) that legacy webhook callbacks may point
    /// at besides this computer (repeatable). Notifications to it travel as
    /// plain HTTP. None by default: webhooks go to loopback only.
    #[arg(long = "allow-webhook-host", value_name = "HOST")]
    allow_webhook_hosts: Vec<String>,
    /// Accept requests without a bearer token (development only: any local
    /// process or web page could then read and change the patient context).
    #[arg(long)]
    no_auth: bool,
    /// Serve processes of every OS user on this machine, not only yours
    /// (turns off the peer check; for a site that shares one hub between
    /// accounts). `peer_check = false` in lockstep.toml does the same.
    #[arg(long)]
    no_peer_check: bool,
    /// Where secrets live: auto (the OS keyring, else memory), keyring,
    /// file (secrets.json, 0600, for headless servers), memory.
    #[arg(long, default_value = "auto", value_name = "STORE", global = true)]
    secret_store: StoreChoice,
    /// Keep nothing on disk: no recovery after a restart, no journal, no audit
    /// trail (benchmarks and throw-away test hubs).
    #[arg(long)]
    no_persist: bool,
    /// Open contexts survive a restart only if the hub was down for less than this.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    recovery_window_secs: u64,
    /// How long audit records and the event journal are kept.
    #[arg(long, default_value_t = 30, value_name = "DAYS")]
    audit_retention_days: u64,
    /// Size bound of the event journal in lockstep.db: past it the oldest
    /// events are pruned (the audit trail is kept by age only).
    #[arg(long, default_value_t = Config::DEFAULT_JOURNAL_MAX_MB, value_name = "MB")]
    journal_max_mb: u64,
    /// Lifetime of the access tokens the hub issues; leases never outlive them.
    #[arg(long, default_value_t = 8 * 3600, value_name = "SECONDS")]
    token_lifetime_secs: u64,
    /// How long an app has to ACK a notification before a SyncError.
    #[arg(long, default_value_t = 10_000, value_name = "MS")]
    ack_timeout_ms: u64,
    /// How long an app whose connection dropped may take to reconnect before a SyncError.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    grace_period_ms: u64,
    /// Lease granted when an app asks for none.
    #[arg(long, default_value_t = 86_400, value_name = "SECONDS")]
    lease_default_secs: u64,
    /// Longest lease granted.
    #[arg(long, default_value_t = 604_800, value_name = "SECONDS")]
    lease_max_secs: u64,
    /// How long a topic other than the session's keeps its contexts with no
    /// app subscribed (an app restart never loses the patient).
    #[arg(long, default_value_t = 15 * 60, value_name = "SECONDS")]
    topic_idle_secs: u64,
    /// Largest request body accepted (413 above it).
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    max_body_bytes: usize,
    /// Notifications an app may leave unread before it is dropped.
    #[arg(long, default_value_t = 1024, value_name = "FRAMES")]
    queue_capacity: usize,
    /// WebSocket ping interval; a socket silent for two intervals is dead.
    #[arg(long, default_value_t = 30_000, value_name = "MS")]
    ping_interval_ms: u64,
    /// Serve https:// and wss:// with this install's self-signed certificate
    /// (made on first start; `lockstep-hub tls cert` prints it for trusting).
    #[arg(long)]
    tls: bool,
    /// Most connections (WebSockets included) served at once; more get a 503.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    max_connections: usize,
    /// Accept access tokens from this authorization server (repeatable):
    /// ISSUER=JWKS_URL, e.g. https://auth.hospital.org=https://auth.hospital.org/jwks.
    /// Tokens are verified against its published keys.
    #[arg(long = "trust-issuer", value_name = "ISSUER=JWKS_URL", value_parser = auth::Issuer::parse)]
    trust_issuers: Vec<auth::Issuer>,
    /// The aud a trusted issuer's tokens must carry (repeatable):
    /// ISSUER=AUDIENCE. Without it, any aud is accepted from that issuer.
    #[arg(long = "issuer-audience", value_name = "ISSUER=AUDIENCE")]
    issuer_audiences: Vec<String>,
    /// Do not print the one-time dashboard link after the ready line.
    #[arg(long)]
    no_dashboard_link: bool,
    /// Your settings file, instead of lockstep.toml in the OS config folder
    /// (the dashboard saves there). Flags win over both settings files.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// The system (IT-managed) settings file, instead of the OS one (e.g.
    /// /etc/lockstep/lockstep.toml): to try a file before deploying it.
    #[arg(long, value_name = "FILE")]
    system_config: Option<PathBuf>,
    /// Log filter, e.g. `info` or `lockstep_hub=debug` (or set RUST_LOG).
    #[arg(long, default_value = "info")]
    log: String,
}

#[derive(Subcommand, Debug)]
enum Command {
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
enum TlsAction {
    /// Print the certificate (PEM) on stdout and its file on stderr; makes
    /// it, and its key in the secret store, if the hub has none yet.
    Cert {
        /// Print only the file's path.
        #[arg(long)]
        path: bool,
    },
}

#[derive(Subcommand, Debug)]
enum AuditAction {
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
enum AppsAction {
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

fn main() -> ExitCode {
    // The matches say which flags were typed: only those override the files.
    let matches = Args::command().get_matches();
    let args = Args::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&args.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();

    let Some(data_dir) = args.data_dir.clone().or_else(Config::default_data_dir) else {
        eprintln!("error: no data folder could be determined; pass --data-dir");
        return ExitCode::from(2);
    };
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        eprintln!(
            "error: cannot create data folder {}: {e}",
            data_dir.display()
        );
        return ExitCode::from(2);
    }
    let (store, store_warning) = match auth::store::open_store(args.secret_store, &data_dir) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Audit { action }) = args.command {
        return audit_command(action, &data_dir);
    }
    if let Some(Command::Apps { action }) = args.command {
        if let Some(w) = &store_warning {
            eprintln!("error: {w}");
            return ExitCode::from(2);
        }
        return apps_command(action, data_dir, store);
    }
    if let Some(Command::Tls { action }) = args.command {
        if let Some(w) = &store_warning {
            eprintln!("error: {w}");
            return ExitCode::from(2);
        }
        return tls_command(action, &data_dir, store.as_ref());
    }
    if let (true, Some(w)) = (args.tls, &store_warning) {
        // A key kept in memory only would mean a new certificate at every
        // start, breaking whatever trust IT set up for the old one.
        eprintln!("error: --tls needs a secret store that keeps the certificate's key: {w}");
        return ExitCode::from(2);
    }
    if let Some(w) = store_warning {
        warn!("{w}");
    }

    if !args.listen.ip().is_loopback() {
        if !args.allow_remote {
            eprintln!(
                "error: {} is not a loopback address. Lockstep serves the patient context of this workstation \
                 and listens on loopback only; pass --allow-remote to expose it to the network.",
                args.listen
            );
            return ExitCode::from(2);
        }
        warn!(listen = %args.listen, "listening on a non-loopback address: other machines can reach this hub");
    }
    let mut config = Config::new(args.listen, data_dir);
    config.allow_remote = args.allow_remote;
    config.allowed_origins = args
        .allow_origins
        .iter()
        .map(|o| o.trim_end_matches('/').to_owned())
        .collect();
    config.no_auth = args.no_auth;
    config.peer_check = !args.no_peer_check;
    config.webhook_allowed_hosts = args.allow_webhook_hosts.clone();
    config.secret_store = store;
    config.recovery_window = Duration::from_secs(args.recovery_window_secs);
    config.persist = !args.no_persist;
    config.audit_retention = Duration::from_secs(args.audit_retention_days.max(1) * 24 * 3600);
    config.token_lifetime = Duration::from_secs(args.token_lifetime_secs.max(60));
    config.journal_max_bytes = args.journal_max_mb.max(1).saturating_mul(1024 * 1024);
    config.ack_timeout = Duration::from_millis(args.ack_timeout_ms);
    config.grace_period = Duration::from_millis(args.grace_period_ms);
    config.lease_default = Duration::from_secs(args.lease_default_secs);
    config.topic_idle = Duration::from_secs(args.topic_idle_secs.max(1));
    config.lease_max = Duration::from_secs(args.lease_max_secs.max(1));
    config.max_body_bytes = args.max_body_bytes;
    config.queue_capacity = args.queue_capacity.max(1);
    config.ping_interval = Duration::from_millis(args.ping_interval_ms.max(100));
    config.tls = args.tls;
    config.max_connections = args.max_connections.max(1);

    // Settings files: under the flags typed on the command line.
    let layout = settings_layout(&args, &config.data_dir);
    let settings = match Settings::load(&layout) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "error: the system settings file is not valid: {e}\n\
                 It is managed by your IT department; the hub does not start without its managed settings."
            );
            return ExitCode::from(2);
        }
    };
    for w in &settings.warnings {
        warn!("{w}");
    }
    let from_flags: Vec<&'static str> = FLAG_KEYS
        .iter()
        .filter(|(flag, _)| matches.value_source(flag) == Some(ValueSource::CommandLine))
        .map(|(_, key)| *key)
        .collect();
    if let Err(e) = settings.prepare(&mut config, Some(SettingsFiles { layout, from_flags })) {
        match e {
            StartError::NotLoopback(ip) => {
                eprintln!(
                    "error: the settings file sets address {ip}, which is not loopback; pass --allow-remote to expose the hub to the network."
                );
                return ExitCode::from(2);
            }
            StartError::Tls(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    config.external_issuers = args.trust_issuers.clone();
    for pair in &args.issuer_audiences {
        let found = pair.split_once('=').and_then(|(iss, aud)| {
            let issuer = config
                .external_issuers
                .iter_mut()
                .find(|i| i.issuer == iss.trim())?;
            issuer.audience = Some(aud.trim().to_owned());
            Some(())
        });
        if found.is_none() {
            eprintln!(
                "error: --issuer-audience {pair:?}: expected ISSUER=AUDIENCE for an issuer given with --trust-issuer"
            );
            return ExitCode::from(2);
        }
    }
    if args.no_auth {
        warn!(
            "--no-auth: requests need no token; any local process or web page can read and change the \
             patient context. Use only for development."
        );
    }

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let print_link = !args.no_dashboard_link;
    runtime.block_on(async move {
        // Another user's hub on the port (multi-session host): this
        // user's per-user port instead, said in the log and the discovery file.
        let bound = match lockstep_hub::peer::bind_for_this_user(config.listen).await {
            Ok(b) => b,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
        if let Some(note) = bound.note() {
            warn!("{note}");
        }
        let per_user_port = bound.moved_from.is_some();
        // A hub on port 0 (tests) is nobody's discoverable hub.
        let discoverable = config.listen.port() != 0;
        let listener = bound.listener;
        let addr = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or_default();
        if let Ok(bound) = listener.local_addr() {
            config.listen = bound; // port 0: the link needs the real port
        }
        // A damaged database is restored, or the hub refuses to start: it
        // must never come up empty while apps were registered (issue 14).
        if config.persist {
            if let Err(e @ lockstep_hub::storage::StorageError::Unrecoverable { .. }) =
                Storage::open(&config.data_dir)
            {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
        let hub = Hub::new(config);
        settings.provision_into(&hub);
        let scheme = hub.config().http_scheme();
        // Before the ready line: whoever waits for it finds the file.
        let discovery_dir = discoverable
            .then(lockstep_hub::discovery_file::discovery_dir)
            .flatten();
        if let Some(dir) = &discovery_dir {
            let discovery = Discovery {
                hub_url: format!("{scheme}://{addr}{}", server::STU3_PATH),
                topic: hub.session_topic().to_owned(),
                pid: std::process::id(),
                port: hub.config().listen.port(),
                per_user_port,
            };
            match write_discovery(dir, &discovery) {
                Ok(path) => tracing::info!(file = %path.display(), "discovery file written"),
                Err(e) => warn!(dir = %dir.display(), error = %e, "cannot write the discovery file: apps must be told the port"),
            }
        }
        println!(
            "Lockstep hub ready at {scheme}://{addr}{}",
            server::STU3_PATH
        );
        if print_link {
            println!("Dashboard (one-time link): {}", hub.one_time_link());
        }
        let result = server::run(listener, hub, server::shutdown_signal()).await;
        if let Some(dir) = &discovery_dir {
            remove_discovery(dir, std::process::id());
        }
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Flags (clap ids) that set a settings-file key; typed on the command
/// line, they win over both files.
const FLAG_KEYS: &[(&str, &str)] = &[
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

/// The OS's settings files, with `--config` / `--system-config` in their
/// place. Without a config folder (no HOME), both sit in the data folder.
fn settings_layout(args: &Args, data_dir: &std::path::Path) -> Layout {
    Layout::resolve(
        args.system_config.clone(),
        args.config.clone(),
        Some(data_dir),
    )
    .expect("a data folder is given")
}

/// `lockstep-hub apps …`: works on the registry file and the secret store
/// directly. A running hub sees the change on its next start.
fn apps_command(
    action: AppsAction,
    data_dir: PathBuf,
    store: std::sync::Arc<dyn SecretStore>,
) -> ExitCode {
    let db = match Storage::open(&data_dir) {
        Ok((db, _)) => db,
        Err(e) => {
            eprintln!(
                "error: cannot open the database in {}: {e}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let smart = auth::smart::Smart::new(store.clone());
    let registry =
        match auth::AppRegistry::load(Some(db.clone()), Some(data_dir.join("apps.json")), store) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let result = match action {
        AppsAction::Add {
            name,
            scopes,
            topics,
            no_ack,
            redirect_uris,
            launch_url,
            ..
        } if !redirect_uris.is_empty() => {
            let browser = auth::smart::BrowserApp {
                redirect_uris,
                launch_url,
                preapproved: false,
            };
            browser
                .checked()
                .and_then(|browser| {
                    let app = registry.register_public(&name, &scopes, topics)?;
                    if let Err(e) = smart.save_app(&app.client_id, browser.clone()) {
                        let _ = registry.remove(&app.client_id);
                        return Err(e);
                    }
                    if no_ack {
                        registry.set_acknowledges(&app.client_id, false)?;
                    }
                    Ok((app, browser))
                })
                .map(|(app, browser)| {
                    println!("client_id:     {}", app.client_id);
                    println!("auth:          public client (SMART launch, PKCE S256; no secret)");
                    println!("redirect_uris: {}", browser.redirect_uris.join(" "));
                    println!("origins:       {}", browser.origins().join(" "));
                    if let Some(url) = &browser.launch_url {
                        println!("launch_url:    {url}");
                    }
                    println!("scopes:        {}", app.scopes.join(" "));
                    println!("topics:        {}", app.topics.join(" "));
                })
        }
        AppsAction::ForgetConsent { client_id } => match smart.app(&client_id) {
            Some(_) => smart.revoke_consent(&client_id),
            None => Err(auth::AuthError::UnknownClient),
        },
        AppsAction::Add {
            name,
            scopes,
            topics,
            jwks,
            jwks_url,
            secret,
            no_ack,
            ..
        } => {
            let jwks = match jwks.map(|p| read_jwks(&p)).transpose() {
                Ok(j) => j,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            };
            let keys = public_keys(&jwks, &jwks_url);
            let with_secret = keys.is_none() || secret;
            registry
                .register_app(&name, &scopes, topics, keys, with_secret)
                .and_then(|(mut app, secret)| {
                    if no_ack {
                        registry.set_acknowledges(&app.client_id, false)?;
                        app.acknowledges = false;
                    }
                    Ok((app, secret))
                })
                .map(|(app, secret)| {
                    println!("client_id:     {}", app.client_id);
                    if let Some(secret) = &secret {
                        println!("client_secret: {secret}");
                    }
                    if app.private_key_jwt {
                        println!("auth:          private_key_jwt (registered public keys)");
                    }
                    println!("scopes:        {}", app.scopes.join(" "));
                    println!("topics:        {}", app.topics.join(" "));
                    if !app.acknowledges {
                        println!("acks:          no (never dropped for a missing ACK)");
                    }
                    if secret.is_some() {
                        eprintln!("Keep the secret now: it is not shown again.");
                    }
                })
        }
        AppsAction::List => {
            for app in registry.list() {
                let state = if app.revoked { "revoked" } else { "active" };
                let acks = if app.acknowledges { "acks" } else { "no-ack" };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{acks}",
                    app.client_id,
                    app.name,
                    state,
                    app.scopes.join(" "),
                    app.topics.join(" ")
                );
            }
            Ok(())
        }
        AppsAction::SetAck {
            client_id,
            acknowledges,
        } => registry
            .set_acknowledges(&client_id, acknowledges)
            .map(|_| match acknowledges {
                true => println!("{client_id} acknowledges"),
                false => println!("{client_id} does not acknowledge"),
            }),
        AppsAction::Remove { client_id } => registry
            .revoke(&client_id)
            .map(|()| println!("revoked {client_id}")),
        AppsAction::SetJwks {
            client_id,
            jwks,
            jwks_url,
        } => match jwks.map(|p| read_jwks(&p)).transpose() {
            Ok(text) => match public_keys(&text, &jwks_url) {
                Some(keys) => registry
                    .set_keys(&client_id, keys)
                    .map(|()| println!("new keys for {client_id}")),
                None => Err(auth::AuthError::Invalid("give --jwks or --jwks-url".into())),
            },
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
        AppsAction::RotateSecret { client_id } => {
            registry.rotate_secret(&client_id).map(|secret| {
                println!("client_secret: {secret}");
                eprintln!("Keep the secret now: it is not shown again.");
            })
        }
    };
    // The registry queues its writes; be sure they are on disk before exiting.
    if let Err(e) = db.flush().wait() {
        eprintln!("error: could not save: {e}");
        return ExitCode::FAILURE;
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `lockstep-hub tls cert`: what IT imports into the machine's trust store.
fn tls_command(action: TlsAction, data_dir: &std::path::Path, store: &dyn SecretStore) -> ExitCode {
    let TlsAction::Cert { path } = action;
    match lockstep_hub::tls::load_or_create(store, data_dir) {
        Ok(identity) => {
            if path {
                println!("{}", identity.cert_path.display());
            } else {
                print!("{}", identity.cert_pem);
                eprintln!("{}", identity.cert_path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn public_keys<'a>(
    jwks: &'a Option<String>,
    url: &'a Option<String>,
) -> Option<auth::PublicKeys<'a>> {
    match (jwks, url) {
        (Some(text), _) => Some(auth::PublicKeys::Set(text)),
        (None, Some(url)) => Some(auth::PublicKeys::Url(url)),
        (None, None) => None,
    }
}

/// A JWK set file, read whole (public keys: no secret handling needed).
fn read_jwks(path: &std::path::Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

/// `lockstep-hub audit export`: reads the database next to a running hub
/// (SQLite WAL lets readers in while it writes).
fn audit_command(action: AuditAction, data_dir: &std::path::Path) -> ExitCode {
    let AuditAction::Export {
        format,
        since,
        until,
        output,
    } = action;
    let format = match format.as_str() {
        "ndjson" => ExportFormat::Ndjson,
        "csv" => ExportFormat::Csv,
        other => {
            eprintln!("error: unknown format {other:?} (ndjson or csv)");
            return ExitCode::from(2);
        }
    };
    let parse = |s: Option<String>| s.as_deref().map(lockstep_hub::ids::parse_time).transpose();
    let (since, until) = match (parse(since), parse(until)) {
        (Ok(s), Ok(u)) => (s, u),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let storage = match Storage::open(data_dir) {
        Ok((storage, _)) => storage,
        Err(e) => {
            eprintln!(
                "error: cannot open the database in {}: {e}",
                data_dir.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let result = match output {
        Some(path) => std::fs::File::create(&path)
            .map_err(|e| format!("{}: {e}", path.display()))
            .and_then(|mut f| {
                storage
                    .export_audit(since, until, format, &mut f)
                    .map_err(|e| e.to_string())
            }),
        None => storage
            .export_audit(since, until, format, &mut std::io::stdout().lock())
            .map_err(|e| e.to_string()),
    };
    match result {
        Ok(n) => {
            eprintln!("{n} audit records");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
