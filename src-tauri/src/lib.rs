//! Lockstep's tray app: a thin Tauri shell over `lockstep_hub`.
//!
//! - `hub_runner.rs` runs the hub in-process on the configured port.
//! - `model.rs` (with `summary.rs`) turns hub events and a snapshot into
//!   what the tray shows: pure, tested without a display.
//! - `notify.rs`: which events notify, and the rate limit.
//! - `shell.rs`: managed state, the task following `Hub::events()`, and
//!   the menu actions; `tray.rs` draws; `window.rs` is the dashboard.
//! - `settings.rs`: OS folders, settings, logs, the discovery file.
//!
//! No protocol logic lives here: every action is a `Hub` method.

mod hub_runner;
pub mod model;
pub mod notify;
pub mod settings;
mod shell;
pub mod summary;
mod tray;
mod window;

#[cfg(all(test, feature = "test"))]
mod mock_tests;

use lockstep_hub::auth::store::{open_store, StoreChoice};
use lockstep_hub::Config;
use tauri::{AppHandle, Builder, Manager, RunEvent, Runtime};

use crate::settings::{Discovery, Paths, Settings};
use crate::shell::Shell;

/// Opens the dashboard as soon as the app starts (end-to-end tests,
/// screenshots); normally the app starts quietly in the tray.
pub const SHOW_DASHBOARD_FLAG: &str = "--show-dashboard";

pub fn run() {
    let paths = Paths::from_os();
    settings::init_logging(paths.as_ref().map(|p| p.logs.as_path()));
    let app = match build(tauri::Builder::default(), paths).build(tauri::generate_context!()) {
        Ok(app) => app,
        Err(e) => {
            tracing::error!("cannot start Lockstep: {e}");
            std::process::exit(1);
        }
    };
    app.run(|app, event| match event {
        // The tray app lives on without windows; only Quit (an explicit
        // exit code) ends it.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(shell) = app.try_state::<Shell>() {
                shell.remove_discovery();
            }
        }
        _ => {}
    });
}

/// Plugins, window events and setup; generic so tests can pass Tauri's
/// mock builder.
pub fn build<R: Runtime>(builder: Builder<R>, paths: Option<Paths>) -> Builder<R> {
    builder
        // First, so that a second launch only focuses the first.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            window::show(app)
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            None,
        ))
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_opener::init())
        .plugin(tauri_plugin_clipboard_manager::init())
        .on_window_event(window::on_event)
        .setup(move |app| {
            setup(app.handle(), paths.clone())?;
            Ok(())
        })
}

fn setup<R: Runtime>(app: &AppHandle<R>, paths: Option<Paths>) -> tauri::Result<()> {
    use tauri_plugin_autostart::ManagerExt;
    let settings = paths
        .as_ref()
        .map(|p| Settings::load(&p.config.join("settings.json")))
        .unwrap_or_default();
    let started = start_hub(&settings, paths.as_ref());
    if let Err(why) = &started {
        tracing::error!("the hub did not start: {why}");
        notify::show(
            app,
            &notify::Notice {
                key: "stopped".into(),
                title: "Lockstep could not start".into(),
                body: format!("{why}. Apps cannot sync until it runs."),
            },
        );
    }
    let autostart = app.autolaunch().is_enabled().unwrap_or(false);
    let shell = Shell::new(started, settings, paths, autostart);
    if let (Some(hub), Some(url), Some(p)) = (&shell.hub, &shell.hub_url, &shell.paths) {
        let discovery = Discovery {
            hub_url: url.clone(),
            topic: hub.session_topic().to_owned(),
            pid: std::process::id(),
        };
        match settings::write_discovery(&p.runtime, &discovery) {
            Ok(path) => shell.set_discovery(path),
            Err(e) => tracing::warn!("cannot write the discovery file: {e}"),
        }
        tracing::info!("Lockstep hub ready at {url}");
    }
    app.manage(shell);
    let view = app.state::<Shell>().view();
    tray::create(app, &view)?;
    tauri::async_runtime::spawn(shell::follow(app.clone()));
    tauri::async_runtime::spawn(quit_on_signal(app.clone()));
    if std::env::args().any(|a| a == SHOW_DASHBOARD_FLAG) {
        window::show(app);
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (logout, service managers) quit like the menu does:
/// apps get their close frames and the discovery file goes.
async fn quit_on_signal<R: Runtime>(app: AppHandle<R>) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("signal received");
    shell::quit(app);
}

/// The hub's settings from the tray's: loopback only, the OS data folder
/// shared with `lockstep-hub`, the chosen secret store.
fn start_hub(settings: &Settings, paths: Option<&Paths>) -> Result<hub_runner::Running, String> {
    if !settings.listen.ip().is_loopback() {
        return Err(format!(
            "{} is not a loopback address; the tray app serves this workstation only",
            settings.listen
        ));
    }
    let data = paths
        .map(|p| p.data.clone())
        .or_else(Config::default_data_dir)
        .ok_or("no data folder could be determined")?;
    std::fs::create_dir_all(&data)
        .map_err(|e| format!("cannot create data folder {}: {e}", data.display()))?;
    let choice: StoreChoice = settings.secret_store.parse()?;
    let (store, warning) = open_store(choice, &data).map_err(|e| e.to_string())?;
    if let Some(w) = warning {
        tracing::warn!("{w}");
    }
    let mut config = Config::new(settings.listen, data);
    config.secret_store = store;
    hub_runner::start(config)
}
