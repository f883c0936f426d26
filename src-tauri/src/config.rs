//! The tray's configuration is the hub's: the layered `lockstep.toml`
//! files of `lockstep_hub::settings` (IT's system file, then the user's),
//! so IT manages the tray app and `lockstep-hub` with one file. Two
//! environment variables play the part of `lockstep-hub`'s flags and win
//! over both files: `LOCKSTEP_LISTEN` (port and address) and
//! `LOCKSTEP_SECRET_STORE` (no settings key: `auto` unless set).
//! `LOCKSTEP_SYSTEM_CONFIG` stands in for `--system-config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use lockstep_hub::launch::{Launch, LaunchError};
use lockstep_hub::settings::{FileError, Layout, Settings, SettingsFiles, TRAY_KEYS};
use lockstep_hub::Config;

pub const LISTEN_ENV: &str = "LOCKSTEP_LISTEN";
pub const SECRET_STORE_ENV: &str = "LOCKSTEP_SECRET_STORE";
pub const SYSTEM_CONFIG_ENV: &str = "LOCKSTEP_SYSTEM_CONFIG";

/// What the environment overrides, like `lockstep-hub`'s flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    /// `auto`, `keyring`, `file` or `memory`, as `lockstep-hub --secret-store`.
    pub secret_store: Option<String>,
    pub system_config: Option<PathBuf>,
}

impl Overrides {
    pub fn from_env() -> Overrides {
        Overrides::from_lookup(&|name| std::env::var(name).ok())
    }

    pub fn from_lookup(env: &dyn Fn(&str) -> Option<String>) -> Overrides {
        let listen = env(LISTEN_ENV).and_then(|v| match v.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                tracing::warn!("ignoring {LISTEN_ENV}={v:?}: expected ADDRESS:PORT");
                None
            }
        });
        Overrides {
            listen,
            secret_store: env(SECRET_STORE_ENV).filter(|s| !s.is_empty()),
            system_config: env(SYSTEM_CONFIG_ENV)
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }

    /// The settings keys the environment sets (the dashboard shows them
    /// as coming from a flag).
    pub fn keys(&self) -> Vec<&'static str> {
        match self.listen {
            Some(_) => vec!["port", "address"],
            None => Vec::new(),
        }
    }

    pub fn secret_store(&self) -> &str {
        self.secret_store.as_deref().unwrap_or("auto")
    }
}

/// The two files: the OS's, with `LOCKSTEP_SYSTEM_CONFIG` in place of the
/// system file. Without a config folder (no HOME) both sit in `data`, as
/// `lockstep-hub` does.
pub fn layout(overrides: &Overrides, data: Option<&Path>) -> Option<Layout> {
    Layout::resolve(overrides.system_config.clone(), None, data)
}

/// The settings the tray runs with, or why the hub must not start.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The system file is broken: the hub stays stopped (a hospital would
    /// rather see the file named than a hub quietly running unmanaged).
    pub broken: Option<FileError>,
}

/// Reads the files; a bad user file is a warning (in `settings.warnings`).
pub fn load(layout: Option<&Layout>) -> Loaded {
    let Some(layout) = layout else {
        return Loaded {
            settings: Settings::default(),
            broken: None,
        };
    };
    match Settings::load(layout) {
        Ok(settings) => Loaded {
            settings,
            broken: None,
        },
        Err(e) => {
            // IT's choices are unknown: the tray's own toggles stay put.
            let settings = Settings {
                locked: TRAY_KEYS.iter().map(|k| (*k).to_owned()).collect(),
                ..Settings::default()
            };
            Loaded {
                settings,
                broken: Some(e),
            }
        }
    }
}

