//! Client authentication: a client secret checked in constant time, the
//! app behind a token still allowed, the public keys an assertion is
//! checked against.

use subtle::ConstantTimeEq;

use super::app::AppKeys;
use super::secrets::{hash, secret_key};
use super::{AppInfo, AppRegistry};
use crate::auth::keys::KeySet;
use crate::auth::AuthError;

impl AppRegistry {
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
