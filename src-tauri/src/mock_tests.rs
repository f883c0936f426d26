//! Menu actions against a real hub (port 0, nothing on disk), in Tauri's
//! mock runtime: no display needed. `cargo test -p lockstep-tray --features test`.

use lockstep_hub::bench_support::{publish, subscribe_local};
use lockstep_hub::{Config, Hub};
use serde_json::json;
use tauri::test::{mock_builder, mock_context, noop_assets, MockRuntime};
use tauri::Manager;

use crate::model::{ids, Entry, TrayState};
use crate::settings::Settings;
use crate::shell::{on_menu, Shell};

fn app_with_hub() -> (tauri::App<MockRuntime>, Hub, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
    config.persist = false;
    let running = crate::hub_runner::start(config).expect("hub starts");
    let hub = running.hub.clone();
    let shell = Shell::new(Ok(running), Settings::default(), None, false);
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
        text: "Close all contexts".into(),
        enabled: true
    }));
    on_menu(app.handle(), ids::CLOSE_ALL);
    assert_eq!(hub.current_context(&topic)["context"], json!([]));
    assert_eq!(label(&app), "no context · 1 app");
}

#[test]
fn notifications_switch_off_and_on() {
    let (app, _hub, _dir) = app_with_hub();
    let checked = |app: &tauri::App<MockRuntime>| {
        app.state::<Shell>()
            .view()
            .menu
            .iter()
            .find_map(|e| match e {
                Entry::Check { id, checked, .. } if *id == ids::NOTIFICATIONS => Some(*checked),
                _ => None,
            })
    };
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
    let started = crate::hub_runner::start(config);
    let shell = Shell::new(started, Settings::default(), None, false);
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
