//! Authorization (2-2, 4-3): bearer tokens with FHIRcast SMART scopes.
//!
//! The hub is its own SMART-style authorization server for the apps IT
//! registered (`registry`): `POST /oauth/token` with `client_credentials`
//! returns a short-lived signed token (`token`) carrying the granted scopes
//! and topics. Apps authenticate with a client secret or, SMART Backend
//! Services style, with a signed assertion (`private_key_jwt`, `assertion`)
//! against public keys they registered (`keys`). Tokens from the hospital's
//! own SMART server are accepted too when IT trusts its issuer (`external`).
//! Every subscribe, publish and Get Current Context presents a token;
//! `Auth::check` decides. Secrets live in a `SecretStore`.

pub mod assertion;
pub mod external;
pub mod jwks;
pub mod keys;
pub mod registry;
pub mod scopes;
pub mod smart;
pub mod store;
mod token;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{header, HeaderMap, StatusCode};
use base64::Engine;
use rand::Rng;
use tracing::{info, warn};

pub use external::Issuer;
pub use jwks::JwksPolicy;
pub use registry::PublicKeys;
pub use registry::{AppInfo, AppRegistry, Provisioned};
pub use scopes::Scopes;
pub use store::{FileStore, KeyringStore, MemoryStore, SecretStore};

use crate::error::ApiError;
use token::{Claims, Signer};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "no bearer token: send Authorization: Bearer <access_token> (get one from /oauth/token)"
    )]
    Missing,
    #[error("the access token has expired; request a new one")]
    Expired,
    #[error("the access token is not valid: {0}")]
    InvalidToken(String),
    #[error("this app's access has been revoked")]
    Revoked,
    #[error("unknown client_id")]
    UnknownClient,
    #[error("wrong client secret")]
    BadSecret,
    /// A `private_key_jwt` client assertion was refused; says why.
    #[error("{0}")]
    Assertion(String),
    #[error("{0}")]
    Invalid(String),
    #[error("secret store: {0}")]
    Store(String),
}

/// Who is calling: the app a valid token was issued to.
#[derive(Clone, Debug)]
pub struct Principal {
    pub client_id: String,
    pub app_name: String,
    pub scopes: Scopes,
    pub topics: Vec<String>,
    pub expires_at: SystemTime,
}

impl Principal {
    fn may_use_topic(&self, topic: &str) -> bool {
        self.topics.iter().any(|t| t == topic || t == "*")
    }
}

