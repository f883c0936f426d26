//! Where the two settings files are on each OS (`Layout`), and the paths
//! a front end was given in their place.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The file name in both places.
pub const FILE_NAME: &str = "lockstep.toml";

/// The operating systems whose path conventions `Layout` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
    MacOs,
}

impl Os {
    pub fn current() -> Os {
        if cfg!(windows) {
            Os::Windows
        } else if cfg!(target_os = "macos") {
            Os::MacOs
        } else {
            Os::Linux
        }
    }
}

/// Where the two files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    pub system: PathBuf,
    pub user: PathBuf,
}

impl Layout {
    /// This machine's files: the system path of this OS, the user file in
    /// the config folder `directories` gives (`ProjectDirs::from("org",
    /// "Lockstep", "lockstep")`).
    pub fn current() -> Option<Layout> {
        let user = directories::ProjectDirs::from("org", "Lockstep", "lockstep")?
            .config_dir()
            .join(FILE_NAME);
        let system = Layout::for_os(Os::current())?.system;
        Some(Layout { system, user })
    }

    /// The files a front end reads: paths it was given (flags, environment)
    /// first, then the OS's places, then — where the OS has none (no home
    /// folder) — beside the data in `data`. `None` only without all three.
    pub fn resolve(
        system: Option<PathBuf>,
        user: Option<PathBuf>,
        data: Option<&Path>,
    ) -> Option<Layout> {
        let os = Layout::current();
        let system = system
            .or_else(|| os.as_ref().map(|l| l.system.clone()))
            .or_else(|| data.map(|d| d.join("system-lockstep.toml")))?;
        let user = user
            .or_else(|| os.map(|l| l.user))
            .or_else(|| data.map(|d| d.join(FILE_NAME)))?;
        Some(Layout { system, user })
    }

    /// The layout `os` would use, from this process's environment (`HOME`,
    /// `XDG_CONFIG_HOME`, `APPDATA`, `ProgramData`). Mirrors the folders
    /// `directories` picks on each OS, so all three can be checked here.
    pub fn for_os(os: Os) -> Option<Layout> {
        Layout::for_os_env(os, &|name| std::env::var_os(name))
    }

    fn for_os_env(os: Os, env: &dyn Fn(&str) -> Option<OsString>) -> Option<Layout> {
        // Only absolute values count, as `directories` does.
        let var = |name: &str| {
            env(name)
                .map(|v| v.to_string_lossy().into_owned())
                .filter(|v| match os {
                    Os::Windows => v.len() > 2 && v.as_bytes()[1] == b':' || v.starts_with(r"\\"),
                    _ => v.starts_with('/'),
                })
        };
        match os {
            Os::Linux => {
                let config = var("XDG_CONFIG_HOME").or_else(|| {
                    var("HOME").map(|h| format!("{}/.config", h.trim_end_matches('/')))
                })?;
                Some(Layout {
                    system: PathBuf::from("/etc/lockstep").join(FILE_NAME),
                    user: PathBuf::from(format!(
                        "{}/lockstep/{FILE_NAME}",
                        config.trim_end_matches('/')
                    )),
                })
            }
            Os::MacOs => {
                let home = var("HOME")?;
                Some(Layout {
                    system: PathBuf::from(format!(
                        "/Library/Application Support/Lockstep/{FILE_NAME}"
                    )),
                    user: PathBuf::from(format!(
                        "{}/Library/Application Support/org.Lockstep.lockstep/{FILE_NAME}",
                        home.trim_end_matches('/')
                    )),
                })
            }
            Os::Windows => {
                // Built as strings: on Linux `Path::join` would put '/' in.
                let program_data = var("ProgramData").unwrap_or_else(|| r"C:\ProgramData".into());
                let app_data = var("APPDATA")?;
                Some(Layout {
                    system: PathBuf::from(format!(
                        r"{}\Lockstep\{FILE_NAME}",
                        program_data.trim_end_matches('\\')
                    )),
                    user: PathBuf::from(format!(
                        r"{}\Lockstep\lockstep\config\{FILE_NAME}",
                        app_data.trim_end_matches('\\')
                    )),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        }
    }

    #[test]
    fn linux_layout_follows_xdg() {
        let l = Layout::for_os_env(Os::Linux, &env(&[("HOME", "/home/ada")])).unwrap();
        assert_eq!(l.system, PathBuf::from("/etc/lockstep/lockstep.toml"));
        assert_eq!(
            l.user,
            PathBuf::from("/home/ada/.config/lockstep/lockstep.toml")
        );
        let l = Layout::for_os_env(
            Os::Linux,
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "/cfg")]),
        )
        .unwrap();
        assert_eq!(l.user, PathBuf::from("/cfg/lockstep/lockstep.toml"));
        // A relative XDG_CONFIG_HOME is ignored, as the XDG spec says.
        let l = Layout::for_os_env(
            Os::Linux,
            &env(&[("HOME", "/home/ada"), ("XDG_CONFIG_HOME", "cfg")]),
        )
        .unwrap();
        assert_eq!(
            l.user,
            PathBuf::from("/home/ada/.config/lockstep/lockstep.toml")
        );
    }

    #[test]
    fn windows_layout_uses_programdata_and_appdata() {
        let l = Layout::for_os_env(
            Os::Windows,
            &env(&[
                ("ProgramData", r"D:\ProgramData"),
                ("APPDATA", r"C:\Users\ada\AppData\Roaming"),
            ]),
        )
        .unwrap();
        assert_eq!(
            l.system,
            PathBuf::from(r"D:\ProgramData\Lockstep\lockstep.toml")
        );
        assert_eq!(
            l.user,
            PathBuf::from(r"C:\Users\ada\AppData\Roaming\Lockstep\lockstep\config\lockstep.toml")
        );
        let l = Layout::for_os_env(Os::Windows, &env(&[("APPDATA", r"C:\R")])).unwrap();
        assert_eq!(
            l.system,
            PathBuf::from(r"C:\ProgramData\Lockstep\lockstep.toml")
        );
        assert!(Layout::for_os_env(Os::Windows, &env(&[])).is_none());
    }

    #[test]
    fn macos_layout_uses_application_support() {
        let l = Layout::for_os_env(Os::MacOs, &env(&[("HOME", "/Users/ada")])).unwrap();
        assert_eq!(
            l.system,
            PathBuf::from("/Library/Application Support/Lockstep/lockstep.toml")
        );
        assert_eq!(
            l.user,
            PathBuf::from(
                "/Users/ada/Library/Application Support/org.Lockstep.lockstep/lockstep.toml"
            )
        );
    }

    #[test]
    fn the_layout_of_this_os_matches_directories() {
        // Proves the hand-written mirror agrees with the `directories` crate.
        if let (Some(ours), Some(real)) = (Layout::for_os(Os::current()), Layout::current()) {
            assert_eq!(ours, real);
        }
    }
}
