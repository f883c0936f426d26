//! Lockstep's tray app: a thin Tauri shell over `lockstep_hub`.
//!
//! - `hub_runner.rs` runs the hub in-process on the configured port
//!   (started by `lockstep_hub::launch`, as `lockstep-hub` is).
//! - `model.rs` turns hub events and a snapshot into
//!   what the tray shows: pure, tested without a display.
//! - `notify.rs`: which events notify, and the rate limit.
//! - `shell.rs`: managed state, the task following `Hub::events()`, and
//!   the menu actions; `tray.rs` draws; `window.rs` is the dashboard.
//! - `config.rs`: the hub's settings files (`lockstep.toml`, IT's and the
//!   user's) and the environment overrides; `paths.rs`: OS folders, logs,
//!   the discovery file.
//!
//! No protocol logic lives here: every action is a `Hub` method.

pub mod config;
mod hub_runner;
pub mod model;
pub mod notify;
pub mod paths;
mod shell;
mod tray;
mod window;

#[cfg(all(test, feature = "test"))]
mod mock_tests;

use std::path::PathBuf;

use lockstep_hub::auth::store::StoreChoice;
use lockstep_hub::launch::{Launch, LaunchError};
use lockstep_hub::settings::{Layout, Settings, StartError};
use lockstep_hub::Config;
use tauri::{AppHandle, Builder, Manager, RunEvent, Runtime};

use crate::config::Overrides;
use crate::paths::Paths;
use crate::shell::Shell;

/// Opens the dashboard as soon as the app starts (end-to-end tests,
/// screenshots); normally the app starts quietly in the tray.
pub const SHOW_DASHBOARD_FLAG: &str = "--show-dashboard";
/// Passed by every start-at-login entry (the autostart plugin's, and the
/// installers' HKLM Run / XDG autostart / LaunchAgent ones).
pub const AUTOSTART_FLAG: &str = "--autostart";

pub fn run() {
    let paths = Paths::from_os();
    paths::init_logging(paths.as_ref().map(|p| p.logs.as_path()));
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
        .plugin(tauri_plugin_single_instance::init(|app, args, _cwd| {
            // A login entry starting a second copy (the installer's and the
            // user's can both exist) must not pop the dashboard up.
            if !args.iter().any(|a| a == AUTOSTART_FLAG) {
                window::show(app)
            }
        }))
        .plugin(tauri_plugin_autostart::init(
            tauri_plugin_autostart::MacosLauncher::LaunchAgent,
            Some(vec![AUTOSTART_FLAG]),
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
    let overrides = Overrides::from_env();
    let data = paths
        .as_ref()
        .map(|p| p.data.clone())
        .or_else(Config::default_data_dir);
    let layout = config::layout(&overrides, data.as_deref());
    let loaded = config::load(layout.as_ref());
    for w in &loaded.settings.warnings {
        tracing::warn!("{w}");
    }
    // Installers add a login entry for every user; one whose (or whose
    // IT's) start_at_login is off ends here, before any tray icon shows.
    if std::env::args().any(|a| a == AUTOSTART_FLAG)
        && loaded.broken.is_none()
        && !loaded.settings.values.start_at_login
    {
        tracing::info!("started at login with start_at_login off: quitting");
        app.exit(0);
        return Ok(());
    }
    let started = match &loaded.broken {
        Some(e) => Err(format!(
            "the system settings file is not valid: {e} (managed by your IT department; \
             the hub does not start without its managed settings)"
        )),
        None => {
            // The documented contract (README "Discovery file"), the same
            // file `lockstep-hub` writes.
            let discovery_dir = paths.as_ref().map(|p| p.runtime.clone());
            start_hub(
                &loaded.settings,
                &overrides,
                layout.clone(),
                data,
                discovery_dir,
            )
        }
    };
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
    // Another user's Lockstep holds the configured port: say plainly where
    // this session's hub is (apps find it through the discovery file).
    let moved = started.as_ref().ok().and_then(|r| r.note.clone());
    if let Some(note) = &moved {
        notify::show(
            app,
            &notify::Notice {
                key: "port".into(),
                title: "Lockstep uses this session's own port".into(),
                body: format!("{note}. Apps find it through the discovery file."),
            },
        );
    }
    let autostart = sync_autostart(app, &loaded);
    let shell = Shell::new(started, loaded.settings, layout, paths, autostart);
    if let Some(url) = &shell.hub_url {
        tracing::info!("Lockstep hub ready at {url}");
    }
    app.manage(shell);
    let view = app.state::<Shell>().view();
    tray::create(app, &view)?;
    // The tray shows `view` already: a first redraw would only rebuild the
    // menu under a user (or test) about to click it.
    tauri::async_runtime::spawn(shell::follow(app.clone(), view));
    tauri::async_runtime::spawn(quit_on_signal(app.clone()));
    if std::env::args().any(|a| a == SHOW_DASHBOARD_FLAG) {
        window::show(app);
    }
    Ok(())
}

/// Ctrl-C or SIGTERM (logout, service managers) quit like the menu does:
/// apps get their close frames and the discovery file goes.
async fn quit_on_signal<R: Runtime>(app: AppHandle<R>) {
    lockstep_hub::server::shutdown_signal().await;
    tracing::info!("signal received");
    shell::quit(app);
}

/// Makes the OS's start-at-login entry follow `start_at_login`: the
/// setting (IT's, or the user's from this menu or the dashboard) is the
/// truth, the entry its effect. Left alone when the system file is broken
/// (IT's choice is unknown). Returns whether the entry is there.
fn sync_autostart<R: Runtime>(app: &AppHandle<R>, loaded: &config::Loaded) -> bool {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    let enabled = launcher.is_enabled().unwrap_or(false);
    let want = loaded.settings.values.start_at_login;
    if loaded.broken.is_some() || enabled == want {
        return enabled;
    }
    let result = if want {
        launcher.enable()
    } else {
        launcher.disable()
    };
    match result {
        Ok(()) => {
            tracing::info!(
                start_at_login = want,
                "start at login set from the settings"
            );
            want
        }
        Err(e) => {
            tracing::warn!("cannot change start at login: {e}");
            enabled
        }
    }
}

/// Starts the hub with the settings files' values (and the environment's):
/// loopback only, the OS data folder shared with `lockstep-hub`, the chosen
/// secret store, then the apps IT pre-registers; `lockstep_hub::launch`,
/// as `lockstep-hub` does, in the tray's words.
fn start_hub(
    settings: &Settings,
    overrides: &Overrides,
    layout: Option<Layout>,
    data: Option<PathBuf>,
    discovery_dir: Option<PathBuf>,
) -> Result<hub_runner::Running, String> {
    let choice: StoreChoice = overrides.secret_store().parse()?;
    let launch = Launch::open(data, choice).map_err(|e| e.to_string())?;
    if let Some(w) = &launch.store_warning {
        tracing::warn!("{w}");
    }
    let config = config::hub_config(settings, overrides, layout, &launch).map_err(|e| match e {
        LaunchError::Settings(StartError::NotLoopback(ip)) => {
            format!("{ip} is not a loopback address; the tray app serves this workstation only")
        }
        e => e.to_string(),
    })?;
    hub_runner::start(config, settings, discovery_dir)
}
