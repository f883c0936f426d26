//! What the tray shows, as a pure function of the hub's events and a
//! snapshot of its subscriptions: the icon state, the label (tooltip on
//! Windows/macOS, title on Linux) and the menu. No Tauri and no I/O, so it
//! is unit-tested without a display; `tray.rs` turns a [`View`] into a tray.

use std::time::{Duration, Instant};

use lockstep_hub::{context_summary, HubEvent, SubscriberInfo};
use serde_json::Value;

/// How long a failure keeps the icon in the attention state.
pub const ATTENTION_FOR: Duration = Duration::from_secs(5 * 60);

/// How long "Confirm close all contexts" stays in the menu after the
/// first click. The dialog plugin is not a dependency (and a modal dialog
/// from a tray menu behaves differently on each desktop): a second,
/// explicit menu item is the confirmation, as the dashboard's button asks
/// twice.
pub const CONFIRM_FOR: Duration = Duration::from_secs(15);

/// The most apps "Open app" lists, and the longest name it shows: the
/// registry does not cap either, and a menu must stay usable.
pub const MAX_LAUNCHABLE: usize = 20;
pub const MAX_APP_NAME: usize = 60;

/// Menu item ids, matched in `tray.rs`.
pub mod ids {
    pub const OPEN: &str = "open";
    pub const OPEN_BROWSER: &str = "open-browser";
    pub const COPY_URL: &str = "copy-url";
    pub const COPY_TOPIC: &str = "copy-topic";
    pub const PAUSE: &str = "pause";
    pub const RESUME: &str = "resume";
    pub const CLOSE_ALL: &str = "close-all";
    /// The second click of "Close all contexts" (see [`super::CONFIRM_FOR`]).
    pub const CONFIRM_CLOSE_ALL: &str = "confirm-close-all";
    pub const OPEN_LOGS: &str = "open-logs";
    /// Prefixes of the per-app items: `break-link:<endpoint id>`.
    pub const BREAK_LINK: &str = "break-link:";
    pub const REJOIN: &str = "rejoin:";
    /// `open-app:<client id>`: an EHR launch of a browser app (issue 16).
    pub const OPEN_APP: &str = "open-app:";
    pub const NOTIFICATIONS: &str = "notifications";
    pub const AUTOSTART: &str = "autostart";
    pub const QUIT: &str = "quit";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrayState {
    /// Apps connected, nothing wrong lately.
    Linked,
    /// The hub runs, no app is connected.
    Idle,
    /// An app failed to follow (SyncError) or dropped, within [`ATTENTION_FOR`],
    /// or an app is `refused` or `unresponsive` now.
    Attention,
    /// The hub is not running (e.g. its port was taken).
    Stopped,
}

impl TrayState {
    /// The icon file in `icons/` for this state.
    pub fn icon(self) -> &'static str {
        match self {
            TrayState::Linked => "linked",
            TrayState::Idle => "idle",
            TrayState::Attention => "attention",
            TrayState::Stopped => "stopped",
        }
    }
}

/// What the events told us that a snapshot does not: recent trouble and
/// the topic last published to.
#[derive(Debug, Default)]
pub struct Tracker {
    trouble: Option<(Instant, String)>,
    last_topic: Option<String>,
}

impl Tracker {
    pub fn observe(&mut self, event: &HubEvent, now: Instant) {
        match event {
            HubEvent::SyncError {
                subscriber, event, ..
            } => {
                self.trouble = Some((now, format!("{subscriber} failed to follow {event}")));
            }
            HubEvent::Disconnected {
                subscriber,
                clean: false,
                ..
            } => {
                self.trouble = Some((now, format!("{subscriber} dropped its connection")));
            }
            HubEvent::Published { topic, .. } => self.last_topic = Some(topic.clone()),
            // Its contexts went with it: show the session again.
            HubEvent::TopicEnded { topic } if self.last_topic.as_ref() == Some(topic) => {
                self.last_topic = None
            }
            _ => {}
        }
    }

    /// The last failure, if it is recent enough to show.
    pub fn trouble(&self, now: Instant) -> Option<&str> {
        self.trouble
            .as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < ATTENTION_FOR)
            .map(|(_, what)| what.as_str())
    }

    /// The user looked (opened the dashboard): back to the calm icon.
    pub fn acknowledge(&mut self) {
        self.trouble = None;
    }

    /// The topic whose context the tray shows: the session topic unless it
    /// is empty and another topic was published to.
    pub fn shown_topic<'a>(
        &'a self,
        session: &'a str,
        has_context: impl Fn(&str) -> bool,
    ) -> &'a str {
        match &self.last_topic {
            Some(t) if !has_context(session) && has_context(t) => t,
            _ => session,
        }
    }
}

