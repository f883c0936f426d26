//! Tray state, label and menu from events and snapshots, no display.

use super::*;
use serde_json::json;

fn app(name: &str, state: &'static str) -> SubscriberInfo {
    SubscriberInfo {
        topic: "t".into(),
        name: name.into(),
        endpoint_id: format!("{name}-endpoint"),
        events: vec!["Patient-open".into(), "Patient-close".into()],
        state,
        state_label: if state == "connected" {
            "Connected"
        } else {
            "Disconnected"
        },
        sync: if state == "connected" {
            "in-sync"
        } else {
            "unresponsive"
        },
        sync_label: if state == "connected" {
            "In sync"
        } else {
            "Not connected"
        },
    }
}

/// A connected app in sync state `sync` (the hub's words as label).
fn syncing(name: &str, sync: &'static str, label: &'static str) -> SubscriberInfo {
    SubscriberInfo {
        sync,
        sync_label: label,
        ..app(name, "connected")
    }
}

fn patient_context() -> Value {
    json!({"context.type": "Patient", "context": [{"key": "patient", "resource":
        {"resourceType": "Patient", "name": [{"family": "Doe", "given": ["John"]}], "identifier": [{"value": "123"}]}}]})
}

fn running(subscribers: Vec<SubscriberInfo>) -> Snapshot {
    Snapshot {
        subscribers,
        notifications: true,
        ..Snapshot::default()
    }
}

fn sync_error(app: &str) -> HubEvent {
    HubEvent::SyncError {
        topic: "t".into(),
        subscriber: app.into(),
        event: "Patient-open".into(),
        reason: "ack 500".into(),
    }
}

fn labels(entries: &[Entry]) -> Vec<String> {
    entries
        .iter()
        .map(|e| match e {
            Entry::Item { text, .. }
            | Entry::Check { text, .. }
            | Entry::Submenu { text, .. }
            | Entry::AppAction { text, .. } => text.clone(),
            Entry::Separator => "---".into(),
        })
        .collect()
}

fn item<'a>(entries: &'a [Entry], id: &str) -> &'a Entry {
    entries
        .iter()
        .find(|e| matches!(e, Entry::Item { id: Some(i), .. } | Entry::Check { id: i, .. } if *i == id))
        .unwrap_or_else(|| panic!("no item {id}"))
}

#[test]
fn idle_with_no_apps_and_no_context() {
    let v = view(&Tracker::default(), &running(vec![]), Instant::now());
    assert_eq!(v.state, TrayState::Idle);
    assert_eq!(v.label, "no context · 0 apps");
    assert_eq!(labels(&v.menu)[0], "No context");
    assert!(matches!(
        item(&v.menu, ids::CLOSE_ALL),
        Entry::Item { enabled: false, .. }
    ));
}

#[test]
fn linked_shows_patient_and_app_count() {
    let mut snap = running(vec![app("PACS", "connected"), app("RIS", "connected")]);
    snap.context = patient_context();
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(v.state, TrayState::Linked);
    assert_eq!(v.label, "DOE, John · MRN 123 · 2 apps");
    // An app that is gone is the worst state: the label and icon say so.
    snap.subscribers.push(app("Old", "disconnected"));
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(v.state, TrayState::Attention);
    assert_eq!(v.label, "DOE, John · MRN 123 · 2 apps · 1 unresponsive");
    assert!(v.tooltip.contains("DOE, John"));
    let l = labels(&v.menu);
    assert_eq!(l[0], "Context: DOE, John · MRN 123");
    assert_eq!(l[1], "Connected apps (2)");
    let Entry::Submenu { items, .. } = &v.menu[1] else {
        panic!("apps submenu")
    };
    assert_eq!(
        labels(items),
        // The hub's order (Hub::subscribers sorts by name); each app's
        // sync state in words, red ones marked.
        ["PACS — In sync", "RIS — In sync", "⚠ Old — Not connected"]
    );
    let Entry::Submenu { items: events, .. } = &items[0] else {
        panic!("app submenu")
    };
    assert_eq!(
        labels(events),
        [
            "Connected",
            "Patient-open",
            "Patient-close",
            "---",
            "Break link"
        ]
    );
    assert_eq!(
        events.last(),
        Some(&Entry::AppAction {
            id: "break-link:PACS-endpoint".into(),
            text: "Break link".into()
        })
    );
    assert!(matches!(
        item(&v.menu, ids::CLOSE_ALL),
        Entry::Item { enabled: true, .. }
    ));
}

