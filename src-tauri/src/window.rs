//! The dashboard window: the hub's own web UI, loaded over http from the
//! hub (the hub's origin guard refuses `tauri://`), signed in with a
//! one-time link. Closing it only hides it; the app stays in the tray.
//! It opens where and as large as it was last closed (`window.json` in the
//! config folder), unless that place is on no screen any more.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tauri::webview::PageLoadEvent;
use tauri::{AppHandle, Manager, Runtime, WebviewUrl, WebviewWindowBuilder, Window, WindowEvent};

use crate::shell::Shell;

pub const LABEL: &str = "dashboard";
const GEOMETRY_FILE: &str = "window.json";
/// A size outside these (logical pixels) is a damaged file: the default.
const MIN_SIDE: f64 = 320.0;
const MAX_SIDE: f64 = 16384.0;

/// Where the window was and how large, in logical pixels.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Geometry {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
}

impl Geometry {
    /// The saved geometry, if the file is there, readable and sane. A file
    /// larger than a few hundred bytes is not ours: not read.
    pub fn load(path: &Path) -> Option<Geometry> {
        let meta = std::fs::metadata(path).ok()?;
        if meta.len() > 1024 {
            return None;
        }
        let g: Geometry = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let side = |v: f64| v.is_finite() && (MIN_SIDE..=MAX_SIDE).contains(&v);
        let coord = |v: f64| v.is_finite() && v.abs() <= MAX_SIDE * 4.0;
        (side(g.width) && side(g.height) && coord(g.x) && coord(g.y)).then_some(g)
    }

    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_vec(self).unwrap_or_default())
    }

    /// Its top-left corner lies on one of `screens` (x, y, width, height).
    pub fn on_a_screen(&self, screens: &[(f64, f64, f64, f64)]) -> bool {
        screens
            .iter()
            .any(|&(x, y, w, h)| self.x >= x && self.x < x + w && self.y >= y && self.y < y + h)
    }
}

fn geometry_file<R: Runtime>(app: &AppHandle<R>) -> Option<PathBuf> {
    let shell = app.try_state::<Shell>()?;
    shell.paths.as_ref().map(|p| p.config.join(GEOMETRY_FILE))
}

/// The screens, in logical pixels.
fn screens<R: Runtime>(app: &AppHandle<R>) -> Vec<(f64, f64, f64, f64)> {
    app.available_monitors()
        .unwrap_or_default()
        .iter()
        .map(|m| {
            let f = m.scale_factor();
            let (p, s) = (m.position(), m.size());
            (
                p.x as f64 / f,
                p.y as f64 / f,
                s.width as f64 / f,
                s.height as f64 / f,
            )
        })
        .collect()
}

/// Saves where the window is now (on hide and on quit).
pub fn remember<R: Runtime>(window: &Window<R>) {
    let Some(path) = geometry_file(window.app_handle()) else {
        return;
    };
    let (Ok(pos), Ok(size), Ok(f)) = (
        window.outer_position(),
        window.inner_size(),
        window.scale_factor(),
    ) else {
        return;
    };
    let g = Geometry {
        x: pos.x as f64 / f,
        y: pos.y as f64 / f,
        width: size.width as f64 / f,
        height: size.height as f64 / f,
    };
    if let Err(e) = g.save(&path) {
        tracing::debug!("window place not saved: {e}");
    }
}

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
    let saved = geometry_file(app).and_then(|p| Geometry::load(&p));
    let place = saved.filter(|g| g.on_a_screen(&screens(app)));
    let app = app.clone();
    // Off the event handler's thread: building a webview inside a menu
    // handler can deadlock on Windows.
    tauri::async_runtime::spawn(async move {
        let (width, height) = saved.map_or((1100.0, 760.0), |g| (g.width, g.height));
        let mut builder = WebviewWindowBuilder::new(&app, LABEL, WebviewUrl::External(url))
            .title("Lockstep")
            .inner_size(width, height);
        if let Some(g) = place {
            builder = builder.position(g.x, g.y);
        }
        let built = builder
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
            remember(window);
            let _ = window.hide();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_place_round_trips_and_a_damaged_file_is_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join(GEOMETRY_FILE);
        assert_eq!(Geometry::load(&path), None, "no file yet");
        let g = Geometry {
            x: 40.0,
            y: 30.0,
            width: 1200.0,
            height: 800.0,
        };
        g.save(&path).unwrap();
        assert_eq!(Geometry::load(&path), Some(g));
        for bad in [
            "not json".to_owned(),
            r#"{"x":0,"y":0,"width":10,"height":800}"#.to_owned(),
            r#"{"x":1e300,"y":0,"width":900,"height":800}"#.to_owned(),
            format!(
                "{{\"x\":0,\"y\":0,\"width\":900,\"height\":800,\"pad\":\"{}\"}}",
                "x".repeat(2000)
            ),
        ] {
            std::fs::write(&path, bad.as_bytes()).unwrap();
            assert_eq!(Geometry::load(&path), None, "{bad:.60}");
        }
    }

    #[test]
    fn a_place_on_no_screen_is_not_used() {
        let g = Geometry {
            x: 2000.0,
            y: 100.0,
            width: 800.0,
            height: 600.0,
        };
        let laptop = (0.0, 0.0, 1920.0, 1080.0);
        let external = (1920.0, 0.0, 2560.0, 1440.0);
        assert!(g.on_a_screen(&[laptop, external]));
        assert!(!g.on_a_screen(&[laptop]), "the external screen is gone");
        assert!(!g.on_a_screen(&[]));
    }
}
