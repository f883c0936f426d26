//! The dashboard's (and the tray's) writes to the user file: `toml_edit`
//! keeps its comments and order; written atomically, 0600; locked keys
//! and invalid values refused before anything is written.

use std::path::{Path, PathBuf};

use super::file::{check_value, parse, read, FileError};
use super::{Layout, Settings, FILE_NAME, KEYS};

/// Why a change from the dashboard was not saved.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    #[error("managed by your IT, cannot be changed here: {}", .0.join(", "))]
    Locked(Vec<String>),
    #[error("{0}")]
    Invalid(String),
    /// The system file is broken (the hub would not start with it either).
    #[error("{0}")]
    System(FileError),
    #[error("{0}")]
    User(FileError),
    #[error("cannot save {path}: {1}", path = .0.display())]
    Write(PathBuf, std::io::Error),
}

/// Applies `changes` (key → JSON value; `null` removes the key from the
/// user file, so the system value or the default applies again) to the
/// user file, atomically and readable by the user only. Nothing is
/// written unless every change is allowed and valid. Returns the new
/// effective settings.
pub fn update_user_file(
    layout: &Layout,
    changes: &serde_json::Map<String, serde_json::Value>,
) -> Result<Settings, UpdateError> {
    let current = Settings::load(layout).map_err(UpdateError::System)?;
    let locked: Vec<String> = changes
        .keys()
        .filter(|k| current.is_locked(k))
        .cloned()
        .collect();
    if !locked.is_empty() {
        return Err(UpdateError::Locked(locked));
    }
    // Start from the user file as it is, comments, order and apps kept: a
    // person or IT may have annotated it. A broken one is not silently
    // replaced: the user should see what was in it.
    let mut doc: toml_edit::DocumentMut = match read(&layout.user, false) {
        Ok(Some(_)) => std::fs::read_to_string(&layout.user)
            .map_err(|e| UpdateError::Write(layout.user.clone(), e))?
            .parse()
            .map_err(|e: toml_edit::TomlError| UpdateError::Invalid(e.to_string()))?,
        Ok(None) => {
            "# Lockstep settings, written by the dashboard. Keys: see README \"Configuration\".\n"
                .parse()
                .expect("a comment is a TOML document")
        }
        Err(e) => return Err(UpdateError::User(e)),
    };
    for (key, value) in changes {
        if !KEYS.contains(&key.as_str()) {
            return Err(UpdateError::Invalid(format!(
                "unknown setting {key:?} (known: {})",
                KEYS.join(", ")
            )));
        }
        if value.is_null() {
            remove_keeping_comments(&mut doc, key);
            continue;
        }
        let v = toml::Value::try_from(value)
            .map_err(|e| UpdateError::Invalid(format!("{key}: {e}")))?;
        check_value(key, &v).map_err(UpdateError::Invalid)?;
        let edited = edit_value(&v)
            .ok_or_else(|| UpdateError::Invalid(format!("{key}: not a setting value")))?;
        match doc.get_mut(key).and_then(toml_edit::Item::as_value_mut) {
            // In place: the comment beside the key stays with it.
            Some(old) => {
                let decor = old.decor().clone();
                *old = edited;
                *old.decor_mut() = decor;
            }
            None => {
                doc.insert(key, toml_edit::Item::Value(edited));
            }
        }
    }
    let text = doc.to_string();
    // The same checks as at start-up, before anything is written.
    parse(&layout.user, &text, false).map_err(|e| UpdateError::Invalid(e.message))?;
    write_atomic(&layout.user, &text).map_err(|e| UpdateError::Write(layout.user.clone(), e))?;
    Settings::load(layout).map_err(UpdateError::System)
}

/// Removes a top-level key; the comment lines above it (often the file's
/// own header) move to what now comes first, rather than vanish.
fn remove_keeping_comments(doc: &mut toml_edit::DocumentMut, key: &str) {
    let root = doc.as_table_mut();
    let prefix = root
        .key(key)
        .and_then(|k| k.leaf_decor().prefix())
        .and_then(|p| p.as_str())
        .unwrap_or_default()
        .to_owned();
    root.remove(key);
    if prefix.trim().is_empty() {
        return;
    }
    let next_key = root
        .iter()
        .find(|(_, item)| item.is_value())
        .map(|(k, _)| k.to_owned());
    if let Some(mut next) = next_key.as_deref().and_then(|k| root.key_mut(k)) {
        let old = next
            .leaf_decor()
            .prefix()
            .and_then(|p| p.as_str())
            .unwrap_or_default()
            .to_owned();
        next.leaf_decor_mut().set_prefix(format!("{prefix}{old}"));
        return;
    }
    let trailing = doc.trailing().as_str().unwrap_or_default().to_owned();
    doc.set_trailing(format!("{prefix}{trailing}"));
}

