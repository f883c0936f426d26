//! Where the tray keeps things: OS folders from `directories`, the
//! rotated log files, and the folder of the discovery file that tells local
//! apps where the running hub is (the file itself is the hub's
//! `discovery_file`, the same for `lockstep-hub`). Settings are the hub's
//! `lockstep.toml` files (see `config.rs`).

use std::path::{Path, PathBuf};

/// Log files kept (one per day).
pub const LOG_FILES_KEPT: usize = 7;

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
        lockstep_hub::discovery_file::create_private_dir(dir).ok()?;
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
