//! Menu actions against a real hub (port 0, nothing on disk), in Tauri's
//! mock runtime: no display needed. `cargo test -p lockstep-tray --features test`.

use lockstep_hub::bench_support::{publish, subscribe_local};
use lockstep_hub::{Config, Hub};
use serde_json::json;
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::Manager;

use crate::model::{ids, Entry, TrayState};
use crate::shell::{on_menu, Shell};
use lockstep_hub::settings::{Layout, Settings};

fn app_with_hub() -> (tauri::App<MockRuntime>, Hub, tempfile::TempDir) {
    app_with_settings(Settings::default(), None)
}

fn app_with_settings(
    settings: Settings,
    layout: Option<Layout>,
) -> (tauri::App<MockRuntime>, Hub, tempfile::TempDir) {
    app_with(settings, layout, false)
}

/// `persist`: a database (and so an audit trail) in the temp folder.
fn app_with(
    settings: Settings,
    layout: Option<Layout>,
    persist: bool,
) -> (tauri::App<MockRuntime>, Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.persist = persist;
    let running = crate::hub_runner::start(config, &Settings::default(), None).expect("hub starts");
    let hub = running.hub.clone();
    let shell = Shell::new(Ok(running), settings, layout, None, false);
    let app = mock_builder()
        .manage(shell)
        .build(mock_context(noop_assets()))
        .expect("mock app");
    (app, hub, dir)
}

fn label(app: &tauri::App<MockRuntime>) -> String {
    app.state::<Shell>().view().label
}

#[test]
fn pause_and_resume_from_the_menu() {
    let (app, hub, _dir) = app_with_hub();
    on_menu(app.handle(), ids::PAUSE);
    assert!(hub.is_paused());
    assert_eq!(label(&app), "no context · 0 apps · paused");
    on_menu(app.handle(), ids::RESUME);
    assert!(!hub.is_paused());
    assert_eq!(label(&app), "no context · 0 apps");
}

