//! Settings files: what IT and the user configure, in TOML, layered.
//!
//! Two files, read in this order:
//!
//! 1. the **system** file, written by IT (Linux `/etc/lockstep/lockstep.toml`,
//!    Windows `%ProgramData%\Lockstep\lockstep.toml`, macOS
//!    `/Library/Application Support/Lockstep/lockstep.toml`);
//! 2. the **user** file in the OS config folder (what the dashboard's
//!    *Settings* view writes), or the file given with `--config`.
//!
//! A key in the user file wins over the system file, which wins over the
//! defaults — except the keys the system file lists in `locked = [...]`:
//! those keep the system value, a user-file value for them is ignored with
//! a warning and the dashboard refuses to change them. Command-line flags
//! win over both files (whoever starts the binary by hand could run any
//! program anyway; locking protects against the user file and the UI).
//!
//! A malformed system file stops the hub with the file and line: a
//! hospital would rather see "fix /etc/lockstep/lockstep.toml line 3" than
//! a hub quietly running without its managed settings. A malformed user
//! file is ignored with a warning (the user can still start the hub and
//! fix it in the dashboard).
//!
//! The hub reads these when it starts; of the changes the dashboard saves,
//! the ACK timeout and the grace period apply at once (`LiveTimeouts`),
//! the rest on the next start.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::state::LiveTimeouts;
use crate::Config;

/// The file name in both places.
pub const FILE_NAME: &str = "lockstep.toml";

/// The operating systems whose path conventions `Layout` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
    MacOs,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }
}

/// Where the two files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub system: PathBuf,
    pub user: PathBuf,
}

impl Layout {
    /// This machine's files: the system path of this OS, the user file in
    /// the config folder `directories` gives (`ProjectDirs::from("org",
    /// "Lockstep", "lockstep")`).
    pub fn current() -> Option<Layout> {
        let user = directories::ProjectDirs::from("org", "Lockstep", "lockstep")?
            .config_dir()
            .join(FILE_NAME);
        let system = Layout::for_os(Os::current())?.system;
        Some(Layout { system, user })
    }

    /// The files a front end reads: paths it was given (flags, environment)
    /// first, then the OS's places, then — where the OS has none (no home
    /// folder) — beside the data in `data`. `None` only without all three.
    pub fn resolve(
        system: Option<PathBuf>,
        user: Option<PathBuf>,
        data: Option<&Path>,
    ) -> Option<Layout> {
        let os = Layout::current();
        let system = system
            .or_else(|| os.as_ref().map(|l| l.system.clone()))
            .or_else(|| data.map(|d| d.join("system-lockstep.toml")))?;
        let user = user
            .or_else(|| os.map(|l| l.user))
            .or_else(|| data.map(|d| d.join(FILE_NAME)))?;
        Some(Layout { system, user })
    }

    /// The layout `os` would use, from this process's environment (`HOME`,
    /// `XDG_CONFIG_HOME`, `APPDATA`, `ProgramData`). Mirrors the folders
    /// `directories` picks on each OS, so all three can be checked here.
    pub fn for_os(os: Os) -> Option<Layout> {
        Layout::for_os_env(os, &|name| std::env::var_os(name))
    }

    fn for_os_env(os: Os, env: &dyn Fn(&str) -> Option<OsString>) -> Option<Layout> {
        // Only absolute values count, as `directories` does.
        let var = |name: &str| {
            env(name)
                .map(|v| v.to_string_lossy().into_owned())
                .filter(|v| match os {
                    Os::Windows => v.len() > 2 && v.as_bytes()[1] == b':' || v.starts_with(r"\\"),
                    _ => v.starts_with('/'),
                })
        };
        match os {
            Os::Linux => {
                let config = var("XDG_CONFIG_HOME").or_else(|| {
                    var("HOME").map(|h| format!("{}/.config", h.trim_end_matches('/')))
                })?;
                Some(Layout {
                    system: PathBuf::from("/etc/lockstep").join(FILE_NAME),
                    user: PathBuf::from(format!(
                        "{}/lockstep/{FILE_NAME}",
                        config.trim_end_matches('/')
                    )),
                })
            }
            Os::MacOs => {
                let home = var("HOME")?;
                Some(Layout {
                    system: PathBuf::from(format!(
                        "/Library/Application Support/Lockstep/{FILE_NAME}"
                    )),
                    user: PathBuf::from(format!(
                        "{}/Library/Application Support/org.Lockstep.lockstep/{FILE_NAME}",
                        home.trim_end_matches('/')
                    )),
                })
            }
            Os::Windows => {
                // Built as strings: on Linux `Path::join` would put '/' in.
                let program_data = var("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
                let app_data = var("APPDATA")?;
                Some(Layout {
                    system: PathBuf::from(format!(
                        r"{}\Lockstep\{FILE_NAME}",
                        program_data.trim_end_matches('\\')
                    )),
                    user: PathBuf::from(format!(
                        r"{}\Lockstep\lockstep\config\{FILE_NAME}",
                        app_data.trim_end_matches('\\')
                    )),
                })
            }
        }
    }
}

/// Where an effective value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Default,
    System,
    User,
    /// A command-line flag of `lockstep-hub` (only known to the running hub).
    Flag,
}

/// The user-visible knobs, with their effective values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// Port of `http://ADDRESS:PORT/fhircast/STU3`.
    pub port: u16,
    /// Listening address; loopback unless the hub runs with `--allow-remote`.
    pub address: IpAddr,
    /// Serve HTTPS. Carried for the TLS work; the hub does not read it yet.
    pub tls: bool,
    pub ack_timeout_ms: u64,
    pub grace_period_ms: u64,
    /// Desktop notifications from the tray app.
    pub notifications: bool,
    /// The tray app starts when the user logs in.
    pub start_at_login: bool,
    /// Web origins allowed to call the hub from a browser.
    pub allowed_origins: Vec<String>,
    pub lease_default_secs: u64,
    pub lease_max_secs: u64,
    pub token_lifetime_secs: u64,
    /// A topic other than the session's is dropped after this long without
    /// a subscriber.
    pub topic_idle_secs: u64,
    /// Size bound of the event journal in `lockstep.db` (issue 14.7): the
    /// oldest events are pruned past it.
    pub journal_max_mb: u64,
    /// Serve only the OS user who started the hub (issue 17); IT turns it
    /// off only where one hub must serve several accounts.
    pub peer_check: bool,
}

