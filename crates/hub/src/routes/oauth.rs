//! The hub's own SMART-style authorization server for registered local
//! apps: `POST /oauth/token` (`client_credentials`, client secret by
//! `client_secret_basic` or `client_secret_post`) and
//! `/.well-known/smart-configuration`. The token response carries the SMART
//! launch context `hub.url` and `hub.topic` (2-1; checklist 114).

use axum::body::{to_bytes, Body};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde_json::{json, Value};

use crate::auth::AuthError;
use crate::server::STU3_PATH;
use crate::Hub;

pub fn router(hub: Hub) -> Router {
    Router::new()
        .route("/oauth/token", post(token))
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .with_state(hub)
}

fn base_url(hub: &Hub, headers: &HeaderMap) -> String {
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
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["fhircast/*.read", "fhircast/*.write", "fhircast/*.*"],
        "capabilities": ["client-confidential-symmetric"],
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
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported; use client_credentials"),
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
    if field("client_assertion").is_some() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_client",
            "private_key_jwt is not supported yet; use a client secret",
        );
    }
    let Some((client_id, secret)) = basic_credentials(&headers).or_else(|| {
        Some((
            field("client_id")?.to_owned(),
            field("client_secret")?.to_owned(),
        ))
    }) else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "send client_id and client_secret (HTTP Basic or form fields)",
        );
    };
    match hub.auth().issue(&client_id, &secret, field("scope")) {
        Ok(issued) => {
            let mut body = serde_json::to_value(&issued).unwrap_or_default();
            body["hub.url"] = format!("{}{STU3_PATH}", base_url(&hub, &headers)).into();
            (
                StatusCode::OK,
                [(header::CACHE_CONTROL, "no-store")],
                Json(body),
            )
                .into_response()
        }
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
        Err(e) => {
            tracing::info!(client = %client_id, reason = %e, "token refused");
            // One answer for unknown client and wrong secret: no oracle.
            oauth_error(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client or wrong secret",
            )
        }
    }
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
