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
use crate::settings::{Paths, Settings};

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
    settings: Settings,
    autostart: bool,
    discovery: Option<PathBuf>,
}

impl Shell {
    pub fn new(
        started: Result<Running, String>,
        settings: Settings,
        paths: Option<Paths>,
        autostart: bool,
    ) -> Shell {
        let (hub, hub_url, stopped, running) = match started {
            Ok(r) => (Some(r.hub.clone()), Some(r.hub_url()), None, Some(r)),
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
                autostart,
                discovery: None,
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

    pub fn set_discovery(&self, path: PathBuf) {
        self.lock().discovery = Some(path);
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
        let (subscribers, paused, context) = match &self.hub {
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
                )
            }
            None => Default::default(),
        };
        let state = self.lock();
        let snap = Snapshot {
            stopped: self.stopped.clone(),
            paused,
            subscribers,
            context,
            notifications: state.settings.notifications,
            autostart: state.autostart,
        };
        model::view(&state.tracker, &snap, Instant::now())
    }

    /// Records an event; the notification to show, if any.
    fn observe(&self, event: &HubEvent) -> Option<notify::Notice> {
        let now = Instant::now();
        let mut state = self.lock();
        state.tracker.observe(event, now);
        let notice = notify::notice_for(event)?;
        if !state.settings.notifications {
            return None;
        }
        state.limiter.admit(notice, now)
    }

    fn save_settings(&self) {
        let settings = self.lock().settings.clone();
        if let Some(p) = &self.paths {
            if let Err(e) = settings.save(&p.config.join("settings.json")) {
                tracing::warn!("cannot save settings: {e}");
            }
        }
    }
}

/// Follows the hub until it stops: notifications, and a tray redraw after
/// each burst of events, each nudge, and every [`TICK`].
pub async fn follow<R: Runtime>(app: AppHandle<R>) {
    let shell = app.state::<Shell>();
    let mut events = shell.hub.as_ref().map(Hub::events);
    let mut tick = tokio::time::interval(TICK);
    let mut shown: Option<View> = None;
    loop {
        let mut batch = Vec::new();
        tokio::select! {
            r = async { match events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => match r {
                Ok(e) => batch.push(e),
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => events = None,
            },
            _ = shell.nudge.notified() => {}
            _ = tick.tick() => {}
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
        if shown.as_ref() != Some(&view) {
            crate::tray::apply(&app, &view, shown.as_ref());
            shown = Some(view);
        }
    }
}

/// What a tray menu item does.
pub fn on_menu<R: Runtime>(app: &AppHandle<R>, id: &str) {
    let shell = app.state::<Shell>();
    let hub = shell.hub.clone();
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
        (ids::PAUSE, Some(hub)) => hub.pause(),
        (ids::RESUME, Some(hub)) => hub.resume(),
        (ids::CLOSE_ALL, Some(hub)) => close_all(&hub),
        (ids::NOTIFICATIONS, _) => {
            {
                let mut state = shell.lock();
                state.settings.notifications = !state.settings.notifications;
            }
            shell.save_settings();
        }
        (ids::AUTOSTART, _) => toggle_autostart(app, &shell),
        (ids::QUIT, _) => quit(app.clone()),
        (other, _) => tracing::debug!(id = other, "menu item without action"),
    }
    shell.nudge();
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
}

fn copy<R: Runtime>(app: &AppHandle<R>, text: String) {
    use tauri_plugin_clipboard_manager::ClipboardExt;
    if let Err(e) = app.clipboard().write_text(text) {
        tracing::warn!("cannot copy to the clipboard: {e}");
    }
}

fn toggle_autostart<R: Runtime>(app: &AppHandle<R>, shell: &Shell) {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    let enable = !launcher.is_enabled().unwrap_or(false);
    let result = if enable {
        launcher.enable()
    } else {
        launcher.disable()
    };
    match result {
        Ok(()) => shell.lock().autostart = enable,
        Err(e) => tracing::warn!("cannot change start at login: {e}"),
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
        tracing::info!("quit");
        app.exit(0);
    });
}
