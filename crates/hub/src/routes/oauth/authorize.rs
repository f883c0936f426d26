//! `GET /oauth/authorize` and the consent page (issue 16): SMART App
//! Launch for browser apps, `authorization_code` with PKCE S256 only.
//!
//! Errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI
//! is unknown, the hub shows an error page and redirects nowhere (an open
//! redirector otherwise); after that, errors go back to the app as
//! `?error=…&state=…`.
//!
//! The consent page cannot be read or submitted by the app itself: a
//! request with a foreign `Origin` is refused (a browser app's origin is
//! allowed CORS on the hub paths, not here), the form carries a one-time
//! token that only the page knows, and the page may not be framed.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Form;
use std::collections::HashMap;

use crate::auth::smart::{challenge_well_formed, AuthorizeRequest, Consent};
use crate::auth::Scopes;
use crate::paths::{OHIF_PATH, STU2_PATH, STU3_PATH};
use crate::state::HubEvent;
use crate::Hub;

/// The longest parameter value taken (a URL, a scope list, a state).
const MAX_PARAM: usize = 2048;

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>{title} · Lockstep</title><style>{STYLE}</style></head>\
<body><main><h1>{title}</h1>{body}</main></body></html>",
        title = escape(title),
    );
    let mut response = (status, Html(html)).into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// The dashboard's colours and fonts (ui/src/app.css), light and dark.
const STYLE: &str = "\
:root{color-scheme:light dark;--bg:#fff;--fg:#1b1f24;--muted:#57606a;--panel:#f4f6f8;--line:#c9d1d9;\
--accent:#0b5cad;--focus:#b35900;--bad:#a40e26;\
font-family:system-ui,-apple-system,'Segoe UI',Roboto,'Noto Sans',sans-serif;line-height:1.45}\
@media (prefers-color-scheme:dark){:root{--bg:#0f1419;--fg:#e6edf3;--muted:#9da7b3;--panel:#1a2129;\
--line:#3a4450;--accent:#6cb6ff;--focus:#ffb757;--bad:#ff9492}}\
body{margin:0;background:var(--bg);color:var(--fg)}\
main{max-width:36rem;margin:2rem auto;padding:1.5rem;background:var(--panel);border:1px solid var(--line);border-radius:0.5rem}\
h1{font-size:1.4rem;margin-top:0}dt{color:var(--muted)}dd{margin:0 0 0.6rem 0}\
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:0.9em;overflow-wrap:anywhere}\
.actions{display:flex;gap:1rem;margin-top:1rem}\
button{font:inherit;padding:0.4rem 1.2rem;border:1px solid var(--line);border-radius:0.3rem;background:var(--bg);color:var(--fg);cursor:pointer}\
button.primary{background:var(--accent);border-color:var(--accent);color:var(--bg)}\
button.deny{color:var(--bad);border-color:currentColor}\
button:focus-visible{outline:3px solid var(--focus);outline-offset:2px}";

/// HTML-escapes text for element content and quoted attributes.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn error_page(message: &str) -> Response {
    page(
        StatusCode::BAD_REQUEST,
        "This app cannot sign in",
        &format!(
            "<p>{}</p><p>Nothing was shared. Ask IT to check the app's registration (its client id and redirect URI).</p>",
            escape(message)
        ),
    )
}

/// `redirect_uri?key=value&…` (keeps an existing query).
fn redirect_with(redirect_uri: &str, pairs: &[(&str, &str)]) -> Response {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{sep}{query}");
    match HeaderValue::from_str(&location) {
        Ok(value) => {
            let mut response = StatusCode::SEE_OTHER.into_response();
            response.headers_mut().insert(header::LOCATION, value);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response.headers_mut().insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            response
        }
        Err(_) => error_page("the redirect URI cannot be used"),
    }
}

