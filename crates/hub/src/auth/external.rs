//! Access tokens from external issuers: the hospital's SMART authorization
//! server signs tokens with keys it publishes as a JWK set; the hub trusts
//! the issuers IT lists (`--trust-issuer ISS=JWKS_URL`) and verifies their
//! tokens against those keys.
//!
//! Keys are fetched over HTTP(S) with a timeout and cached for a TTL. A
//! token naming an unknown `kid` (the issuer rotated its keys) triggers a
//! re-fetch, but at most one fetch per issuer is in flight and attempts are
//! spaced by a minimum interval, so a stream of tokens with made-up `kid`s
//! cannot turn the hub into a fetch storm against the issuer. A dead JWKS
//! endpoint gives 401 with the reason; stale keys are used until a fetch
//! succeeds.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use jsonwebtoken::{decode, errors::ErrorKind, Header, Validation};
use serde::Deserialize;
use tracing::{info, warn};

use super::keys::{KeySet, ISSUER_ALGS};
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
        let url = reqwest::Url::parse(&self.jwks_url)
            .map_err(|e| format!("JWKS URL {:?}: {e}", self.jwks_url))?;
        let loopback = url.host_str().is_some_and(|h| {
            let h = h.trim_start_matches('[').trim_end_matches(']');
            h.eq_ignore_ascii_case("localhost")
                || h.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        });
        match url.scheme() {
            "https" => Ok(()),
            "http" if loopback => Ok(()),
            _ => Err(format!(
                "JWKS URL {:?} must be https:// (http only on loopback)",
                self.jwks_url
            )),
        }
    }
}

/// How keys are cached and re-fetched.
#[derive(Clone, Copy, Debug)]
pub struct JwksPolicy {
    /// Keys older than this are fetched again.
    pub ttl: Duration,
    /// Least time between two fetch attempts for one issuer.
    pub min_refetch: Duration,
    /// Longest a fetch may take (connect, headers and body).
    pub timeout: Duration,
}

impl Default for JwksPolicy {
    fn default() -> Self {
        JwksPolicy {
            ttl: Duration::from_secs(3600),
            min_refetch: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
        }
    }
}

/// Largest JWKS document accepted.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// Clock skew tolerated on exp and nbf: the issuer is another machine.
const LEEWAY_SECS: u64 = 30;

#[derive(Default, Clone)]
struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

struct Trusted {
    issuer: Issuer,
    cache: RwLock<Cached>,
    /// Held while fetching: one fetch per issuer at a time.
    fetching: tokio::sync::Mutex<()>,
}

