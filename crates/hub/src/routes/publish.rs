//! Request context change: `POST {hub.url}` and `POST {hub.url}/{topic}`
//! with a JSON event (2-6; checklist 60-67). Bad input gets 4xx with an
//! OperationOutcome, never 5xx: clients retry 5xx and would publish twice.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fhircast::Event;
use serde_json::{json, Value};
use tracing::info;

use super::{read_body, Api};
use crate::auth::Need;
use crate::error::ApiError;
use crate::persist::{outcome, record};
use crate::storage::AuditAction;

pub async fn at_topic(
    State(api): State<Api>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    // A token valid for this topic, before the body is read (issue 14 item 1).
    if let Err(e) = super::authenticated(&api, &headers, Some(&topic)).await {
        return e.into_response();
    }
    let buffered = match read_body(&api, &headers, body).await {
        Ok(b) => b,
        Err(e) => return e,
    };
    let bytes = &buffered.bytes;
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        if ct.starts_with("application/x-www-form-urlencoded") {
            return ApiError::bad_request(format!(
                "subscriptions go to {} itself, not to a topic path",
                api.prefix
            ))
            .negotiated(&headers);
        }
    }
    // Bounded parse (depth, keys), once: the event is built from this value.
    let parsed = fhircast::json::parse_bounded(bytes).map_err(|e| e.to_string());
    handle(&api, &headers, Some(&topic), parsed).await
}

/// `parsed`: the body as parsed by the caller (`parse_bounded`), or why it
/// is not JSON. The event is built from that value: one parse per publish.
pub async fn handle(
    api: &Api,
    headers: &HeaderMap,
    path_topic: Option<&str>,
    parsed: Result<Value, String>,
) -> Response {
    let event = match parsed.and_then(|v| Event::from_value(v, api.version).map_err(|e| e.0)) {
        Ok(e) => e,
        Err(e) => return rejected(ApiError::bad_request(e), None),
    };
    if let Some(topic) = path_topic {
        if topic != event.topic {
            return ApiError::bad_request(format!(
                "the topic in the URL ({topic:?}) differs from event.hub.topic ({:?})",
                event.topic
            ))
            .into_response();
        }
    }
    let name = event.name.to_string();
    // One authentication gives both the decision and the caller for the
    // audit record (`None` with auth off).
    let caller = match api
        .hub
        .auth()
        .check(headers, &event.topic, Need::Write(event.name.as_str()))
        .await
    {
        Ok(caller) => caller,
        Err(e) => {
            let mut r = record(AuditAction::AuthFailure, &event.topic, None);
            (r.event_name, r.outcome) = (Some(name.clone()), outcome(&e));
            api.hub.audit(r);
            return e.into_response();
        }
    };
    let mut audit = record(AuditAction::Publish, &event.topic, caller.as_ref());
    audit.event_name = Some(name.clone());
    audit.event_id = Some(event.id.clone());
    audit.resource_ids = Some(crate::storage::resource_ids(event.context()));
    match api.hub.publish(event) {
        Ok(mut published) => {
            // Durability rule: the event is on disk before the 2xx.
            if let Some(durable) = published.durable.take() {
                if let Err(e) = durable.await {
                    tracing::error!(error = %e, "event delivered but not journaled");
                    let e = ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("the event was delivered but could not be recorded: {e}"),
                    );
                    audit.outcome = outcome(&e);
                    api.hub.audit(audit);
                    return e.into_response();
                }
            }
            let (status, body) = if published.duplicate {
                // Idempotent retry: the same 2xx, flagged, no second broadcast.
                (
                    StatusCode::ACCEPTED,
                    json!({"success": true, "duplicate": true, "event": published.message}),
                )
            } else if published.unknown_selected.is_empty() {
                (
                    StatusCode::ACCEPTED,
                    json!({"success": true, "event": published.message}),
                )
            } else {
                let ignored = published.unknown_selected;
                (
                    StatusCode::PARTIAL_CONTENT,
                    json!({"success": true, "event": published.message, "ignored": ignored}),
                )
            };
            audit.outcome = status.as_u16().to_string();
            api.hub.audit(audit);
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => {
            audit.outcome = outcome(&e);
            api.hub.audit(audit);
            rejected(e, Some(&name))
        }
    }
}

/// Support staff need to see refused publishes in the log, with the reason.
fn rejected(e: ApiError, event: Option<&str>) -> Response {
    info!(status = e.status.as_u16(), event = event.unwrap_or("-"), reason = %e.message, "publish rejected");
    e.into_response()
}
