//! Desktop notifications for what a clinician should know: an app
//! connected, disconnected, or failed to follow (SyncError). Rate-limited
//! so that a flapping app does not flood the screen, and switchable from
//! the tray menu.
//!
//! Shown with tauri-plugin-notification (notify-rust over D-Bus on Linux,
//! the OS toast APIs on Windows and macOS) rather than notify-rust
//! directly: one call for every platform, tied to the app's identifier so
//! Windows shows the right name and icon.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use lockstep_hub::HubEvent;

/// One app's presence (connect/disconnect) or sync errors: at most one
/// notification of each per this long.
pub const PER_APP: Duration = Duration::from_secs(60);
/// And at most [`BURST`] notifications over all apps in [`WINDOW`].
pub const BURST: usize = 5;
pub const WINDOW: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    /// What the rate limit counts: `presence:APP` or `sync:APP`.
    pub key: String,
    pub title: String,
    pub body: String,
}

/// The notification an event deserves, if any. App and event names only,
/// never patient data.
pub fn notice_for(event: &HubEvent) -> Option<Notice> {
    let (key, title, body) = match event {
        HubEvent::Connected { subscriber, .. } => (
            format!("presence:{subscriber}"),
            format!("{subscriber} connected"),
            "It now follows the patient context.".to_owned(),
        ),
        HubEvent::Disconnected {
            subscriber, clean, ..
        } => (
            format!("presence:{subscriber}"),
            format!("{subscriber} disconnected"),
            if *clean {
                "It closed its connection.".to_owned()
            } else {
                "Its connection dropped; it no longer follows the context until it reconnects."
                    .to_owned()
            },
        ),
        HubEvent::SyncError {
            subscriber,
            event,
            reason,
            ..
        } => (
            format!("sync:{subscriber}"),
            format!("{subscriber} failed to follow"),
            format!("{event}: {reason}. Check that it shows the right patient."),
        ),
        _ => return None,
    };
    Some(Notice { key, title, body })
}

/// Counts what was shown and decides what may be shown next.
#[derive(Debug, Default)]
pub struct RateLimiter {
    last_by_key: HashMap<String, Instant>,
    shown: VecDeque<Instant>,
    held_back: usize,
}

impl RateLimiter {
    /// `Some(notice)` to show now (its body mentions how many were held
    /// back since the last one), `None` to drop it.
    pub fn admit(&mut self, mut notice: Notice, now: Instant) -> Option<Notice> {
        while self
            .shown
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            self.shown.pop_front();
        }
        self.last_by_key
            .retain(|_, t| now.saturating_duration_since(*t) < PER_APP);
        if self.last_by_key.contains_key(&notice.key) || self.shown.len() >= BURST {
            self.held_back += 1;
            return None;
        }
        self.last_by_key.insert(notice.key.clone(), now);
        self.shown.push_back(now);
        match std::mem::take(&mut self.held_back) {
            0 => {}
            1 => notice
                .body
                .push_str("\n(1 more notification was held back.)"),
            n => notice
                .body
                .push_str(&format!("\n({n} more notifications were held back.)")),
        }
        Some(notice)
    }
}

/// Shows it; a desktop without a notification service is logged, not fatal.
pub fn show<R: tauri::Runtime>(app: &tauri::AppHandle<R>, notice: &Notice) {
    use tauri_plugin_notification::NotificationExt;
    if let Err(e) = app
        .notification()
        .builder()
        .title(&notice.title)
        .body(&notice.body)
        .show()
    {
        tracing::warn!("cannot show a notification: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connected(app: &str) -> HubEvent {
        HubEvent::Connected {
            topic: "t".into(),
            subscriber: app.into(),
        }
    }
    fn dropped(app: &str) -> HubEvent {
        HubEvent::Disconnected {
            topic: "t".into(),
            subscriber: app.into(),
            clean: false,
        }
    }

    #[test]
    fn notices_name_app_and_event() {
        let n = notice_for(&HubEvent::SyncError {
            topic: "t".into(),
            subscriber: "RIS".into(),
            event: "Patient-open".into(),
            reason: "ACK status 500".into(),
        })
        .unwrap();
        assert_eq!(n.title, "RIS failed to follow");
        assert!(
            n.body.starts_with("Patient-open: ACK status 500"),
            "{}",
            n.body
        );
        assert_eq!(
            notice_for(&connected("PACS")).unwrap().title,
            "PACS connected"
        );
        assert_eq!(
            notice_for(&dropped("PACS")).unwrap().title,
            "PACS disconnected"
        );
        let quiet = [
            HubEvent::Paused,
            HubEvent::Resumed,
            HubEvent::Published {
                topic: "t".into(),
                event: "Patient-open".into(),
            },
            HubEvent::Left {
                topic: "t".into(),
                subscriber: "PACS".into(),
                reason: "unsubscribed".into(),
            },
        ];
        for e in quiet {
            assert_eq!(notice_for(&e), None, "{e:?}");
        }
    }

    #[test]
    fn a_flapping_app_gets_one_presence_notice_per_minute() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::default();
        let mut shown = 0;
        // Connects and drops every second for two minutes.
        for s in 0..120 {
            let e = if s % 2 == 0 {
                connected("PACS")
            } else {
                dropped("PACS")
            };
            let at = t0 + Duration::from_secs(s);
            shown += usize::from(limiter.admit(notice_for(&e).unwrap(), at).is_some());
        }
        assert_eq!(shown, 2);
        // The next one says how many were skipped since the last shown (at 60 s).
        let next = limiter
            .admit(
                notice_for(&connected("PACS")).unwrap(),
                t0 + Duration::from_secs(200),
            )
            .unwrap();
        assert!(
            next.body
                .contains("(59 more notifications were held back.)"),
            "{}",
            next.body
        );
    }

    #[test]
    fn sync_errors_are_not_hidden_by_presence_notices() {
        let now = Instant::now();
        let mut limiter = RateLimiter::default();
        assert!(limiter
            .admit(notice_for(&dropped("RIS")).unwrap(), now)
            .is_some());
        let err = notice_for(&HubEvent::SyncError {
            topic: "t".into(),
            subscriber: "RIS".into(),
            event: "Patient-open".into(),
            reason: "gone".into(),
        })
        .unwrap();
        assert!(limiter.admit(err, now).is_some());
    }

    #[test]
    fn many_apps_are_capped_per_window() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::default();
        let shown = (0..20)
            .filter(|i| {
                let n = notice_for(&connected(&format!("app{i}"))).unwrap();
                limiter.admit(n, t0).is_some()
            })
            .count();
        assert_eq!(shown, BURST);
        let later = notice_for(&connected("late")).unwrap();
        assert!(limiter.admit(later, t0 + WINDOW).is_some());
    }
}
