//! Registered apps: who may ask the hub for a token, with which scopes, for
//! which topics. Metadata lives in the hub's database (`storage`); the
//! client secrets never do: only their SHA-256 goes to the secret store
//! (secrets are 256 random bits, so a plain hash is enough), and the
//! comparison is constant-time.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::keys::KeySet;
use super::scopes::Scopes;
use super::store::SecretStore;
use super::AuthError;

/// What the dashboard and the CLI show of an app. No secret.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppInfo {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Topics it may join; `$session` stands for the hub's session topic.
    pub topics: Vec<String>,
    pub created_at: String,
    pub revoked: bool,
    /// Authenticates with a signed assertion (`private_key_jwt`) against
    /// its registered public keys.
    #[serde(default)]
    pub private_key_jwt: bool,
    /// `false` for a known client that never sends an ACK (OHIF's cast
    /// client, a validator CLI): it is not dropped or reported for a
    /// missing ACK. The spec's behaviour (`true`) is the default.
    #[serde(default = "acknowledges_by_default")]
    pub acknowledges: bool,
}

fn acknowledges_by_default() -> bool {
    true
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct App {
    #[serde(flatten)]
    info: AppInfo,
    /// Bumped on every secret rotation; tokens carry the generation they
    /// were issued under, so a leaked token dies with its secret.
    #[serde(default)]
    generation: u64,
    /// Its public keys (a JWK set, JSON), for `private_key_jwt`.
    #[serde(default)]
    jwks: Option<String>,
    /// Or where it publishes them.
    #[serde(default)]
    jwks_url: Option<String>,
    /// This process's own change of the app's settings while its write to
    /// the database is still queued: until it commits, `refresh` must not
    /// take the older stored value for another process's change.
    #[serde(skip)]
    unsaved: Option<std::sync::Arc<std::sync::Mutex<crate::storage::Pending<()>>>>,
}

/// An app's public keys for `private_key_jwt`, as registered.
#[derive(Clone, Copy, Debug)]
pub enum PublicKeys<'a> {
    /// A JWK set (JSON text).
    Set(&'a str),
    /// A URL serving the JWK set (https, or http on loopback), re-fetched
    /// when the app signs with a new `kid`.
    Url(&'a str),
}

/// What `keys_of` found.
pub(crate) enum AppKeys {
    Set(KeySet),
    Url(String),
}

/// What `AppRegistry::provision` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Provisioned {
    Added {
        secret_stored: bool,
    },
    Updated {
        secret_stored: bool,
    },
    Unchanged {
        secret_stored: bool,
    },
    /// Revoked on this machine: left so.
    Revoked,
}

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

fn secret_key(client_id: &str) -> String {
    format!("client-secret:{client_id}")
}

fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A readable, unique client id: the name's letters plus random hex.
fn new_client_id(name: &str) -> String {
    let slug: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect::<String>()
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let slug: String = slug.chars().take(24).collect();
    let suffix: [u8; 4] = rand::rng().random();
    let suffix: String = suffix.iter().map(|b| format!("{b:02x}")).collect();
    if slug.is_empty() {
        format!("app-{suffix}")
    } else {
        format!("{slug}-{suffix}")
    }
}

impl App {
    fn from_stored(stored: crate::storage::App) -> App {
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

    fn to_stored(&self) -> crate::storage::App {
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

    /// Calls `hook(client_id)` whenever an app is revoked or removed.
    pub(crate) fn on_revoke(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        self.on_revoke
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Box::new(hook));
    }

    /// Queues the app's new state; the writer commits it in order (the
    /// CLI waits with `Storage::flush` before it exits).
    fn save(&self, app: &App) {
        if let Some(db) = &self.storage {
            db.save_app(&app.to_stored()).detach();
        }
    }

    pub fn list(&self) -> Vec<AppInfo> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|a| a.info.clone())
            .collect()
    }

    /// Registers an app; returns it and its client secret, shown only once.
    pub fn register(
        &self,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
    ) -> Result<(AppInfo, String), AuthError> {
        let (info, secret) = self.register_app(name, scopes, topics, None, true)?;
        Ok((info, secret.unwrap_or_default()))
    }

    /// Registers a public client (a browser app): no secret, no keys; it
    /// gets tokens only by `authorization_code` with PKCE.
    pub fn register_public(
        &self,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
    ) -> Result<AppInfo, AuthError> {
        self.register_app_inner(name, scopes, topics, None, false, true)
            .map(|(info, _)| info)
    }

    /// Registers an app with public keys for `private_key_jwt`, a client
    /// secret (`with_secret`), or both. Returns the secret, if one was
    /// made: it is shown only once.
    pub fn register_app(
        &self,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
        keys: Option<PublicKeys<'_>>,
        with_secret: bool,
    ) -> Result<(AppInfo, Option<String>), AuthError> {
        self.register_app_inner(name, scopes, topics, keys, with_secret, false)
    }

    fn register_app_inner(
        &self,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
        keys: Option<PublicKeys<'_>>,
        with_secret: bool,
        public: bool,
    ) -> Result<(AppInfo, Option<String>), AuthError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(AuthError::Invalid("an app needs a name".into()));
        }
        let parsed = Scopes::parse(scopes);
        if parsed.is_empty() {
            return Err(AuthError::Invalid(
                "an app needs at least one fhircast/ scope, e.g. fhircast/*.read".into(),
            ));
        }
        let topics = if topics.is_empty() {
            vec!["$session".to_owned()]
        } else {
            topics
        };
        let info = AppInfo {
            client_id: new_client_id(name),
            name: name.to_owned(),
            scopes: parsed.to_vec(),
            topics,
            created_at: crate::ids::now(),
            revoked: false,
            private_key_jwt: keys.is_some(),
            acknowledges: true,
        };
        let (jwks, jwks_url) = checked_keys(keys)?;
        if keys.is_none() && !with_secret && !public {
            return Err(AuthError::Invalid(
                "an app needs a client secret or public keys (a JWK set)".into(),
            ));
        }
        let secret = with_secret.then(new_secret);
        if let Some(secret) = &secret {
            self.store
                .set(&secret_key(&info.client_id), &hash(secret))
                .map_err(|e| AuthError::Store(e.0))?;
        }
        let app = App {
            info: info.clone(),
            generation: 0,
            jwks,
            jwks_url,
            unsaved: None,
        };
        self.save(&app);
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(app);
        Ok((info, secret))
    }

    /// Registers, or brings up to date, an app listed in a settings file
    /// (`[[apps]]`) under the client id IT chose. `secret` goes to the
    /// secret store only while the app has none (first start): the file,
    /// not the hub, is then the place to remove it from. A changed scope or
    /// topic list ends the tokens issued under the old one. An app revoked
    /// on this machine stays revoked.
    pub fn provision(
        &self,
        client_id: &str,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
        secret: Option<&str>,
    ) -> Result<Provisioned, AuthError> {
        let parsed = Scopes::parse(scopes);
        if parsed.is_empty() || name.trim().is_empty() || client_id.is_empty() {
            return Err(AuthError::Invalid(format!(
                "{client_id}: an app needs a client id, a name and a fhircast/ scope"
            )));
        }
        let topics = if topics.is_empty() {
            vec!["$session".to_owned()]
        } else {
            topics
        };
        let has_secret = |s: &Self| {
            s.store
                .get(&secret_key(client_id))
                .map(|v| v.is_some())
                .map_err(|e| AuthError::Store(e.0))
        };
        let store_secret = |s: &Self| match secret {
            Some(secret) if !has_secret(s)? => s
                .store
                .set(&secret_key(client_id), &hash(secret))
                .map(|()| true)
                .map_err(|e| AuthError::Store(e.0)),
            _ => Ok(false),
        };
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let Some(app) = apps.iter_mut().find(|a| a.info.client_id == client_id) else {
            let stored = store_secret(self)?;
            let app = App {
                info: AppInfo {
                    client_id: client_id.to_owned(),
                    name: name.trim().to_owned(),
                    scopes: parsed.to_vec(),
                    topics,
                    created_at: crate::ids::now(),
                    revoked: false,
                    private_key_jwt: false,
                    acknowledges: true,
                },
                generation: 0,
                // IT's file provisions secrets only; keys come by `apps set-jwks`.
                jwks: None,
                jwks_url: None,
                unsaved: None,
            };
            self.save(&app);
            apps.push(app);
            return Ok(Provisioned::Added {
                secret_stored: stored,
            });
        };
        if app.info.revoked {
            return Ok(Provisioned::Revoked);
        }
        let narrowed = app.info.scopes != parsed.to_vec() || app.info.topics != topics;
        let renamed = app.info.name != name.trim();
        let stored = store_secret(self)?;
        if !(narrowed || renamed) {
            return Ok(Provisioned::Unchanged {
                secret_stored: stored,
            });
        }
        app.info.name = name.trim().to_owned();
        app.info.scopes = parsed.to_vec();
        app.info.topics = topics;
        if narrowed {
            app.generation += 1;
        }
        self.save(app);
        drop(apps);
        if narrowed {
            self.notify(client_id);
        }
        Ok(Provisioned::Updated {
            secret_stored: stored,
        })
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

    /// Marks an app as one that sends ACKs (`true`, the default) or never
    /// does. Returns whether anything changed. Tokens stay valid: this is
    /// not a permission.
    pub fn set_acknowledges(&self, client_id: &str, acknowledges: bool) -> Result<bool, AuthError> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter_mut()
            .find(|a| a.info.client_id == client_id)
            .ok_or(AuthError::UnknownClient)?;
        if app.info.acknowledges == acknowledges {
            return Ok(false);
        }
        app.info.acknowledges = acknowledges;
        if let Some(db) = &self.storage {
            let write = db.save_app(&app.to_stored());
            app.unsaved = Some(std::sync::Arc::new(std::sync::Mutex::new(write)));
        }
        Ok(true)
    }

    /// A new secret; tokens issued with the old one stop working.
    pub fn rotate_secret(&self, client_id: &str) -> Result<String, AuthError> {
        let secret = new_secret();
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter_mut()
            .find(|a| a.info.client_id == client_id && !a.info.revoked)
            .ok_or(AuthError::UnknownClient)?;
        self.store
            .set(&secret_key(client_id), &hash(&secret))
            .map_err(|e| AuthError::Store(e.0))?;
        app.generation += 1;
        self.save(app);
        drop(apps);
        self.notify(client_id);
        Ok(secret)
    }

    /// Replaces an app's public keys; tokens issued before stop working
    /// (a key is replaced because it may have leaked).
    pub fn set_keys(&self, client_id: &str, keys: PublicKeys<'_>) -> Result<(), AuthError> {
        let (jwks, jwks_url) = checked_keys(Some(keys))?;
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter_mut()
            .find(|a| a.info.client_id == client_id && !a.info.revoked)
            .ok_or(AuthError::UnknownClient)?;
        app.jwks = jwks;
        app.jwks_url = jwks_url;
        app.info.private_key_jwt = true;
        app.generation += 1;
        self.save(app);
        drop(apps);
        self.notify(client_id);
        Ok(())
    }

    /// The app's registered public keys, if it is active and has any.
    pub(crate) fn keys_of(&self, client_id: &str) -> Result<(AppInfo, u64, AppKeys), AuthError> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter()
            .find(|a| a.info.client_id == client_id)
            .ok_or(AuthError::UnknownClient)?;
        if app.info.revoked {
            return Err(AuthError::Revoked);
        }
        let keys =
            match (&app.jwks, &app.jwks_url) {
                (Some(text), _) => AppKeys::Set(KeySet::parse_registered(text).map_err(|e| {
                    AuthError::Assertion(format!("the app's registered keys: {e}"))
                })?),
                (None, Some(url)) => AppKeys::Url(url.clone()),
                (None, None) => return Err(AuthError::Assertion(
                    "this app has no registered public keys; authenticate with its client secret"
                        .into(),
                )),
            };
        Ok((app.info.clone(), app.generation, keys))
    }

    /// Revokes an app: its secret is deleted, its tokens refused at once,
    /// and the hub cuts off its subscriptions.
    pub fn revoke(&self, client_id: &str) -> Result<(), AuthError> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter_mut()
            .find(|a| a.info.client_id == client_id)
            .ok_or(AuthError::UnknownClient)?;
        app.info.revoked = true;
        let _ = self.store.delete(&secret_key(client_id));
        self.save(app);
        drop(apps);
        self.notify(client_id);
        Ok(())
    }

    /// Forgets an app entirely.
    pub fn remove(&self, client_id: &str) -> Result<(), AuthError> {
        let mut apps = self.apps.write().unwrap_or_else(|e| e.into_inner());
        let before = apps.len();
        apps.retain(|a| a.info.client_id != client_id);
        if apps.len() == before {
            return Err(AuthError::UnknownClient);
        }
        let _ = self.store.delete(&secret_key(client_id));
        self.removed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(client_id.to_owned());
        if let Some(db) = &self.storage {
            db.delete_app(client_id).detach();
        }
        drop(apps);
        self.notify(client_id);
        Ok(())
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

    /// Checks a client secret in constant time; returns the app and the
    /// generation to put in its token.
    pub(crate) fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<(AppInfo, u64), AuthError> {
        // Same work whether or not the client exists: no timing oracle
        // for which client ids are registered.
        let given = hash(secret);
        let active = self.active(client_id, None);
        let stored = match &active {
            Ok(_) => self
                .store
                .get(&secret_key(client_id))
                .map_err(|e| AuthError::Store(e.0))?,
            Err(_) => None,
        };
        let expected = stored.unwrap_or_else(|| hash("\u{0}no such client"));
        let matches = bool::from(expected.as_bytes().ct_eq(given.as_bytes()));
        match active {
            Ok(found) if matches => Ok(found),
            Ok(_) => Err(AuthError::BadSecret),
            Err(e) => Err(e),
        }
    }

    /// The app behind a token of `generation` (any, if `None`), if it is
    /// still allowed.
    pub(crate) fn active(
        &self,
        client_id: &str,
        generation: Option<u64>,
    ) -> Result<(AppInfo, u64), AuthError> {
        let apps = self.apps.read().unwrap_or_else(|e| e.into_inner());
        let app = apps
            .iter()
            .find(|a| a.info.client_id == client_id)
            .ok_or(AuthError::UnknownClient)?;
        if app.info.revoked || generation.is_some_and(|g| g != app.generation) {
            return Err(AuthError::Revoked);
        }
        Ok((app.info.clone(), app.generation))
    }
}