impl Default for Values {
    fn default() -> Values {
        Values {
            port: 4747,
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            tls: false,
            ack_timeout_ms: 10_000,
            grace_period_ms: 30_000,
            notifications: true,
            start_at_login: true,
            allowed_origins: Vec::new(),
            lease_default_secs: 24 * 3600,
            lease_max_secs: 7 * 24 * 3600,
            token_lifetime_secs: 8 * 3600,
            topic_idle_secs: 15 * 60,
            journal_max_mb: Config::DEFAULT_JOURNAL_MAX_MB,
            peer_check: true,
        }
    }
}

/// Every key of `Values`, in display order.
pub const KEYS: &[&str] = &[
    "port",
    "address",
    "tls",
    "ack_timeout_ms",
    "grace_period_ms",
    "notifications",
    "start_at_login",
    "allowed_origins",
    "lease_default_secs",
    "lease_max_secs",
    "token_lifetime_secs",
    "topic_idle_secs",
    "journal_max_mb",
    "peer_check",
];

/// Keys read by the tray app rather than the hub.
pub const TRAY_KEYS: &[&str] = &["notifications", "start_at_login"];

/// An app IT registers ahead of time (`[[apps]]`).
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    pub client_id: String,
    pub name: String,
    /// Space-separated SMART scopes.
    pub scopes: String,
    /// Topics it may join; empty means this workstation's session.
    #[serde(default)]
    pub topics: Vec<String>,
    /// A client secret to put in the secret store when the app is first
    /// registered (at least 32 characters). Never logged, never written by
    /// the hub.
    #[serde(default)]
    pub secret: Option<String>,
    /// `false` for a client that never sends ACKs (issue 19); unset leaves
    /// what the CLI or the dashboard chose.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledges: Option<bool>,
    /// A browser app (SMART App Launch with PKCE, issue 16): its exact
    /// redirect URIs; their origins are allowed for CORS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
    /// Where the tray's "Open app" opens it (EHR launch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_url: Option<String>,
    /// IT approved it: the clinician is not asked (system file only).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preapproved: bool,
}

impl fmt::Debug for AppEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppEntry")
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .field("topics", &self.topics)
            .field("secret", &self.secret.as_ref().map(|_| "…"))
            .field("acknowledges", &self.acknowledges)
            .field("redirect_uris", &self.redirect_uris)
            .field("launch_url", &self.launch_url)
            .field("preapproved", &self.preapproved)
            .finish()
    }
}

/// One file as written: every key optional. The typed fields are only
/// read to check the file (with line numbers); layering uses the table.
#[allow(dead_code)]
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDoc {
    port: Option<u16>,
    address: Option<IpAddr>,
    tls: Option<bool>,
    ack_timeout_ms: Option<u64>,
    grace_period_ms: Option<u64>,
    notifications: Option<bool>,
    start_at_login: Option<bool>,
    allowed_origins: Option<Vec<String>>,
    lease_default_secs: Option<u64>,
    lease_max_secs: Option<u64>,
    token_lifetime_secs: Option<u64>,
    topic_idle_secs: Option<u64>,
    journal_max_mb: Option<u64>,
    peer_check: Option<bool>,
    #[serde(default)]
    locked: Vec<String>,
    #[serde(default)]
    apps: Vec<AppEntry>,
}

/// A file that could not be used: which file, and what is wrong (with the
/// line and column for syntax and type errors).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct FileError {
    pub path: PathBuf,
    pub message: String,
}

/// A parsed, checked file.
struct Parsed {
    table: toml::Table,
    doc: FileDoc,
}

fn file_error(path: &Path, message: impl Into<String>) -> FileError {
    FileError {
        path: path.to_path_buf(),
        message: message.into().trim_end().to_owned(),
    }
}

/// Reads `path`; `Ok(None)` when there is no such file.
fn read(path: &Path, system: bool) -> Result<Option<Parsed>, FileError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(path, format!("cannot read: {e}"))),
    };
    parse(path, &text, system).map(Some)
}

/// "line N, column M: what is wrong (the line)". toml's own Display quotes
/// the line too, but a line holding a client secret must not reach a log.
fn describe(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().rev().take_while(|c| *c != '\n').count() + 1;
    let source = text.lines().nth(line - 1).unwrap_or_default().trim();
    if source.contains("secret") {
        format!("line {line}, column {column}: this line is not valid (not shown: it may hold a secret)")
    } else {
        format!(
            "line {line}, column {column}: {} (`{source}`)",
            e.message().trim_end()
        )
    }
}

fn parse(path: &Path, text: &str, system: bool) -> Result<Parsed, FileError> {
    let doc: FileDoc = toml::from_str(text).map_err(|e| file_error(path, describe(text, &e)))?;
    let table: toml::Table =
        toml::from_str(text).map_err(|e| file_error(path, describe(text, &e)))?;
    if !system && !doc.locked.is_empty() {
        return Err(file_error(path, "`locked` belongs in the system file only"));
    }
    for key in &doc.locked {
        if !KEYS.contains(&key.as_str()) {
            // A typo would leave the key unlocked without anyone noticing.
            return Err(file_error(
                path,
                format!("locked: unknown key {key:?} (known: {})", KEYS.join(", ")),
            ));
        }
    }
    check_table(&table).map_err(|m| file_error(path, m))?;
    if !system && doc.apps.iter().any(|a| a.secret.is_some()) {
        // The hub would have to keep it in a plain file it owns; the CLI
        // makes secrets that go straight to the secret store instead.
        return Err(file_error(
            path,
            "[[apps]]: a secret belongs in the system file only; use `lockstep-hub apps rotate-secret CLIENT_ID`",
        ));
    }
    if !system && doc.apps.iter().any(|a| a.preapproved) {
        // Only IT may decide for the clinician.
        return Err(file_error(
            path,
            "[[apps]]: preapproved belongs in the system file only",
        ));
    }
    let mut ids = BTreeSet::new();
    for app in &doc.apps {
        check_app(app).map_err(|m| file_error(path, m))?;
        if !ids.insert(app.client_id.as_str()) {
            return Err(file_error(
                path,
                format!("[[apps]]: client_id {:?} appears twice", app.client_id),
            ));
        }
    }
    Ok(Parsed { table, doc })
}

