//! Request context change: `POST {hub.url}` and `POST {hub.url}/{topic}`
//! with a JSON event (2-6; checklist 60-67). Bad input gets 4xx with an
//! OperationOutcome, never 5xx: clients retry 5xx and would publish twice.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fhircast::Event;
use serde_json::json;
use tracing::info;

use super::{read_body, Api};
use crate::auth::Need;
use crate::error::ApiError;

pub async fn at_topic(
    State(api): State<Api>,
    Path(topic): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match read_body(&api, body).await {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
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
    handle(&api, &headers, Some(&topic), &bytes)
}

pub fn handle(api: &Api, headers: &HeaderMap, path_topic: Option<&str>, body: &[u8]) -> Response {
    let event = match Event::parse(body, api.version) {
        Ok(e) => e,
        Err(e) => return rejected(ApiError::bad_request(e.0), None),
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
    if let Err(e) = api
        .hub
        .auth()
        .check(headers, &event.topic, Need::Write(event.name.as_str()))
    {
        return e.into_response();
    }
    match api.hub.publish(event) {
        Ok(published) => {
            let (status, body) = if published.unknown_selected.is_empty() {
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
            (
                status,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => rejected(e, Some(&name)),
    }
}

/// Support staff need to see refused publishes in the log, with the reason.
fn rejected(e: ApiError, event: Option<&str>) -> Response {
    info!(status = e.status.as_u16(), event = event.unwrap_or("-"), reason = %e.message, "publish rejected");
    e.into_response()
}
