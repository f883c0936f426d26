//! Subscription requests at `POST {hub.url}` (2-4; checklist 8-22, 36-40).

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fhircast::{EventName, EventSet, Mode, SubscriptionRequest, Version};
use serde_json::{json, Value};

use super::{public_host, Api};
use crate::auth::Need;
use crate::error::ApiError;
use crate::persist::{outcome, record};
use crate::storage::AuditAction;

pub async fn form(api: &Api, headers: &HeaderMap, body: &[u8]) -> Response {
    handle(api, headers, SubscriptionRequest::from_form(body)).await
}

pub async fn json(api: &Api, headers: &HeaderMap, body: &Value) -> Response {
    handle(api, headers, SubscriptionRequest::from_json(body)).await
}

async fn handle(
    api: &Api,
    headers: &HeaderMap,
    req: Result<SubscriptionRequest, fhircast::SubscriptionError>,
) -> Response {
    let mut req = match req {
        Ok(r) => r,
        Err(e) => return ApiError::bad_request(e.0).negotiated(headers),
    };
    let wildcard = req.mode == Mode::Subscribe && req.events.is_wildcard();
    if wildcard && !accepts_wildcard(api) {
        return ApiError::bad_request(format!(
            "hub.events: \"*\" is not supported on {}: FHIRcast 3.0.0 has no wildcard subscriptions; list the events (STU2 clients: use {})",
            api.prefix,
            crate::paths::STU2_PATH
        ))
        .negotiated(headers);
    }
    let need = match req.mode {
        // What `*` covers is decided by the token below; it needs some read scope.
        Mode::Subscribe if wildcard => Need::AnyRead,
        Mode::Subscribe => Need::Read(req.events.iter().map(|e| e.as_str()).collect()),
        Mode::Unsubscribe => Need::Topic,
    };
    let action = match req.mode {
        Mode::Subscribe => AuditAction::Subscribe,
        Mode::Unsubscribe => AuditAction::Unsubscribe,
    };
    let caller = match api.hub.auth().check(headers, &req.topic, need).await {
        Ok(caller) => caller,
        Err(e) => {
            let mut r = record(AuditAction::AuthFailure, &req.topic, None);
            (r.event_name, r.outcome) = (Some(req.events.to_string()), outcome(&e));
            api.hub.audit(r);
            return e.negotiated(headers);
        }
    };
    if wildcard {
        if let Some(narrowed) = caller.as_ref().and_then(|c| c.scopes.readable_events()) {
            // The token allows only some events: `*` means exactly those.
            // Stored as the list, so a restart cannot widen it.
            req.events = EventSet::default();
            for name in narrowed
                .into_iter()
                .filter_map(|n| EventName::parse(n).ok())
            {
                req.events.insert(name);
            }
            if req.events.is_empty() {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "missing scope: a fhircast/<event>.read scope",
                )
                .negotiated(headers);
            }
        }
    }
    let mut audit = record(action, &req.topic, caller.as_ref());
    audit.event_name = Some(req.events.to_string()).filter(|e| !e.is_empty());
    if let Some(name) = &req.subscriber_name {
        audit.subscriber_name = Some(name.clone());
    }
    // Legacy webhooks: only where the STU2 edition is spoken (hub-digest §3).
    if api.version == Version::Stu2 && crate::webhook::wants(&req) {
        let result = api.hub.webhook_request(req, caller.as_ref()).await;
        audit.outcome = match &result {
            Ok(()) => "202".to_owned(),
            Err(e) => outcome(e),
        };
        audit.detail = Some("webhook; intent verification follows".to_owned());
        api.hub.audit(audit);
        return match result {
            // 202 with no body; verification follows (STU1/STU2).
            Ok(()) => StatusCode::ACCEPTED.into_response(),
            Err(e) => e.negotiated(headers),
        };
    }
    let result = match req.mode {
        Mode::Subscribe => api.hub.subscribe(req, caller.as_ref()),
        Mode::Unsubscribe => api.hub.unsubscribe(&req, caller.as_ref()),
    };
    audit.outcome = match &result {
        Ok(id) => {
            audit.detail = Some(format!("endpoint {}", crate::ids::short(id)));
            "202".to_owned()
        }
        Err(e) => outcome(e),
    };
    api.hub.audit(audit);
    match result {
        Ok(endpoint_id) => {
            let endpoint = format!(
                "{}://{}{}/ws/{}",
                api.hub.config().ws_scheme(),
                public_host(&api.hub, headers),
                api.prefix,
                endpoint_id
            );
            (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"hub.channel.endpoint": endpoint}).to_string(),
            )
                .into_response()
        }
        Err(e) => e.negotiated(headers),
    }
}

/// `hub.events=*` is STU2's grammar: accepted where STU2 clients speak (the
/// STU2 path, and `/api/hub` for OHIF's cast client, which sends it when no
/// events are configured). STU3 removed wildcards, so its path refuses them.
fn accepts_wildcard(api: &Api) -> bool {
    api.version == Version::Stu2 || api.prefix == crate::paths::OHIF_PATH
}