/// Issue 15: the apps submenu shows each app's sync state, and the icon
/// and label the worst one: red (refused, unresponsive) is attention,
/// amber (behind, paused, no-ack) names the state but keeps the icon.
#[test]
fn the_worst_sync_state_sets_icon_and_label() {
    let mut snap = running(vec![
        syncing("PACS", "in-sync", "In sync"),
        syncing("Dictation", "behind", "Waiting for its ACK"),
        syncing("Viewer", "no-ack", "Does not acknowledge"),
    ]);
    snap.context = patient_context();
    let now = Instant::now();
    let v = view(&Tracker::default(), &snap, now);
    assert_eq!(v.state, TrayState::Linked);
    assert_eq!(v.label, "DOE, John · MRN 123 · 3 apps · 1 behind");
    let Entry::Submenu { items, .. } = &v.menu[1] else {
        panic!("apps submenu")
    };
    assert_eq!(
        labels(items),
        [
            "PACS — In sync",
            "Dictation — Waiting for its ACK",
            "Viewer — Does not acknowledge"
        ]
    );

    snap.subscribers
        .push(syncing("Reporting", "paused", "Link broken by support"));
    snap.subscribers
        .push(syncing("AI", "refused", "Refused the last event"));
    let v = view(&Tracker::default(), &snap, now);
    assert_eq!(v.state, TrayState::Attention, "refused is red");
    assert_eq!(v.label, "DOE, John · MRN 123 · 5 apps · 1 refused");
    let Entry::Submenu { items, .. } = &v.menu[1] else {
        panic!("apps submenu")
    };
    let l = labels(items);
    assert!(
        l.contains(&"Reporting — Link broken by support".to_owned()),
        "{l:?}"
    );
    // Its submenu offers Rejoin instead of Break link.
    let reporting = items
        .iter()
        .find_map(|e| match e {
            Entry::Submenu { text, items } if text.starts_with("Reporting") => Some(items),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        reporting.last(),
        Some(&Entry::AppAction {
            id: "rejoin:Reporting-endpoint".into(),
            text: "Rejoin (send it the current context)".into()
        })
    );
    assert!(
        l.contains(&"⚠ AI — Refused the last event".to_owned()),
        "{l:?}"
    );

    // Pause sync: every app is paused, and the label says it once.
    let mut paused = running(vec![syncing("PACS", "paused", "Sync paused")]);
    paused.paused = true;
    let v = view(&Tracker::default(), &paused, now);
    assert_eq!(v.label, "no context · 1 app · paused");
    assert_eq!(v.state, TrayState::Linked);
}

#[test]
fn close_all_asks_for_a_confirmation_and_logs_can_be_opened() {
    let mut snap = running(vec![app("PACS", "connected")]);
    snap.context = patient_context();
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(
        item(&v.menu, ids::CLOSE_ALL),
        &Entry::Item {
            id: Some(ids::CLOSE_ALL),
            text: "Close all contexts…".into(),
            enabled: true
        }
    );
    assert!(matches!(
        item(&v.menu, ids::OPEN_LOGS),
        Entry::Item { enabled: false, .. }
    ));
    snap.close_all_armed = true;
    snap.logs = Some("/home/u/.local/state/lockstep/logs".into());
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(
        item(&v.menu, ids::CONFIRM_CLOSE_ALL),
        &Entry::Item {
            id: Some(ids::CONFIRM_CLOSE_ALL),
            text: "Confirm: close all contexts".into(),
            enabled: true
        }
    );
    assert!(!v.menu.iter().any(|e| matches!(
        e,
        Entry::Item {
            id: Some(ids::CLOSE_ALL),
            ..
        }
    )));
    assert!(matches!(
        item(&v.menu, ids::OPEN_LOGS),
        Entry::Item { enabled: true, .. }
    ));
}

#[test]
fn link_broken_is_not_trouble_and_an_ended_topic_is_not_shown() {
    let now = Instant::now();
    let mut tracker = Tracker::default();
    tracker.observe(
        &HubEvent::LinkBroken {
            topic: "t".into(),
            subscriber: "Reporting".into(),
        },
        now,
    );
    tracker.observe(
        &HubEvent::Rejoined {
            topic: "t".into(),
            subscriber: "Reporting".into(),
        },
        now,
    );
    assert_eq!(tracker.trouble(now), None, "support's own action");
    tracker.observe(
        &HubEvent::Published {
            topic: "other".into(),
            event: "Patient-open".into(),
        },
        now,
    );
    assert_eq!(tracker.shown_topic("session", |_| true), "session");
    assert_eq!(tracker.shown_topic("session", |t| t == "other"), "other");
    tracker.observe(
        &HubEvent::TopicEnded {
            topic: "other".into(),
        },
        now,
    );
    assert_eq!(tracker.shown_topic("session", |t| t == "other"), "session");
}

#[test]
fn sync_error_means_attention_for_a_while() {
    let t0 = Instant::now();
    let mut tracker = Tracker::default();
    tracker.observe(&sync_error("RIS"), t0);
    let snap = running(vec![app("PACS", "connected")]);
    let v = view(&tracker, &snap, t0 + Duration::from_secs(10));
    assert_eq!(v.state, TrayState::Attention);
    assert!(
        v.tooltip.contains("RIS failed to follow Patient-open"),
        "{}",
        v.tooltip
    );
    let later = view(&tracker, &snap, t0 + ATTENTION_FOR + Duration::from_secs(1));
    assert_eq!(later.state, TrayState::Linked);
}

#[test]
fn unclean_drop_is_attention_clean_close_is_not() {
    let now = Instant::now();
    let mut tracker = Tracker::default();
    let gone = |clean| HubEvent::Disconnected {
        topic: "t".into(),
        subscriber: "PACS".into(),
        clean,
    };
    tracker.observe(&gone(true), now);
    assert_eq!(view(&tracker, &running(vec![]), now).state, TrayState::Idle);
    tracker.observe(&gone(false), now);
    assert_eq!(
        view(&tracker, &running(vec![]), now).state,
        TrayState::Attention
    );
    tracker.acknowledge();
    assert_eq!(view(&tracker, &running(vec![]), now).state, TrayState::Idle);
}

#[test]
fn stopped_wins_and_disables_hub_actions() {
    let mut tracker = Tracker::default();
    tracker.observe(&sync_error("RIS"), Instant::now());
    let snap = Snapshot {
        stopped: Some("port 4747 is in use".into()),
        ..Snapshot::default()
    };
    let v = view(&tracker, &snap, Instant::now());
    assert_eq!(v.state, TrayState::Stopped);
    assert_eq!(v.label, "Lockstep stopped");
    assert_eq!(labels(&v.menu)[0], "Hub stopped: port 4747 is in use");
    for id in [ids::OPEN, ids::OPEN_BROWSER, ids::COPY_URL, ids::PAUSE] {
        assert!(
            matches!(item(&v.menu, id), Entry::Item { enabled: false, .. }),
            "{id}"
        );
    }
    assert!(matches!(
        item(&v.menu, ids::QUIT),
        Entry::Item { enabled: true, .. }
    ));
}

#[test]
fn paused_offers_resume_and_says_so() {
    let snap = Snapshot {
        paused: true,
        autostart: true,
        ..running(vec![])
    };
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert!(v.label.ends_with("· paused"), "{}", v.label);
    item(&v.menu, ids::RESUME);
    assert!(!v.menu.iter().any(|e| matches!(
        e,
        Entry::Item {
            id: Some(ids::PAUSE),
            ..
        }
    )));
    assert!(matches!(
        item(&v.menu, ids::AUTOSTART),
        Entry::Check { checked: true, .. }
    ));
    assert!(matches!(
        item(&v.menu, ids::NOTIFICATIONS),
        Entry::Check { checked: true, .. }
    ));
}

#[test]
fn shown_topic_follows_publishes_when_session_is_empty() {
    let mut tracker = Tracker::default();
    assert_eq!(tracker.shown_topic("session", |_| false), "session");
    tracker.observe(
        &HubEvent::Published {
            topic: "other".into(),
            event: "Patient-open".into(),
        },
        Instant::now(),
    );
    assert_eq!(tracker.shown_topic("session", |t| t == "other"), "other");
    assert_eq!(tracker.shown_topic("session", |_| true), "session");
}

#[test]
fn same_inputs_same_view() {
    // tray.rs skips redrawing when the view is unchanged.
    let snap = running(vec![app("PACS", "connected")]);
    let now = Instant::now();
    assert_eq!(
        view(&Tracker::default(), &snap, now),
        view(&Tracker::default(), &snap, now)
    );
}

#[test]
fn toggles_it_locked_are_disabled_and_say_managed() {
    let mut snap = running(vec![]);
    snap.autostart = true;
    let v = view(&Tracker::default(), &snap, Instant::now());
    for id in [ids::NOTIFICATIONS, ids::AUTOSTART] {
        assert!(
            matches!(item(&v.menu, id), Entry::Check { enabled: true, .. }),
            "{id} is changeable when IT leaves it to the user"
        );
    }
    snap.notifications_managed = true;
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(
        item(&v.menu, ids::NOTIFICATIONS),
        &Entry::Check {
            id: ids::NOTIFICATIONS,
            text: "Notifications (managed by IT)".into(),
            checked: true,
            enabled: false,
        }
    );
    assert!(matches!(
        item(&v.menu, ids::AUTOSTART),
        Entry::Check { enabled: true, .. }
    ));
    snap.autostart_managed = true;
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(
        item(&v.menu, ids::AUTOSTART),
        &Entry::Check {
            id: ids::AUTOSTART,
            text: "Start at login (managed by IT)".into(),
            checked: true,
            enabled: false,
        }
    );
}

fn open_app_submenu(entries: &[Entry]) -> Option<&Vec<Entry>> {
    entries.iter().find_map(|e| match e {
        Entry::Submenu { text, items } if text == "Open app" => Some(items),
        _ => None,
    })
}

/// Issue 16: "Open app" lists the browser apps that have a launch URL,
/// each item naming its client id, right after the dashboard items.
#[test]
fn open_app_lists_the_launchable_browser_apps() {
    let snap = Snapshot {
        launchable: vec![
            ("web-viewer".into(), "OHIF viewer".into()),
            ("ris-1".into(), "Web RIS".into()),
        ],
        ..running(vec![])
    };
    let v = view(&Tracker::default(), &snap, Instant::now());
    let items = open_app_submenu(&v.menu).expect("an Open app submenu");
    assert_eq!(
        items,
        &vec![
            Entry::AppAction {
                id: "open-app:web-viewer".into(),
                text: "OHIF viewer".into()
            },
            Entry::AppAction {
                id: "open-app:ris-1".into(),
                text: "Web RIS".into()
            },
        ]
    );
    let at = labels(&v.menu);
    let copy_topic = at.iter().position(|l| l == "Copy topic").unwrap();
    assert_eq!(at[copy_topic + 1], "Open app");
}

/// No launchable app, or no hub to launch against: no submenu at all.
#[test]
fn open_app_is_absent_without_launchable_apps_or_a_hub() {
    let v = view(&Tracker::default(), &running(vec![]), Instant::now());
    assert!(open_app_submenu(&v.menu).is_none());
    assert!(!labels(&v.menu).contains(&"Open app".to_owned()));
    let stopped = Snapshot {
        stopped: Some("port 4747 is in use".into()),
        launchable: vec![("web-viewer".into(), "OHIF viewer".into())],
        ..Snapshot::default()
    };
    let v = view(&Tracker::default(), &stopped, Instant::now());
    assert!(open_app_submenu(&v.menu).is_none());
}

/// The registry caps neither the number of apps nor their names: the
/// submenu shows at most MAX_LAUNCHABLE, says how many more, and cuts
/// long names.
#[test]
fn open_app_is_bounded() {
    let launchable: Vec<(String, String)> = (0..MAX_LAUNCHABLE + 5)
        .map(|i| (format!("app-{i}"), format!("App {i} {}", "x".repeat(200))))
        .collect();
    let snap = Snapshot {
        launchable,
        ..running(vec![])
    };
    let v = view(&Tracker::default(), &snap, Instant::now());
    let items = open_app_submenu(&v.menu).unwrap();
    assert_eq!(items.len(), MAX_LAUNCHABLE + 1);
    assert_eq!(items.last(), Some(&Entry::info("5 more in the dashboard")));
    match &items[0] {
        Entry::AppAction { id, text } => {
            assert_eq!(id, "open-app:app-0");
            assert_eq!(text.chars().count(), MAX_APP_NAME);
            assert!(
                text.starts_with("App 0 xx") && text.ends_with('…'),
                "{text}"
            );
        }
        other => panic!("an app item, not {other:?}"),
    }
}
