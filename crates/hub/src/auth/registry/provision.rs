//! The apps listed in a settings file (`[[apps]]`, lockstep.toml),
//! registered or brought up to date at start under the client ids IT chose.

use super::app::App;
use super::secrets::{hash, secret_key};
use super::{AppInfo, AppRegistry};
use crate::auth::scopes::Scopes;
use crate::auth::AuthError;

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

impl AppRegistry {
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
}
