//! The dashboard window: the hub's own web UI, loaded over http from the
//! hub (the hub's origin guard refuses `tauri://`), signed in with a
//! one-time link. Closing it only hides it; the app stays in the tray.

use tauri::webview::PageLoadEvent;
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, Window, WindowEvent};

use crate::shell::Shell;

pub const LABEL: &str = "dashboard";

/// Shows and focuses the dashboard, creating it on first use.
pub fn show<R: Runtime>(app: &AppHandle<R>) {
    // A second launch can arrive before setup has finished.
    let Some(shell) = app.try_state::<Shell>() else {
        return;
    };
    shell.acknowledge();
    if let Some(w) = app.get_webview_window(LABEL) {
        let _ = w.show();
        let _ = w.unminimize();
        let _ = w.set_focus();
        return;
    }
    let Some(hub) = shell.hub.clone() else {
        return;
    };
    let url = match hub.one_time_link().parse() {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!("bad dashboard link: {e}");
            return;
        }
    };
    // The Settings view shows where the log files are (the hub alone does
    // not know: the tray writes them). A JSON string literal, so any path
    // is safe in the script.
    let logs_dir = shell.paths.as_ref().map(|p| p.logs.display().to_string());
    let script = format!(
        "window.__LOCKSTEP_LOGS_DIR__ = {};",
        serde_json::Value::from(logs_dir)
    );
    let app = app.clone();
    // Off the event handler's thread: building a webview inside a menu
    // handler can deadlock on Windows.
    tauri::async_runtime::spawn(async move {
        let built = WebviewWindowBuilder::new(&app, LABEL, WebviewUrl::External(url))
            .title("Lockstep")
            .inner_size(1100.0, 760.0)
            .initialization_script(&script)
            .on_page_load(|_, payload| {
                if payload.event() == PageLoadEvent::Finished {
                    // Path only: the login link's code never reaches the log.
                    tracing::info!(path = payload.url().path(), "dashboard loaded");
                }
            })
            .build();
        if let Err(e) = built {
            tracing::warn!("cannot open the dashboard: {e}");
        }
    });
}

/// Window events for every window: closing the dashboard hides it.
pub fn on_event<R: Runtime>(window: &Window<R>, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        if window.label() == LABEL {
            api.prevent_close();
            let _ = window.hide();
        }
    }
}
