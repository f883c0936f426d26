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
//!
//! Parts: `layout.rs` (where the files are), `values.rs` (the keys, their
//! defaults, `[[apps]]` entries), `file.rs` (one file read and checked),
//! this file (`Settings`: the two layered, and `apply` into `Config`),
//! `start.rs` (`prepare`: the files under a front end's own keys, the
//! start-up checks), `provision.rs` (`[[apps]]` into the registry),
//! `write.rs` (the user file written back with `toml_edit`), `live.rs`
//! (`LiveTimeouts::apply`: a save reaching the running hub).

mod file;
mod layout;
mod live;
mod provision;
mod start;
mod values;
mod write;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::Config;

pub use file::FileError;
pub use layout::{Layout, Os, FILE_NAME};
pub use live::LIVE_KEYS;
pub use start::{SettingsFiles, StartError};
pub use values::{AppEntry, Source, Values, KEYS, TRAY_KEYS};
pub use write::{update_user_file, UpdateError};

use file::{read, Parsed};

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

#[cfg(test)]
mod tests;
