//! A brake on guessing client secrets at `POST /oauth/token`: failed
//! authentications are counted per client id and in all over the last
//! minute; past `token_failures_per_client` (or `token_failures_total`) the
//! endpoint answers `429` with `Retry-After`, without checking the
//! credentials at all.
//!
//! Registered client ids and unknown ones are counted apart (issue 14 item
//! 6): the total for unknown ids is its own, so a process spraying made-up
//! ids locks out only made-up ids, never a registered app. Registered ids
//! share a total of their own, against guessing across every app.
//!
//! A middleware around the token route (added where `server::app` assembles
//! the routes) so the endpoint's own code stays as it is. Each attempt takes
//! its slot before it runs and gives it back unless it failed, so many
//! concurrent guesses cannot slip past the count.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::routes::body::{BodyBudget, BodyError};
use crate::Hub;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::json;

use crate::Config;

/// The window failures are counted over.
pub const WINDOW: Duration = Duration::from_secs(60);
/// The token endpoint's own body limit (routes/oauth.rs).
const MAX_BODY: usize = 64 * 1024;
/// Token request bodies held at once: 64 of the largest. Apart from the
/// hub routes' budget, since anyone may send these (issue 14 item 2).
pub const BUFFERED_BODY_BYTES: usize = 64 * MAX_BODY;
/// Client ids longer than this are counted under their first characters.
const MAX_KEY: usize = 256;

pub struct TokenLimiter {
    per_client: usize,
    total: usize,
    failures: Mutex<Failures>,
}

#[derive(Default)]
struct Failures {
    by_client: HashMap<String, VecDeque<Instant>>,
    /// Failures of registered client ids, in all.
    known: VecDeque<Instant>,
    /// Failures of ids no app is registered under (or no id), in all.
    unknown: VecDeque<Instant>,
}

impl Failures {
    fn all(&mut self, known: bool) -> &mut VecDeque<Instant> {
        match known {
            true => &mut self.known,
            false => &mut self.unknown,
        }
    }
}

/// One attempt's place in the count, until it turns out not to be a failure.
#[derive(Debug)]
struct Slot {
    client: String,
    known: bool,
    at: Instant,
}

/// The middleware's state: the counts, the hub (to tell registered ids
/// from made-up ones) and the shared body budget.
#[derive(Clone)]
pub struct TokenEndpoint {
    pub limiter: Arc<TokenLimiter>,
    pub hub: Hub,
    pub bodies: BodyBudget,
}

impl TokenLimiter {
    pub fn new(config: &Config) -> Arc<Self> {
        Arc::new(TokenLimiter {
            per_client: config.token_failures_per_client as usize,
            total: config.token_failures_total as usize,
            failures: Mutex::new(Failures::default()),
        })
    }

    /// Counts an attempt by `client` (a registered id when `known`) as a
    /// failure until told otherwise, or says how long it must wait.
    fn admit(&self, client: &str, known: bool) -> Result<Slot, Duration> {
        let now = Instant::now();
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let all = f.all(known);
        prune(all, now);
        if self.total > 0 && all.len() >= self.total {
            return Err(wait(all, now));
        }
        if f.by_client.len() > 2 * self.total.max(1024) {
            // Many ids seen (a spray): drop the ones with nothing recent.
            f.by_client.retain(|_, q| {
                prune(q, now);
                !q.is_empty()
            });
        }
        let mine = f.by_client.entry(client.to_owned()).or_default();
        prune(mine, now);
        if self.per_client > 0 && mine.len() >= self.per_client {
            return Err(wait(mine, now));
        }
        mine.push_back(now);
        f.all(known).push_back(now);
        Ok(Slot {
            client: client.to_owned(),
            known,
            at: now,
        })
    }

    /// This client's failures just reached the limit.
    fn reached(&self, client: &str) -> bool {
        let f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        self.per_client > 0
            && f.by_client
                .get(client)
                .is_some_and(|q| q.len() == self.per_client)
    }

    /// The attempt did not fail authentication: it no longer counts.
    fn forgive(&self, slot: Slot) {
        let mut f = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(q) = f.by_client.get_mut(&slot.client) {
            remove_one(q, slot.at);
            if q.is_empty() {
                f.by_client.remove(&slot.client);
            }
        }
        remove_one(f.all(slot.known), slot.at);
    }
}

fn prune(q: &mut VecDeque<Instant>, now: Instant) {
    while q.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
        q.pop_front();
    }
}

/// Until the oldest failure in `q` leaves the window.
fn wait(q: &VecDeque<Instant>, now: Instant) -> Duration {
    q.front().map_or(Duration::ZERO, |t| {
        (*t + WINDOW).saturating_duration_since(now)
    })
}

fn remove_one(q: &mut VecDeque<Instant>, at: Instant) {
    if let Some(i) = q.iter().rposition(|t| *t == at) {
        q.remove(i);
    }
}

