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
            Entry::Item { text, .. } | Entry::Check { text, .. } | Entry::Submenu { text, .. } => {
                text.clone()
            }
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
    let mut snap = running(vec![
        app("PACS", "connected"),
        app("RIS", "connected"),
        app("Old", "disconnected"),
    ]);
    snap.context = patient_context();
    let v = view(&Tracker::default(), &snap, Instant::now());
    assert_eq!(v.state, TrayState::Linked);
    assert_eq!(v.label, "DOE, John · MRN 123 · 2 apps");
    assert!(v.tooltip.contains("DOE, John"));
    let l = labels(&v.menu);
    assert_eq!(l[0], "Context: DOE, John · MRN 123");
    assert_eq!(l[1], "Connected apps (2)");
    let Entry::Submenu { items, .. } = &v.menu[1] else {
        panic!("apps submenu")
    };
    assert_eq!(
        labels(items),
        // The hub's order (Hub::subscribers sorts by name).
        ["PACS — Connected", "RIS — Connected", "Old — Disconnected"]
    );
    let Entry::Submenu { items: events, .. } = &items[0] else {
        panic!("app submenu")
    };
    assert_eq!(labels(events), ["Patient-open", "Patient-close"]);
    assert!(matches!(
        item(&v.menu, ids::CLOSE_ALL),
        Entry::Item { enabled: true, .. }
    ));
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
