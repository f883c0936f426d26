//! The HTTP surface of one hub path (`/fhircast/STU3`, `/fhircast/STU2`,
//! `/api/hub`). Handlers are plain functions over [`Api`]; each endpoint has
//! its own file.

pub mod body;
mod channel;
mod context;
mod discovery;
pub mod oauth;
mod publish;
mod subscribe;

use axum::body::Body;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use fhircast::Version;

use crate::error::ApiError;
use crate::Hub;
use body::{BodyBudget, Buffered};

/// State of the handlers under one path: the hub, and which edition of the
/// spec that path speaks.
#[derive(Clone)]
pub struct Api {
    pub hub: Hub,
    pub version: Version,
    /// The path this router is mounted at; endpoint URLs live under it.
    pub prefix: &'static str,
    /// Shared by every route of the app: see `body.rs`.
    pub bodies: BodyBudget,
}

pub fn router(hub: Hub, version: Version, prefix: &'static str, bodies: BodyBudget) -> Router {
    Router::new()
        .route("/", post(hub_post))
        .route(
            "/.well-known/fhircast-configuration",
            get(discovery::configuration),
        )
        .route(
            "/.well-known/smart-configuration",
            get(oauth::smart_configuration_at_hub),
        )
        .route("/ws/{id}", get(channel::upgrade))
        .route("/{topic}", get(context::current).post(publish::at_topic))
        .with_state(Api {
            hub,
            version,
            prefix,
            bodies,
        })
}

/// `POST {hub.url}`: subscriptions (form) and events (JSON) share the URL
/// and are told apart by `Content-Type` (hub-digest §1).
async fn hub_post(
    axum::extract::State(api): axum::extract::State<Api>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // Every POST here needs a valid token; its scopes and topic are
    // checked once the body says what it is for.
    if let Err(e) = authenticated(&api, &headers, None).await {
        return e.negotiated(&headers);
    }
    let buffered = match read_body(&api, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e,
    };
    // A handle on the same bytes; `buffered` keeps its share of the
    // budget until the answer is made.
    let bytes = buffered.bytes.clone();
    match body_kind(&headers, &bytes) {
        BodyKind::Form => subscribe::form(&api, &headers, &bytes).await,
        // Bounded parse (depth, keys): no body costs more than linear time.
        BodyKind::Json => match fhircast::json::parse_bounded(&bytes) {
            Ok(value) if value.get("hub.mode").is_some() => subscribe::json(&api, &headers, &value).await,
            // An event is built from this same value: parsed once.
            parsed => publish::handle(&api, &headers, None, parsed.map_err(|e| e.to_string())).await,
        },
        BodyKind::Other(ct) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Type {ct:?} is not accepted: send subscriptions as application/x-www-form-urlencoded and events as application/json"),
        )
        .negotiated(&headers),
    }
}

enum BodyKind {
    Form,
    Json,
    Other(String),
}

fn body_kind(headers: &HeaderMap, body: &[u8]) -> BodyKind {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
    match content_type.as_deref() {
        Some("application/x-www-form-urlencoded") => BodyKind::Form,
        Some(ct) if ct == "application/json" || ct.ends_with("+json") => BodyKind::Json,
        // No type: look at the body.
        None | Some("") => match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => BodyKind::Json,
            _ => BodyKind::Form,
        },
        Some(other) => BodyKind::Other(other.to_owned()),
    }
}

/// Reads the whole body within the configured limit (413), the shared
/// budget (503) and the body deadline (408); the error is the answer.
async fn read_body(api: &Api, headers: &HeaderMap, body: Body) -> Result<Buffered, Response> {
    let limit = api.hub.config().max_body_bytes;
    api.bodies
        .read(headers, body, limit)
        .await
        .map_err(|e| e.answer(Some(headers)))
}

/// Before any body is read (issue 14 item 1): with auth on, the bearer
/// token must be valid, and valid for `topic` when the URL names one. A
/// request without one is refused unread and audited.
async fn authenticated(
    api: &Api,
    headers: &HeaderMap,
    topic: Option<&str>,
) -> Result<(), ApiError> {
    let auth = api.hub.auth();
    if !auth.enabled() {
        return Ok(());
    }
    let result = match topic {
        Some(topic) => auth
            .check(headers, topic, crate::auth::Need::Topic)
            .await
            .map(|_| ()),
        None => auth.authenticate(headers).await.map(|_| ()).map_err(|e| {
            tracing::info!(reason = %e, "request refused: not authenticated");
            ApiError::unauthorized(e.to_string())
        }),
    };
    if let Err(e) = &result {
        let mut r = crate::persist::record(
            crate::storage::AuditAction::AuthFailure,
            topic.unwrap_or_default(),
            None,
        );
        r.outcome = crate::persist::outcome(e);
        r.detail = Some("refused before the body was read".to_owned());
        api.hub.audit(r);
    }
    result
}

/// `scheme://host` for URLs we hand out: the client's own `Host` when it is
/// a loopback name (so `localhost` clients get `localhost` back), else the
/// address we are bound to.
fn public_host(hub: &Hub, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let name = host.rsplit_once(':').map_or(host, |(n, _)| n);
    if matches!(name, "localhost" | "127.0.0.1" | "[::1]") {
        return host.to_owned();
    }
    hub.local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|| hub.config().listen.to_string())
}
