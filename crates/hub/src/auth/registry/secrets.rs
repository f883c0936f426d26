//! Client secrets: made random, kept only as their SHA-256 in the secret
//! store under `client-secret:{client_id}`, rotated on request.

use base64::Engine;
use rand::Rng;
use sha2::{Digest, Sha256};

use super::AppRegistry;
use crate::auth::AuthError;

pub(super) fn secret_key(client_id: &str) -> String {
    format!("client-secret:{client_id}")
}

pub(super) fn hash(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

pub(super) fn new_secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

impl AppRegistry {
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
}