/// What support does from the tray is in the audit trail, as from the
/// dashboard (action `admin`, by "tray").
#[test]
fn tray_actions_are_audited() {
    let (app, hub, _dir) = app_with(Settings::default(), None, true);
    for id in [
        ids::PAUSE,
        ids::RESUME,
        ids::CLOSE_ALL,
        ids::CONFIRM_CLOSE_ALL,
    ] {
        on_menu(app.handle(), id);
    }
    let storage = hub.storage().expect("a database");
    storage.flush().wait().unwrap();
    let mut out = Vec::new();
    storage
        .export_audit(
            None,
            None,
            lockstep_hub::storage::ExportFormat::Ndjson,
            &mut out,
        )
        .unwrap();
    let admin: Vec<(String, String)> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "admin" && r["subscriber_name"] == "tray")
        .map(|r| {
            (
                r["detail"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let done = |d: &str| (d.to_owned(), "done".to_owned());
    assert_eq!(
        admin,
        [
            done("pause sync"),
            done("resume sync"),
            done("close all contexts: 0 closed")
        ]
    );
}

/// The tray's own audit records: (detail, outcome).
fn tray_audit(hub: &Hub) -> Vec<(String, String)> {
    let storage = hub.storage().expect("a database");
    storage.flush().wait().unwrap();
    let mut out = Vec::new();
    storage
        .export_audit(
            None,
            None,
            lockstep_hub::storage::ExportFormat::Ndjson,
            &mut out,
        )
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["action"] == "admin" && r["subscriber_name"] == "tray")
        .map(|r| {
            (
                r["detail"].as_str().unwrap().to_owned(),
                r["outcome"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Issue 15: support breaks one app's link from the tray (the app's
/// submenu), its state says paused and the submenu offers Rejoin; Rejoin
/// brings it back. Both audited, as from the dashboard.
#[test]
fn break_link_and_rejoin_from_the_tray() {
    let (app, hub, _dir) = app_with(Settings::default(), None, true);
    let topic = hub.session_topic().to_owned();
    let _queue =
        tauri::async_runtime::block_on(async { subscribe_local(&hub, &topic, "Patient-open") });
    let sub = hub.subscribers().remove(0);
    let action_ids = |app: &tauri::App<MockRuntime>| -> Vec<String> {
        let view = app.state::<Shell>().view();
        let Entry::Submenu { items, .. } = &view.menu[1] else {
            panic!("apps submenu")
        };
        items
            .iter()
            .flat_map(|e| match e {
                Entry::Submenu { items, .. } => items.clone(),
                _ => vec![],
            })
            .filter_map(|e| match e {
                Entry::AppAction { id, .. } => Some(id),
                _ => None,
            })
            .collect()
    };
    let break_id = format!("{}{}", ids::BREAK_LINK, sub.endpoint_id);
    assert_eq!(action_ids(&app), std::slice::from_ref(&break_id));
    on_menu(app.handle(), &break_id);
    assert_eq!(hub.subscribers()[0].sync, "paused");
    let rejoin_id = format!("{}{}", ids::REJOIN, sub.endpoint_id);
    assert_eq!(action_ids(&app), std::slice::from_ref(&rejoin_id));
    on_menu(app.handle(), &rejoin_id);
    assert_ne!(hub.subscribers()[0].sync, "paused");
    assert_eq!(action_ids(&app), [break_id]);
    // An app that left meanwhile: nothing happens, nothing is audited.
    on_menu(
        app.handle(),
        &format!("{}no-such-endpoint", ids::BREAK_LINK),
    );
    let done = |d: String| (d, "done".to_owned());
    assert_eq!(
        tray_audit(&hub),
        [
            done(format!("break the link of {}", sub.name)),
            done(format!("rejoin {}", sub.name)),
        ]
    );
}

#[test]
fn context_shows_then_close_all_clears_it() {
    let (app, hub, _dir) = app_with_hub();
    let topic = hub.session_topic().to_owned();
    let _app_queue = tauri::async_runtime::block_on(async {
        let q = subscribe_local(&hub, &topic, "Patient-open,Patient-close");
        let open = json!({"timestamp": "2026-11-22T10:00:00Z", "id": "e1", "event": {
            "hub.topic": topic, "hub.event": "Patient-open", "context": [{"key": "patient",
            "resource": {"resourceType": "Patient", "id": "p1", "name": [{"text": "Ann Lee"}]}}]}});
        publish(&hub, open.to_string().as_bytes()).expect("published");
        q
    });
    let view = app.state::<Shell>().view();
    assert_eq!(view.label, "Ann Lee · 1 app");
    assert_eq!(view.state, TrayState::Linked);
    assert!(view.menu.contains(&Entry::Item {
        id: Some(ids::CLOSE_ALL),
        text: "Close all contexts…".into(),
        enabled: true
    }));
    // A stray click closes nothing: it asks for the confirmation.
    on_menu(app.handle(), ids::CLOSE_ALL);
    assert_ne!(hub.current_context(&topic)["context"], json!([]));
    let view = app.state::<Shell>().view();
    assert!(view.menu.contains(&Entry::Item {
        id: Some(ids::CONFIRM_CLOSE_ALL),
        text: "Confirm: close all contexts".into(),
        enabled: true
    }));
    on_menu(app.handle(), ids::CONFIRM_CLOSE_ALL);
    assert_eq!(hub.current_context(&topic)["context"], json!([]));
    // Back to the first step for the next time.
    assert!(app
        .state::<Shell>()
        .view()
        .menu
        .iter()
        .any(|e| matches!(e, Entry::Item { id: Some(id), .. } if *id == ids::CLOSE_ALL)));
    assert_eq!(label(&app), "no context · 1 app");
}

fn checked(app: &tauri::App<MockRuntime>) -> Option<bool> {
    app.state::<Shell>()
        .view()
        .menu
        .iter()
        .find_map(|e| match e {
            Entry::Check { id, checked, .. } if *id == ids::NOTIFICATIONS => Some(*checked),
            _ => None,
        })
}

fn files(system: &str) -> (tempfile::TempDir, Layout) {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        system: dir.path().join("etc/lockstep.toml"),
        user: dir.path().join("home/lockstep.toml"),
    };
    std::fs::create_dir_all(layout.system.parent().unwrap()).unwrap();
    std::fs::write(&layout.system, system).unwrap();
    (dir, layout)
}

#[test]
fn notifications_switch_off_and_on() {
    let (app, _hub, _dir) = app_with_hub();
    assert_eq!(checked(&app), Some(true));
    on_menu(app.handle(), ids::NOTIFICATIONS);
    assert_eq!(checked(&app), Some(false));
    on_menu(app.handle(), ids::NOTIFICATIONS);
    assert_eq!(checked(&app), Some(true));
}

#[test]
fn a_stopped_hub_still_has_a_working_menu() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = Config::new(taken.local_addr().unwrap(), dir.path().to_path_buf());
    let started = crate::hub_runner::start(config, &Settings::default(), None);
    let shell = Shell::new(started, Settings::default(), None, None, false);
    let app = mock_builder()
        .manage(shell)
        .build(mock_context(noop_assets()))
        .unwrap();
    let view = app.state::<Shell>().view();
    assert_eq!(view.state, TrayState::Stopped);
    // Hub actions do nothing rather than panic.
    for id in [ids::OPEN, ids::PAUSE, ids::CLOSE_ALL, ids::COPY_URL] {
        on_menu(app.handle(), id);
    }
}

#[test]
fn the_notifications_toggle_saves_the_user_file() {
    let (_files, layout) = files("ack_timeout_ms = 2000\n");
    let settings = Settings::load(&layout).unwrap();
    let (app, _hub, _dir) = app_with_settings(settings, Some(layout.clone()));
    on_menu(app.handle(), ids::NOTIFICATIONS);
    assert_eq!(checked(&app), Some(false));
    // What the next start (and the dashboard) reads.
    let text = std::fs::read_to_string(&layout.user).unwrap();
    assert!(text.contains("notifications = false"), "{text}");
    assert!(!Settings::load(&layout).unwrap().values.notifications);
    assert!(std::fs::read_to_string(&layout.system)
        .unwrap()
        .contains("ack_timeout_ms = 2000"));
}

#[test]
fn an_it_locked_toggle_does_not_change() {
    let (_files, layout) =
        files("notifications = false\nlocked = [\"notifications\", \"start_at_login\"]\n");
    let settings = Settings::load(&layout).unwrap();
    let (app, _hub, _dir) = app_with_settings(settings, Some(layout.clone()));
    assert_eq!(checked(&app), Some(false));
    let view = app.state::<Shell>().view();
    assert!(view.menu.contains(&Entry::Check {
        id: ids::NOTIFICATIONS,
        text: "Notifications (managed by IT)".into(),
        checked: false,
        enabled: false,
    }));
    // Even if a click got through, nothing changes and nothing is written.
    on_menu(app.handle(), ids::NOTIFICATIONS);
    on_menu(app.handle(), ids::AUTOSTART);
    assert_eq!(checked(&app), Some(false));
    assert!(!layout.user.exists());
}

fn open_app_items(app: &tauri::App<MockRuntime>) -> Vec<(String, String)> {
    let menu = app.state::<Shell>().view().menu;
    menu.into_iter()
        .find_map(|e| match e {
            Entry::Submenu { text, items } if text == "Open app" => Some(items),
            _ => None,
        })
        .unwrap_or_default()
        .into_iter()
        .filter_map(|e| match e {
            Entry::AppAction { id, text } => Some((id, text)),
            _ => None,
        })
        .collect()
}

/// Issue 16, EHR launch from the tray: a browser app registered with a
/// launch URL appears under "Open app"; its item's id gives the SMART
/// launch URL (`launch` + `iss` of this hub); one without a launch URL,
/// a confidential app, and a revoked one do not appear.
#[test]
fn open_app_lists_browser_apps_with_a_launch_url() {
    use lockstep_hub::auth::smart::BrowserApp;
    let (app, hub, _dir) = app_with_hub();
    assert!(open_app_items(&app).is_empty(), "nothing to launch yet");
    let browser = |launch: Option<&str>| BrowserApp {
        redirect_uris: vec!["http://127.0.0.1:9/callback".into()],
        launch_url: launch.map(str::to_owned),
        preapproved: false,
    };
    let scopes = "fhircast/*.read";
    let viewer = hub
        .auth()
        .register_browser_app(
            "Web viewer",
            scopes,
            vec![],
            browser(Some("http://127.0.0.1:9/launch")),
        )
        .unwrap();
    hub.auth()
        .register_browser_app("No launch", scopes, vec![], browser(None))
        .unwrap();
    hub.apps().register("Back end", scopes, vec![]).unwrap();
    let items = open_app_items(&app);
    let id = format!("{}{}", ids::OPEN_APP, viewer.client_id);
    assert_eq!(items, vec![(id.clone(), "Web viewer".to_owned())]);

    // What choosing it opens.
    let client_id = id.strip_prefix(ids::OPEN_APP).unwrap();
    let url = hub.launch_url(client_id).unwrap();
    let query = url
        .strip_prefix("http://127.0.0.1:9/launch?")
        .unwrap_or_else(|| panic!("the launch URL with a query: {url}"));
    let pairs: Vec<(&str, &str)> = query.split('&').filter_map(|p| p.split_once('=')).collect();
    assert!(
        pairs.iter().any(|(k, v)| *k == "launch" && !v.is_empty()),
        "{url}"
    );
    let iss = format!("http://{}", hub.local_addr().unwrap())
        .replace(':', "%3A")
        .replace('/', "%2F");
    assert!(pairs.contains(&("iss", iss.as_str())), "{url}");

    // Revoked: gone from the menu, and a stale click does nothing.
    hub.apps().revoke(&viewer.client_id).unwrap();
    assert!(open_app_items(&app).is_empty());
    on_menu(app.handle(), &id);
    assert!(hub.launch_url(&viewer.client_id).is_none());
}
