//! Registered apps: who may ask the hub for a token, with which scopes, for
//! which topics. Metadata lives in the hub's database (`storage`); the
//! client secrets never do: only their SHA-256 goes to the secret store
//! (secrets are 256 random bits, so a plain hash is enough), and the
//! comparison is constant-time.
//!
//! By concern: `app.rs` the app model, `database.rs` loading, saving and
//! re-reading the registrations, `register.rs` the changes the dashboard
//! and the CLI make, `provision.rs` the apps of a settings file,
//! `secrets.rs` client secrets (hashing, rotation), `authenticate.rs`
//! client authentication and what a token's app may still do.

mod app;
mod authenticate;
mod database;
mod provision;
mod register;
mod secrets;

use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) use app::AppKeys;
pub use app::{AppInfo, PublicKeys};
pub use provision::Provisioned;

use super::store::SecretStore;
use app::App;

type RevokeHook = Box<dyn Fn(&str) + Send + Sync>;

pub struct AppRegistry {
    /// Where registrations are kept; `None` keeps them in memory (tests).
    storage: Option<crate::storage::Storage>,
    store: Arc<dyn SecretStore>,
    apps: RwLock<Vec<App>>,
    on_revoke: Mutex<Vec<RevokeHook>>,
    /// Removed here; `refresh` must not bring them back before the delete
    /// reaches the database.
    removed: Mutex<Vec<String>>,
}

impl std::fmt::Debug for AppRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRegistry").finish_non_exhaustive()
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl AppRegistry {
    /// Calls `hook(client_id)` whenever an app is revoked or removed.
    pub(crate) fn on_revoke(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.on_revoke
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }

    pub fn list(&self) -> Vec<AppInfo> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.info.clone())
            .collect()
    }

    /// Whether the hub expects ACKs from this app (issue 19): `false` only
    /// for an app registered as one that never acknowledges. Unknown ids
    /// (no-auth callers, external issuers' clients) get the spec's
    /// behaviour, `true`. A read lock and a scan of the (few) apps.
    pub fn acknowledges(&self, client_id: &str) -> bool {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|a| a.info.client_id == client_id)
            .is_none_or(|a| a.info.acknowledges)
    }

    fn notify(&self, client_id: &str) {
        for hook in self
            .on_revoke
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            hook(client_id);
        }
    }
}
