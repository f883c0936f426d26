//! The layering of the two files and what it puts in `Config`.

use std::path::PathBuf;
use std::time::Duration;

use super::*;

pub(super) struct Files {
    pub(super) dir: tempfile::TempDir,
    pub(super) layout: Layout,
}

pub(super) fn files(system: Option<&str>, user: Option<&str>) -> Files {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        system: dir.path().join("system").join(FILE_NAME),
        user: dir.path().join("user").join(FILE_NAME),
    };
    for (path, text) in [(&layout.system, system), (&layout.user, user)] {
        if let Some(text) = text {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }
    Files { dir, layout }
}

#[test]
fn no_files_means_defaults() {
    let f = files(None, None);
    let s = Settings::load(&f.layout).unwrap();
    assert_eq!(s.values, Values::default());
    assert!(s.sources.values().all(|s| *s == Source::Default));
    assert!(s.warnings.is_empty());
    // The defaults are Config's defaults.
    let mut config = Config::new(Config::DEFAULT_LISTEN.parse().unwrap(), "/tmp".into());
    let before = format!("{config:?}");
    s.apply(&mut config);
    assert_eq!(format!("{config:?}"), before);
}

#[test]
fn user_wins_over_system_for_unlocked_keys() {
    let f = files(
        Some("ack_timeout_ms = 5000\ngrace_period_ms = 20000\n"),
        Some("ack_timeout_ms = 7000\n"),
    );
    let s = Settings::load(&f.layout).unwrap();
    assert_eq!(s.values.ack_timeout_ms, 7000);
    assert_eq!(s.sources["ack_timeout_ms"], Source::User);
    assert_eq!(s.values.grace_period_ms, 20000);
    assert_eq!(s.sources["grace_period_ms"], Source::System);
    assert_eq!(s.sources["port"], Source::Default);
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn system_wins_for_locked_keys_with_a_warning() {
    let f = files(
        Some("port = 4800\nnotifications = false\nlocked = [\"port\", \"notifications\"]\n"),
        Some("port = 5000\nnotifications = true\nack_timeout_ms = 3000\n"),
    );
    let s = Settings::load(&f.layout).unwrap();
    assert_eq!(s.values.port, 4800);
    assert_eq!(s.sources["port"], Source::System);
    assert!(!s.values.notifications);
    assert_eq!(
        s.values.ack_timeout_ms, 3000,
        "unlocked keys still follow the user"
    );
    assert!(s.is_locked("port") && s.is_locked("notifications") && !s.is_locked("tls"));
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    assert!(s.warnings.iter().any(|w| w.starts_with("port is managed")));
}

#[test]
fn a_locked_key_without_a_system_value_locks_the_default() {
    let f = files(Some("locked = [\"tls\"]\n"), Some("tls = true\n"));
    let s = Settings::load(&f.layout).unwrap();
    assert!(!s.values.tls);
    assert_eq!(s.sources["tls"], Source::Default);
    assert_eq!(s.warnings.len(), 1);
}

#[test]
fn a_malformed_system_file_is_an_error_naming_file_and_line() {
    let f = files(Some("port = 4800\nack_timeout_ms = \"soon\"\n"), None);
    let e = Settings::load(&f.layout).unwrap_err();
    assert_eq!(e.path, f.layout.system);
    let text = e.to_string();
    assert!(text.contains("lockstep.toml"), "{text}");
    assert!(text.contains("line 2"), "{text}");

    let f = files(Some("port = \n"), None);
    assert!(Settings::load(&f.layout)
        .unwrap_err()
        .to_string()
        .contains("line 1"));
    let f = files(Some("prot = 4800\n"), None);
    assert!(Settings::load(&f.layout)
        .unwrap_err()
        .to_string()
        .contains("prot"));
    let f = files(Some("locked = [\"prot\"]\n"), None);
    assert!(Settings::load(&f.layout)
        .unwrap_err()
        .to_string()
        .contains("unknown key \"prot\""));
    let f = files(Some("ack_timeout_ms = 0\n"), None);
    assert!(Settings::load(&f.layout)
        .unwrap_err()
        .to_string()
        .contains("out of range"));
    // A broken line with a secret is located, never quoted.
    let f = files(
        Some("[[apps]]\nclient_id = \"r\"\nsecret = \"hunter2-hunter2-hunter2-hunter2-xx\nname = \"R\"\n"),
        None,
    );
    let text = Settings::load(&f.layout).unwrap_err().to_string();
    assert!(text.contains("line 3"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn a_malformed_user_file_is_ignored_with_a_warning() {
    let f = files(
        Some("grace_period_ms = 20000\n"),
        Some("ack_timeout_ms = [\n"),
    );
    let s = Settings::load(&f.layout).unwrap();
    assert_eq!(s.values.ack_timeout_ms, 10_000);
    assert_eq!(
        s.values.grace_period_ms, 20000,
        "the system file still applies"
    );
    assert_eq!(s.warnings.len(), 1);
    assert!(s.warnings[0].contains(&f.layout.user.display().to_string()));
    assert!(s.warnings[0].contains("line 1"), "{}", s.warnings[0]);
    // A user file may not lock anything.
    let f = files(None, Some("locked = [\"port\"]\n"));
    let s = Settings::load(&f.layout).unwrap();
    assert!(s.locked.is_empty());
    assert_eq!(s.warnings.len(), 1);
    // Nor hold a client secret.
    let secret = "x".repeat(40);
    let f = files(
        None,
        Some(&format!(
            "[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
        )),
    );
    let s = Settings::load(&f.layout).unwrap();
    assert!(s.apps.is_empty());
    assert!(
        s.warnings[0].contains("system file only"),
        "{:?}",
        s.warnings
    );
    assert!(!s.warnings[0].contains(&secret), "no secret in the warning");
}

#[test]
fn apply_fills_config_and_skips_flag_keys() {
    let f = files(
        Some("address = \"127.0.0.2\"\nport = 4800\ntoken_lifetime_secs = 3600\n"),
        Some("ack_timeout_ms = 2500\nallowed_origins = [\"https://viewer.example.org/\"]\nlease_default_secs = 60\nlease_max_secs = 120\ngrace_period_ms = 0\n"),
    );
    let s = Settings::load(&f.layout).unwrap();
    let mut c = Config::new(Config::DEFAULT_LISTEN.parse().unwrap(), "/tmp".into());
    s.apply(&mut c);
    assert_eq!(c.listen, "127.0.0.2:4800".parse().unwrap());
    assert_eq!(c.ack_timeout, Duration::from_millis(2500));
    assert_eq!(c.grace_period, Duration::ZERO);
    assert_eq!(c.allowed_origins, vec!["https://viewer.example.org"]);
    assert_eq!(c.lease_default, Duration::from_secs(60));
    assert_eq!(c.lease_max, Duration::from_secs(120));
    assert_eq!(c.token_lifetime, Duration::from_secs(3600));

    let mut c = Config::new("127.0.0.1:9999".parse().unwrap(), "/tmp".into());
    s.apply_except(&mut c, |k| k == "port" || k == "ack_timeout_ms");
    assert_eq!(c.listen, "127.0.0.2:9999".parse().unwrap());
    assert_eq!(c.ack_timeout, Duration::from_secs(10));
}

#[test]
fn apps_come_from_both_files_system_first() {
    let secret = "s".repeat(40);
    let f = files(
        Some(&format!(
            "[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"{secret}\"\n"
        )),
        Some("[[apps]]\nclient_id = \"ris\"\nname = \"Mine\"\nscopes = \"fhircast/*.write\"\n\n[[apps]]\nclient_id = \"viewer\"\nname = \"Viewer\"\nscopes = \"fhircast/*.read\"\ntopics = [\"t1\"]\n"),
    );
    let s = Settings::load(&f.layout).unwrap();
    let ids: Vec<_> = s
        .apps
        .iter()
        .map(|a| (a.client_id.as_str(), a.name.as_str()))
        .collect();
    assert_eq!(ids, [("ris", "RIS"), ("viewer", "Viewer")]);
    assert!(
        !format!("{:?}", s.apps).contains(&secret),
        "no secret in Debug"
    );

    let f = files(
        Some("[[apps]]\nclient_id = \"ris\"\nname = \"RIS\"\nscopes = \"fhircast/*.read\"\nsecret = \"short\"\n"),
        None,
    );
    assert!(Settings::load(&f.layout)
        .unwrap_err()
        .to_string()
        .contains("at least 32"));
}

/// Issue 14.7: `journal_max_mb` reaches the config in bytes; 0 is refused.
#[test]
fn journal_max_mb_bounds_the_journal() {
    let f = files(None, Some("journal_max_mb = 8\n"));
    let s = Settings::load(&f.layout).unwrap();
    let mut config = Config::new("127.0.0.1:0".parse().unwrap(), PathBuf::from("/tmp"));
    assert_eq!(config.journal_max_bytes, 64 * 1024 * 1024, "the default");
    s.apply(&mut config);
    assert_eq!(config.journal_max_bytes, 8 * 1024 * 1024);
    let zero = files(None, Some("journal_max_mb = 0\n"));
    let s = Settings::load(&zero.layout).unwrap();
    assert!(
        s.warnings.iter().any(|w| w.contains("journal_max_mb")),
        "{:?}",
        s.warnings
    );
}
