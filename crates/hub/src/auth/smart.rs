//! SMART App Launch for browser apps (issue 16): public clients that
//! cannot keep a secret get a token by `authorization_code` with PKCE
//! (S256 only), after the clinician consented once.
//!
//! What is kept where:
//! - an app's browser registration (redirect URIs, launch URL, IT's
//!   pre-approval) and the clinician's consent decision persist in the
//!   secret store next to the app's secret hash (`browser-app:ID`,
//!   `consent:ID`), so the CLI in another process and the next start see
//!   them without a schema change;
//! - codes, pending consent requests, launch ids and refresh tokens live
//!   in memory only: codes live 60 s, and a restart asks a browser app to
//!   authorize again (its consent is remembered, so no page is shown).
//!
//! Every in-memory table is capped (`MAX_ENTRIES`); expired entries are
//! swept before a new one is added, and a full table refuses new entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine;
use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::store::SecretStore;
use super::AuthError;

/// Cap of each in-memory table (codes, pending consents, launches, refresh
/// tokens): a page that loops on /oauth/authorize fills it and is refused,
/// it does not grow the hub.
pub const MAX_ENTRIES: usize = 1024;
/// How long the consent page's form stays valid.
const CONSENT_LIFETIME: Duration = Duration::from_secs(600);
/// How long a minted EHR launch id may be redeemed.
const LAUNCH_LIFETIME: Duration = Duration::from_secs(300);
/// How long a refresh token lasts (a working day and some).
const REFRESH_LIFETIME: Duration = Duration::from_secs(16 * 3600);
/// The longest redirect URI or launch URL accepted.
const MAX_URL_LEN: usize = 2048;
/// The most redirect URIs one app may register.
const MAX_REDIRECT_URIS: usize = 16;

/// What makes a registered app a browser app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BrowserApp {
    /// Exact redirect URIs; their origins are allowed for CORS.
    pub redirect_uris: Vec<String>,
    /// Where an EHR launch opens the app (`?launch=…&iss=…` is appended).
    #[serde(default)]
    pub launch_url: Option<String>,
    /// IT approved it in the system file: no consent page.
    #[serde(default)]
    pub preapproved: bool,
}

impl BrowserApp {
    /// Checks the URLs: absolute http(s), no fragment, bounded.
    pub fn checked(self) -> Result<BrowserApp, AuthError> {
        if self.redirect_uris.is_empty() {
            return Err(AuthError::Invalid(
                "a browser app needs at least one redirect URI".into(),
            ));
        }
        if self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(AuthError::Invalid(format!(
                "at most {MAX_REDIRECT_URIS} redirect URIs"
            )));
        }
        for uri in self.redirect_uris.iter().chain(self.launch_url.iter()) {
            check_url(uri)?;
        }
        Ok(self)
    }

    /// The web origins of its redirect URIs and launch URL.
    pub fn origins(&self) -> Vec<String> {
        let mut origins: Vec<String> = Vec::new();
        for uri in self.redirect_uris.iter().chain(self.launch_url.iter()) {
            if let Some(o) = origin_of(uri) {
                if !origins.contains(&o) {
                    origins.push(o);
                }
            }
        }
        origins
    }
}

fn check_url(uri: &str) -> Result<(), AuthError> {
    if uri.len() > MAX_URL_LEN || origin_of(uri).is_none() || uri.contains('#') {
        return Err(AuthError::Invalid(format!(
            "{:?} is not an absolute http(s) URL without a fragment",
            crate::ids::short(uri)
        )));
    }
    Ok(())
}

/// `scheme://host[:port]` of an absolute http(s) URL, lower-cased as
/// browsers send it in `Origin`.
pub fn origin_of(uri: &str) -> Option<String> {
    let (scheme, rest) = uri.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty()
        || authority.contains('@')
        || authority
            .chars()
            .any(|c| c.is_whitespace() || c.is_control())
    {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The clinician's answer for an app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Consent {
    Approved,
    Denied,
}

/// A valid authorization request waiting for the clinician's answer.
#[derive(Clone, Debug)]
pub struct AuthorizeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub scope: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub launch: Option<String>,
}