/// The hub as the tray sees it at one moment.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// `None` while running; why it stopped otherwise.
    pub stopped: Option<String>,
    pub paused: bool,
    pub subscribers: Vec<SubscriberInfo>,
    /// Get Current Context of the shown topic.
    pub context: Value,
    pub notifications: bool,
    pub autostart: bool,
    /// IT locked `notifications` in the system file: shown, not changeable.
    pub notifications_managed: bool,
    /// IT locked `start_at_login`.
    pub autostart_managed: bool,
    /// "Close all contexts" was clicked: the menu offers the confirmation.
    pub close_all_armed: bool,
    /// Where the log files are (the "Open logs folder" item), if known.
    pub logs: Option<String>,
    /// Browser apps with a launch URL, as `(client id, name)`: the "Open
    /// app" submenu.
    pub launchable: Vec<(String, String)>,
}

/// One menu entry; `tray.rs` builds the Tauri menu from these.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// An item; `id: None` for information lines (always disabled).
    Item {
        id: Option<&'static str>,
        text: String,
        enabled: bool,
    },
    Check {
        id: &'static str,
        text: String,
        checked: bool,
        /// `false` for a setting IT manages.
        enabled: bool,
    },
    Submenu {
        text: String,
        items: Vec<Entry>,
    },
    /// An action on one app: its id names the app (`ids::BREAK_LINK` +
    /// endpoint id, `ids::OPEN_APP` + client id), so it is built at run
    /// time.
    AppAction {
        id: String,
        text: String,
    },
    Separator,
}

