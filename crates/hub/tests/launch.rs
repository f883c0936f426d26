//! `lockstep_hub::launch`, the start-up both binaries share (issue 18):
//! the steps in order against a real hub on port 0, and the errors each
//! front end words its own way. (The binary's words and exit codes:
//! tests/binary.rs, damaged_db.rs, peer_check.rs; the tray's: its own tests.)

use std::path::Path;

use lockstep_hub::auth::store::StoreChoice;
use lockstep_hub::discovery_file::{Discovery, DISCOVERY_FILE};
use lockstep_hub::launch::{Launch, LaunchError};
use lockstep_hub::settings::{Layout, Settings, SettingsFiles, StartError, FILE_NAME};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Settings files in `dir`: `system` as IT's file, no user file.
fn settings_files(dir: &Path, system: &str) -> (Settings, SettingsFiles) {
    let layout = Layout {
        system: dir.join("etc").join(FILE_NAME),
        user: dir.join("home").join(FILE_NAME),
    };
    std::fs::create_dir_all(layout.system.parent().unwrap()).unwrap();
    std::fs::write(&layout.system, system).unwrap();
    let settings = Settings::load(&layout).unwrap();
    let files = SettingsFiles {
        layout,
        from_flags: vec!["port", "address"],
    };
    (settings, files)
}

#[tokio::test]
async fn open_configure_start_run_then_the_discovery_file_goes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let launch = Launch::open(Some(data.clone()), StoreChoice::Memory).unwrap();
    assert!(data.is_dir(), "the data folder is made");
    assert!(launch.store_warning.is_none());

    let secret = "s".repeat(40);
    let (settings, files) = settings_files(
        dir.path(),
        &format!(
            "port = 4800\nack_timeout_ms = 2500\n[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
        ),
    );
    let config = launch
        .configure(
            "127.0.0.1:0".parse().unwrap(),
            |c| c.persist = false,
            &settings,
            Some(files),
        )
        .unwrap();
    // The front end's own keys (here the port) win; the rest is the files'.
    assert_eq!(config.listen.port(), 0);
    assert_eq!(config.ack_timeout.as_millis(), 2500);
    assert!(!config.persist);

    let runtime = dir.path().join("runtime");
    let started = Launch::start(config, &settings, Some(runtime.clone())).unwrap();
    assert!(started.note.is_none() && !started.per_user_port);
    let apps = started.hub.apps().list();
    assert!(
        apps.iter().any(|a| a.client_id == "ris" && a.name == "RIS"),
        "the [[apps]] are registered before the hub serves: {apps:?}"
    );
    let file = started.discovery_file().expect("written");
    assert_eq!(file, runtime.join(DISCOVERY_FILE));
    let discovery: Discovery = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let url = started.hub_url();
    assert_eq!(discovery.hub_url, url);
    assert_eq!(discovery.topic, started.hub.session_topic());
    assert_eq!(discovery.pid, std::process::id());
    let addr = started.hub.config().listen;
    assert_eq!(discovery.port, addr.port());
    assert_eq!(url, format!("http://{addr}/fhircast/STU3"));
    // Known before serving starts: the tray builds launch links at once.
    assert_eq!(started.hub.local_addr(), Some(addr));

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(started.run(async {
        let _ = stopped.await;
    }));
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).await.unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(file.exists(), "there while serving");

    stop.send(()).unwrap();
    serving.await.unwrap().unwrap();
    assert!(!file.exists(), "removed when run returns");
    std::net::TcpListener::bind(addr).expect("port released");
}

#[test]
fn a_data_folder_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let err = Launch::open(Some(blocker.join("data")), StoreChoice::Memory)
        .err()
        .expect("refused");
    assert!(matches!(err, LaunchError::DataFolder(..)), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot create data folder {}",
            blocker.join("data").display()
        )),
        "{err}"
    );
}

#[test]
fn a_non_loopback_address_from_a_file_is_refused_unless_the_front_end_allows_remote() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::open(Some(dir.path().join("data")), StoreChoice::Memory).unwrap();
    let (settings, mut files) = settings_files(dir.path(), "address = \"0.0.0.0\"\n");
    files.from_flags.clear();
    let listen = "127.0.0.1:0".parse().unwrap();
    let err = launch
        .configure(listen, |_| {}, &settings, Some(files.clone()))
        .expect_err("refused");
    assert!(
        matches!(err, LaunchError::Settings(StartError::NotLoopback(ip)) if ip.is_unspecified()),
        "{err}"
    );
    let config = launch
        .configure(listen, |c| c.allow_remote = true, &settings, Some(files))
        .unwrap();
    assert!(config.listen.ip().is_unspecified());
}

/// Held by this same user: Lockstep runs already (the peer check's OSes;
/// elsewhere the owner is unknown and the hub moves).
#[cfg(any(target_os = "linux", windows))]
#[test]
fn a_port_this_user_holds_is_a_bind_error_and_no_discovery_file() {
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::open(Some(dir.path().join("data")), StoreChoice::Memory).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let mut config = launch
        .configure(
            "127.0.0.1:0".parse().unwrap(),
            |c| c.persist = false,
            &Settings::default(),
            None,
        )
        .unwrap();
    // Without files nothing is the front end's: the default port came in.
    assert_eq!(config.listen.port(), 4747);
    config.listen = taken.local_addr().unwrap();
    let runtime = dir.path().join("runtime");
    let err = Launch::start(config, &Settings::default(), Some(runtime.clone()))
        .err()
        .expect("refused");
    assert!(matches!(err, LaunchError::Bind(_)), "{err}");
    assert!(!runtime.join(DISCOVERY_FILE).exists());
}
