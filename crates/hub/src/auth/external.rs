//! Access tokens from external issuers: the hospital's SMART authorization
//! server signs tokens with keys it publishes as a JWK set; the hub trusts
//! the issuers IT lists (`--trust-issuer ISS=JWKS_URL`) and verifies their
//! tokens against those keys.
//!
//! Keys are fetched and cached by `jwks`; a dead JWKS endpoint gives 401
//! with the reason.

use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::{decode, errors::ErrorKind, Validation};
use serde::Deserialize;
use tracing::{info, warn};

use super::jwks::{check_url, Fetcher, JwksPolicy, JwksSource};
use super::keys::ISSUER_ALGS;
use super::{AuthError, Principal, Scopes};

/// An issuer whose access tokens the hub accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issuer {
    /// The `iss` its tokens carry, compared exactly.
    pub issuer: String,
    /// Where it publishes its signing keys (https, or http on loopback).
    pub jwks_url: String,
    /// The `aud` its tokens must carry for this hub; `None` accepts any.
    pub audience: Option<String>,
}

impl Issuer {
    /// Parses `ISS=JWKS_URL` (the `--trust-issuer` flag). The issuer is
    /// everything before the first `=`.
    pub fn parse(s: &str) -> Result<Issuer, String> {
        let (issuer, url) = s
            .split_once('=')
            .ok_or_else(|| format!("{s:?}: expected ISSUER=JWKS_URL"))?;
        let issuer = Issuer {
            issuer: issuer.trim().to_owned(),
            jwks_url: url.trim().to_owned(),
            audience: None,
        };
        issuer.check()?;
        Ok(issuer)
    }

    /// The JWKS must come over TLS unless it is on this machine: keys
    /// fetched in clear could be swapped by anyone on the path.
    pub fn check(&self) -> Result<(), String> {
        if self.issuer.is_empty() {
            return Err("an issuer needs its iss value".into());
        }
        if self.issuer == super::token::ISSUER {
            return Err(format!("{:?} is the hub's own issuer", self.issuer));
        }
        check_url(&self.jwks_url)
    }
}

/// Clock skew tolerated on exp and nbf: the issuer is another machine.
const LEEWAY_SECS: u64 = 30;

struct Trusted {
    issuer: Issuer,
    keys: JwksSource,
}

pub struct External {
    trusted: Vec<Trusted>,
    fetcher: Fetcher,
}

#[derive(Deserialize)]
struct Unverified {
    iss: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    scope: Option<String>,
    /// Some servers send scopes as `scp` (a list or a string).
    scp: Option<serde_json::Value>,
    #[serde(rename = "hub.topic")]
    topic: Option<String>,
}

impl External {
    pub fn new(issuers: Vec<Issuer>, policy: JwksPolicy) -> External {
        let trusted: Vec<Trusted> = issuers
            .into_iter()
            .filter(|i| match i.check() {
                Ok(()) => true,
                Err(e) => {
                    warn!(issuer = %i.issuer, "not trusting this issuer: {e}");
                    false
                }
            })
            .map(|issuer| Trusted {
                keys: JwksSource::new(issuer.jwks_url.clone(), format!("issuer {}", issuer.issuer)),
                issuer,
            })
            .collect();
        for t in &trusted {
            info!(issuer = %t.issuer.issuer, jwks = %t.issuer.jwks_url, audience = ?t.issuer.audience, "trusting external issuer");
            if t.issuer.audience.is_none() {
                warn!(issuer = %t.issuer.issuer, "no audience set for this issuer: its tokens are accepted whatever their aud");
            }
        }
        External {
            trusted,
            fetcher: Fetcher::new(policy),
        }
    }

    /// The JWKS fetcher (apps' JWKS URLs use it too).
    pub(crate) fn fetcher(&self) -> &Fetcher {
        &self.fetcher
    }

    pub fn issuers(&self) -> impl Iterator<Item = &Issuer> {
        self.trusted.iter().map(|t| &t.issuer)
    }

    /// The trusted issuer `token` claims to come from (unverified: the
    /// claim only picks the keys that must then verify it).
    pub fn claimed_issuer(&self, token: &str) -> Option<usize> {
        if self.trusted.is_empty() {
            return None;
        }
        let iss = jsonwebtoken::dangerous::insecure_decode::<Unverified>(token)
            .ok()?
            .claims
            .iss?;
        self.trusted.iter().position(|t| t.issuer.issuer == iss)
    }

    /// Is `client_id` (as [`verify`](Self::verify) builds it) from an
    /// issuer still trusted?
    pub fn trusts_principal(&self, client_id: &str) -> bool {
        client_id
            .split_once('@')
            .is_some_and(|(_, iss)| self.trusted.iter().any(|t| t.issuer.issuer == iss))
    }

    /// Verifies a token from trusted issuer `index`. `session_topic` is
    /// where a token without `hub.topic` may go.
    pub async fn verify(
        &self,
        index: usize,
        token: &str,
        session_topic: &str,
    ) -> Result<Principal, AuthError> {
        let trusted = &self.trusted[index];
        let iss = &trusted.issuer.issuer;
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::InvalidToken(e.to_string()))?;
        let key = trusted
            .keys
            .key(&self.fetcher, &header, &ISSUER_ALGS)
            .await
            .map_err(AuthError::InvalidToken)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        validation.set_issuer(&[iss]);
        match &trusted.issuer.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.set_required_spec_claims(&["exp", "iss", "aud"]);
            }
            None => {
                validation.validate_aud = false;
                validation.set_required_spec_claims(&["exp", "iss"]);
            }
        }
        let claims = decode::<Claims>(token, &key, &validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => {
                    AuthError::InvalidToken("the access token is not valid yet (nbf)".into())
                }
                ErrorKind::InvalidAudience => AuthError::InvalidToken(format!(
                    "the access token's aud is not {:?}",
                    trusted.issuer.audience.as_deref().unwrap_or_default()
                )),
                _ => AuthError::InvalidToken(e.to_string()),
            })?
            .claims;
        let who = claims
            .client_id
            .or(claims.azp)
            .or(claims.sub)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                AuthError::InvalidToken("the access token names no client_id, azp or sub".into())
            })?;
        let scope = match (claims.scope, claims.scp) {
            (Some(s), _) => s,
            (None, Some(serde_json::Value::String(s))) => s,
            (None, Some(serde_json::Value::Array(list))) => list
                .iter()
                .filter_map(|v| v.as_str())
                .collect::<Vec<_>>()
                .join(" "),
            _ => String::new(),
        };
        // Topic binding: the issuer names the topic in `hub.topic` (as in
        // a SMART launch), or the token is good for this workstation's
        // session only. "*" is the hub's own notation for its admin-made
        // registrations and is not honoured from outside.
        let topic = match claims.topic {
            Some(t) if t == "*" || t.is_empty() => {
                return Err(AuthError::InvalidToken(
                    "hub.topic must name one topic".into(),
                ))
            }
            Some(t) => t,
            None => session_topic.to_owned(),
        };
        Ok(Principal {
            // `@issuer` keeps external callers apart from registered apps
            // (whose ids have no `@`), for ownership checks and the audit.
            client_id: format!("{who}@{iss}"),
            app_name: who,
            scopes: Scopes::parse(&scope),
            topics: vec![topic],
            expires_at: UNIX_EPOCH + Duration::from_secs(claims.exp),
        })
    }
}
