//! `GET {hub.url}/{topic}`: Get Current Context (2-9; checklist 85-92).
//! STU2-era clients (PowerCast) expect the bare context array.

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use fhircast::Version;
use serde_json::Value;

use super::Api;
use crate::auth::Need;
use crate::persist::{outcome, record};
use crate::storage::AuditAction;

pub async fn current(
    State(api): State<Api>,
    Path(topic): Path<String>,
    headers: HeaderMap,
) -> Response {
    let caller = match api.hub.auth().check(&headers, &topic, Need::AnyRead).await {
        Ok(caller) => caller,
        Err(e) => {
            let mut r = record(AuditAction::AuthFailure, &topic, None);
            (r.event_name, r.outcome) = (Some("get-context".into()), outcome(&e));
            api.hub.audit(r);
            return e.into_response();
        }
    };
    let mut audit = record(AuditAction::GetContext, &topic, caller.as_ref());
    audit.outcome = "200".into();
    api.hub.audit(audit);
    let mut snapshot = api.hub.current_context(&topic);
    let body = match api.version {
        Version::Stu3 => snapshot,
        Version::Stu2 => {
            let mut context = snapshot["context"].take();
            if let Value::Array(items) = &mut context {
                items.retain(|i| i["key"] != "content");
            }
            context
        }
    };
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.to_string(),
    )
        .into_response()
}
