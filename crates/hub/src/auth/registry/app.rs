//! The app model: what the dashboard and the CLI see of a registered app
//! (`AppInfo`), what the registry keeps besides (`App`), and its public
//! keys for `private_key_jwt`.

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::auth::keys::KeySet;
use crate::auth::AuthError;

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
pub(super) struct App {
    #[serde(flatten)]
    pub info: AppInfo,
    /// Bumped on every secret rotation; tokens carry the generation they
    /// were issued under, so a leaked token dies with its secret.
    #[serde(default)]
    pub generation: u64,
    /// Its public keys (a JWK set, JSON), for `private_key_jwt`.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Or where it publishes them.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// This process's own change of the app's settings while its write to
    /// the database is still queued: until it commits, `refresh` must not
    /// take the older stored value for another process's change.
    #[serde(skip)]
    pub unsaved: Option<std::sync::Arc<std::sync::Mutex<crate::storage::Pending<()>>>>,
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

/// A readable, unique client id: the name's letters plus random hex.
pub(super) fn new_client_id(name: &str) -> String {
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

/// Validates keys for registration: a JWK set (returned compacted) or a
/// JWKS URL.
pub(super) fn checked_keys(
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
            crate::auth::jwks::check_url(url).map_err(AuthError::Invalid)?;
            Ok((None, Some(url.to_owned())))
        }
    }
}