struct Code {
    request: AuthorizeRequest,
    expires: Instant,
}

struct Pending {
    request: AuthorizeRequest,
    expires: Instant,
}

struct Launch {
    client_id: String,
    expires: Instant,
}

/// What a refresh token stands for.
#[derive(Clone, Debug)]
pub struct RefreshGrant {
    pub client_id: String,
    pub scope: String,
    pub generation: u64,
    expires: Instant,
}

#[derive(Default)]
struct Tables {
    codes: HashMap<String, Code>,
    pending: HashMap<String, Pending>,
    launches: HashMap<String, Launch>,
    /// Keyed by the SHA-256 of the token: a memory dump shows no token.
    refresh: HashMap<String, RefreshGrant>,
}

/// Drops expired entries, then says whether there is room for one more.
fn room<V>(table: &mut HashMap<String, V>, expires: impl Fn(&V) -> Instant) -> bool {
    let now = Instant::now();
    table.retain(|_, v| expires(v) > now);
    table.len() < MAX_ENTRIES
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// RFC 7636 §4.6: BASE64URL(SHA256(ASCII(code_verifier))) == code_challenge,
/// compared in constant time. The verifier must be 43-128 unreserved chars.
pub fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    if !well_formed {
        return false;
    }
    let computed = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(Sha256::digest(verifier.as_bytes()));
    bool::from(computed.as_bytes().ct_eq(challenge.as_bytes()))
}

