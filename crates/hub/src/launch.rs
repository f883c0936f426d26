//! Starting a hub: the one path `lockstep-hub` and the tray app share
//! (issue 18). Each front end keeps only what is its own (the binary its
//! flags, logging, signals and subcommands; the tray its window, icon and
//! notifications) and words the errors its own way; the steps, in order:
//!
//! 1. [`Launch::open`]: the data folder (made if missing) and the secret
//!    store (keyring, file or memory; a fallback comes back as a warning
//!    for the front end to log or refuse).
//! 2. [`Launch::configure`]: `Config` from the front end's own values (its
//!    flags, or the tray's environment), then the settings files under them
//!    ([`Settings::prepare`]: loopback check, TLS certificate).
//! 3. [`Launch::start`]: bind (another OS user's hub on the port moves this
//!    one to its per-user port), refuse a damaged database that cannot be
//!    restored, make the [`Hub`], register the settings files' `[[apps]]`,
//!    write the discovery file. Nothing serves yet: the front end says
//!    "ready" (the line, the tray icon) and then
//! 4. [`Started::run`] serves until `shutdown`, then removes the discovery
//!    file.
//!
//! The settings files themselves are read by the front end before step 2
//! (`Settings::load`): a broken system file stops `lockstep-hub` but leaves
//! the tray running, stopped, with IT's toggles locked.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::auth::store::{open_store, StoreChoice, StoreError};
use crate::auth::SecretStore;
use crate::discovery_file::{remove_discovery, write_discovery, Discovery};
use crate::settings::{Settings, SettingsFiles, StartError};
use crate::storage::{Storage, StorageError};
use crate::{server, Config, Hub};

