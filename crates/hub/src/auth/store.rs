//! Where secrets live: the hub's signing key and the hashes of registered
//! apps' client secrets. The OS keyring by default (Windows Credential
//! Manager, macOS Keychain, Linux Secret Service); a 0600 file only when
//! asked for explicitly (headless servers); memory for tests, or when no
//! keyring exists (then nothing secret survives a restart — never a plain
//! file by accident).

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, thiserror::Error)]
#[error("secret store: {0}")]
pub struct StoreError(pub String);

pub trait SecretStore: Send + Sync + fmt::Debug {
    fn get(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn set(&self, name: &str, value: &str) -> Result<(), StoreError>;
    fn delete(&self, name: &str) -> Result<(), StoreError>;
    /// For the start-up message: "OS keyring", "file …", "memory".
    fn describe(&self) -> String;
}

/// The OS keyring through the `keyring` crate; entries are
/// `(service, name)` pairs.
#[derive(Debug)]
pub struct KeyringStore {
    service: String,
}

impl KeyringStore {
    /// Opens the keyring if this session has one that answers.
    pub fn open(service: &str) -> Result<KeyringStore, StoreError> {
        let store = KeyringStore {
            service: service.to_owned(),
        };
        store.get("probe")?;
        Ok(store)
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry, StoreError> {
        keyring::Entry::new(&self.service, name).map_err(|e| StoreError(e.to_string()))
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.entry(name)?.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }
    fn set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.entry(name)?
            .set_password(value)
            .map_err(|e| StoreError(e.to_string()))
    }
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        match self.entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(StoreError(e.to_string())),
        }
    }
    fn describe(&self) -> String {
        "OS keyring".to_owned()
    }
}

/// Secrets in a JSON file readable by the owner only (0600).
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
    lock: Mutex<()>,
}

impl FileStore {
    pub fn new(path: PathBuf) -> FileStore {
        FileStore {
            path,
            lock: Mutex::new(()),
        }
    }

    fn read(&self) -> Result<HashMap<String, String>, StoreError> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| StoreError(format!("{}: {e}", self.path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(HashMap::new()),
            Err(e) => Err(StoreError(format!("{}: {e}", self.path.display()))),
        }
    }

    fn write(&self, map: &HashMap<String, String>) -> Result<(), StoreError> {
        let text = serde_json::to_string_pretty(map).map_err(|e| StoreError(e.to_string()))?;
        let tmp = self.path.with_extension("tmp");
        write_private(&tmp, text.as_bytes())
            .map_err(|e| StoreError(format!("{}: {e}", tmp.display())))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(|e| StoreError(format!("{}: {e}", self.path.display())))
    }
}

/// Creates a file only its owner can read, then writes it.
fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl SecretStore for FileStore {
    fn get(&self, name: &str) -> Result<Option<String>, StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        Ok(self.read()?.get(name).cloned())
    }
    fn set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.read()?;
        map.insert(name.to_owned(), value.to_owned());
        self.write(&map)
    }
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut map = self.read()?;
        if map.remove(name).is_some() {
            self.write(&map)?;
        }
        Ok(())
    }
    fn describe(&self) -> String {
        format!("file {} (0600)", self.path.display())
    }
}

/// Secrets in memory only: tests, and machines without a keyring.
#[derive(Debug, Default)]
pub struct MemoryStore {
    map: Mutex<HashMap<String, String>>,
}

impl SecretStore for MemoryStore {
    fn get(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned())
    }
    fn set(&self, name: &str, value: &str) -> Result<(), StoreError> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name.to_owned(), value.to_owned());
        Ok(())
    }
    fn delete(&self, name: &str) -> Result<(), StoreError> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
        Ok(())
    }
    fn describe(&self) -> String {
        "memory only (nothing secret survives a restart)".to_owned()
    }
}

/// Which store to use, as the `--secret-store` flag names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    /// The OS keyring when there is one, else memory (with a warning).
    Auto,
    Keyring,
    /// `secrets.json` (0600) in the data folder: headless servers only.
    File,
    Memory,
}

impl std::str::FromStr for StoreChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(StoreChoice::Auto),
            "keyring" => Ok(StoreChoice::Keyring),
            "file" => Ok(StoreChoice::File),
            "memory" => Ok(StoreChoice::Memory),
            other => Err(format!(
                "unknown secret store {other:?} (auto, keyring, file, memory)"
            )),
        }
    }
}

/// The keyring service name Lockstep's entries are filed under.
pub const KEYRING_SERVICE: &str = "lockstep";

/// Opens the chosen store. `Auto` without a keyring falls back to memory
/// and says why in the returned warning: secrets are never written to a
/// plain file unless `File` is chosen explicitly.
pub fn open_store(
    choice: StoreChoice,
    data_dir: &std::path::Path,
) -> Result<(std::sync::Arc<dyn SecretStore>, Option<String>), StoreError> {
    use std::sync::Arc;
    match choice {
        StoreChoice::Keyring => Ok((Arc::new(KeyringStore::open(KEYRING_SERVICE)?), None)),
        StoreChoice::File => Ok((Arc::new(FileStore::new(data_dir.join("secrets.json"))), None)),
        StoreChoice::Memory => Ok((Arc::new(MemoryStore::default()), None)),
        StoreChoice::Auto => match KeyringStore::open(KEYRING_SERVICE) {
            Ok(store) => Ok((Arc::new(store), None)),
            Err(e) => Ok((
                Arc::new(MemoryStore::default()),
                Some(format!(
                    "no OS keyring is available ({e}); secrets are kept in memory only, so issued tokens and \
                     app secrets do not survive a restart. On a headless server pass --secret-store file to keep \
                     them in a file readable only by this user."
                )),
            )),
        },
    }
}
