//! Changes to the registrations from the dashboard and the CLI: register
//! (confidential, public or key-based clients), mark as never
//! acknowledging, new keys, revoke, remove.

use super::app::{checked_keys, new_client_id, App, PublicKeys};
use super::secrets::{hash, new_secret, secret_key};
use super::{AppInfo, AppRegistry};
use crate::auth::scopes::Scopes;
use crate::auth::AuthError;

impl AppRegistry {
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
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

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
