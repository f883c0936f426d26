//! Desktop notifications for what a clinician should know: an app
//! connected, disconnected, failed to follow (SyncError), or had its link
//! broken or rejoined by support. Rate-limited so that a flapping app does
//! not flood the screen, and switchable from the tray menu. A SyncError is
//! never held back by the global cap (issue 15: it is the notice that
//! matters for safety); it is still one per app per [`PER_APP`], which
//! bounds it by the number of apps (the Now view lists each one until
//! acknowledged).
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
    /// What the rate limit counts: `presence:APP`, `sync:APP`, `link:APP`, `rejoin:APP`.
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
        HubEvent::LinkBroken { subscriber, .. } => (
            format!("link:{subscriber}"),
            format!("{subscriber}: link broken"),
            "Support stopped its context changes: it may show another patient until it is rejoined."
                .to_owned(),
        ),
        HubEvent::Rejoined { subscriber, .. } => (
            // Its own key: a rejoin soon after the break is still told.
            format!("rejoin:{subscriber}"),
            format!("{subscriber} rejoined"),
            "It was sent the current context and follows it again.".to_owned(),
        ),
        HubEvent::ConsentRequested { app } => (
            format!("consent:{app}"),
            format!("{app} asks to join the session"),
            "Approve or deny it in the browser window it opened.".to_owned(),
        ),
        HubEvent::Hibernated { .. } => (
            "hibernate".to_owned(),
            "Session suspended".to_owned(),
            "An app announced that the session is hibernating (UserHibernate).".to_owned(),
        ),
        _ => return None,
    };
    Some(Notice { key, title, body })
}

impl Notice {
    /// A SyncError: an app did not follow the context.
    pub fn is_sync_error(&self) -> bool {
        self.key.starts_with("sync:")
    }
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
        let capped = self.shown.len() >= BURST && !notice.is_sync_error();
        if self.last_by_key.contains_key(&notice.key) || capped {
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

    fn sync_error(app: &str) -> HubEvent {
        HubEvent::SyncError {
            topic: "t".into(),
            subscriber: app.into(),
            event: "Patient-open".into(),
            reason: "ACK status 409".into(),
        }
    }

    /// Issue 15: the global cap is full of presence notices, and every
    /// app's SyncError is still shown (one per app per minute).
    #[test]
    fn sync_errors_are_never_dropped_by_the_cap() {
        let t0 = Instant::now();
        let mut limiter = RateLimiter::default();
        for i in 0..BURST {
            let n = notice_for(&connected(&format!("app{i}"))).unwrap();
            assert!(limiter.admit(n, t0).is_some());
        }
        assert!(limiter
            .admit(notice_for(&connected("late")).unwrap(), t0)
            .is_none());
        for i in 0..20 {
            let n = notice_for(&sync_error(&format!("app{i}"))).unwrap();
            let shown = limiter.admit(n, t0).expect("a SyncError is never capped");
            assert_eq!(shown.title, format!("app{i} failed to follow"));
        }
        // Presence notices stay capped for the rest of the window.
        assert!(limiter
            .admit(notice_for(&connected("later")).unwrap(), t0)
            .is_none());
    }

    #[test]
    fn link_broken_and_rejoined_are_told() {
        let broken = notice_for(&HubEvent::LinkBroken {
            topic: "t".into(),
            subscriber: "Reporting".into(),
        })
        .unwrap();
        assert_eq!(broken.title, "Reporting: link broken");
        assert!(!broken.is_sync_error());
        let rejoined = notice_for(&HubEvent::Rejoined {
            topic: "t".into(),
            subscriber: "Reporting".into(),
        })
        .unwrap();
        assert_eq!(rejoined.title, "Reporting rejoined");
        assert_eq!(
            notice_for(&HubEvent::TopicEnded { topic: "t".into() }),
            None
        );
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