/// Why a hub did not start. Each front end words the way out (a flag to
/// pass, a file to fix) and picks its exit code.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// No data folder was given and the OS has none (no home folder).
    #[error("no data folder could be determined")]
    NoDataFolder,
    #[error("cannot create data folder {path}: {1}", path = .0.display())]
    DataFolder(PathBuf, std::io::Error),
    #[error(transparent)]
    SecretStore(#[from] StoreError),
    /// The settings' share: a non-loopback address, the TLS certificate.
    #[error(transparent)]
    Settings(#[from] StartError),
    /// The port: held by this user (running already?), or no per-user port free.
    #[error("{0}")]
    Bind(String),
    /// `lockstep.db` is damaged and no good copy exists: starting empty
    /// would lose the registered apps (issue 14).
    #[error(transparent)]
    Database(StorageError),
}

/// Step 1 done: where the hub keeps its data and its secrets.
pub struct Launch {
    pub data_dir: PathBuf,
    pub store: Arc<dyn SecretStore>,
    /// The store is not the one asked for (`auto` without a keyring: memory).
    pub store_warning: Option<String>,
}

impl Launch {
    /// The data folder (`data_dir`, else the OS's), made if missing, and
    /// the secret store `choice` names.
    pub fn open(data_dir: Option<PathBuf>, choice: StoreChoice) -> Result<Launch, LaunchError> {
        let data_dir = data_dir
            .or_else(Config::default_data_dir)
            .ok_or(LaunchError::NoDataFolder)?;
        std::fs::create_dir_all(&data_dir)
            .map_err(|e| LaunchError::DataFolder(data_dir.clone(), e))?;
        let (store, store_warning) = open_store(choice, &data_dir)?;
        Ok(Launch {
            data_dir,
            store,
            store_warning,
        })
    }

    /// The hub's `Config`: the defaults on `listen`, what the front end sets
    /// itself (`own`: its flags, which win), then every key of `settings`
    /// it did not set (`files.from_flags`). `files` is what the dashboard
    /// may edit; `None` when no folder for them is known.
    pub fn configure(
        &self,
        listen: SocketAddr,
        own: impl FnOnce(&mut Config),
        settings: &Settings,
        files: Option<SettingsFiles>,
    ) -> Result<Config, LaunchError> {
        let mut config = Config::new(listen, self.data_dir.clone());
        config.secret_store = self.store.clone();
        own(&mut config);
        settings.prepare(&mut config, files)?;
        Ok(config)
    }

    /// Binds `config.listen`, makes the hub and registers `settings`'
    /// `[[apps]]`; with `discovery_dir`, writes the discovery file there
    /// (before anything says "ready": whoever waits for that finds it). A
    /// failure to write it is logged, not fatal: apps can be told the port.
    pub fn start(
        mut config: Config,
        settings: &Settings,
        discovery_dir: Option<PathBuf>,
    ) -> Result<Started, LaunchError> {
        // Another OS user's hub on the port (fast user switching, a multi-
        // session host): this session moves to its per-user port and says so.
        let bound =
            crate::peer::bind_for_this_user_std(config.listen).map_err(LaunchError::Bind)?;
        let note = bound.note();
        if let Some(note) = &note {
            tracing::warn!("{note}");
        }
        let listener = bound.listener;
        listener
            .set_nonblocking(true)
            .map_err(|e| LaunchError::Bind(format!("cannot listen on {}: {e}", config.listen)))?;
        if let Ok(bound) = listener.local_addr() {
            config.listen = bound; // port 0 (tests): links need the real port
        }
        // A damaged database is restored, or the hub refuses to start: it
        // must never come up empty while apps were registered (issue 14).
        if config.persist {
            if let Err(e @ StorageError::Unrecoverable { .. }) = Storage::open(&config.data_dir) {
                return Err(LaunchError::Database(e));
            }
        }
        let hub = Hub::new(config);
        // Known from here on, not only once `run` starts in its task: the
        // tray builds launch links (`Hub::launch_url`) as soon as it has
        // the hub, and a test of that raced the serving task.
        if let Ok(addr) = listener.local_addr() {
            hub.set_local_addr(addr);
        }
        settings.provision_into(&hub);
        let mut started = Started {
            hub,
            listener,
            per_user_port: bound.moved_from.is_some(),
            note,
            discovery: None,
        };
        if let Some(dir) = discovery_dir {
            // The documented contract (README "Discovery file").
            let discovery = Discovery {
                hub_url: started.hub_url(),
                topic: started.hub.session_topic().to_owned(),
                pid: std::process::id(),
                port: started.hub.config().listen.port(),
                per_user_port: started.per_user_port,
            };
            match write_discovery(&dir, &discovery) {
                Ok(path) => {
                    tracing::info!(file = %path.display(), "discovery file written");
                    started.discovery = Some(dir);
                }
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot write the discovery file: apps must be told the port")
                }
            }
        }
        Ok(started)
    }
}

/// Step 3 done: a hub bound and registered, not serving yet.
pub struct Started {
    pub hub: Hub,
    listener: std::net::TcpListener,
    /// The configured port was another user's: this is the per-user one.
    pub per_user_port: bool,
    /// Where this session's hub listens when not where configured, in words
    /// ("port 4747 is used by another user (…); this session uses …").
    pub note: Option<String>,
    /// The folder of the discovery file this hub wrote.
    discovery: Option<PathBuf>,
}

impl Started {
    /// `http://ADDR/fhircast/STU3` (`https` with TLS), ADDR the bound one.
    pub fn hub_url(&self) -> String {
        let addr = self
            .listener
            .local_addr()
            .unwrap_or(self.hub.config().listen);
        let scheme = self.hub.config().http_scheme();
        format!("{scheme}://{addr}{}", crate::paths::STU3_PATH)
    }

    /// The discovery file this hub wrote, if any.
    pub fn discovery_file(&self) -> Option<PathBuf> {
        self.discovery
            .as_ref()
            .map(|dir| dir.join(crate::discovery_file::DISCOVERY_FILE))
    }

    /// Serves until `shutdown` resolves (`server::run`: every app gets its
    /// close frame), then removes the discovery file if it is still this
    /// process's. Needs a tokio runtime.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let result = server::run(listener, self.hub, shutdown).await;
        if let Some(dir) = &self.discovery {
            remove_discovery(dir, std::process::id());
        }
        result
    }
}