/// A settings value as `toml_edit` writes it (settings are scalars or
/// lists of strings).
fn edit_value(v: &toml::Value) -> Option<toml_edit::Value> {
    Some(match v {
        toml::Value::String(s) => s.as_str().into(),
        toml::Value::Integer(i) => (*i).into(),
        toml::Value::Float(f) => (*f).into(),
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push_formatted(edit_value(item)?);
            }
            toml_edit::Value::Array(array)
        }
        _ => return None,
    })
}

/// Writes a sibling temp file (0600 on Unix) and renames it over `path`,
/// so a crash leaves the old file or the new one, never half of one.
fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let result = (|| {
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::super::tests::files;
    use super::*;
    use crate::settings::Source;

    #[test]
    fn update_writes_the_user_file_and_refuses_locked_keys() {
        let f = files(
            Some("locked = [\"port\"]\n"),
            Some("# mine\ngrace_period_ms = 1000\n[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\n"),
        );
        let change = |json: serde_json::Value| json.as_object().unwrap().clone();

        let e = update_user_file(
            &f.layout,
            &change(serde_json::json!({"port": 5000, "tls": true})),
        )
        .unwrap_err();
        assert!(
            matches!(&e, UpdateError::Locked(k) if k == &["port"]),
            "{e}"
        );
        let e = update_user_file(
            &f.layout,
            &change(serde_json::json!({"ack_timeout_ms": "x"})),
        )
        .unwrap_err();
        assert!(matches!(e, UpdateError::Invalid(_)), "{e}");
        let e = update_user_file(&f.layout, &change(serde_json::json!({"nope": 1}))).unwrap_err();
        assert!(matches!(e, UpdateError::Invalid(_)), "{e}");
        // Nothing was written by the refused changes.
        assert!(std::fs::read_to_string(&f.layout.user)
            .unwrap()
            .starts_with("# mine"));

        let s = update_user_file(
            &f.layout,
            &change(serde_json::json!({"ack_timeout_ms": 4000, "grace_period_ms": null})),
        )
        .unwrap();
        assert_eq!(s.values.ack_timeout_ms, 4000);
        assert_eq!(s.sources["ack_timeout_ms"], Source::User);
        assert_eq!(s.values.grace_period_ms, 30_000);
        assert_eq!(s.sources["grace_period_ms"], Source::Default);
        assert_eq!(s.apps.len(), 1, "the user file's apps are kept");
        let written = std::fs::read_to_string(&f.layout.user).unwrap();
        assert!(
            written.starts_with("# mine\n"),
            "comments survive: {written}"
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&f.layout.user)
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let leftovers: Vec<_> = std::fs::read_dir(f.layout.user.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, [FILE_NAME], "no temp file left behind");
        drop(f.dir);
    }

    #[test]
    fn update_keeps_the_comments_of_the_user_file() {
        let f = files(
            None,
            Some("# Reading room 3, set up by IT\nack_timeout_ms = 2000 # the old PACS is slow\n\n# our viewer\n[[apps]]\nclient_id = \"v\"\nname = \"V\"\nscopes = \"fhircast/*.read\"\n"),
        );
        let change = serde_json::json!({"ack_timeout_ms": 3000, "lease_max_secs": 3600});
        update_user_file(&f.layout, change.as_object().unwrap()).unwrap();
        let text = std::fs::read_to_string(&f.layout.user).unwrap();
        for kept in [
            "# Reading room 3, set up by IT",
            "# the old PACS is slow",
            "# our viewer",
        ] {
            assert!(text.contains(kept), "{kept:?} lost: {text}");
        }
        assert!(text.contains("ack_timeout_ms = 3000"), "{text}");
        assert!(text.contains("lease_max_secs = 3600"), "{text}");
        assert!(
            text.find("lease_max_secs").unwrap() < text.find("[[apps]]").unwrap(),
            "new keys go above the tables: {text}"
        );
    }

    #[test]
    fn update_creates_the_folder_and_refuses_to_replace_a_broken_file() {
        let f = files(None, None);
        let change = serde_json::json!({"notifications": false});
        let s = update_user_file(&f.layout, change.as_object().unwrap()).unwrap();
        assert!(!s.values.notifications);

        std::fs::write(&f.layout.user, "notifications = \n").unwrap();
        let e = update_user_file(&f.layout, change.as_object().unwrap()).unwrap_err();
        assert!(matches!(e, UpdateError::User(_)), "{e}");
        assert_eq!(
            std::fs::read_to_string(&f.layout.user).unwrap(),
            "notifications = \n"
        );
    }
}
