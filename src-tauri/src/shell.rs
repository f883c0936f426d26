//! The glue between the hub and the tray: the app's managed state, the
//! task that follows `Hub::events()` (notifications, tray redraws), and
//! what each menu item does. Every tray update happens in that one task;
//! menu handlers change state and nudge it.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lockstep_hub::{Hub, HubEvent};
use tauri::{AppHandle, Manager, Runtime};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::Notify;

use crate::hub_runner::Running;
use crate::model::{self, ids, Snapshot, Tracker, View};
use crate::notify::{self, RateLimiter};
use crate::paths::Paths;
use lockstep_hub::settings::{update_user_file, Layout, Settings};

/// How often the tray is redrawn without events (attention expires).
const TICK: Duration = Duration::from_secs(15);

/// Managed by Tauri: `app.state::<Shell>()`.
pub struct Shell {
    /// `None` when the hub could not start.
    pub hub: Option<Hub>,
    pub hub_url: Option<String>,
    pub stopped: Option<String>,
    pub paths: Option<Paths>,
    running: Mutex<Option<Running>>,
    state: Mutex<State>,
    nudge: Notify,
}

struct State {
    tracker: Tracker,
    limiter: RateLimiter,
    /// The effective settings; the tray reads `notifications` and
    /// `start_at_login` (and whether IT locked them).
    settings: Settings,
    /// The settings files; `None` when no folder for them is known (the
    /// toggles then last until Quit).
    layout: Option<Layout>,
    /// Whether the OS start-at-login entry is there.
    autostart: bool,
    discovery: Option<PathBuf>,
    /// "Close all contexts" was clicked at this time: the menu offers the
    /// confirmation until [`model::CONFIRM_FOR`] has passed.
    close_all_armed: Option<Instant>,
}

