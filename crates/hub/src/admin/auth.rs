//! Who may use the admin API. Three credentials, all random and all kept
//! in memory only (a restart invalidates them):
//!
//! - the admin token (256 bits, made at `Hub::new`), sent as
//!   `Authorization: Bearer …` by the tray for its own window;
//! - one-time codes (256 bits, single use, 60 s) in the link the tray's
//!   "Open in browser" and `lockstep-hub` hand out: `GET /admin/login?code=…`
//!   swaps one for a session cookie and redirects to `/ui/`, so the code
//!   does not stay in the address bar or the history;
//! - session cookies (`HttpOnly; SameSite=Strict; Path=/admin`), which a
//!   cross-site page can neither read nor send, and which the browser also
//!   sends on the live WebSocket.
//!
//! None of them is ever logged. The admin API also refuses peers that are
//! not on loopback, even when the hub was started with `--allow-remote`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use rand::Rng;
use serde::Deserialize;
use serde_json::json;

use crate::Hub;

/// How long a one-time link can be used.
const CODE_TTL: Duration = Duration::from_secs(60);
/// Unused codes and live sessions kept; the oldest go first.
const MAX_CODES: usize = 32;
const MAX_SESSIONS: usize = 32;
const COOKIE: &str = "lockstep_admin";

pub(crate) struct Credentials {
    token: String,
    codes: Mutex<VecDeque<(String, Instant)>>,
    sessions: Mutex<VecDeque<String>>,
}

/// 256 random bits from the OS-seeded CSPRNG, hex encoded.
fn secret() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares in time independent of where the strings differ.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Credentials {
    pub(crate) fn new() -> Credentials {
        Credentials {
            token: secret(),
            codes: Mutex::new(VecDeque::new()),
            sessions: Mutex::new(VecDeque::new()),
        }
    }

    fn mint_code(&self) -> String {
        let code = secret();
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        codes.retain(|(_, expires)| *expires > Instant::now());
        if codes.len() >= MAX_CODES {
            codes.pop_front();
        }
        codes.push_back((code.clone(), Instant::now() + CODE_TTL));
        code
    }

    /// Uses up `code`; a session id if it was valid and fresh.
    fn redeem(&self, code: &str) -> Option<String> {
        let mut codes = self.codes.lock().unwrap_or_else(|e| e.into_inner());
        let i = codes.iter().position(|(c, _)| same(c, code))?;
        let (_, expires) = codes.remove(i)?;
        drop(codes);
        (expires > Instant::now()).then(|| self.new_session())
    }

    fn new_session(&self) -> String {
        let id = secret();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if sessions.len() >= MAX_SESSIONS {
            sessions.pop_front();
        }
        sessions.push_back(id.clone());
        id
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        let bearer = headers
            .get_all(header::AUTHORIZATION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.strip_prefix("Bearer "))
            .any(|t| same(t.trim(), &self.token));
        if bearer {
            return true;
        }
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        cookies(headers).any(|sid| sessions.iter().any(|s| same(s, sid)))
    }
}

/// The values of our cookie in the request's `Cookie` headers.
fn cookies(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// `Secure` with TLS, so the browser never sends the session over plain HTTP.
fn set_cookie(session: &str, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let cookie = format!("{COOKIE}={session}; HttpOnly; SameSite=Strict; Path=/admin{secure}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

impl Hub {
    /// The admin credential for the tray's own window (`Authorization:
    /// Bearer …`). Never log it.
    pub fn admin_token(&self) -> &str {
        &self.admin().creds.token
    }

    /// A dashboard link that works once, within 60 s:
    /// `http://HOST:PORT/admin/login?code=…` (`https` with TLS).
    pub fn one_time_link(&self) -> String {
        let addr = self.local_addr().unwrap_or(self.config().listen);
        let code = self.admin().creds.mint_code();
        let scheme = self.config().http_scheme();
        format!("{scheme}://{addr}/admin/login?code={code}")
    }
}

/// A JSON error for the admin API: `{"error": "..."}`.
pub(crate) fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"error": message}))).into_response()
}