/// An RFC 6749 §4.1.2.1 error sent back to the app.
fn redirect_error(redirect_uri: &str, state: Option<&str>, error: &str, why: &str) -> Response {
    let mut pairs = vec![("error", error), ("error_description", why)];
    if let Some(state) = state {
        pairs.push(("state", state));
    }
    redirect_with(redirect_uri, &pairs)
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The authorize page fetched by a script (a browser app reading its own
/// consent page), not opened by the browser: a `fetch` sends `Origin` and
/// `Sec-Fetch-Mode: cors`; a navigation sends `navigate` and, as a GET, no
/// `Origin`.
fn fetched_by_script(headers: &HeaderMap) -> bool {
    if header_text(headers, "sec-fetch-mode").is_some_and(|m| m != "navigate") {
        return true;
    }
    header_text(headers, "origin").is_some_and(|o| !crate::guard::same_origin(o, headers))
}

/// The consent answer posted by anything but the hub's own page. The form
/// sends the hub's origin, or `null` (Chromium, after the cross-site
/// navigation that led to the page): then the browser's `Sec-Fetch-Site`
/// must say same-origin. The one-time form token is checked after this.
fn foreign_post(headers: &HeaderMap) -> bool {
    let fetch_site = header_text(headers, "sec-fetch-site");
    if fetch_site.is_some_and(|s| s != "same-origin") {
        return true;
    }
    match header_text(headers, "origin") {
        None => false,
        Some("null") => fetch_site.is_none(),
        Some(origin) => !crate::guard::same_origin(origin, headers),
    }
}

/// The `aud` values accepted: this hub's base URL or any of its hub URLs,
/// as the request reached it.
fn audiences(hub: &Hub, headers: &HeaderMap) -> Vec<String> {
    let base = super::base_url(hub, headers);
    let mut list = vec![base.clone()];
    for path in [STU3_PATH, STU2_PATH, OHIF_PATH] {
        list.push(format!("{base}{path}"));
    }
    list
}

pub async fn authorize(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    if fetched_by_script(&headers) {
        return error_page("the sign-in page must be opened by the browser, not fetched by a page");
    }
    if params.values().any(|v| v.len() > MAX_PARAM) {
        return error_page("a parameter is too long");
    }
    let get = |name: &str| {
        params
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };
    let Some(client_id) = get("client_id") else {
        return error_page("the request names no client_id");
    };
    let Some((app, browser)) = hub.auth().browser_app(client_id) else {
        return error_page("this client_id is not a registered browser app, or it was revoked");
    };
    let Some(redirect_uri) = get("redirect_uri") else {
        return error_page("the request names no redirect_uri");
    };
    if !browser.redirect_uris.iter().any(|r| r == redirect_uri) {
        return error_page("the redirect_uri is not one registered for this app");
    }
    // From here on the app hears about errors at its redirect URI.
    let state = get("state");
    let fail = |error: &str, why: &str| redirect_error(redirect_uri, state, error, why);
    if get("response_type") != Some("code") {
        return fail("unsupported_response_type", "response_type must be code");
    }
    let Some(challenge) = get("code_challenge") else {
        return fail("invalid_request", "code_challenge is required (PKCE, S256)");
    };
    if get("code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "code_challenge_method must be S256 (plain is not accepted)",
        );
    }
    if !challenge_well_formed(challenge) {
        return fail(
            "invalid_request",
            "code_challenge must be 43 base64url characters",
        );
    }
    let aud = get("aud").map(|a| a.trim_end_matches('/'));
    if !aud.is_some_and(|aud| audiences(&hub, &headers).iter().any(|a| a == aud)) {
        return fail(
            "invalid_request",
            "aud must be this hub's URL (its base URL or hub.url)",
        );
    }
    let launch = get("launch");
    if let Some(launch) = launch {
        if !hub.auth().smart().launch_valid(launch, client_id) {
            return fail("invalid_request", "unknown or expired launch");
        }
    }
    let allowed = Scopes::parse(&app.scopes.join(" "));
    let granted = allowed.grant(get("scope"));
    if granted.is_empty() {
        return fail(
            "invalid_scope",
            "none of the requested scopes are allowed for this app",
        );
    }
    let request = AuthorizeRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope: granted.to_string(),
        state: state.map(str::to_owned),
        code_challenge: challenge.to_owned(),
        launch: launch.map(str::to_owned),
    };
    match hub.auth().smart().consent(client_id) {
        Some(Consent::Approved) => approved(&hub, request),
        Some(Consent::Denied) => fail(
            "access_denied",
            "the clinician declined this app; it can be allowed again from the dashboard",
        ),
        None => {
            let origins = browser.origins().join(", ");
            let (token, first) = match hub.auth().smart().park(request.clone()) {
                Ok(t) => t,
                Err(e) => return fail("temporarily_unavailable", &e.to_string()),
            };
            if first {
                hub.emit(HubEvent::ConsentRequested {
                    app: app.name.clone(),
                });
                tracing::info!(client = %client_id, "consent requested");
            }
            consent_page(&app.name, &origins, &request.scope, &token)
        }
    }
}

