//! JWK sets fetched from a URL: trusted issuers' keys, and the keys of apps
//! that registered a JWKS URL for `private_key_jwt`.
//!
//! Keys are fetched over HTTP(S) with a timeout and a size cap, and cached
//! for a TTL. A token naming an unknown `kid` (the owner rotated its keys)
//! triggers a re-fetch, but at most one fetch per URL is in flight and
//! attempts are spaced by a minimum interval, so a stream of tokens with
//! made-up `kid`s cannot turn the hub into a fetch storm. Stale keys stay
//! in use until a fetch succeeds.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Header};
use tracing::{info, warn};

use super::keys::{KeyError, KeySet};

/// How fetched key sets are cached and re-fetched.
#[derive(Clone, Copy, Debug)]
pub struct JwksPolicy {
    /// Keys older than this are fetched again.
    pub ttl: Duration,
    /// Least time between two fetch attempts for one URL.
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

/// A JWKS must come over TLS unless it is on this machine: keys fetched in
/// clear could be swapped by anyone on the path.
pub fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("JWKS URL {url:?}: {e}"))?;
    let loopback = parsed.host_str().is_some_and(|h| {
        let h = h.trim_start_matches('[').trim_end_matches(']');
        h.eq_ignore_ascii_case("localhost")
            || h.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    });
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(format!(
            "JWKS URL {url:?} must be https:// (http only on loopback)"
        )),
    }
}

/// The HTTP client for JWKS fetches, built on first use.
pub struct Fetcher {
    policy: JwksPolicy,
    http: OnceLock<Result<reqwest::Client, String>>,
}

impl Fetcher {
    pub fn new(policy: JwksPolicy) -> Fetcher {
        Fetcher {
            policy,
            http: OnceLock::new(),
        }
    }

    fn client(&self) -> Result<&reqwest::Client, String> {
        self.http
            .get_or_init(|| {
                crate::tls::http_client()
                    .timeout(self.policy.timeout)
                    .connect_timeout(self.policy.timeout)
                    .user_agent(concat!("lockstep-hub/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| format!("cannot build the HTTP client for JWKS fetches: {e}"))
            })
            .as_ref()
            .map_err(Clone::clone)
    }

    async fn fetch(&self, url: &str) -> Result<KeySet, String> {
        let http = self.client()?;
        let work = async {
            let mut res = http
                .get(url)
                .header("accept", "application/json")
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !res.status().is_success() {
                return Err(format!("{url} answered {}", res.status()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = res.chunk().await.map_err(|e| format!("{url}: {e}"))? {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_JWKS_BYTES {
                    return Err(format!(
                        "{url}: the JWKS is larger than {MAX_JWKS_BYTES} bytes"
                    ));
                }
            }
            KeySet::parse_served(&body).map_err(|e| format!("{url}: {e}"))
        };
        // The client's timeout covers each request; this bounds the whole.
        tokio::time::timeout(self.policy.timeout, work)
            .await
            .map_err(|_| format!("{url}: no answer in {:?}", self.policy.timeout))?
    }
}

#[derive(Default, Clone)]
struct Cached {
    keys: Arc<KeySet>,
    fetched_at: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// One JWKS URL and its cached keys.
pub struct JwksSource {
    pub url: String,
    /// Whose keys, for messages ("issuer https://…", "app ris-1a2b").
    owner: String,
    cache: RwLock<Cached>,
    /// Held while fetching: one fetch per URL at a time.
    fetching: tokio::sync::Mutex<()>,
}

impl JwksSource {
    pub fn new(url: String, owner: String) -> JwksSource {
        JwksSource {
            url,
            owner,
            cache: RwLock::new(Cached::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn cached(&self) -> Cached {
        self.cache.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The key for `header`, fetching the set when the cache is empty,
    /// stale, or lacks the `kid`. Errors are sentences for the caller.
    pub async fn key(
        &self,
        fetcher: &Fetcher,
        header: &Header,
        allowed: &[Algorithm],
    ) -> Result<DecodingKey, String> {
        if !allowed.contains(&header.alg) {
            return Err(KeyError::Algorithm(header.alg).to_string());
        }
        let policy = fetcher.policy;
        let fresh = |c: &Cached| c.fetched_at.is_some_and(|at| at.elapsed() < policy.ttl);
        let cached = self.cached();
        match cached.keys.key_for(header, allowed) {
            Ok(key) if fresh(&cached) => return Ok(key),
            // Stale but usable, and someone is already refreshing: go on.
            Ok(key) if self.fetching.try_lock().is_err() => return Ok(key),
            _ => {}
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while we waited.
        let cached = self.cached();
        let found = cached.keys.key_for(header, allowed);
        let may_fetch = cached
            .last_attempt
            .is_none_or(|at| at.elapsed() >= policy.min_refetch);
        if (found.is_ok() && fresh(&cached)) || !may_fetch {
            return found.map_err(|e| self.no_key(&cached, e));
        }
        let result = fetcher.fetch(&self.url).await;
        let cached = {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            cache.last_attempt = Some(Instant::now());
            match result {
                Ok(keys) => {
                    info!(owner = %self.owner, keys = keys.len(), "fetched JWKS");
                    cache.keys = Arc::new(keys);
                    cache.fetched_at = cache.last_attempt;
                    cache.last_error = None;
                }
                Err(e) => {
                    warn!(owner = %self.owner, error = %e, "cannot fetch JWKS");
                    cache.last_error = Some(e);
                }
            }
            cache.clone()
        };
        cached
            .keys
            .key_for(header, allowed)
            .map_err(|e| self.no_key(&cached, e))
    }

    fn no_key(&self, cached: &Cached, e: KeyError) -> String {
        match &cached.last_error {
            Some(fetch) if cached.fetched_at.is_none() => {
                format!("cannot get the signing keys of {}: {fetch}", self.owner)
            }
            _ => format!("{e} in the JWKS of {}", self.owner),
        }
    }
}
