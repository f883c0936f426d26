//! The hub's own SMART-style authorization server for registered local
//! apps: `POST /oauth/token` (`client_credentials`; the client proves who
//! it is with its secret, by `client_secret_basic` or `client_secret_post`,
//! or with a signed assertion, `private_key_jwt` as in SMART Backend
//! Services) and
//! `/.well-known/smart-configuration`. The token response carries the SMART
//! launch context `hub.url` and `hub.topic` (2-1; checklist 114).
//!
//! Browser apps (public clients) use SMART App Launch instead:
//! `GET /oauth/authorize` (`authorize`), then `authorization_code` with a
//! PKCE verifier, then `refresh_token` (issue 16).

mod authorize;

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::auth::assertion::ASSERTION_TYPE;
use crate::auth::keys::{alg_names, ASSERTION_ALGS};
use crate::auth::AuthError;
use crate::paths::STU3_PATH;
use crate::storage::{AuditAction, AuditRecord};
use crate::Hub;

pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route(
            "/oauth/authorize",
            get(authorize::authorize).post(authorize::decide),
        )
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .with_state(hub)
}

pub(crate) fn base_url(hub: &Hub, headers: &HeaderMap) -> String {
    let scheme = hub.config().http_scheme();
    format!("{scheme}://{}", super::public_host(hub, headers))
}

async fn smart_configuration(State(hub): State<Hub>, headers: HeaderMap) -> Json<Value> {
    smart_configuration_of(&hub, &headers)
}

/// The same document under each hub path, where SMART clients given
/// `hub.url` as their base look for it.
pub async fn smart_configuration_at_hub(
    State(api): State<super::Api>,
    headers: HeaderMap,
) -> Json<Value> {
    smart_configuration_of(&api.hub, &headers)
}

fn smart_configuration_of(hub: &Hub, headers: &HeaderMap) -> Json<Value> {
    let base = base_url(hub, headers);
    Json(json!({
        "issuer": base,
        "token_endpoint": format!("{base}/oauth/token"),
        "authorization_endpoint": format!("{base}/oauth/authorize"),
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": alg_names(&ASSERTION_ALGS),
        "grant_types_supported": ["client_credentials", "authorization_code", "refresh_token"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["fhircast/*.read", "fhircast/*.write", "fhircast/*.*", "launch"],
        "capabilities": [
            "client-confidential-symmetric",
            "client-confidential-asymmetric",
            "client-public",
            "launch-ehr",
            "launch-standalone",
        ],
        "hub.url": format!("{base}{STU3_PATH}"),
    }))
}

/// RFC 6749 §5.2 error body.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    (status, [(header::CACHE_CONTROL, "no-store")], Json(body)).into_response()
}

async fn token(State(hub): State<Hub>, headers: HeaderMap, body: Body) -> Response {
    let Ok(bytes) = to_bytes(body, 64 * 1024).await else {
        return oauth_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "request body too large",
        );
    };
    let form: Vec<(String, String)> = form_urlencoded::parse(&bytes).into_owned().collect();
    let field = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    match field("grant_type") {
        Some("client_credentials") => {}
        Some(grant @ ("authorization_code" | "refresh_token")) => {
            return browser_token(&hub, &headers, grant, &field)
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported; use client_credentials, authorization_code or refresh_token"),
            )
        }
        None => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "missing grant_type",
            )
        }
    }
    let result = if let Some(assertion) = field("client_assertion") {
        // RFC 7523 §2.2; one way of authenticating per request (RFC 6749 §2.3).
        if field("client_assertion_type") != Some(ASSERTION_TYPE) {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                &format!("client_assertion_type must be {ASSERTION_TYPE}"),
            );
        }
        if field("client_secret").is_some() || basic_credentials(&headers).is_some() {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "send a client_assertion or a client secret, not both",
            );
        }
        let client_id = field("client_id").map(str::to_owned);
        let result = hub
            .auth()
            .issue_for_assertion(
                client_id.as_deref(),
                assertion,
                field("scope"),
                &token_urls(&hub, &headers),
            )
            .await;
        (client_id, result)
    } else {
        let Some((client_id, secret)) = basic_credentials(&headers).or_else(|| {
            Some((
                field("client_id")?.to_owned(),
                field("client_secret")?.to_owned(),
            ))
        }) else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "send client_id and client_secret (HTTP Basic or form fields), or a client_assertion",
            );
        };
        let result = hub.auth().issue(&client_id, &secret, field("scope"));
        (Some(client_id), result)
    };
    let (client_id, result) = result;
    let client_id = client_id.unwrap_or_default();
    if let Err(e) = &result {
        refused(&hub, &client_id, e);
    }
    match result {
        Ok(issued) => issued_response(&hub, &headers, &issued),
        Err(e @ AuthError::Invalid(_)) => {
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.to_string())
        }
        Err(e @ AuthError::Store(_)) => {
            tracing::error!(error = %e, "token request failed");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the hub cannot read its secret store",
            )
        }
        Err(AuthError::Assertion(reason)) => {
            tracing::info!(client = %client_id, reason = %reason, "token refused");
            oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &reason)
        }
        Err(e) => {
            tracing::info!(client = %client_id, reason = %e, "token refused");
            // One answer for unknown client and wrong secret: no oracle.
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client, revoked client or wrong credentials",
            )
        }
    }
}