fn approved(hub: &Hub, request: AuthorizeRequest) -> Response {
    let redirect_uri = request.redirect_uri.clone();
    let state = request.state.clone();
    match hub.auth().smart().mint_code(request) {
        Ok(code) => {
            let mut pairs = vec![("code", code.as_str())];
            if let Some(state) = &state {
                pairs.push(("state", state));
            }
            redirect_with(&redirect_uri, &pairs)
        }
        Err(e) => redirect_error(
            &redirect_uri,
            state.as_deref(),
            "temporarily_unavailable",
            &e.to_string(),
        ),
    }
}

fn consent_page(name: &str, origins: &str, scope: &str, token: &str) -> Response {
    let scopes: String = scope
        .split_whitespace()
        .map(|s| format!("<li><code>{}</code> — {}</li>", escape(s), describe(s)))
        .collect();
    let body = format!(
        "<p><strong>{name}</strong> asks to join this workstation's context session.</p>\
<dl><dt>App</dt><dd>{name}</dd><dt>Web address</dt><dd><code>{origins}</code></dd>\
<dt>It asks to</dt><dd><ul>{scopes}</ul></dd></dl>\
<p>Your answer is remembered for this app; it can be changed in the dashboard.</p>\
<form method=\"post\" action=\"/oauth/authorize\">\
<input type=\"hidden\" name=\"request\" value=\"{token}\">\
<div class=\"actions\">\
<button type=\"submit\" name=\"decision\" value=\"approve\" class=\"primary\" autofocus>Allow</button>\
<button type=\"submit\" name=\"decision\" value=\"deny\" class=\"deny\">Deny</button>\
</div></form>",
        name = escape(name),
        origins = escape(origins),
        token = escape(token),
    );
    page(StatusCode::OK, &format!("Allow {name}?"), &body)
}

/// A FHIRcast scope in words.
fn describe(scope: &str) -> String {
    let Some(rest) = scope.strip_prefix("fhircast/") else {
        return String::new();
    };
    let (event, access) = rest.rsplit_once('.').unwrap_or((rest, ""));
    let event = if event == "*" {
        "all context events".to_owned()
    } else {
        escape(event)
    };
    match access {
        "read" => format!("follow {event}"),
        "write" => format!("change {event}"),
        _ => format!("follow and change {event}"),
    }
}

#[derive(serde::Deserialize)]
pub struct Decision {
    request: String,
    decision: String,
}

/// The consent form's answer.
pub async fn decide(
    State(hub): State<Hub>,
    headers: HeaderMap,
    Form(form): Form<Decision>,
) -> Response {
    if foreign_post(&headers) {
        return error_page("the answer must come from the hub's own page");
    }
    let Some(request) = hub.auth().smart().unpark(&form.request) else {
        return error_page(
            "this page has expired or was already answered; start the sign-in again from the app",
        );
    };
    // The app may have been revoked while the page was open.
    if hub.auth().browser_app(&request.client_id).is_none() {
        return error_page("this app was revoked");
    }
    let consent = match form.decision.as_str() {
        "approve" => Consent::Approved,
        "deny" => Consent::Denied,
        _ => return error_page("unknown answer"),
    };
    if let Err(e) = hub.auth().smart().set_consent(&request.client_id, consent) {
        tracing::error!(error = %e, "cannot record a consent decision");
        return error_page("the hub cannot record the answer (secret store)");
    }
    tracing::info!(client = %request.client_id, ?consent, "consent decided");
    match consent {
        Consent::Approved => approved(&hub, request),
        Consent::Denied => redirect_error(
            &request.redirect_uri,
            request.state.as_deref(),
            "access_denied",
            "the clinician declined",
        ),
    }
}