impl Entry {
    fn action(id: &'static str, text: &str, enabled: bool) -> Entry {
        Entry::Item {
            id: Some(id),
            text: text.to_owned(),
            enabled,
        }
    }
    /// A toggle for a setting; one IT locked is disabled and says so.
    fn toggle(id: &'static str, text: &str, checked: bool, managed: bool) -> Entry {
        Entry::Check {
            id,
            text: if managed {
                format!("{text} (managed by IT)")
            } else {
                text.to_owned()
            },
            checked,
            enabled: !managed,
        }
    }
    fn info(text: impl Into<String>) -> Entry {
        Entry::Item {
            id: None,
            text: text.into(),
            enabled: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    pub state: TrayState,
    /// Short: the panel label on Linux. "DOE, John · MRN 1 · 2 apps".
    pub label: String,
    /// Longer: the hover text where the platform has one.
    pub tooltip: String,
    pub menu: Vec<Entry>,
}

/// How bad a sync state is: the tray shows the worst one. Red states
/// (the app will not catch up by itself) above amber ones above in sync.
pub fn severity(sync: &str) -> u8 {
    match sync {
        "in-sync" => 0,
        "no-ack" => 1,
        "paused" => 2,
        "behind" => 3,
        "refused" => 5,
        "unresponsive" => 4,
        _ => 3,
    }
}

/// True for the red states: the app needs someone to look.
pub fn is_red(sync: &str) -> bool {
    severity(sync) >= 4
}

/// The worst sync state among the apps and how many are in it, unless
/// every app is in sync.
fn worst(subscribers: &[SubscriberInfo]) -> Option<(&'static str, usize)> {
    let worst = subscribers
        .iter()
        .map(|s| s.sync)
        .max_by_key(|s| severity(s))?;
    if severity(worst) == 0 {
        return None;
    }
    let n = subscribers.iter().filter(|s| s.sync == worst).count();
    Some((worst, n))
}

pub fn view(tracker: &Tracker, snap: &Snapshot, now: Instant) -> View {
    let connected = snap.subscribers.iter().filter(|s| s.connected()).count();
    let trouble = tracker.trouble(now);
    let worst = worst(&snap.subscribers);
    let red = worst.is_some_and(|(s, _)| is_red(s));
    let state = match (&snap.stopped, trouble.is_some() || red, connected) {
        (Some(_), _, _) => TrayState::Stopped,
        (None, true, _) => TrayState::Attention,
        (None, false, 0) => TrayState::Idle,
        (None, false, _) => TrayState::Linked,
    };
    let context = context_summary(&snap.context);
    let apps = match connected {
        1 => "1 app".to_owned(),
        n => format!("{n} apps"),
    };
    let label = match &snap.stopped {
        Some(_) => "Lockstep stopped".to_owned(),
        None => {
            // The worst app state in words: "· 1 refused", "· 2 behind".
            let worst = match worst {
                Some((state, n)) if !(snap.paused && state == "paused") => {
                    format!(" · {n} {state}")
                }
                _ => String::new(),
            };
            let paused = if snap.paused { " · paused" } else { "" };
            format!(
                "{} · {apps}{worst}{paused}",
                context.as_deref().unwrap_or("no context")
            )
        }
    };
    let mut tooltip = format!("Lockstep\n{label}");
    if let Some(why) = &snap.stopped {
        tooltip = format!("Lockstep stopped: {why}");
    } else if let Some(t) = trouble {
        tooltip.push_str(&format!("\n{t}"));
    }
    View {
        state,
        label,
        tooltip,
        menu: menu(snap, context.as_deref(), connected),
    }
}

fn menu(snap: &Snapshot, context: Option<&str>, connected: usize) -> Vec<Entry> {
    let running = snap.stopped.is_none();
    let headline = match (&snap.stopped, context) {
        (Some(why), _) => format!("Hub stopped: {why}"),
        (None, Some(c)) => format!("Context: {c}"),
        (None, None) => "No context".to_owned(),
    };
    let apps: Vec<Entry> = if snap.subscribers.is_empty() {
        vec![Entry::info("No apps")]
    } else {
        snap.subscribers
            .iter()
            .map(|s| app_entry(s, snap.paused))
            .collect()
    };
    let (sync_id, sync_text) = if snap.paused {
        (ids::RESUME, "Resume sync")
    } else {
        (ids::PAUSE, "Pause sync")
    };
    let close_all = if snap.close_all_armed {
        Entry::action(
            ids::CONFIRM_CLOSE_ALL,
            "Confirm: close all contexts",
            running && context.is_some(),
        )
    } else {
        Entry::action(
            ids::CLOSE_ALL,
            "Close all contexts…",
            running && context.is_some(),
        )
    };
    let mut entries = vec![
        Entry::info(headline),
        Entry::Submenu {
            text: format!("Connected apps ({connected})"),
            items: apps,
        },
        Entry::Separator,
        Entry::action(ids::OPEN, "Open dashboard", running),
        Entry::action(ids::OPEN_BROWSER, "Open dashboard in browser", running),
        Entry::action(ids::COPY_URL, "Copy hub URL", running),
        Entry::action(ids::COPY_TOPIC, "Copy topic", running),
    ];
    // Only when there is something to launch: an empty submenu is noise.
    if running && !snap.launchable.is_empty() {
        let mut items: Vec<Entry> = snap
            .launchable
            .iter()
            .take(MAX_LAUNCHABLE)
            .map(|(client_id, name)| Entry::AppAction {
                id: format!("{}{client_id}", ids::OPEN_APP),
                text: shortened(name, MAX_APP_NAME),
            })
            .collect();
        let more = snap.launchable.len().saturating_sub(MAX_LAUNCHABLE);
        if more > 0 {
            items.push(Entry::info(format!("{more} more in the dashboard")));
        }
        entries.push(Entry::Submenu {
            text: "Open app".to_owned(),
            items,
        });
    }
    entries.extend([
        Entry::Separator,
        Entry::action(sync_id, sync_text, running),
        close_all,
        Entry::Separator,
        Entry::toggle(
            ids::NOTIFICATIONS,
            "Notifications",
            snap.notifications,
            snap.notifications_managed,
        ),
        Entry::toggle(
            ids::AUTOSTART,
            "Start at login",
            snap.autostart,
            snap.autostart_managed,
        ),
        Entry::Separator,
        Entry::action(ids::OPEN_LOGS, "Open logs folder", snap.logs.is_some()),
        Entry::action(ids::QUIT, "Quit", true),
    ]);
    entries
}

/// `text` cut to `max` characters, with "…" when cut.
fn shortened(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

/// "⚠ PowerScribe — Refused the last event" (its sync state, the hub's
/// words; a mark for the red states, so it is not colour or order alone),
/// opening onto its connection, the events it follows, and Break link or
/// Rejoin (reversible, so no confirmation: Rejoin sends it the current
/// context).
fn app_entry(s: &SubscriberInfo, hub_paused: bool) -> Entry {
    let mut items = vec![Entry::info(s.state_label)];
    items.extend(s.events.iter().map(|e| Entry::info(e.as_str())));
    if s.events.is_empty() {
        items.push(Entry::info("no events"));
    }
    items.push(Entry::Separator);
    // Paused while the hub is not: support broke this app's link.
    let broken = s.sync == "paused" && !hub_paused;
    items.push(if broken {
        Entry::AppAction {
            id: format!("{}{}", ids::REJOIN, s.endpoint_id),
            text: "Rejoin (send it the current context)".to_owned(),
        }
    } else {
        Entry::AppAction {
            id: format!("{}{}", ids::BREAK_LINK, s.endpoint_id),
            text: "Break link".to_owned(),
        }
    });
    let mark = if is_red(s.sync) { "⚠ " } else { "" };
    Entry::Submenu {
        text: format!("{mark}{} — {}", s.name, s.sync_label),
        items,
    }
}

#[cfg(test)]
#[path = "model_tests.rs"]
mod tests;