/// A token response: the token, `hub.url`, `hub.topic`, and `topic` too,
/// the name OHIF's cast client reads the topic under (CONFORMANCE.md).
fn issued_response(
    hub: &Hub,
    headers: &HeaderMap,
    issued: &crate::auth::TokenResponse,
) -> Response {
    let mut body = serde_json::to_value(issued).unwrap_or_default();
    body["hub.url"] = format!("{}{STU3_PATH}", base_url(hub, headers)).into();
    body["topic"] = issued.topic.clone().into();
    (
        StatusCode::OK,
        [(header::CACHE_CONTROL, "no-store")],
        Json(body),
    )
        .into_response()
}

/// `authorization_code` (with the PKCE verifier) and `refresh_token` for
/// browser apps: public clients, no secret (RFC 6749 §4.1.3, §6; RFC 7636
/// §4.5).
fn browser_token<'a>(
    hub: &Hub,
    headers: &HeaderMap,
    grant: &str,
    field: &dyn Fn(&str) -> Option<&'a str>,
) -> Response {
    let Some(client_id) = field("client_id") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "client_id is required",
        );
    };
    let smart = hub.auth().smart();
    let issued = if grant == "authorization_code" {
        let (Some(code), Some(redirect_uri)) = (field("code"), field("redirect_uri")) else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "code and redirect_uri are required",
            );
        };
        let Some(verifier) = field("code_verifier") else {
            // The code is still used up: one try per code.
            let _ = smart.redeem_code(code, client_id, redirect_uri, "");
            return refused_grant(hub, client_id, "code_verifier is required (PKCE)");
        };
        match smart.redeem_code(code, client_id, redirect_uri, verifier) {
            Ok(request) => hub
                .auth()
                .issue_for_browser_app(client_id, &request.scope, None),
            Err(why) => return refused_grant(hub, client_id, &why),
        }
    } else {
        let Some(token) = field("refresh_token") else {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "refresh_token is required",
            );
        };
        match smart.redeem_refresh(token, client_id) {
            // Never wider than what was granted (RFC 6749 §6).
            Some(grant) => hub.auth().issue_for_browser_app(
                client_id,
                &crate::auth::Scopes::parse(&grant.scope)
                    .grant(field("scope"))
                    .to_string(),
                Some(grant.generation),
            ),
            None => {
                return refused_grant(
                    hub,
                    client_id,
                    "the refresh token is unknown, used, expired or not this client's",
                )
            }
        }
    };
    match issued {
        Ok(issued) => issued_response(hub, headers, &issued),
        Err(e @ AuthError::Invalid(_)) => {
            refused(hub, client_id, &e);
            oauth_error(StatusCode::BAD_REQUEST, "invalid_scope", &e.to_string())
        }
        Err(_) => refused_grant(
            hub,
            client_id,
            "the app was revoked or its consent withdrawn",
        ),
    }
}

impl Hub {
    /// For the tray's "Open app" (SMART EHR launch): the browser app's
    /// launch URL with a fresh `launch` id and `iss` (this hub's base
    /// URL, also the `aud` it accepts). `None` when `client_id` is not an
    /// active browser app with a launch URL, or the hub is not serving.
    pub fn launch_url(&self, client_id: &str) -> Option<String> {
        let addr = self.local_addr()?;
        let iss = format!("{}://{addr}", self.config().http_scheme());
        self.auth().launch_url(client_id, &iss)
    }

    /// For the tray's "Open app" submenu: the active browser apps that have
    /// a launch URL, as `(client id, name)`, sorted by name. Memory only.
    pub fn launchable_apps(&self) -> Vec<(String, String)> {
        let launchable = self.auth().smart().launchable();
        let mut apps: Vec<(String, String)> = self
            .apps()
            .list()
            .into_iter()
            .filter(|a| !a.revoked && launchable.contains(&a.client_id))
            .map(|a| (a.client_id, a.name))
            .collect();
        apps.sort_by(|a, b| a.1.cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
        apps
    }
}

/// RFC 6749 §5.2 `invalid_grant`, and an audit record.
fn refused_grant(hub: &Hub, client_id: &str, why: &str) -> Response {
    tracing::info!(client = %client_id, reason = %why, "token refused");
    let mut record = AuditRecord::new(AuditAction::AuthFailure, "400 invalid_grant");
    record.client_id = Some(client_id.to_owned()).filter(|c| !c.is_empty());
    record.event_name = Some("token".to_owned());
    record.detail = Some(why.to_owned());
    hub.audit(record);
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", why)
}

/// The URLs a client assertion's `aud` may name: the token endpoint as
/// this request reached it, and at the address the hub is bound to.
fn token_urls(hub: &Hub, headers: &HeaderMap) -> Vec<String> {
    let base = base_url(hub, headers);
    let scheme = base.split_once("://").map_or("http", |(s, _)| s);
    let mut urls = vec![format!("{base}/oauth/token")];
    if let Some(addr) = hub.local_addr() {
        let bound = format!("{scheme}://{addr}/oauth/token");
        if !urls.contains(&bound) {
            urls.push(bound);
        }
    }
    urls
}

/// A refused token request goes to the audit trail, whichever way the
/// client authenticated. The client id is the one claimed.
fn refused(hub: &Hub, client_id: &str, e: &AuthError) {
    let (outcome, detail) = match e {
        AuthError::Invalid(_) => ("400 invalid_scope", e.to_string()),
        AuthError::Store(_) => ("500 server_error", "secret store".to_owned()),
        AuthError::Assertion(reason) => ("401 invalid_client", reason.clone()),
        _ => ("401 invalid_client", e.to_string()),
    };
    let mut record = AuditRecord::new(AuditAction::AuthFailure, outcome);
    record.client_id = Some(client_id.to_owned()).filter(|c| !c.is_empty());
    record.event_name = Some("token".to_owned());
    record.detail = Some(detail);
    hub.audit(record);
}

/// `Authorization: Basic base64(client_id:secret)`.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}