/// The hub's `Config`: the defaults, then the settings files, then the
/// environment (`Launch::configure`, as `lockstep-hub` does). The
/// dashboard can edit the files when `layout` is known.
pub fn hub_config(
    settings: &Settings,
    overrides: &Overrides,
    layout: Option<Layout>,
    launch: &Launch,
) -> Result<Config, LaunchError> {
    let listen = overrides.listen.unwrap_or_else(|| {
        Config::DEFAULT_LISTEN
            .parse()
            .expect("a valid default address")
    });
    let files = layout.map(|layout| SettingsFiles {
        layout,
        from_flags: overrides.keys(),
    });
    launch.configure(listen, |_| {}, settings, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_hub::settings::StartError;

    /// A launch with the data folder `data` (not made) and a memory store.
    fn launch(data: &Path) -> Launch {
        Launch {
            data_dir: data.to_path_buf(),
            store: std::sync::Arc::new(lockstep_hub::auth::store::MemoryStore::default()),
            store_warning: None,
        }
    }

    fn files(system: &str, user: &str) -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout {
            system: dir.path().join("etc/lockstep.toml"),
            user: dir.path().join("home/lockstep.toml"),
        };
        for (path, text) in [(&layout.system, system), (&layout.user, user)] {
            if !text.is_empty() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, text).unwrap();
            }
        }
        (dir, layout)
    }

    #[test]
    fn env_overrides_win_and_are_reported_as_flags() {
        let env = |name: &str| match name {
            LISTEN_ENV => Some("127.0.0.1:5000".to_owned()),
            SECRET_STORE_ENV => Some("file".to_owned()),
            _ => None,
        };
        let o = Overrides::from_lookup(&env);
        assert_eq!(o.secret_store(), "file");
        let (_dir, layout) = files("port = 6000\nack_timeout_ms = 2000\n", "");
        let loaded = load(Some(&layout));
        assert!(loaded.broken.is_none());
        let c = hub_config(
            &loaded.settings,
            &o,
            Some(layout.clone()),
            &launch(Path::new("/tmp/x")),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:5000");
        assert_eq!(c.ack_timeout.as_millis(), 2000);
        let f = c.settings_files.expect("editable in the dashboard");
        assert_eq!(f.layout, layout);
        assert_eq!(f.from_flags, vec!["port", "address"]);
    }

    #[test]
    fn without_env_the_files_decide_and_the_store_is_auto() {
        let o = Overrides::from_lookup(&|_| None);
        assert_eq!(o.secret_store(), "auto");
        let (_dir, layout) = files("port = 6000\n", "port = 6001\nnotifications = false\n");
        let loaded = load(Some(&layout));
        let c = hub_config(
            &loaded.settings,
            &o,
            Some(layout),
            &launch(Path::new("/tmp/x")),
        )
        .unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:6001");
        assert!(!loaded.settings.values.notifications);
        assert!(c.settings_files.unwrap().from_flags.is_empty());
    }

    #[test]
    fn a_non_loopback_address_in_a_file_is_refused_and_tls_gets_its_certificate() {
        let o = Overrides::from_lookup(&|_| None);
        let (_dir, layout) = files("address = \"0.0.0.0\"\n", "");
        let loaded = load(Some(&layout));
        let e = hub_config(&loaded.settings, &o, None, &launch(Path::new("/tmp/x"))).unwrap_err();
        assert!(
            matches!(e, LaunchError::Settings(StartError::NotLoopback(ip)) if ip.is_unspecified()),
            "{e}"
        );

        let data = tempfile::tempdir().unwrap();
        let (_dir, layout) = files("", "tls = true\n");
        let loaded = load(Some(&layout));
        let c = hub_config(&loaded.settings, &o, None, &launch(data.path())).unwrap();
        assert!(c.tls);
        let pem = std::fs::read_to_string(data.path().join("lockstep-hub.crt")).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
    }

    #[test]
    fn a_broken_system_file_is_named_and_locks_the_tray_keys() {
        let (_dir, layout) = files("port = \"many\"\n", "");
        let loaded = load(Some(&layout));
        let e = loaded.broken.expect("refused");
        assert_eq!(e.path, layout.system);
        assert!(e.to_string().contains("etc/lockstep.toml"), "{e}");
        assert!(loaded.settings.is_locked("notifications"));
        assert!(loaded.settings.is_locked("start_at_login"));
    }

    #[test]
    fn a_broken_user_file_is_a_warning_with_defaults() {
        let (_dir, layout) = files("", "port = [\n");
        let loaded = load(Some(&layout));
        assert!(loaded.broken.is_none());
        assert_eq!(loaded.settings.values.port, 4747);
        assert!(
            loaded
                .settings
                .warnings
                .iter()
                .any(|w| w.contains("ignoring")),
            "{:?}",
            loaded.settings.warnings
        );
    }

    #[test]
    fn system_config_env_replaces_the_system_file() {
        let o = Overrides::from_lookup(&|name| {
            (name == SYSTEM_CONFIG_ENV).then(|| "/srv/it/lockstep.toml".to_owned())
        });
        let l = layout(&o, Some(Path::new("/data"))).unwrap();
        assert_eq!(l.system, PathBuf::from("/srv/it/lockstep.toml"));
    }
}