/// A well-formed S256 challenge: 43 base64url characters.
pub fn challenge_well_formed(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub struct Smart {
    store: Arc<dyn SecretStore>,
    /// Browser registrations read so far (the store is the record).
    apps: RwLock<HashMap<String, BrowserApp>>,
    tables: Mutex<Tables>,
    code_lifetime: RwLock<Duration>,
}

fn app_key(client_id: &str) -> String {
    format!("browser-app:{client_id}")
}

fn consent_key(client_id: &str) -> String {
    format!("consent:{client_id}")
}

impl Smart {
    pub fn new(store: Arc<dyn SecretStore>) -> Smart {
        Smart {
            store,
            apps: RwLock::new(HashMap::new()),
            tables: Mutex::new(Tables::default()),
            code_lifetime: RwLock::new(Duration::from_secs(60)),
        }
    }

    /// Codes live 60 s; tests shorten it.
    pub fn set_code_lifetime(&self, lifetime: Duration) {
        *self
            .code_lifetime
            .write()
            .unwrap_or_else(|e| e.into_inner()) = lifetime;
    }

    /// Records `app` as `client_id`'s browser registration.
    pub fn save_app(&self, client_id: &str, app: BrowserApp) -> Result<(), AuthError> {
        let app = app.checked()?;
        let json = serde_json::to_string(&app).map_err(|e| AuthError::Store(e.to_string()))?;
        self.store
            .set(&app_key(client_id), &json)
            .map_err(|e| AuthError::Store(e.0))?;
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_owned(), app);
        Ok(())
    }

    /// The browser registration of `client_id`, read from the store on
    /// first use (the CLI may have written it from another process).
    pub fn app(&self, client_id: &str) -> Option<BrowserApp> {
        if let Some(app) = self
            .apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(client_id)
        {
            return Some(app.clone());
        }
        let text = self.store.get(&app_key(client_id)).ok()??;
        let app: BrowserApp = serde_json::from_str(&text).ok()?;
        self.apps
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(client_id.to_owned(), app.clone());
        Some(app)
    }

    /// The client ids of the browser apps read so far that have a launch
    /// URL. From memory only (every registration is loaded at start and on
    /// save), so the tray can ask on each redraw without touching the store.
    pub fn launchable(&self) -> Vec<String> {
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|(_, app)| app.launch_url.is_some())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// Loads the registrations of `client_ids` (at start).
    pub fn preload<'a>(&self, client_ids: impl Iterator<Item = &'a str>) {
        for id in client_ids {
            let _ = self.app(id);
        }
    }

    /// The app was revoked, removed, or its scopes or topics changed: its
    /// grants end and the clinician is asked again (a consent covers what
    /// the app asked for then). Its registration stays cached: CORS and
    /// authorize ask the registry whether the app is still active.
    pub fn forget(&self, client_id: &str) {
        self.end_grants(client_id);
        let _ = self.store.delete(&consent_key(client_id));
    }

    /// Is `origin` one of a known browser app's? `active` says whether a
    /// client id is still allowed.
    pub fn origin_allowed(&self, origin: &str, active: impl Fn(&str) -> bool) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.apps
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|(id, app)| app.origins().contains(&origin) && active(id))
    }

    /// The clinician's decision, IT's pre-approval first.
    pub fn consent(&self, client_id: &str) -> Option<Consent> {
        if self.app(client_id).is_some_and(|a| a.preapproved) {
            return Some(Consent::Approved);
        }
        match self.store.get(&consent_key(client_id)).ok()??.as_str() {
            "approved" => Some(Consent::Approved),
            "denied" => Some(Consent::Denied),
            _ => None,
        }
    }

    pub fn set_consent(&self, client_id: &str, consent: Consent) -> Result<(), AuthError> {
        let value = match consent {
            Consent::Approved => "approved",
            Consent::Denied => "denied",
        };
        if consent == Consent::Denied {
            self.end_grants(client_id);
        }
        self.store
            .set(&consent_key(client_id), value)
            .map_err(|e| AuthError::Store(e.0))
    }

    /// Forgets the decision (the next authorize asks again) and ends the
    /// app's refresh tokens and unredeemed codes.
    pub fn revoke_consent(&self, client_id: &str) -> Result<(), AuthError> {
        self.end_grants(client_id);
        self.store
            .delete(&consent_key(client_id))
            .map_err(|e| AuthError::Store(e.0))
    }

    fn end_grants(&self, client_id: &str) {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        t.refresh.retain(|_, g| g.client_id != client_id);
        t.codes.retain(|_, c| c.request.client_id != client_id);
        t.pending.retain(|_, p| p.request.client_id != client_id);
    }

    /// Parks a request for the consent page; returns the form's one-time
    /// token (it doubles as the CSRF token), and whether it is the app's
    /// only open request (the tray is told once, not once per reload).
    pub fn park(&self, request: AuthorizeRequest) -> Result<(String, bool), AuthError> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if !room(&mut t.pending, |p| p.expires) {
            return Err(AuthError::Invalid(
                "too many consent requests are open; answer or close some first".into(),
            ));
        }
        let first = !t
            .pending
            .values()
            .any(|p| p.request.client_id == request.client_id);
        let token = random_token();
        t.pending.insert(
            token.clone(),
            Pending {
                request,
                expires: Instant::now() + CONSENT_LIFETIME,
            },
        );
        Ok((token, first))
    }

    /// Takes back a parked request (once).
    pub fn unpark(&self, token: &str) -> Option<AuthorizeRequest> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let pending = t.pending.remove(token)?;
        (pending.expires > Instant::now()).then_some(pending.request)
    }

    /// A one-time code for an approved request.
    pub fn mint_code(&self, request: AuthorizeRequest) -> Result<String, AuthError> {
        let lifetime = *self.code_lifetime.read().unwrap_or_else(|e| e.into_inner());
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if !room(&mut t.codes, |c| c.expires) {
            return Err(AuthError::Invalid(
                "too many unredeemed codes; try again in a minute".into(),
            ));
        }
        let code = random_token();
        t.codes.insert(
            code.clone(),
            Code {
                request,
                expires: Instant::now() + lifetime,
            },
        );
        Ok(code)
    }

    /// Redeems a code: removed whatever the outcome (one try per code),
    /// then checked against the client, redirect URI and PKCE verifier.
    pub fn redeem_code(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<AuthorizeRequest, String> {
        let found = self
            .tables
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .codes
            .remove(code);
        let Some(found) = found else {
            return Err("the code is unknown or was already used".into());
        };
        if found.expires <= Instant::now() {
            return Err("the code has expired".into());
        }
        let r = found.request;
        if r.client_id != client_id {
            return Err("the code was issued to another client".into());
        }
        if r.redirect_uri != redirect_uri {
            return Err("redirect_uri does not match the authorization request".into());
        }
        if !pkce_matches(verifier, &r.code_challenge) {
            return Err("code_verifier does not match the code_challenge".into());
        }
        Ok(r)
    }

    /// A new refresh token for `grant`.
    pub fn mint_refresh(
        &self,
        client_id: &str,
        scope: &str,
        generation: u64,
    ) -> Result<String, AuthError> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if !room(&mut t.refresh, |g| g.expires) {
            return Err(AuthError::Invalid(
                "too many refresh tokens are live".into(),
            ));
        }
        let token = random_token();
        t.refresh.insert(
            sha256_hex(&token),
            RefreshGrant {
                client_id: client_id.to_owned(),
                scope: scope.to_owned(),
                generation,
                expires: Instant::now() + REFRESH_LIFETIME,
            },
        );
        Ok(token)
    }

    /// Redeems a refresh token (rotation: it is used up).
    pub fn redeem_refresh(&self, token: &str, client_id: &str) -> Option<RefreshGrant> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        let grant = t.refresh.remove(&sha256_hex(token))?;
        (grant.expires > Instant::now() && grant.client_id == client_id).then_some(grant)
    }

    /// Mints an EHR launch id for `client_id`.
    pub fn mint_launch(&self, client_id: &str) -> Option<String> {
        let mut t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        if !room(&mut t.launches, |l| l.expires) {
            return None;
        }
        let id = random_token();
        t.launches.insert(
            id.clone(),
            Launch {
                client_id: client_id.to_owned(),
                expires: Instant::now() + LAUNCH_LIFETIME,
            },
        );
        Some(id)
    }

    /// Is `launch` a live launch id minted for `client_id`? Not used up:
    /// the app may retry its authorize within the launch's lifetime.
    pub fn launch_valid(&self, launch: &str, client_id: &str) -> bool {
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        t.launches
            .get(launch)
            .is_some_and(|l| l.client_id == client_id && l.expires > Instant::now())
    }

    /// Entries held now (codes, pending, launches, refresh), for tests
    /// of the bounds.
    pub fn sizes(&self) -> (usize, usize, usize, usize) {
        let t = self.tables.lock().unwrap_or_else(|e| e.into_inner());
        (
            t.codes.len(),
            t.pending.len(),
            t.launches.len(),
            t.refresh.len(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_rfc7636_appendix_b() {
        // RFC 7636 Appendix B's example pair.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(pkce_matches(verifier, challenge));
        assert!(challenge_well_formed(challenge));
        assert!(!pkce_matches(challenge, challenge));
        assert!(!pkce_matches("short", challenge));
        assert!(!pkce_matches(&"a".repeat(129), challenge));
    }

    #[test]
    fn origins_of_urls() {
        assert_eq!(
            origin_of("https://RIS.example:8443/cb?x=1").as_deref(),
            Some("https://ris.example:8443")
        );
        assert_eq!(origin_of("javascript:alert(1)"), None);
        assert_eq!(origin_of("https://user@evil.example/"), None);
        assert_eq!(origin_of("ftp://x/"), None);
        assert!(BrowserApp::default().checked().is_err());
    }

    #[test]
    fn tables_are_capped() {
        let smart = Smart::new(Arc::new(super::super::MemoryStore::default()));
        for _ in 0..MAX_ENTRIES {
            assert!(smart.mint_launch("a").is_some());
        }
        assert!(smart.mint_launch("a").is_none(), "full table refuses");
        assert_eq!(smart.sizes().2, MAX_ENTRIES);
    }
}
