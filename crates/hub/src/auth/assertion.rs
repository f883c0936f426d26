//! `private_key_jwt` client authentication (RFC 7523 §2.2, SMART Backend
//! Services): the app proves who it is with a short-lived JWT signed by a
//! key whose public half it registered, instead of sending a secret.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jsonwebtoken::{decode, decode_header, errors::ErrorKind, Validation};
use serde::Deserialize;

use super::jwks::{Fetcher, JwksSource};
use super::keys::{KeyError, ASSERTION_ALGS};
use super::registry::{now_secs, AppInfo, AppKeys, AppRegistry};
use super::AuthError;

pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// SMART: `exp` no more than five minutes in the future.
const MAX_AHEAD_SECS: u64 = 300;
/// Clock skew tolerated on that bound (the app may run on another machine).
const SKEW_SECS: u64 = 30;

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    jti: Option<String>,
}

/// What checking assertions remembers: used `jti`s, and the cached key
/// sets of apps that registered a JWKS URL.
#[derive(Default)]
pub struct Assertions {
    replay: ReplayGuard,
    sources: Mutex<HashMap<(String, String), Arc<JwksSource>>>,
}

/// The `jti`s of assertions already used, kept until they expire: an
/// assertion is good for one token request only (RFC 7523 §3, item 7).
#[derive(Default)]
struct ReplayGuard {
    seen: Mutex<HashMap<(String, String), u64>>,
}

impl ReplayGuard {
    /// Records `jti`; false if it was seen before and has not expired.
    fn first_use(&self, client_id: &str, jti: &str, exp: u64) -> bool {
        let now = now_secs();
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        // Only signed assertions get here, and each lives at most ~5 min,
        // so pruning on insert keeps the map small.
        seen.retain(|_, until| *until >= now);
        seen.insert((client_id.to_owned(), jti.to_owned()), exp)
            .is_none()
    }
}

fn refused(reason: impl Into<String>) -> AuthError {
    AuthError::Assertion(reason.into())
}

impl Assertions {
    /// The cached key set at `url` for `client_id` (one per app and URL, so
    /// a changed URL starts afresh).
    fn source(&self, client_id: &str, url: &str) -> Arc<JwksSource> {
        let mut sources = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        sources.retain(|(id, u), _| id != client_id || u == url);
        sources
            .entry((client_id.to_owned(), url.to_owned()))
            .or_insert_with(|| {
                Arc::new(JwksSource::new(url.to_owned(), format!("app {client_id}")))
            })
            .clone()
    }

    /// Checks `assertion` and returns the app it authenticates and the
    /// generation to put in its token. `client_id`, when the request names
    /// one, must be the assertion's issuer; `token_urls` are the URLs under
    /// which this token endpoint is known (the assertion's `aud`).
    pub(crate) async fn verify(
        &self,
        apps: &AppRegistry,
        fetcher: &Fetcher,
        client_id: Option<&str>,
        assertion: &str,
        token_urls: &[String],
    ) -> Result<(AppInfo, u64), AuthError> {
        let replay = &self.replay;
        let header = decode_header(assertion)
            .map_err(|_| refused("client_assertion is not a signed JWT"))?;
        let claimed = jsonwebtoken::dangerous::insecure_decode::<Unverified>(assertion)
            .ok()
            .and_then(|d| d.claims.iss)
            .ok_or_else(|| refused("client_assertion has no iss (it must be the client_id)"))?;
        if client_id.is_some_and(|id| id != claimed) {
            return Err(refused("client_id differs from the client_assertion's iss"));
        }
        let (app, generation, keys) = apps.keys_of(&claimed)?;
        if !ASSERTION_ALGS.contains(&header.alg) {
            return Err(refused(format!(
                "{}; sign with RS384 or ES384 (RS256 and ES256 are tolerated)",
                KeyError::Algorithm(header.alg)
            )));
        }
        let key = match keys {
            AppKeys::Set(set) => set
                .key_for(&header, &ASSERTION_ALGS)
                .map_err(|e| refused(format!("{e} among the app's registered keys")))?,
            AppKeys::Url(url) => self
                .source(&claimed, &url)
                .key(fetcher, &header, &ASSERTION_ALGS)
                .await
                .map_err(refused)?,
        };
        let mut validation = Validation::new(header.alg);
        validation.leeway = 0;
        validation.set_issuer(&[&claimed]);
        validation.sub = Some(claimed.clone());
        validation.set_audience(token_urls);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        let claims = decode::<Claims>(assertion, &key, &validation)
            .map_err(|e| {
                refused(match e.kind() {
                    ErrorKind::ExpiredSignature => "client_assertion has expired".to_owned(),
                    ErrorKind::InvalidAudience => format!(
                        "client_assertion aud must be this token endpoint, {}",
                        token_urls.first().map(String::as_str).unwrap_or_default()
                    ),
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject => {
                        "client_assertion iss and sub must both be the client_id".to_owned()
                    }
                    ErrorKind::MissingRequiredClaim(c) => format!("client_assertion has no {c}"),
                    ErrorKind::InvalidSignature => {
                        "client_assertion signature does not verify".to_owned()
                    }
                    _ => format!("client_assertion is not valid: {e}"),
                })
            })?
            .claims;
        if claims.exp > now_secs() + MAX_AHEAD_SECS + SKEW_SECS {
            return Err(refused("client_assertion exp is more than 5 minutes ahead"));
        }
        let jti = claims
            .jti
            .filter(|j| !j.is_empty())
            .ok_or_else(|| refused("client_assertion has no jti"))?;
        if !replay.first_use(&claimed, &jti, claims.exp) {
            return Err(refused(
                "client_assertion was already used (jti replayed); sign a new one",
            ));
        }
        Ok((app, generation))
    }
}