impl Shell {
    pub fn new(
        started: Result<Running, String>,
        settings: Settings,
        layout: Option<Layout>,
        paths: Option<Paths>,
        autostart: bool,
    ) -> Shell {
        let discovery = started.as_ref().ok().and_then(|r| r.discovery.clone());
        let (hub, hub_url, stopped, running) = match started {
            Ok(r) => (Some(r.hub.clone()), Some(r.hub_url.clone()), None, Some(r)),
            Err(why) => (None, None, Some(why), None),
        };
        Shell {
            hub,
            hub_url,
            stopped,
            paths,
            running: Mutex::new(running),
            state: Mutex::new(State {
                tracker: Tracker::default(),
                limiter: RateLimiter::default(),
                settings,
                layout,
                autostart,
                discovery,
                close_all_armed: None,
            }),
            nudge: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Short critical sections, never across .await or a tray call.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ask the follow task to redraw the tray.
    pub fn nudge(&self) {
        self.nudge.notify_one();
    }

    /// Removes the discovery file (idempotent).
    pub fn remove_discovery(&self) {
        if let Some(path) = self.lock().discovery.take() {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The user opened the dashboard: the attention state has been seen.
    pub fn acknowledge(&self) {
        self.lock().tracker.acknowledge();
        self.nudge();
    }

    /// The current view of the tray.
    pub fn view(&self) -> View {
        let (subscribers, paused, context, launchable) = match &self.hub {
            Some(hub) => {
                let session = hub.session_topic();
                let has = |t: &str| {
                    !hub.current_context(t)["context"]
                        .as_array()
                        .is_none_or(Vec::is_empty)
                };
                let topic = self.lock().tracker.shown_topic(session, has).to_owned();
                (
                    hub.subscribers(),
                    hub.is_paused(),
                    hub.current_context(&topic),
                    hub.launchable_apps(),
                )
            }
            None => Default::default(),
        };
        let now = Instant::now();
        let state = self.lock();
        let armed = state
            .close_all_armed
            .is_some_and(|at| now.saturating_duration_since(at) < model::CONFIRM_FOR);
        let snap = Snapshot {
            stopped: self.stopped.clone(),
            paused,
            subscribers,
            context,
            notifications: state.settings.values.notifications,
            autostart: state.autostart,
            notifications_managed: state.settings.is_locked("notifications"),
            autostart_managed: state.settings.is_locked("start_at_login"),
            close_all_armed: armed,
            logs: self.paths.as_ref().map(|p| p.logs.display().to_string()),
            launchable,
        };
        model::view(&state.tracker, &snap, now)
    }

    /// Records an event; the notification to show, if any.
    fn observe(&self, event: &HubEvent) -> Option<notify::Notice> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tracker.observe(event, now);
        let notice = notify::notice_for(event)?;
        if !state.settings.values.notifications {
            return None;
        }
        state.limiter.admit(notice, now)
    }

    /// Saves a tray key (`notifications`, `start_at_login`) to the user's
    /// settings file, as the dashboard does. Refused when IT locked it.
    fn set_tray_key(&self, key: &str, value: bool) -> Result<(), String> {
        let layout = {
            let state = self.lock();
            if state.settings.is_locked(key) {
                return Err(format!("{key} is managed by your IT"));
            }
            state.layout.clone()
        };
        let Some(layout) = layout else {
            // Nowhere to save: this run only.
            let mut state = self.lock();
            match key {
                "notifications" => state.settings.values.notifications = value,
                _ => state.settings.values.start_at_login = value,
            }
            return Ok(());
        };
        let changes = serde_json::Map::from_iter([(key.to_owned(), serde_json::json!(value))]);
        // Outside the lock: file I/O.
        let saved = update_user_file(&layout, &changes).map_err(|e| e.to_string())?;
        self.lock().settings = saved;
        Ok(())
    }

    /// Re-reads the files, so a change saved in the dashboard (or by IT)
    /// reaches the menu and the notifications within a [`TICK`]. A file
    /// that became unreadable keeps what the tray has.
    fn reload_settings(&self) {
        let Some(layout) = self.lock().layout.clone() else {
            return;
        };
        match Settings::load(&layout) {
            Ok(s) => self.lock().settings = s,
            Err(e) => tracing::debug!("settings not re-read: {e}"),
        }
    }

    fn toggle_notifications(&self) {
        let on = self.lock().settings.values.notifications;
        if let Err(e) = self.set_tray_key("notifications", !on) {
            tracing::warn!("cannot change notifications: {e}");
        }
    }
}

/// Follows the hub until it stops: notifications, and a tray redraw after
/// each burst of events, each nudge, and every [`TICK`].
pub async fn follow<R: Runtime>(app: AppHandle<R>, drawn: View) {
    let shell = app.state::<Shell>();
    let mut events = shell.hub.as_ref().map(Hub::events);
    let mut tick = tokio::time::interval(TICK);
    let mut shown = drawn;
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            r = async { match events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match r {
                Ok(e) => batch.push(e),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => events = None,
            },
            _ = shell.nudge.notified() => {}
            _ = tick.tick() => shell.reload_settings(),
        }
        if let Some(rx) = events.as_mut() {
            // Take the rest of a burst now: one redraw for all of it.
            loop {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        for e in &batch {
            if let Some(notice) = shell.observe(e) {
                notify::show(&app, &notice);
            }
        }
        let view = shell.view();
        if shown != view {
            crate::tray::apply(&app, &view, Some(&shown));
            shown = view;
        }
    }
}

/// What a tray menu item does.
pub fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let shell = app.state::<Shell>();
    let hub = shell.hub.clone();
    if let Some(hub) = &hub {
        if let Some(endpoint) = id.strip_prefix(ids::BREAK_LINK) {
            link_action(hub, "break the link of", hub.break_link(endpoint));
            shell.nudge();
            return;
        }
        if let Some(client_id) = id.strip_prefix(ids::OPEN_APP) {
            open_app(app, hub, client_id);
            return;
        }
        if let Some(endpoint) = id.strip_prefix(ids::REJOIN) {
            link_action(hub, "rejoin", hub.rejoin(endpoint));
            shell.nudge();
            return;
        }
    }
    match (id, hub) {
        (ids::OPEN, Some(_)) => crate::window::show(app),
        (ids::OPEN_BROWSER, Some(hub)) => {
            use tauri_plugin_opener::OpenerExt;
            shell.acknowledge();
            if let Err(e) = app.opener().open_url(hub.one_time_link(), None::<&str>) {
                tracing::warn!("cannot open the browser: {e}");
            }
        }
        (ids::COPY_URL, Some(_)) => copy(app, shell.hub_url.clone().unwrap_or_default()),
        (ids::COPY_TOPIC, Some(hub)) => copy(app, hub.session_topic().to_owned()),
        (ids::PAUSE, Some(hub)) => {
            hub.pause();
            hub.audit_admin("tray", None, "pause sync", "done");
        }
        (ids::RESUME, Some(hub)) => {
            hub.resume();
            hub.audit_admin("tray", None, "resume sync", "done");
        }
        // The first click only arms the confirmation item.
        (ids::CLOSE_ALL, Some(_)) => shell.lock().close_all_armed = Some(Instant::now()),
        (ids::CONFIRM_CLOSE_ALL, Some(hub)) => {
            let armed = shell.lock().close_all_armed.take();
            if armed.is_some_and(|at| at.elapsed() < model::CONFIRM_FOR) {
                close_all(&hub);
            }
        }
        (ids::OPEN_LOGS, _) => open_logs(app, &shell),
        (ids::NOTIFICATIONS, _) => shell.toggle_notifications(),
        (ids::AUTOSTART, _) => toggle_autostart(app, &shell),
        (ids::QUIT, _) => quit(app.clone()),
        (other, _) => tracing::debug!(id = other, "menu item without action"),
    }
    shell.nudge();
}

/// "Open app": the default browser at the app's launch URL with a fresh
/// `launch` and `iss` (SMART EHR launch), so it starts in this session.
fn open_app<R: Runtime>(app: &AppHandle<R>, hub: &Hub, client_id: &str) {
    use tauri_plugin_opener::OpenerExt;
    // `None`: revoked or removed since the menu was drawn.
    let Some(url) = hub.launch_url(client_id) else {
        tracing::warn!(client = client_id, "no launch URL for this app any more");
        return;
    };
    hub.audit_admin("tray", None, &format!("launch app {client_id}"), "done");
    if let Err(e) = app.opener().open_url(url, None::<&str>) {
        tracing::warn!("cannot open the browser: {e}");
    }
}

/// Closes the open contexts of every topic that has subscribers, and of
/// the session topic.
fn close_all(hub: &Hub) {
    let mut topics: Vec<String> = hub.subscribers().into_iter().map(|s| s.topic).collect();
    topics.push(hub.session_topic().to_owned());
    topics.sort();
    topics.dedup();
    let closed: usize = topics.iter().filter_map(|t| hub.close_all(t).ok()).sum();
    tracing::info!(closed, "contexts closed from the tray");
    let detail = format!("close all contexts: {closed} closed");
    hub.audit_admin("tray", None, &detail, "done");
}

/// Audits a break link / rejoin from the tray, as the dashboard's are
/// ("break the link of Reporting", "rejoin Reporting").
fn link_action(hub: &Hub, what: &str, result: Result<String, lockstep_hub::ActionError>) {
    match result {
        Ok(name) => hub.audit_admin("tray", None, &format!("{what} {name}"), "done"),
        // The app left between drawing the menu and the click.
        Err(e) => tracing::warn!("cannot {what} an app: {e:?}"),
    }
}

/// Opens the log folder in the desktop's file manager.
fn open_logs<R: Runtime>(app: &AppHandle<R>, shell: &Shell) {
    use tauri_plugin_opener::OpenerExt;
    let Some(paths) = &shell.paths else {
        return;
    };
    // It exists once logging started; make sure before handing it over.
    let _ = std::fs::create_dir_all(&paths.logs);
    let dir = paths.logs.display().to_string();
    if let Err(e) = app.opener().open_path(&dir, None::<&str>) {
        tracing::warn!("cannot open the logs folder {dir}: {e}");
    }
}

fn copy<R: Runtime>(app: &AppHandle<R>, text: String) {
    use tauri_plugin_clipboard_manager::ClipboardExt;
    if let Err(e) = app.clipboard().write_text(text) {
        tracing::warn!("cannot copy to the clipboard: {e}");
    }
}

/// Changes the OS entry, then saves `start_at_login` so the next start
/// keeps the choice (see `sync_autostart` in lib.rs).
fn toggle_autostart<R: Runtime>(app: &AppHandle<R>, shell: &Shell) {
    use tauri_plugin_autostart::ManagerExt;
    if shell.lock().settings.is_locked("start_at_login") {
        tracing::warn!("start at login is managed by your IT");
        return;
    }
    let launcher = app.autolaunch();
    let enable = !launcher.is_enabled().unwrap_or(false);
    let result = if enable {
        launcher.enable()
    } else {
        launcher.disable()
    };
    if let Err(e) = result {
        tracing::warn!("cannot change start at login: {e}");
        return;
    }
    shell.lock().autostart = enable;
    if let Err(e) = shell.set_tray_key("start_at_login", enable) {
        tracing::warn!("cannot save start at login: {e}");
    }
}

/// Stops the hub (every app gets its close frame), removes the discovery
/// file, then exits.
pub fn quit<R: Runtime>(app: AppHandle<R>) {
    tauri::async_runtime::spawn(async move {
        let shell = app.state::<Shell>();
        let running = shell
            .running
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(running) = running {
            running.stop().await;
        }
        shell.remove_discovery();
        if let Some(w) = app.get_webview_window(crate::window::LABEL) {
            if w.is_visible().unwrap_or(false) {
                crate::window::remember(&w.as_ref().window());
            }
        }
        tracing::info!("quit");
        app.exit(0);
    });
}
