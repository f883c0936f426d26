//! `GET {hub.url}/.well-known/fhircast-configuration` (2-7; checklist 76-83).

use axum::extract::State;
use axum::Json;
use fhircast::{catalog, Version};
use serde_json::{json, Value};

use super::Api;

pub async fn configuration(State(api): State<Api>) -> Json<Value> {
    let mut doc = json!({
        "eventsSupported": catalog::supported_event_names(),
        "websocketSupport": true,
        "fhircastVersion": api.version.label(),
        "getCurrentSupport": true,
        "capabilities": {
            "supportsGetCurrentContext": true,
            "supportsNonCurrentContextUpdates": true,
        },
        "fhirVersion": "R4",
    });
    if api.version == Version::Stu2 {
        // Legacy webhook subscribers are served on this path (hub-digest §3).
        doc["webhookSupport"] = true.into();
    }
    Json(doc)
}
