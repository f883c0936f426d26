//! The registrations in the hub's database: loaded at start (with a
//! one-time import of an earlier version's `apps.json`), each change queued
//! to the writer, and re-read for changes another process made.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use super::app::App;
use super::{AppInfo, AppRegistry};
use crate::auth::store::SecretStore;
use crate::auth::AuthError;

impl App {
    pub(super) fn from_stored(stored: crate::storage::App) -> App {
        App {
            info: AppInfo {
                client_id: stored.client_id,
                name: stored.name,
                scopes: stored
                    .scopes
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect(),
                topics: stored.topics,
                created_at: crate::ids::format_time(stored.created_at),
                revoked: stored.revoked_at.is_some(),
                private_key_jwt: stored.jwks.is_some() || stored.jwks_url.is_some(),
                acknowledges: stored.acknowledges,
            },
            generation: stored.secret_generation,
            jwks: stored.jwks,
            jwks_url: stored.jwks_url,
            unsaved: None,
        }
    }

    pub(super) fn to_stored(&self) -> crate::storage::App {
        let created_at =
            crate::ids::parse_time(&self.info.created_at).unwrap_or_else(|_| SystemTime::now());
        crate::storage::App {
            client_id: self.info.client_id.clone(),
            name: self.info.name.clone(),
            scopes: self.info.scopes.join(" "),
            topics: self.info.topics.clone(),
            created_at,
            revoked_at: self.info.revoked.then(SystemTime::now),
            secret_generation: self.generation,
            jwks: self.jwks.clone(),
            jwks_url: self.jwks_url.clone(),
            acknowledges: self.info.acknowledges,
        }
    }
}

impl AppRegistry {
    /// Loads the registrations from `storage` (or starts in memory). An
    /// `apps.json` from an earlier version in `legacy` is imported once and
    /// renamed.
    pub fn load(
        storage: Option<crate::storage::Storage>,
        legacy: Option<PathBuf>,
        store: Arc<dyn SecretStore>,
    ) -> Result<AppRegistry, AuthError> {
        let mut apps: Vec<App> = match &storage {
            Some(db) => db
                .load_apps()
                .map_err(|e| AuthError::Store(e.to_string()))?
                .into_iter()
                .map(App::from_stored)
                .collect(),
            None => Vec::new(),
        };
        if let (Some(db), Some(path)) = (&storage, legacy) {
            if let Ok(text) = std::fs::read_to_string(&path) {
                if let Ok(old) = serde_json::from_str::<Vec<App>>(&text) {
                    for app in old {
                        if apps.iter().any(|a| a.info.client_id == app.info.client_id) {
                            continue;
                        }
                        db.save_app(&app.to_stored()).detach();
                        apps.push(app);
                    }
                    let _ = std::fs::rename(&path, path.with_extension("json.imported"));
                }
            }
        }
        Ok(AppRegistry {
            storage,
            store,
            apps: RwLock::new(apps),
            on_revoke: Mutex::new(Vec::new()),
            removed: Mutex::new(Vec::new()),
        })
    }

    /// Queues the app's new state; the writer commits it in order (the
    /// CLI waits with `Storage::flush` before it exits).
    pub(super) fn save(&self, app: &App) {
        if let Some(db) = &self.storage {
            db.save_app(&app.to_stored()).detach();
        }
    }

    /// Re-reads the registrations another process (`lockstep-hub apps …`)
    /// may have changed. Only ever tightens: apps revoked or rotated there
    /// are cut off here, new ones are added; nothing is loosened, since a
    /// revocation made here may not be on disk yet. Returns how many apps
    /// changed.
    pub fn refresh(&self) -> usize {
        let Some(db) = &self.storage else { return 0 };
        let Ok(stored) = db.load_apps() else { return 0 };
        let mut cut_off = Vec::new();
        let mut added = 0;
        {
            let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
            let removed = self.removed.lock().unwrap_or_else(|e| e.into_inner());
            for fresh in stored.into_iter().map(App::from_stored) {
                match apps
                    .iter_mut()
                    .find(|a| a.info.client_id == fresh.info.client_id)
                {
                    Some(app) => {
                        let revoked = fresh.info.revoked && !app.info.revoked;
                        let rotated = fresh.generation > app.generation;
                        if revoked {
                            app.info.revoked = true;
                        }
                        if rotated {
                            app.generation = fresh.generation;
                            app.jwks = fresh.jwks;
                            app.jwks_url = fresh.jwks_url;
                            app.info.private_key_jwt = fresh.info.private_key_jwt;
                        }
                        if revoked || rotated {
                            cut_off.push(app.info.client_id.clone());
                        }
                        // Not a permission: follows `apps set-ack` either
                        // way, unless our own change is still being written.
                        let queued = app.unsaved.as_ref().is_some_and(|w| {
                            !w.lock().unwrap_or_else(|e| e.into_inner()).settled()
                        });
                        if !queued {
                            app.unsaved = None;
                            app.info.acknowledges = fresh.info.acknowledges;
                        }
                    }
                    None if !removed.contains(&fresh.info.client_id) => {
                        apps.push(fresh);
                        added += 1;
                    }
                    None => {}
                }
            }
        }
        for client_id in &cut_off {
            self.notify(client_id);
        }
        cut_off.len() + added
    }
}