/// What a request needs of its token.
pub enum Need<'a> {
    /// Receive each of these events (subscribe).
    Read(Vec<&'a str>),
    /// Send this event (publish).
    Write(&'a str),
    /// Read the topic's context (Get Current Context).
    AnyRead,
    /// Only a valid token for the topic (unsubscribe).
    Topic,
}

/// A token response (`POST /oauth/token`).
#[derive(Debug, serde::Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(rename = "hub.topic")]
    pub topic: String,
    /// Issued to browser apps (`authorization_code`), rotated on use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

pub struct Auth {
    enabled: bool,
    signer: Signer,
    apps: AppRegistry,
    session_topic: String,
    token_lifetime: Duration,
    assertions: assertion::Assertions,
    external: external::External,
    smart: Arc<smart::Smart>,
}

const SIGNING_KEY: &str = "token-signing-key";

impl Auth {
    /// Loads (or creates) the signing key from `store` and the registry from
    /// `storage`. Never fails: a store that can't keep the key gets an
    /// in-memory one and a loud log line.
    pub fn new(
        enabled: bool,
        store: Arc<dyn SecretStore>,
        storage: Option<crate::storage::Storage>,
        legacy_apps: Option<std::path::PathBuf>,
        session_topic: String,
        token_lifetime: Duration,
    ) -> Auth {
        let key = match store.get(SIGNING_KEY) {
            Ok(Some(k)) => base64::engine::general_purpose::STANDARD
                .decode(k)
                .ok()
                .filter(|k| k.len() >= 32),
            Ok(None) => None,
            Err(e) => {
                warn!(error = %e, "cannot read the token signing key; tokens will not survive a restart");
                None
            }
        };
        let key = key.unwrap_or_else(|| {
            let key: [u8; 32] = rand::rng().random();
            if let Err(e) = store.set(SIGNING_KEY, &base64::engine::general_purpose::STANDARD.encode(key)) {
                warn!(error = %e, "cannot store the token signing key; tokens will not survive a restart");
            }
            key.to_vec()
        });
        let apps = AppRegistry::load(storage, legacy_apps, store.clone()).unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the app registry; starting with no registered apps");
            AppRegistry::load(None, None, store.clone()).expect("in-memory registry")
        });
        let smart = Arc::new(smart::Smart::new(store.clone()));
        smart.preload(apps.list().iter().map(|a| a.client_id.as_str()));
        let forget = smart.clone();
        apps.on_revoke(move |client_id| forget.forget(client_id));
        if enabled {
            info!(secrets = %store.describe(), apps = apps.list().len(), "authorization on");
        }
        Auth {
            enabled,
            signer: Signer::new(&key),
            apps,
            session_topic,
            token_lifetime,
            assertions: assertion::Assertions::default(),
            external: external::External::new(Vec::new(), JwksPolicy::default()),
            smart,
        }
    }

    /// Browser apps: codes, consents, refresh tokens, launches.
    pub fn smart(&self) -> &smart::Smart {
        &self.smart
    }

    /// Registers a browser app: a public client (no secret, no keys) with
    /// its redirect URIs.
    pub fn register_browser_app(
        &self,
        name: &str,
        scopes: &str,
        topics: Vec<String>,
        browser: smart::BrowserApp,
    ) -> Result<AppInfo, AuthError> {
        let browser = browser.checked()?;
        let info = self.apps.register_public(name, scopes, topics)?;
        if let Err(e) = self.smart.save_app(&info.client_id, browser) {
            let _ = self.apps.remove(&info.client_id);
            return Err(e);
        }
        Ok(info)
    }

    /// The active browser app `client_id`, with its registration.
    pub fn browser_app(&self, client_id: &str) -> Option<(AppInfo, smart::BrowserApp)> {
        let (info, _) = self.apps.active(client_id, None).ok()?;
        Some((info, self.smart.app(client_id)?))
    }

    /// Is `origin` a registered, active browser app's (CORS)?
    pub fn browser_origin_allowed(&self, origin: &str) -> bool {
        self.smart
            .origin_allowed(origin, |id| self.apps.active(id, None).is_ok())
    }

    /// A token for a browser app after a redeemed code or refresh token,
    /// with a new refresh token.
    pub fn issue_for_browser_app(
        &self,
        client_id: &str,
        scope: &str,
        generation: Option<u64>,
    ) -> Result<TokenResponse, AuthError> {
        let (app, current) = self.apps.active(client_id, generation)?;
        if self.smart.consent(client_id) != Some(smart::Consent::Approved) {
            return Err(AuthError::Revoked);
        }
        let mut issued = self.grant(app, current, Some(scope))?;
        issued.refresh_token = Some(self.smart.mint_refresh(client_id, &issued.scope, current)?);
        Ok(issued)
    }

    /// For the tray's "Open app" (EHR launch): the app's launch URL with a
    /// fresh `launch` id and `iss` (this hub's base URL), or `None` if the
    /// app is not an active browser app with a launch URL.
    pub fn launch_url(&self, client_id: &str, iss: &str) -> Option<String> {
        let (_, browser) = self.browser_app(client_id)?;
        let base = browser.launch_url?;
        let launch = self.smart.mint_launch(client_id)?;
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("launch", &launch)
            .append_pair("iss", iss)
            .finish();
        let sep = if base.contains('?') { '&' } else { '?' };
        Some(format!("{base}{sep}{query}"))
    }

    /// Also accepts access tokens from `issuers`, verified against their
    /// JWKS.
    pub fn with_issuers(mut self, issuers: Vec<Issuer>, policy: JwksPolicy) -> Auth {
        self.external = external::External::new(issuers, policy);
        self
    }

    /// The external issuers trusted.
    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.external.issuers()
    }

    /// Is the caller behind `client_id` (a registered app, or a client of a
    /// trusted issuer) still allowed? Restored subscriptions ask this.
    pub fn still_allowed(&self, client_id: &str) -> bool {
        self.apps.active(client_id, None).is_ok() || self.external.trusts_principal(client_id)
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    pub fn apps(&self) -> &AppRegistry {
        &self.apps
    }

    /// The topic of this workstation's session (`$session` in registrations).
    pub fn session_topic(&self) -> &str {
        &self.session_topic
    }

    /// `client_credentials` with a client secret: a token for the scopes
    /// requested that the app may have (all of them if none requested).
    pub fn issue(
        &self,
        client_id: &str,
        secret: &str,
        requested: Option<&str>,
    ) -> Result<TokenResponse, AuthError> {
        let (app, generation) = self.apps.authenticate(client_id, secret)?;
        self.grant(app, generation, requested)
    }

    /// `client_credentials` with `private_key_jwt` (SMART Backend
    /// Services): the app is who signed `assertion`. `token_urls` are the
    /// URLs this token endpoint answers to (the assertion's `aud`).
    pub async fn issue_for_assertion(
        &self,
        client_id: Option<&str>,
        assertion: &str,
        requested: Option<&str>,
        token_urls: &[String],
    ) -> Result<TokenResponse, AuthError> {
        let (app, generation) = self
            .assertions
            .verify(
                &self.apps,
                self.external.fetcher(),
                client_id,
                assertion,
                token_urls,
            )
            .await?;
        self.grant(app, generation, requested)
    }

    /// A token for an authenticated app.
    fn grant(
        &self,
        app: AppInfo,
        generation: u64,
        requested: Option<&str>,
    ) -> Result<TokenResponse, AuthError> {
        let allowed = Scopes::parse(&app.scopes.join(" "));
        let granted = allowed.grant(requested);
        if granted.is_empty() {
            return Err(AuthError::Invalid(format!(
                "none of the requested scopes are allowed for this app (allowed: {allowed})"
            )));
        }
        let topics: Vec<String> = app
            .topics
            .iter()
            .map(|t| {
                if t == "$session" {
                    self.session_topic.clone()
                } else {
                    t.clone()
                }
            })
            .collect();
        let now = registry::now_secs();
        let claims = Claims {
            iss: token::ISSUER.into(),
            aud: token::AUDIENCE.into(),
            sub: app.client_id.clone(),
            exp: now + self.token_lifetime.as_secs(),
            iat: now,
            jti: crate::ids::uuid(),
            scope: granted.to_string(),
            topics: topics.clone(),
            generation,
        };
        let access_token = self.signer.sign(&claims)?;
        info!(client = %app.client_id, scope = %claims.scope, "token issued");
        Ok(TokenResponse {
            access_token,
            token_type: "Bearer",
            expires_in: self.token_lifetime.as_secs(),
            scope: claims.scope,
            topic: topics.into_iter().next().unwrap_or_default(),
            refresh_token: None,
        })
    }

    /// The caller behind a bearer token, if it is valid and its app active
    /// (or its issuer trusted). Only tokens of external issuers wait here,
    /// and then at most for one bounded JWKS fetch.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, AuthError> {
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(AuthError::Missing)?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        if let Some(issuer) = self.external.claimed_issuer(token) {
            return self
                .external
                .verify(issuer, token, &self.session_topic)
                .await;
        }
        let claims = self.signer.verify(token)?;
        let (app, _) = self.apps.active(&claims.sub, Some(claims.generation))?;
        Ok(Principal {
            client_id: claims.sub,
            app_name: app.name,
            scopes: Scopes::parse(&claims.scope),
            topics: claims.topics,
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
        })
    }

    /// Decides a request: `Ok(None)` when auth is off, `Ok(Some(caller))`
    /// when allowed, else 401 (no or bad token) or 403 naming what is
    /// missing (checklist 13, 66; hub-digest §10).
    pub async fn check(
        &self,
        headers: &HeaderMap,
        topic: &str,
        need: Need<'_>,
    ) -> Result<Option<Principal>, ApiError> {
        if !self.enabled {
            return Ok(None);
        }
        let principal = self.authenticate(headers).await.map_err(|e| {
            info!(reason = %e, "request refused: not authenticated");
            ApiError::unauthorized(e.to_string())
        })?;
        let forbidden = |msg: String| {
            info!(client = %principal.client_id, reason = %msg, "request refused: forbidden");
            ApiError::new(StatusCode::FORBIDDEN, msg)
        };
        if !principal.may_use_topic(topic) {
            return Err(forbidden(format!(
                "the access token is not valid for topic {topic:?}"
            )));
        }
        match need {
            Need::Read(events) => {
                let missing: Vec<String> = events
                    .iter()
                    .filter(|e| !principal.scopes.can_read(e))
                    .map(|e| scopes::needed(e, false))
                    .collect();
                if !missing.is_empty() {
                    return Err(forbidden(format!("missing scope: {}", missing.join(" "))));
                }
            }
            Need::Write(event) if !principal.scopes.can_write(event) => {
                return Err(forbidden(format!(
                    "missing scope: {}",
                    scopes::needed(event, true)
                )));
            }
            Need::AnyRead if !principal.scopes.can_read_anything() => {
                return Err(forbidden(
                    "missing scope: a fhircast/<event>.read scope".to_owned(),
                ));
            }
            _ => {}
        }
        Ok(Some(principal))
    }
}