/// Range checks on the values a file (or the dashboard) sets.
fn check_table(table: &toml::Table) -> Result<(), String> {
    for (key, value) in table {
        if key == "locked" || key == "apps" {
            continue;
        }
        check_value(key, value)?;
    }
    Ok(())
}

fn int(key: &str, value: &toml::Value) -> Result<i64, String> {
    value
        .as_integer()
        .ok_or_else(|| format!("{key}: expected a whole number"))
}

fn check_value(key: &str, value: &toml::Value) -> Result<(), String> {
    let range = |lo: i64, hi: i64, unit: &str| -> Result<(), String> {
        let n = int(key, value)?;
        if (lo..=hi).contains(&n) {
            Ok(())
        } else {
            Err(format!("{key}: {n} is out of range ({lo} to {hi} {unit})"))
        }
    };
    match key {
        "port" => range(1, 65535, ""),
        "ack_timeout_ms" => range(100, 600_000, "ms"),
        "grace_period_ms" => range(0, 3_600_000, "ms"),
        "lease_default_secs" | "lease_max_secs" => range(1, 365 * 24 * 3600, "s"),
        "token_lifetime_secs" => range(60, 30 * 24 * 3600, "s"),
        "topic_idle_secs" => range(1, 7 * 24 * 3600, "s"),
        "journal_max_mb" => range(1, 1024 * 1024, "MB"),
        "address" => value
            .as_str()
            .and_then(|s| s.parse::<IpAddr>().ok())
            .map(|_| ())
            .ok_or_else(|| format!("{key}: expected an IP address, e.g. \"127.0.0.1\"")),
        "tls" | "notifications" | "start_at_login" | "peer_check" => value
            .as_bool()
            .map(|_| ())
            .ok_or_else(|| format!("{key}: expected true or false")),
        "allowed_origins" => {
            let list = value
                .as_array()
                .ok_or_else(|| format!("{key}: expected a list of origins"))?;
            for o in list {
                let s = o
                    .as_str()
                    .ok_or_else(|| format!("{key}: expected a list of origins"))?;
                if !(s.starts_with("https://") || s.starts_with("http://")) || s.contains(' ') {
                    return Err(format!(
                        "{key}: {s:?} is not an origin like https://viewer.hospital.org"
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!(
            "unknown setting {other:?} (known: {})",
            KEYS.join(", ")
        )),
    }
}

fn check_app(app: &AppEntry) -> Result<(), String> {
    let id_ok = !app.client_id.is_empty()
        && app.client_id.len() <= 64
        && app
            .client_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !id_ok {
        return Err(format!(
            "[[apps]]: client_id {:?} must be 1-64 letters, digits, '-', '_' or '.'",
            app.client_id
        ));
    }
    if app.name.trim().is_empty() {
        return Err(format!("[[apps]] {}: a name is needed", app.client_id));
    }
    if crate::auth::scopes::Scopes::parse(&app.scopes).is_empty() {
        return Err(format!(
            "[[apps]] {}: at least one fhircast/ scope is needed, e.g. \"fhircast/*.read\"",
            app.client_id
        ));
    }
    if !app.redirect_uris.is_empty() {
        crate::auth::smart::BrowserApp {
            redirect_uris: app.redirect_uris.clone(),
            launch_url: app.launch_url.clone(),
            preapproved: app.preapproved,
        }
        .checked()
        .map_err(|e| format!("[[apps]] {}: {e}", app.client_id))?;
    } else if app.launch_url.is_some() || app.preapproved {
        return Err(format!(
            "[[apps]] {}: launch_url and preapproved are for browser apps: add redirect_uris",
            app.client_id
        ));
    }
    if app.secret.as_ref().is_some_and(|s| s.len() < 32) {
        // The store keeps a plain SHA-256: only long random secrets are safe.
        return Err(format!(
            "[[apps]] {}: the secret must be at least 32 characters (e.g. `openssl rand -base64 32`)",
            app.client_id
        ));
    }
    Ok(())
}

/// The effective settings: values, where each came from, what IT locked,
/// and the apps IT pre-registers.
#[derive(Clone, Debug)]
pub struct Settings {
    pub values: Values,
    pub sources: BTreeMap<&'static str, Source>,
    /// Keys the system file locks.
    pub locked: BTreeSet<String>,
    /// `[[apps]]` of the system file, then the user file's (by client id,
    /// the system file's entry wins).
    pub apps: Vec<AppEntry>,
    /// Things to log loudly: an ignored user file, ignored locked keys.
    pub warnings: Vec<String>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            values: Values::default(),
            sources: KEYS.iter().map(|k| (*k, Source::Default)).collect(),
            locked: BTreeSet::new(),
            apps: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

impl Settings {
    /// Reads both files of `layout`. Errors only for the system file; a
    /// bad user file becomes a warning and is left out.
    pub fn load(layout: &Layout) -> Result<Settings, FileError> {
        let system = read(&layout.system, true)?;
        let (user, warning) = match read(&layout.user, false) {
            Ok(u) => (u, None),
            Err(e) => (
                None,
                Some(format!(
                    "ignoring your settings file: {e}; using the defaults instead"
                )),
            ),
        };
        let mut settings = Settings::layer(system, user);
        settings.warnings.extend(warning);
        Ok(settings)
    }

    fn layer(system: Option<Parsed>, user: Option<Parsed>) -> Settings {
        let mut s = Settings::default();
        let mut merged = toml::Table::try_from(Values::default()).unwrap_or_default();
        if let Some(sys) = &system {
            s.locked = sys.doc.locked.iter().cloned().collect();
            for (key, value) in values_of(&sys.table) {
                merged.insert(key.to_owned(), value.clone());
                s.sources.insert(key, Source::System);
            }
            s.apps.extend(sys.doc.apps.iter().cloned());
        }
        if let Some(user) = &user {
            for (key, value) in values_of(&user.table) {
                if s.locked.contains(key) {
                    s.warnings.push(format!(
                        "{key} is managed by your IT (system settings file); the value in your settings file is ignored"
                    ));
                    continue;
                }
                merged.insert(key.to_owned(), value.clone());
                s.sources.insert(key, Source::User);
            }
            for app in &user.doc.apps {
                if !s.apps.iter().any(|a| a.client_id == app.client_id) {
                    s.apps.push(app.clone());
                }
            }
        }
        // Each file was checked on its own, so the merge is well-typed.
        match merged.try_into::<Values>() {
            Ok(v) => s.values = v,
            Err(e) => s
                .warnings
                .push(format!("settings could not be combined: {e}")),
        }
        s
    }

    pub fn is_locked(&self, key: &str) -> bool {
        self.locked.contains(key)
    }

    /// Fills `config` with every setting the hub reads.
    pub fn apply(&self, config: &mut Config) {
        self.apply_except(config, |_| false);
    }

    /// As `apply`, leaving alone the keys `skip` names (set by flags).
    pub fn apply_except(&self, config: &mut Config, skip: impl Fn(&str) -> bool) {
        let v = &self.values;
        if !skip("port") {
            config.listen.set_port(v.port);
        }
        if !skip("address") {
            config.listen = SocketAddr::new(v.address, config.listen.port());
        }
        if !skip("ack_timeout_ms") {
            config.ack_timeout = Duration::from_millis(v.ack_timeout_ms);
        }
        if !skip("grace_period_ms") {
            config.grace_period = Duration::from_millis(v.grace_period_ms);
        }
        if !skip("allowed_origins") {
            config.allowed_origins = v
                .allowed_origins
                .iter()
                .map(|o| o.trim_end_matches('/').to_owned())
                .collect();
        }
        if !skip("lease_default_secs") {
            config.lease_default = Duration::from_secs(v.lease_default_secs);
        }
        if !skip("lease_max_secs") {
            config.lease_max = Duration::from_secs(v.lease_max_secs);
        }
        if !skip("token_lifetime_secs") {
            config.token_lifetime = Duration::from_secs(v.token_lifetime_secs);
        }
        if !skip("tls") {
            config.tls = v.tls;
        }
        if !skip("topic_idle_secs") {
            config.topic_idle = Duration::from_secs(v.topic_idle_secs);
        }
        if !skip("journal_max_mb") {
            config.journal_max_bytes = v.journal_max_mb.saturating_mul(1024 * 1024);
        }
        if !skip("peer_check") {
            config.peer_check = v.peer_check;
        }
        // `notifications`, `start_at_login`: not in `Config` (the tray reads
        // them from `Settings` itself).
    }

    /// The settings' share of starting a hub, the same for `lockstep-hub`
    /// and the tray app: every key the front end did not set itself
    /// (`files.from_flags`) goes into `config`; the files are remembered for
    /// the dashboard; a non-loopback address is refused unless
    /// `config.allow_remote`; with TLS on, the certificate exists before
    /// anything says "ready" (it needs `config.secret_store` set).
    pub fn prepare(
        &self,
        config: &mut Config,
        files: Option<SettingsFiles>,
    ) -> Result<(), StartError> {
        let skip = files
            .as_ref()
            .map(|f| f.from_flags.clone())
            .unwrap_or_default();
        self.apply_except(config, |key| skip.contains(&key));
        config.settings_files = files;
        if !config.listen.ip().is_loopback() && !config.allow_remote {
            return Err(StartError::NotLoopback(config.listen.ip()));
        }
        if config.tls {
            let identity =
                crate::tls::load_or_create(config.secret_store.as_ref(), &config.data_dir)?;
            tracing::info!(certificate = %identity.cert_path.display(), "TLS on");
        }
        Ok(())
    }

    /// `provision_apps` into a running hub, with what happened in the log.
    pub fn provision_into(&self, hub: &crate::Hub) {
        let (notes, mut warnings) = self.provision_apps(hub.apps());
        for app in self.apps.iter().filter(|a| !a.redirect_uris.is_empty()) {
            let browser = crate::auth::smart::BrowserApp {
                redirect_uris: app.redirect_uris.clone(),
                launch_url: app.launch_url.clone(),
                preapproved: app.preapproved,
            };
            if hub.auth().smart().app(&app.client_id).as_ref() != Some(&browser) {
                if let Err(e) = hub.auth().smart().save_app(&app.client_id, browser) {
                    warnings.push(format!("app {} from a settings file: {e}", app.client_id));
                }
            }
        }
        notes.iter().for_each(|n| tracing::info!("{n}"));
        warnings.iter().for_each(|w| tracing::warn!("{w}"));
    }

    /// Registers the `[[apps]]` in `registry` (see `AppRegistry::provision`).
    /// Returns what to tell the admin: `(info, warnings)`. Secrets are never
    /// part of either.
    pub fn provision_apps(
        &self,
        registry: &crate::auth::AppRegistry,
    ) -> (Vec<String>, Vec<String>) {
        use crate::auth::Provisioned;
        let (mut info, mut warn) = (Vec::new(), Vec::new());
        for app in &self.apps {
            let id = &app.client_id;
            let result = registry.provision(
                id,
                &app.name,
                &app.scopes,
                app.topics.clone(),
                app.secret.as_deref(),
            );
            match result {
                Ok(Provisioned::Added { secret_stored }) => {
                    info.push(format!("registered app {id} ({}) from a settings file", app.name));
                    if !secret_stored && app.redirect_uris.is_empty() {
                        warn.push(format!(
                            "app {id} has no client secret yet: run `lockstep-hub apps rotate-secret {id}`"
                        ));
                    }
                }
                Ok(Provisioned::Updated { .. }) => {
                    info.push(format!("updated app {id} from a settings file"))
                }
                Ok(Provisioned::Unchanged { secret_stored }) => {
                    if app.secret.is_some() && !secret_stored {
                        warn.push(format!(
                            "a settings file still holds the client secret of app {id}, which is in the secret store already: remove it from the file"
                        ));
                    }
                }
                Ok(Provisioned::Revoked) => warn.push(format!(
                    "app {id} is listed in a settings file but was revoked on this machine; left revoked"
                )),
                Err(e) => warn.push(format!("app {id} from a settings file: {e}")),
            }
            if let Some(acks) = app.acknowledges {
                match registry.set_acknowledges(id, acks) {
                    Ok(true) if acks => info.push(format!("app {id} acknowledges (settings file)")),
                    Ok(true) => info.push(format!(
                        "app {id} does not acknowledge (settings file): never dropped for a missing ACK"
                    )),
                    Ok(false) => {}
                    Err(e) => warn.push(format!("app {id} from a settings file: {e}")),
                }
            }
        }
        (info, warn)
    }

    /// The value of `key` as JSON (for the admin API).
    pub fn value_json(&self, key: &str) -> serde_json::Value {
        serde_json::to_value(&self.values)
            .ok()
            .and_then(|v| v.get(key).cloned())
            .unwrap_or(serde_json::Value::Null)
    }
}

/// The keys of `table` that are settings (not `locked`, not `apps`).
fn values_of(table: &toml::Table) -> impl Iterator<Item = (&'static str, &toml::Value)> {
    KEYS.iter()
        .filter_map(move |k| table.get(*k).map(|v| (*k, v)))
}

/// Keys `LiveTimeouts` applies without a restart.
pub const LIVE_KEYS: &[&str] = &["ack_timeout_ms", "grace_period_ms"];

/// The hub core's live timeouts, set from the settings files.
impl LiveTimeouts {
    /// Applies the live keys of `values`, except those `skip` names.
    pub(crate) fn apply(&self, values: &Values, skip: impl Fn(&str) -> bool) {
        if !skip("ack_timeout_ms") {
            self.set_ack_timeout(Duration::from_millis(values.ack_timeout_ms));
        }
        if !skip("grace_period_ms") {
            self.set_grace_period(Duration::from_millis(values.grace_period_ms));
        }
    }
}

/// What the running hub needs to answer `/admin/api/settings`: the files,
/// and which keys came from command-line flags.
#[derive(Clone, Debug)]
pub struct SettingsFiles {
    pub layout: Layout,
    pub from_flags: Vec<&'static str>,
}

/// Why `Settings::prepare` refused to start the hub.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The front end words the way out (a flag, or none in the tray).
    #[error("{0} is not a loopback address")]
    NotLoopback(IpAddr),
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

/// Why a change from the dashboard was not saved.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("managed by your IT, cannot be changed here: {}", .0.join(", "))]
    Locked(Vec<String>),
    #[error("{0}")]
    Invalid(String),
    /// The system file is broken (the hub would not start with it either).
    #[error("{0}")]
    System(FileError),
    #[error("{0}")]
    User(FileError),
    #[error("cannot save {path}: {1}", path = .0.display())]
    Write(PathBuf, std::io::Error),
}

/// Applies `changes` (key → JSON value; `null` removes the key from the
/// user file, so the system value or the default applies again) to the
/// user file, atomically and readable by the user only. Nothing is
/// written unless every change is allowed and valid. Returns the new
/// effective settings.
pub fn update_user_file(
    layout: &Layout,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> Result<Settings, UpdateError> {
    let current = Settings::load(layout).map_err(UpdateError::System)?;
    let locked: Vec<String> = changes
        .keys()
        .filter(|k| current.is_locked(k))
        .cloned()
        .collect();
    if !locked.is_empty() {
        return Err(UpdateError::Locked(locked));
    }
    // Start from the user file as it is, comments, order and apps kept: a
    // person or IT may have annotated it. A broken one is not silently
    // replaced: the user should see what was in it.
    let mut doc: toml_edit::DocumentMut = match read(&layout.user, false) {
        Ok(Some(_)) => std::fs::read_to_string(&layout.user)
            .map_err(|e| UpdateError::Write(layout.user.clone(), e))?
            .parse()
            .map_err(|e: toml_edit::TomlError| UpdateError::Invalid(e.to_string()))?,
        Ok(None) => {
            "# Lockstep settings, written by the dashboard. Keys: see README \"Configuration\".\n"
                .parse()
                .expect("a comment is a TOML document")
        }
        Err(e) => return Err(UpdateError::User(e)),
    };
    for (key, value) in changes {
        if !KEYS.contains(&key.as_str()) {
            return Err(UpdateError::Invalid(format!(
                "unknown setting {key:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        if value.is_null() {
            remove_keeping_comments(&mut doc, key);
            continue;
        }
        let v = toml::Value::try_from(value)
            .map_err(|e| UpdateError::Invalid(format!("{key}: {e}")))?;
        check_value(key, &v).map_err(UpdateError::Invalid)?;
        let edited = edit_value(&v)
            .ok_or_else(|| UpdateError::Invalid(format!("{key}: not a setting value")))?;
        match doc.get_mut(key).and_then(toml_edit::Item::as_value_mut) {
            // In place: the comment beside the key stays with it.
            Some(old) => {
                let decor = old.decor().clone();
                *old = edited;
                *old.decor_mut() = decor;
            }
            None => {
                doc.insert(key, toml_edit::Item::Value(edited));
            }
        }
    }
    let text = doc.to_string();
    // The same checks as at start-up, before anything is written.
    parse(&layout.user, &text, false).map_err(|e| UpdateError::Invalid(e.message))?;
    write_atomic(&layout.user, &text).map_err(|e| UpdateError::Write(layout.user.clone(), e))?;
    Settings::load(layout).map_err(UpdateError::System)
}

/// Removes a top-level key; the comment lines above it (often the file's
/// own header) move to what now comes first, rather than vanish.
fn remove_keeping_comments(doc: &mut toml_edit::DocumentMut, key: &str) {
    let root = doc.as_table_mut();
    let prefix = root
        .key(key)
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_owned();
    root.remove(key);
    if prefix.trim().is_empty() {
        return;
    }
    let next_key = root
        .iter()
        .find(|(_, item)| item.is_value())
        .map(|(k, _)| k.to_owned());
    if let Some(mut next) = next_key.as_deref().and_then(|k| root.key_mut(k)) {
        let old = next
            .leaf_decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_owned();
        next.leaf_decor_mut().set_prefix(format!("{prefix}{old}"));
        return;
    }
    let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
    doc.set_trailing(format!("{prefix}{trailing}"));
}

/// A settings value as `toml_edit` writes it (settings are scalars or
/// lists of strings).
fn edit_value(v: &toml::Value) -> Option<toml_edit::Value> {
    Some(match v {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push_formatted(edit_value(item)?);
            }
            toml_edit::Value::Array(array)
        }
        _ => return None,
    })
}

/// Writes a sibling temp file (0600 on Unix) and renames it over `path`,
/// so a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    struct Files {
        dir: tempfile::TempDir,
        layout: Layout,
    }

    fn files(system: Option<&str>, user: Option<&str>) -> Files {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            system: dir.path().join("system").join(FILE_NAME),
            user: dir.path().join("user").join(FILE_NAME),
        };
        for (path, text) in [(&layout.system, system), (&layout.user, user)] {
            if let Some(text) = text {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
        }
        Files { dir, layout }
    }

    #[test]
    fn linux_layout_follows_xdg() {
        let l = Layout::for_os_env(Os::Linux, &env(&[("HOME", "/home/ada")])).unwrap();
        assert_eq!(l.system, PathBuf::from("/etc/lockstep/lockstep.toml"));
        assert_eq!(
            l.user,
            PathBuf::from("/home/ada/.config/lockstep/lockstep.toml")
        );
        let l = Layout::for_os_env(
            Os::Linux,
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "/cfg")]),
        )
        .unwrap();
        assert_eq!(l.user, PathBuf::from("/cfg/lockstep/lockstep.toml"));
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        let l = Layout::for_os_env(
            Os::Linux,
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "cfg")]),
        )
        .unwrap();
        assert_eq!(
            l.user,
            PathBuf::from("/home/ada/.config/lockstep/lockstep.toml")
        );
    }

    #[test]
    fn windows_layout_uses_programdata_and_appdata() {
        let l = Layout::for_os_env(
            Os::Windows,
            &env(&[
                ("ProgramData", r"D:\ProgramData"),
                ("APPDATA", r"C:\Users\ada\AppData\Roaming"),
            ]),
        )
        .unwrap();
        assert_eq!(
            l.system,
            PathBuf::from(r"D:\ProgramData\Lockstep\lockstep.toml")
        );
        assert_eq!(
            l.user,
            PathBuf::from(r"C:\Users\ada\AppData\Roaming\Lockstep\lockstep\config\lockstep.toml")
        );
        let l = Layout::for_os_env(Os::Windows, &env(&[("APPDATA", r"C:\R")])).unwrap();
        assert_eq!(
            l.system,
            PathBuf::from(r"C:\ProgramData\Lockstep\lockstep.toml")
        );
        assert!(Layout::for_os_env(Os::Windows, &env(&[])).is_none());
    }

    #[test]
    fn macos_layout_uses_application_support() {
        let l = Layout::for_os_env(Os::MacOs, &env(&[("HOME", "/Users/ada")])).unwrap();
        assert_eq!(
            l.system,
            PathBuf::from("/Library/Application Support/Lockstep/lockstep.toml")
        );
        assert_eq!(
            l.user,
            PathBuf::from(
                "/Users/ada/Library/Application Support/org.Lockstep.lockstep/lockstep.toml"
            )
        );
    }

    #[test]
    fn the_layout_of_this_os_matches_directories() {
        // Proves the hand-written mirror agrees with the `directories` crate.
        if let (Some(ours), Some(real)) = (Layout::for_os(Os::current()), Layout::current()) {
            assert_eq!(ours, real);
        }
    }

    #[test]
    fn no_files_means_defaults() {
        let f = files(None, None);
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.values, Values::default());
        assert!(s.sources.values().all(|s| *s == Source::Default));
        assert!(s.warnings.is_empty());
        // The defaults are Config's defaults.
        let mut config = Config::new(Config::DEFAULT_LISTEN.parse().unwrap(), "/tmp".into());
        let before = format!("{config:?}");
        s.apply(&mut config);
        assert_eq!(format!("{config:?}"), before);
    }

    #[test]
    fn user_wins_over_system_for_unlocked_keys() {
        let f = files(
            Some("ack_timeout_ms = 5000\ngrace_period_ms = 20000\n"),
            Some("ack_timeout_ms = 7000\n"),
        );
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.values.ack_timeout_ms, 7000);
        assert_eq!(s.sources["ack_timeout_ms"], Source::User);
        assert_eq!(s.values.grace_period_ms, 20000);
        assert_eq!(s.sources["grace_period_ms"], Source::System);
        assert_eq!(s.sources["port"], Source::Default);
        assert!(s.warnings.is_empty(), "{:?}", s.warnings);
    }

    #[test]
    fn system_wins_for_locked_keys_with_a_warning() {
        let f = files(
            Some("port = 4800\nnotifications = false\nlocked = [\"port\", \"notifications\"]\n"),
            Some("port = 5000\nnotifications = true\nack_timeout_ms = 3000\n"),
        );
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.values.port, 4800);
        assert_eq!(s.sources["port"], Source::System);
        assert!(!s.values.notifications);
        assert_eq!(
            s.values.ack_timeout_ms, 3000,
            "unlocked keys still follow the user"
        );
        assert!(s.is_locked("port") && s.is_locked("notifications") && !s.is_locked("tls"));
        assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
        assert!(s.warnings.iter().any(|w| w.starts_with("port is managed")));
    }

    #[test]
    fn a_locked_key_without_a_system_value_locks_the_default() {
        let f = files(Some("locked = [\"tls\"]\n"), Some("tls = true\n"));
        let s = Settings::load(&f.layout).unwrap();
        assert!(!s.values.tls);
        assert_eq!(s.sources["tls"], Source::Default);
        assert_eq!(s.warnings.len(), 1);
    }

    #[test]
    fn a_malformed_system_file_is_an_error_naming_file_and_line() {
        let f = files(Some("port = 4800\nack_timeout_ms = \"soon\"\n"), None);
        let e = Settings::load(&f.layout).unwrap_err();
        assert_eq!(e.path, f.layout.system);
        let text = e.to_string();
        assert!(text.contains("lockstep.toml"), "{text}");
        assert!(text.contains("line 2"), "{text}");

        let f = files(Some("port = \n"), None);
        assert!(Settings::load(&f.layout)
            .unwrap_err()
            .to_string()
            .contains("line 1"));
        let f = files(Some("prot = 4800\n"), None);
        assert!(Settings::load(&f.layout)
            .unwrap_err()
            .to_string()
            .contains("prot"));
        let f = files(Some("locked = [\"prot\"]\n"), None);
        assert!(Settings::load(&f.layout)
            .unwrap_err()
            .to_string()
            .contains("unknown key \"prot\""));
        let f = files(Some("ack_timeout_ms = 0\n"), None);
        assert!(Settings::load(&f.layout)
            .unwrap_err()
            .to_string()
            .contains("out of range"));
        // A broken line with a secret is located, never quoted.
        let f = files(
            Some("[[apps]]\nclient_id = \"r\"\nsecret = \"hunter2-hunter2-hunter2-hunter2-xx\nname = \"R\"\n"),
            None,
        );
        let text = Settings::load(&f.layout).unwrap_err().to_string();
        assert!(text.contains("line 3"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn a_malformed_user_file_is_ignored_with_a_warning() {
        let f = files(
            Some("grace_period_ms = 20000\n"),
            Some("ack_timeout_ms = [\n"),
        );
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.values.ack_timeout_ms, 10_000);
        assert_eq!(
            s.values.grace_period_ms, 20000,
            "the system file still applies"
        );
        assert_eq!(s.warnings.len(), 1);
        assert!(s.warnings[0].contains(&f.layout.user.display().to_string()));
        assert!(s.warnings[0].contains("line 1"), "{}", s.warnings[0]);
        // A user file may not lock anything.
        let f = files(None, Some("locked = [\"port\"]\n"));
        let s = Settings::load(&f.layout).unwrap();
        assert!(s.locked.is_empty());
        assert_eq!(s.warnings.len(), 1);
        // Nor hold a client secret.
        let secret = "x".repeat(40);
        let f = files(
            None,
            Some(&format!(
                "[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
            )),
        );
        let s = Settings::load(&f.layout).unwrap();
        assert!(s.apps.is_empty());
        assert!(
            s.warnings[0].contains("system file only"),
            "{:?}",
            s.warnings
        );
        assert!(!s.warnings[0].contains(&secret), "no secret in the warning");
    }

    #[test]
    fn apply_fills_config_and_skips_flag_keys() {
        let f = files(
            Some("address = \"127.0.0.2\"\nport = 4800\ntoken_lifetime_secs = 3600\n"),
            Some("ack_timeout_ms = 2500\nallowed_origins = [\"https://viewer.example.org/\"]\nlease_default_secs = 60\nlease_max_secs = 120\ngrace_period_ms = 0\n"),
        );
        let s = Settings::load(&f.layout).unwrap();
        let mut c = Config::new(Config::DEFAULT_LISTEN.parse().unwrap(), "/tmp".into());
        s.apply(&mut c);
        assert_eq!(c.listen, "127.0.0.2:4800".parse().unwrap());
        assert_eq!(c.ack_timeout, Duration::from_millis(2500));
        assert_eq!(c.grace_period, Duration::ZERO);
        assert_eq!(c.allowed_origins, vec!["https://viewer.example.org"]);
        assert_eq!(c.lease_default, Duration::from_secs(60));
        assert_eq!(c.lease_max, Duration::from_secs(120));
        assert_eq!(c.token_lifetime, Duration::from_secs(3600));

        let mut c = Config::new("127.0.0.1:9999".parse().unwrap(), "/tmp".into());
        s.apply_except(&mut c, |k| k == "port" || k == "ack_timeout_ms");
        assert_eq!(c.listen, "127.0.0.2:9999".parse().unwrap());
        assert_eq!(c.ack_timeout, Duration::from_secs(10));
    }

    #[test]
    fn apps_come_from_both_files_system_first() {
        let secret = "s".repeat(40);
        let f = files(
            Some(&format!(
                "[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
            )),
            Some("[[apps]]\nclient_id = \"ris\"\nname = \"Mine\"\nscopes = \"fhircast/*.write\"\n\n[[apps]]\nclient_id = \"viewer\"\nname = \"Viewer\"\nscopes = \"fhircast/*.read\"\ntopics = [\"t1\"]\n"),
        );
        let s = Settings::load(&f.layout).unwrap();
        let ids: Vec<_> = s
            .apps
            .iter()
            .map(|a| (a.client_id.as_str(), a.name.as_str()))
            .collect();
        assert_eq!(ids, [("ris", "RIS"), ("viewer", "Viewer")]);
        assert!(
            !format!("{:?}", s.apps).contains(&secret),
            "no secret in Debug"
        );

        let f = files(
            Some("[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"short\"\n"),
            None,
        );
        assert!(Settings::load(&f.layout)
            .unwrap_err()
            .to_string()
            .contains("at least 32"));
    }

    #[test]
    fn apps_are_provisioned_once_with_their_secret() {
        use crate::auth::{AppRegistry, MemoryStore};
        let secret = "k".repeat(43);
        let f = files(
            Some(&format!(
                "[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n\n[[apps]]\nclient_id = \"dict\"\nname = \"Dictation\"\nscopes = \"fhircast/*.write\"\n"
            )),
            None,
        );
        let s = Settings::load(&f.layout).unwrap();
        let registry =
            AppRegistry::load(None, None, std::sync::Arc::new(MemoryStore::default())).unwrap();
        let (info, warn) = s.provision_apps(&registry);
        assert_eq!(info.len(), 2);
        assert_eq!(warn.len(), 1, "{warn:?}");
        assert!(warn[0].contains("rotate-secret dict"));
        assert!(!format!("{info:?}{warn:?}").contains(&secret));
        assert!(registry.authenticate("ris", &secret).is_ok());
        assert!(registry.authenticate("dict", "anything").is_err());

        // Second start: nothing new; the file should lose its secret.
        let (info, warn) = s.provision_apps(&registry);
        assert!(info.is_empty());
        assert!(
            warn.iter().any(|w| w.contains("remove it from the file")),
            "{warn:?}"
        );
        // A rotated secret is not overwritten by the file's.
        let rotated = registry.rotate_secret("ris").unwrap();
        s.provision_apps(&registry);
        assert!(registry.authenticate("ris", &rotated).is_ok());
        assert!(registry.authenticate("ris", &secret).is_err());
        // A revoked app stays revoked.
        registry.revoke("ris").unwrap();
        let (_, warn) = s.provision_apps(&registry);
        assert!(warn.iter().any(|w| w.contains("left revoked")));
        assert!(registry.authenticate("ris", &rotated).is_err());
    }

    /// Issue 14.7: `journal_max_mb` reaches the config in bytes; 0 is refused.
    #[test]
    fn journal_max_mb_bounds_the_journal() {
        let f = files(None, Some("journal_max_mb = 8\n"));
        let s = Settings::load(&f.layout).unwrap();
        let mut config = Config::new("127.0.0.1:0".parse().unwrap(), PathBuf::from("/tmp"));
        assert_eq!(config.journal_max_bytes, 64 * 1024 * 1024, "the default");
        s.apply(&mut config);
        assert_eq!(config.journal_max_bytes, 8 * 1024 * 1024);
        let zero = files(None, Some("journal_max_mb = 0\n"));
        let s = Settings::load(&zero.layout).unwrap();
        assert!(
            s.warnings.iter().any(|w| w.contains("journal_max_mb")),
            "{:?}",
            s.warnings
        );
    }

    /// Issue 19: `acknowledges = false` in `[[apps]]` marks the app; an
    /// entry without the key leaves what the CLI or the dashboard chose.
    #[test]
    fn apps_acknowledges_round_trip() {
        use crate::auth::{AppRegistry, MemoryStore};
        let f = files(
            Some("[[apps]]\nclient_id = \"ohif\"\nname = \"OHIF\"\nscopes = \"fhircast/*.read\"\nacknowledges = false\n\n[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\n"),
            None,
        );
        let s = Settings::load(&f.layout).unwrap();
        assert_eq!(s.apps[0].acknowledges, Some(false));
        assert_eq!(s.apps[1].acknowledges, None);
        let registry =
            AppRegistry::load(None, None, std::sync::Arc::new(MemoryStore::default())).unwrap();
        let (info, _) = s.provision_apps(&registry);
        assert!(
            info.iter().any(|i| i.contains("ohif does not acknowledge")),
            "{info:?}"
        );
        assert!(!registry.acknowledges("ohif"));
        assert!(registry.acknowledges("ris"));
        // Set elsewhere (CLI, dashboard): the entry without the key keeps it.
        registry.set_acknowledges("ris", false).unwrap();
        let (info, _) = s.provision_apps(&registry);
        assert!(info.is_empty(), "{info:?}");
        assert!(!registry.acknowledges("ris"));
        // A value that is not a boolean is a file error with its line.
        let bad = files(
            Some("[[apps]]\nclient_id = \"o\"\nname = \"O\"\nscopes = \"fhircast/*.read\"\nacknowledges = \"no\"\n"),
            None,
        );
        let e = Settings::load(&bad.layout).unwrap_err().to_string();
        assert!(e.contains("line 5"), "{e}");
    }

    #[test]
    fn update_writes_the_user_file_and_refuses_locked_keys() {
        let f = files(
            Some("locked = [\"port\"]\n"),
            Some("# mine\ngrace_period_ms = 1000\n[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\n"),
        );
        let change = |json: serde_json::Value| json.as_object().unwrap().clone();

        let e = update_user_file(
            &f.layout,
            &change(serde_json::json!({"port": 5000, "tls": true})),
        )
        .unwrap_err();
        assert!(
            matches!(&e, UpdateError::Locked(k) if k == &["port"]),
            "{e}"
        );
        let e = update_user_file(
            &f.layout,
            &change(serde_json::json!({"ack_timeout_ms": "x"})),
        )
        .unwrap_err();
        assert!(matches!(e, UpdateError::Invalid(_)), "{e}");
        let e = update_user_file(&f.layout, &change(serde_json::json!({"nope": 1}))).unwrap_err();
        assert!(matches!(e, UpdateError::Invalid(_)), "{e}");
        // Nothing was written by the refused changes.
        assert!(std::fs::read_to_string(&f.layout.user)
            .unwrap()
            .starts_with("# mine"));

        let s = update_user_file(
            &f.layout,
            &change(serde_json::json!({"ack_timeout_ms": 4000, "grace_period_ms": null})),
        )
        .unwrap();
        assert_eq!(s.values.ack_timeout_ms, 4000);
        assert_eq!(s.sources["ack_timeout_ms"], Source::User);
        assert_eq!(s.values.grace_period_ms, 30_000);
        assert_eq!(s.sources["grace_period_ms"], Source::Default);
        assert_eq!(s.apps.len(), 1, "the user file's apps are kept");
        let written = std::fs::read_to_string(&f.layout.user).unwrap();
        assert!(
            written.starts_with("# mine\n"),
            "comments survive: {written}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f.layout.user)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(f.layout.user.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [FILE_NAME], "no temp file left behind");
        drop(f.dir);
    }

    #[test]
    fn update_keeps_the_comments_of_the_user_file() {
        let f = files(
            None,
            Some("# Reading room 3, set up by IT\nack_timeout_ms = 2000 # the old PACS is slow\n\n# our viewer\n[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\n"),
        );
        let change = serde_json::json!({"ack_timeout_ms": 3000, "lease_max_secs": 3600});
        update_user_file(&f.layout, change.as_object().unwrap()).unwrap();
        let text = std::fs::read_to_string(&f.layout.user).unwrap();
        for kept in [
            "# Reading room 3, set up by IT",
            "# the old PACS is slow",
            "# our viewer",
        ] {
            assert!(text.contains(kept), "{kept:?} lost: {text}");
        }
        assert!(text.contains("ack_timeout_ms = 3000"), "{text}");
        assert!(text.contains("lease_max_secs = 3600"), "{text}");
        assert!(
            text.find("lease_max_secs").unwrap() < text.find("[[apps]]").unwrap(),
            "new keys go above the tables: {text}"
        );
    }

    #[test]
    fn update_creates_the_folder_and_refuses_to_replace_a_broken_file() {
        let f = files(None, None);
        let change = serde_json::json!({"notifications": false});
        let s = update_user_file(&f.layout, change.as_object().unwrap()).unwrap();
        assert!(!s.values.notifications);

        std::fs::write(&f.layout.user, "notifications = \n").unwrap();
        let e = update_user_file(&f.layout, change.as_object().unwrap()).unwrap_err();
        assert!(matches!(e, UpdateError::User(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(&f.layout.user).unwrap(),
            "notifications = \n"
        );
    }
}