/// Validates keys for registration: a JWK set (returned compacted) or a
/// JWKS URL.
fn checked_keys(
    keys: Option<PublicKeys<'_>>,
) -> Result<(Option<String>, Option<String>), AuthError> {
    match keys {
        None => Ok((None, None)),
        Some(PublicKeys::Set(text)) => {
            KeySet::parse_registered(text)
                .map_err(|e| AuthError::Invalid(format!("JWK set: {e}")))?;
            let value: serde_json::Value =
                serde_json::from_str(text).map_err(|e| AuthError::Invalid(e.to_string()))?;
            Ok((Some(value.to_string()), None))
        }
        Some(PublicKeys::Url(url)) => {
            super::jwks::check_url(url).map_err(AuthError::Invalid)?;
            Ok((None, Some(url.to_owned())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::store::MemoryStore;

    fn registry(storage: Option<crate::storage::Storage>) -> AppRegistry {
        AppRegistry::load(storage, None, Arc::new(MemoryStore::default())).unwrap()
    }

    /// Issue 19: the accessor the channel code asks before dropping an app
    /// for a missing ACK.
    #[test]
    fn acknowledges_is_true_unless_an_app_is_marked() {
        let apps = registry(None);
        assert!(
            apps.acknowledges("nobody"),
            "unknown ids keep the spec's rule"
        );
        let (ohif, _) = apps.register("OHIF", "fhircast/*.read", vec![]).unwrap();
        assert!(ohif.acknowledges, "a new app acknowledges by default");
        assert!(apps.acknowledges(&ohif.client_id));

        assert!(apps.set_acknowledges(&ohif.client_id, false).unwrap());
        assert!(!apps.acknowledges(&ohif.client_id));
        assert!(
            !apps.set_acknowledges(&ohif.client_id, false).unwrap(),
            "no change"
        );
        assert!(!apps.list()[0].acknowledges, "the dashboard sees it");
        assert!(matches!(
            apps.set_acknowledges("nobody", false),
            Err(AuthError::UnknownClient)
        ));
    }

    /// The flag is stored: a registry loaded again (the next start, or the
    /// CLI in another process) sees it, and `refresh` follows a change made
    /// elsewhere.
    #[test]
    fn acknowledges_survives_a_reload_and_follows_refresh() {
        let db = crate::storage::Storage::open_in_memory().unwrap();
        let apps = registry(Some(db.clone()));
        let (app, _) = apps
            .register("Validator", "fhircast/*.read", vec![])
            .unwrap();
        apps.set_acknowledges(&app.client_id, false).unwrap();
        db.flush().wait().unwrap();

        let again = registry(Some(db.clone()));
        assert!(!again.acknowledges(&app.client_id));

        again.set_acknowledges(&app.client_id, true).unwrap();
        db.flush().wait().unwrap();
        apps.refresh();
        assert!(apps.acknowledges(&app.client_id));
    }
}