/// The middleware. Only `POST /oauth/token` is counted.
pub async fn token_endpoint(
    State(endpoint): State<TokenEndpoint>,
    request: Request,
    next: Next,
) -> Response {
    if request.method() != Method::POST || request.uri().path() != "/oauth/token" {
        return next.run(request).await;
    }
    let limiter = &endpoint.limiter;
    let (parts, body) = request.into_parts();
    // Held until the answer is made: its bytes count against the budget.
    let buffered = match endpoint.bodies.read(&parts.headers, body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) => return body_refused(e),
    };
    let bytes = buffered.bytes.clone();
    let client = client_of(&parts.headers, &bytes);
    let known = endpoint
        .hub
        .auth()
        .apps()
        .active(&client, None)
        .map_or_else(
            |e| !matches!(e, crate::auth::AuthError::UnknownClient),
            |_| true,
        );
    let slot = match limiter.admit(&client, known) {
        Ok(slot) => slot,
        Err(wait) => {
            tracing::debug!(client = %client, "token request refused: too many failed attempts");
            let secs = wait.as_secs().max(1);
            let mut response = oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                "temporarily_unavailable",
                &format!(
                    "too many failed authentications for this client or this hub in the last minute; \
                     try again in {secs} s"
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
    };
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    let (response, failed) = failed_authentication(response).await;
    if !failed {
        limiter.forgive(slot);
    } else if limiter.reached(&client) {
        // Once per client and minute: the 429s that follow are not logged.
        tracing::warn!(client = %client, "too many failed token requests; refusing this client for a minute");
    }
    response
}

/// A body not read, answered in the token endpoint's own error shape.
fn body_refused(e: BodyError) -> Response {
    let (status, error, description) = match e {
        BodyError::TooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body too large",
        ),
        BodyError::Busy => (
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "the hub is reading too many request bodies at once; try again shortly",
        ),
        BodyError::TooSlow { .. } => (
            StatusCode::REQUEST_TIMEOUT,
            "invalid_request",
            "the request body did not arrive in time",
        ),
        BodyError::Broken => (
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the request body could not be read in full",
        ),
    };
    let mut response = oauth_error(status, error, description);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// 401, or a 400 whose OAuth error says the client or its assertion was
/// not accepted (RFC 6749 §5.2 lets the server use either).
async fn failed_authentication(response: Response) -> (Response, bool) {
    match response.status() {
        StatusCode::UNAUTHORIZED => (response, true),
        StatusCode::BAD_REQUEST => {
            let (parts, body) = response.into_parts();
            let bytes = to_bytes(body, MAX_BODY).await.unwrap_or_default();
            let error = serde_json::from_slice::<serde_json::Value>(&bytes)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_owned));
            let failed = matches!(error.as_deref(), Some("invalid_client" | "invalid_grant"));
            (Response::from_parts(parts, Body::from(bytes)), failed)
        }
        _ => (response, false),
    }
}

/// Who the attempt claims to be: the Basic user, the `client_id` field, or
/// the subject of a `client_assertion` (read, not verified: it only picks
/// the counter). Attempts naming no client share one counter.
fn client_of(headers: &HeaderMap, body: &[u8]) -> String {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        })
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| s.split_once(':').map(|(id, _)| id.to_owned()));
    let form = || {
        let fields: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
        let field = |name: &str| {
            fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        field("client_id")
            .or_else(|| field("client_assertion").and_then(|jwt| assertion_subject(&jwt)))
    };
    let mut client = basic.or_else(form).unwrap_or_default();
    if client.len() > MAX_KEY {
        let mut end = MAX_KEY;
        while !client.is_char_boundary(end) {
            end -= 1;
        }
        client.truncate(end);
    }
    client
}

fn assertion_subject(jwt: &str) -> Option<String> {
    let payload = jwt.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    claims["sub"]
        .as_str()
        .or_else(|| claims["iss"].as_str())
        .map(str::to_owned)
}

/// RFC 6749 §5.2 error body, as routes/oauth.rs answers.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(body),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_client: u32, total: u32) -> Arc<TokenLimiter> {
        let mut c = Config::new("127.0.0.1:0".parse().unwrap(), std::env::temp_dir());
        c.token_failures_per_client = per_client;
        c.token_failures_total = total;
        TokenLimiter::new(&c)
    }

    #[test]
    fn forgiven_attempts_do_not_count() {
        let l = limiter(2, 100);
        for _ in 0..10 {
            let slot = l.admit("a", true).unwrap();
            l.forgive(slot);
        }
        l.admit("a", true).unwrap();
        l.admit("a", true).unwrap();
        let wait = l.admit("a", true).unwrap_err();
        assert!(wait > Duration::from_secs(55) && wait <= WINDOW, "{wait:?}");
        l.admit("b", true).expect("other clients are not affected");
    }

    #[test]
    fn the_total_covers_every_client() {
        let l = limiter(100, 3);
        for id in ["a", "b", "c"] {
            l.admit(id, true).unwrap();
        }
        assert!(l.admit("d", true).is_err());
    }

    /// Issue 14 item 6: a spray of made-up ids spends only the unknown
    /// ids' total; a registered app still gets its attempts.
    #[test]
    fn unknown_ids_never_spend_the_budget_of_registered_apps() {
        let l = limiter(10, 100);
        for i in 0..100 {
            l.admit(&format!("made-up-{i}"), false).unwrap();
        }
        assert!(l.admit("made-up-x", false).is_err());
        assert!(l.admit("", false).is_err());
        for _ in 0..10 {
            l.admit("registered", true)
                .expect("a registered app is not locked out");
        }
    }

    #[test]
    fn client_ids_from_each_method() {
        let mut h = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode("app-1:secret");
        h.insert(
            header::AUTHORIZATION,
            format!("Basic {basic}").parse().unwrap(),
        );
        assert_eq!(client_of(&h, b""), "app-1");
        let none = HeaderMap::new();
        assert_eq!(
            client_of(&none, b"client_id=app-2&client_secret=x"),
            "app-2"
        );
        let claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"iss":"app-3","sub":"app-3"}"#);
        let body = format!("client_assertion=e30.{claims}.sig");
        assert_eq!(client_of(&none, body.as_bytes()), "app-3");
        assert_eq!(client_of(&none, b"grant_type=client_credentials"), "");
        assert!(client_of(&none, "client_id=é".repeat(200).as_bytes()).len() <= MAX_KEY);
    }
}