/// Middleware on `/admin/api/*`: loopback peer and a valid credential.
pub(crate) async fn require(State(hub): State<Hub>, request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    if peer.is_some_and(|p| !p.ip().is_loopback()) {
        return json_error(
            StatusCode::FORBIDDEN,
            "the admin API answers on this workstation only (loopback)",
        );
    }
    if !hub.admin().creds.allows(request.headers()) {
        return json_error(
            StatusCode::UNAUTHORIZED,
            "admin credential required: open the dashboard from the tray or the one-time link lockstep-hub printed",
        );
    }
    let mut response = next.run(request).await;
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[derive(Deserialize)]
pub(crate) struct LoginQuery {
    code: Option<String>,
}

/// `GET /admin/login?code=…`: a one-time code for a session cookie, then
/// a 303 to `/ui/` so that the code leaves the address bar.
pub(crate) async fn login(State(hub): State<Hub>, Query(q): Query<LoginQuery>) -> Response {
    let session = q.code.as_deref().and_then(|c| hub.admin().creds.redeem(c));
    let no_store = (header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    let no_referrer = (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    match session {
        Some(sid) => (
            StatusCode::SEE_OTHER,
            [
                (header::SET_COOKIE, set_cookie(&sid, hub.config().tls)),
                (header::LOCATION, HeaderValue::from_static("/ui/")),
                no_store,
                no_referrer,
            ],
        )
            .into_response(),
        None => (
            StatusCode::UNAUTHORIZED,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                ),
                no_store,
                no_referrer,
            ],
            "<!doctype html><title>Lockstep dashboard</title><h1>This link no longer works</h1>\
             <p>Dashboard links work once, within 60 seconds. Open the dashboard again from the \
             Lockstep tray icon, or restart <code>lockstep-hub</code> for a new link.</p>",
        )
            .into_response(),
    }
}

/// `POST /admin/api/session`: swaps the bearer token (the tray window) for a
/// session cookie, so that the window's live WebSocket is authorized too.
pub(crate) async fn session(State(hub): State<Hub>) -> Response {
    let sid = hub.admin().creds.new_session();
    (
        StatusCode::NO_CONTENT,
        [(header::SET_COOKIE, set_cookie(&sid, hub.config().tls))],
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_code_works_once() {
        let creds = Credentials::new();
        let code = creds.mint_code();
        assert_eq!(code.len(), 64);
        assert!(creds.redeem(&code).is_some());
        assert!(creds.redeem(&code).is_none());
        assert!(creds.redeem("").is_none());
    }

    #[test]
    fn an_expired_code_is_refused() {
        let creds = Credentials::new();
        let past = Instant::now()
            .checked_sub(Duration::from_secs(1))
            .unwrap_or_else(Instant::now);
        let code = "c".repeat(64);
        creds.codes.lock().unwrap().push_back((code.clone(), past));
        assert!(creds.redeem(&code).is_none());
    }

    #[test]
    fn bearer_and_cookie_are_checked() {
        let creds = Credentials::new();
        let mut headers = HeaderMap::new();
        assert!(!creds.allows(&headers));
        headers.insert(header::AUTHORIZATION, "Bearer nope".parse().unwrap());
        assert!(!creds.allows(&headers));
        let bearer = format!("Bearer {}", creds.token);
        headers.insert(header::AUTHORIZATION, bearer.parse().unwrap());
        assert!(creds.allows(&headers));
        let sid = creds.new_session();
        let mut headers = HeaderMap::new();
        let cookie = format!("other=1; {COOKIE}={sid}");
        headers.insert(header::COOKIE, cookie.parse().unwrap());
        assert!(creds.allows(&headers));
        headers.insert(header::COOKIE, format!("{COOKIE}=x").parse().unwrap());
        assert!(!creds.allows(&headers));
    }
}
