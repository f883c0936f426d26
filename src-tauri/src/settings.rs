//! Where the tray keeps things and what it remembers: OS folders from
//! `directories`, `settings.json`, the rotated log files, and the
//! discovery file that tells local apps where the running hub is.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Log files kept (one per day).
pub const LOG_FILES_KEPT: usize = 7;
pub const DISCOVERY_FILE: &str = "hub.json";

/// The tray's folders. Linux: `~/.config/lockstep`, `~/.local/share/lockstep`
/// (the same data folder as `lockstep-hub`), `~/.local/state/lockstep/logs`
/// and `$XDG_RUNTIME_DIR/lockstep`.
#[derive(Clone, Debug)]
pub struct Paths {
    pub config: PathBuf,
    pub data: PathBuf,
    pub logs: PathBuf,
    /// Where the discovery file goes: the runtime folder where the OS has
    /// one (cleared at logout), else the config folder.
    pub runtime: PathBuf,
}

impl Paths {
    pub fn from_os() -> Option<Paths> {
        let d = directories::ProjectDirs::from("org", "Lockstep", "lockstep")?;
        let logs = d.state_dir().unwrap_or(d.data_local_dir()).join("logs");
        Some(Paths {
            config: d.config_dir().to_path_buf(),
            data: d.data_dir().to_path_buf(),
            logs,
            runtime: d.runtime_dir().unwrap_or(d.config_dir()).to_path_buf(),
        })
    }
}

/// `settings.json` in the config folder; every field has a default, so an
/// older or partial file still loads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Settings {
    pub listen: SocketAddr,
    pub notifications: bool,
    /// `auto`, `keyring`, `file` or `memory`, as `lockstep-hub --secret-store`.
    pub secret_store: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            listen: lockstep_hub::Config::DEFAULT_LISTEN
                .parse()
                .expect("a valid default address"),
            notifications: true,
            secret_store: "auto".into(),
        }
    }
}

impl Settings {
    /// Reads the file (defaults if it is missing or unreadable, with a
    /// warning for the latter), then `LOCKSTEP_LISTEN` and
    /// `LOCKSTEP_SECRET_STORE` from the environment, which win.
    pub fn load(path: &Path) -> Settings {
        let mut s = match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!("ignoring {}: {e}", path.display());
                Settings::default()
            }),
            Err(_) => Settings::default(),
        };
        if let Some(listen) = std::env::var("LOCKSTEP_LISTEN")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            s.listen = listen;
        }
        if let Ok(store) = std::env::var("LOCKSTEP_SECRET_STORE") {
            s.secret_store = store;
        }
        s
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text)
    }
}

/// What the discovery file says: enough for a local app to find the hub.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    /// `hub.url`, e.g. `http://127.0.0.1:4747/fhircast/STU3`.
    pub hub_url: String,
    pub topic: String,
    pub pid: u32,
}

/// Writes `dir/hub.json` readable by this user only (0600 on Unix, the
/// folder 0700), replacing an older one.
pub fn write_discovery(dir: &Path, discovery: &Discovery) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    let path = dir.join(DISCOVERY_FILE);
    let _ = std::fs::remove_file(&path); // a stale file may have other permissions
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    let text = serde_json::to_vec_pretty(discovery).map_err(std::io::Error::other)?;
    file.write_all(&text)?;
    Ok(path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Logs to stderr and to `logs/lockstep.YYYY-MM-DD.log`, one file a day,
/// the last [`LOG_FILES_KEPT`] kept. Written synchronously (low volume), so
/// nothing is lost when the event loop exits the process.
pub fn init_logging(logs: Option<&Path>) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let filter = || {
        tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"))
    };
    let file = logs.and_then(|dir| {
        create_private_dir(dir).ok()?;
        tracing_appender::rolling::Builder::new()
            .rotation(tracing_appender::rolling::Rotation::DAILY)
            .filename_prefix("lockstep")
            .filename_suffix("log")
            .max_log_files(LOG_FILES_KEPT)
            .build(dir)
            .ok()
    });
    let file_layer = file.map(|w| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(w)
            .with_filter(filter())
    });
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_filter(filter()),
        )
        .with(file_layer)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/settings.json");
        let s = Settings {
            notifications: false,
            ..Settings::default()
        };
        s.save(&path).unwrap();
        assert!(!Settings::load(&path).notifications);
        std::fs::write(&path, r#"{"notifications": false}"#).unwrap();
        let partial = Settings::load(&path);
        assert_eq!(partial.listen.to_string(), "127.0.0.1:4747");
        std::fs::write(&path, "not json").unwrap();
        assert!(Settings::load(&path).notifications);
    }

    #[test]
    fn discovery_file_is_private_and_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("lockstep");
        let d = Discovery {
            hub_url: "http://127.0.0.1:4747/fhircast/STU3".into(),
            topic: "abc".into(),
            pid: 7,
        };
        let path = write_discovery(&runtime, &d).unwrap();
        let again = write_discovery(&runtime, &d).unwrap();
        assert_eq!(path, again);
        let read: Discovery = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read, d);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&runtime), 0o700);
        }
    }
}