pub struct External {
    trusted: Vec<Trusted>,
    policy: JwksPolicy,
    http: Option<reqwest::Client>,
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
                issuer,
                cache: RwLock::new(Cached::default()),
                fetching: tokio::sync::Mutex::new(()),
            })
            .collect();
        let http = if trusted.is_empty() {
            None
        } else {
            match reqwest::Client::builder()
                .timeout(policy.timeout)
                .connect_timeout(policy.timeout)
                .user_agent(concat!("lockstep-hub/", env!("CARGO_PKG_VERSION")))
                .build()
            {
                Ok(c) => Some(c),
                Err(e) => {
                    warn!(error = %e, "cannot build the HTTP client for JWKS fetches; external tokens will be refused");
                    None
                }
            }
        };
        for t in &trusted {
            info!(issuer = %t.issuer.issuer, jwks = %t.issuer.jwks_url, audience = ?t.issuer.audience, "trusting external issuer");
            if t.issuer.audience.is_none() {
                warn!(issuer = %t.issuer.issuer, "no audience set for this issuer: its tokens are accepted whatever their aud");
            }
        }
        External {
            trusted,
            policy,
            http,
        }
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
        let key = self.key(trusted, &header).await?;
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

    /// The key for `header` from the issuer's JWKS, fetching it when the
    /// cache is empty, stale, or lacks the `kid` (rotation).
    async fn key(
        &self,
        trusted: &Trusted,
        header: &Header,
    ) -> Result<jsonwebtoken::DecodingKey, AuthError> {
        let cached = trusted
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fresh = cached
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.policy.ttl);
        let found = cached.keys.key_for(header, &ISSUER_ALGS);
        if let Err(super::keys::KeyError::Algorithm(_)) = &found {
            return Err(AuthError::InvalidToken(
                found.err().map(|e| e.to_string()).unwrap_or_default(),
            ));
        }
        match found {
            Ok(key) if fresh => return Ok(key),
            // Stale but usable, and someone is already refreshing: go on.
            Ok(key) if trusted.fetching.try_lock().is_err() => return Ok(key),
            _ => {}
        }
        let _fetching = trusted.fetching.lock().await;
        // Another request may have fetched while we waited.
        let cached = trusted
            .cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let fresh = cached
            .fetched_at
            .is_some_and(|at| at.elapsed() < self.policy.ttl);
        let found = cached.keys.key_for(header, &ISSUER_ALGS);
        let may_fetch = cached
            .last_attempt
            .is_none_or(|at| at.elapsed() >= self.policy.min_refetch);
        if (found.is_ok() && fresh) || !may_fetch {
            return found.map_err(|e| self.no_key(trusted, &cached, e));
        }
        let result = self.fetch(&trusted.issuer).await;
        let mut cache = trusted.cache.write().unwrap_or_else(|e| e.into_inner());
        cache.last_attempt = Some(Instant::now());
        match result {
            Ok(keys) => {
                info!(issuer = %trusted.issuer.issuer, keys = keys.len(), "fetched the issuer's JWKS");
                cache.keys = Arc::new(keys);
                cache.fetched_at = cache.last_attempt;
                cache.last_error = None;
            }
            Err(e) => {
                warn!(issuer = %trusted.issuer.issuer, error = %e, "cannot fetch the issuer's JWKS");
                cache.last_error = Some(e);
            }
        }
        let cached = cache.clone();
        drop(cache);
        cached
            .keys
            .key_for(header, &ISSUER_ALGS)
            .map_err(|e| self.no_key(trusted, &cached, e))
    }

    fn no_key(&self, trusted: &Trusted, cached: &Cached, e: super::keys::KeyError) -> AuthError {
        let iss = &trusted.issuer.issuer;
        match &cached.last_error {
            Some(fetch) if cached.keys.is_empty() || cached.fetched_at.is_none() => {
                AuthError::InvalidToken(format!(
                    "cannot get the signing keys of issuer {iss}: {fetch}"
                ))
            }
            _ => AuthError::InvalidToken(format!("{e} in the JWKS of issuer {iss}")),
        }
    }

    async fn fetch(&self, issuer: &Issuer) -> Result<KeySet, String> {
        let http = self
            .http
            .as_ref()
            .ok_or("the hub has no HTTP client for JWKS fetches")?;
        let work = async {
            let mut res = http
                .get(&issuer.jwks_url)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| format!("{}: {e}", issuer.jwks_url))?;
            if !res.status().is_success() {
                return Err(format!("{} answered {}", issuer.jwks_url, res.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = res
                .chunk()
                .await
                .map_err(|e| format!("{}: {e}", issuer.jwks_url))?
            {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_JWKS_BYTES {
                    return Err(format!(
                        "{}: the JWKS is larger than {MAX_JWKS_BYTES} bytes",
                        issuer.jwks_url
                    ));
                }
            }
            KeySet::parse_served(&body).map_err(|e| format!("{}: {e}", issuer.jwks_url))
        };
        // The client's timeout covers each request; this bounds the whole.
        tokio::time::timeout(self.policy.timeout, work)
            .await
            .map_err(|_| {
                format!(
                    "{}: no answer in {:?}",
                    issuer.jwks_url, self.policy.timeout
                )
            })?
    }
}
