//! The discovery file (issue 17): how local apps find this user's hub,
//! whichever port it ended up on. A documented contract (README,
//! "Finding the hub"): `hub.json` in Lockstep's runtime folder, readable by
//! this user only, with camelCase fields:
//!
//! - `hubUrl`: e.g. `http://127.0.0.1:4747/fhircast/STU3`;
//! - `topic`: this workstation session's topic;
//! - `pid`: the hub's process (a reader may check it is still running);
//! - `port`: the port, also inside `hubUrl`;
//! - `perUserPort`: true when the configured port was held by another
//!   user's hub and this one moved to its per-user port.
//!
//! Folder: `$XDG_RUNTIME_DIR/lockstep` on Linux (cleared at logout), else
//! the config folder (`~/.config/lockstep`, `~/Library/Application
//! Support/org.Lockstep.lockstep`, `%APPDATA%\Lockstep\lockstep\config`).
//! Both `lockstep-hub` and the tray write it.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const DISCOVERY_FILE: &str = "hub.json";

/// What the discovery file says: enough for a local app to find the hub.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Discovery {
    pub hub_url: String,
    pub topic: String,
    pub pid: u32,
    #[serde(default)]
    pub port: u16,
    #[serde(default)]
    pub per_user_port: bool,
}

/// The folder the discovery file goes in for this OS user: the runtime
/// folder where the OS has one, else the config folder.
pub fn discovery_dir() -> Option<PathBuf> {
    let d = directories::ProjectDirs::from("org", "Lockstep", "lockstep")?;
    Some(d.runtime_dir().unwrap_or(d.config_dir()).to_path_buf())
}

/// Writes `dir/hub.json` readable by this user only (0600 on Unix, the
/// folder 0700; on Windows the per-user profile folder's ACL), replacing an
/// older one.
pub fn write_discovery(dir: &Path, discovery: &Discovery) -> std::io::Result<PathBuf> {
    create_private_dir(dir)?;
    let path = dir.join(DISCOVERY_FILE);
    let _ = std::fs::remove_file(&path); // a stale file may have other permissions
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&path)?;
    let text = serde_json::to_vec_pretty(discovery).map_err(std::io::Error::other)?;
    file.write_all(&text)?;
    Ok(path)
}

/// Removes `dir/hub.json` if it still names process `pid`: a hub that
/// stops takes its file with it, never a newer hub's.
pub fn remove_discovery(dir: &Path, pid: u32) {
    let path = dir.join(DISCOVERY_FILE);
    let ours = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Discovery>(&b).ok())
        .is_some_and(|d| d.pid == pid);
    if ours {
        let _ = std::fs::remove_file(&path);
    }
}

/// Creates `dir` (and its parents) readable by this user only (0700 on
/// Unix): for the discovery file, and the tray's log folder.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovery_file_is_private_replaced_and_removed_by_its_hub_only() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = dir.path().join("lockstep");
        let d = Discovery {
            hub_url: "http://127.0.0.1:5662/fhircast/STU3".into(),
            topic: "abc".into(),
            pid: 7,
            port: 5662,
            per_user_port: true,
        };
        let path = write_discovery(&runtime, &d).unwrap();
        let again = write_discovery(&runtime, &d).unwrap();
        assert_eq!(path, again);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"hubUrl\"") && text.contains("\"perUserPort\": true"));
        let read: Discovery = serde_json::from_str(&text).unwrap();
        assert_eq!(read, d);
        // The tray's older file (no port) still reads.
        let old: Discovery = serde_json::from_str(
            r#"{"hubUrl":"http://127.0.0.1:4747/fhircast/STU3","topic":"t","pid":1}"#,
        )
        .unwrap();
        assert_eq!(old.port, 0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&runtime), 0o700);
        }
        remove_discovery(&runtime, 8);
        assert!(path.exists(), "another hub's file stays");
        remove_discovery(&runtime, 7);
        assert!(!path.exists());
    }
}
