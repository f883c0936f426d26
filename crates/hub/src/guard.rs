//! What a web page in the clinician's browser must not be able to do:
//! reach the hub through a rebound DNS name (the `Host` check), or open a
//! WebSocket or send a request from another site (the `Origin` check).
//! Native apps send no `Origin`; the hub's own dashboard is same-origin;
//! other web apps (a browser-based viewer) must be allow-listed with
//! `--allow-origin`, and then get CORS headers (credentials included, as
//! Medplum's client sends them). A registered browser app's origins (from
//! its redirect URIs) are allowed the same way, but only on the paths a
//! SMART app calls: the hub URLs, the token endpoint and discovery; never
//! the dashboard or the consent page.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::Hub;

/// Names a loopback hub answers to. Anything else in `Host` is a page on
/// some other site that had its DNS name pointed at 127.0.0.1.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.rsplit_once(':') {
        // `[::1]:4747` or `localhost:4747`; a bare `::1` has several colons.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !name.ends_with(':') => {
            name
        }
        _ => host,
    };
    // Parse, never prefix-match: `127.0.0.1.nip.io` is a public DNS name.
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost"
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The page's origin is the hub itself (the dashboard).
pub(crate) fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| o.eq_ignore_ascii_case(host))
}

pub async fn guard(State(hub): State<Hub>, request: Request, next: Next) -> Response {
    let config = hub.config();
    let headers = request.headers();
    // Two `Host` headers: which one a proxy or a check reads is a guess,
    // so neither is trusted (issue 14 item 5; RFC 9112 §3.2).
    if headers.get_all(header::HOST).iter().nth(1).is_some() {
        return ApiError::bad_request("more than one Host header").into_response();
    }
    if !config.allow_remote {
        // An absolute-form target (`GET http://evil.example/...`) names the
        // authority the client means, whatever `Host` says (RFC 9112 §3.2.2).
        if let Some(authority) = request.uri().authority() {
            if !is_loopback_host(authority.as_str()) {
                return ApiError::new(
                    StatusCode::MISDIRECTED_REQUEST,
                    format!("request target names {:?}, not a loopback name; this hub only answers on 127.0.0.1/localhost", authority.as_str()),
                )
                .into_response();
            }
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default();
        if !is_loopback_host(host) {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                format!("Host {host:?} is not a loopback name; this hub only answers on 127.0.0.1/localhost"),
            )
            .into_response();
        }
    }
    let Some(origin) = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .map(str::to_owned)
    else {
        return next.run(request).await; // A native app.
    };
    if same_origin(&origin, headers) {
        return next.run(request).await;
    }
    // Chromium sends `Origin: null` with the consent page's own form; the
    // page decides (its one-time form token and `Sec-Fetch-Site`). No
    // CORS headers: a script of an opaque origin cannot read the answer.
    if origin == "null" && request.uri().path() == "/oauth/authorize" {
        return next.run(request).await;
    }
    let allowed = config
        .allowed_origins
        .iter()
        .any(|allowed| allowed == &origin)
        || (browser_app_path(request.uri().path()) && hub.auth().browser_origin_allowed(&origin));
    if !allowed {
        let path = redacted(request.uri().path());
        tracing::info!(%origin, %path, "request from a web origin that is not allowed");
        return ApiError::new(
            StatusCode::FORBIDDEN,
            format!("web origin {origin} is not allowed; an administrator can allow it with --allow-origin"),
        )
        .into_response();
    }
    let preflight = request.method() == Method::OPTIONS;
    // Chrome's Private Network Access preflight (before Local Network
    // Access replaced it with a permission prompt) asks this of loopback
    // servers; an allowed origin gets its yes.
    let private_network = preflight
        && request
            .headers()
            .get("access-control-request-private-network")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"));
    let mut response = if preflight {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, value);
    }
    h.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, OPTIONS"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, accept, x-medplum"),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("600"),
        );
        if private_network {
            h.insert(
                "access-control-allow-private-network",
                HeaderValue::from_static("true"),
            );
        }
    }
    response
}

/// Paths a registered browser app's page may call from its own origin.
fn browser_app_path(path: &str) -> bool {
    use crate::paths::{OHIF_PATH, STU2_PATH, STU3_PATH};
    let under = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    under(STU3_PATH)
        || under(STU2_PATH)
        || under(OHIF_PATH)
        || path == "/oauth/token"
        || path == "/.well-known/smart-configuration"
}

/// A path fit for the log: endpoint ids are credentials, so only their
/// first characters appear.
fn redacted(path: &str) -> String {
    match path.split_once("/ws/") {
        Some((prefix, id)) => format!("{prefix}/ws/{}…", crate::ids::short(id)),
        None => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names() {
        for ok in [
            "127.0.0.1:4747",
            "localhost:4747",
            "[::1]:4747",
            "localhost",
            "127.0.0.2:80",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example:4747",
            "",
            "192.168.1.4:4747",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }
}
