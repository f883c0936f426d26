//! The shape of a SyncError (3-2-1 and the syncerror OperationOutcome
//! profile; checklist 70-73).

use serde_json::{json, Value};

pub const EVENT_ID_SYSTEM: &str = "https://fhircast.hl7.org/events/syncerror/eventid";
pub const EVENT_NAME_SYSTEM: &str = "https://fhircast.hl7.org/events/syncerror/eventname";
pub const SUBSCRIBER_NAME_SYSTEM: &str = "https://fhircast.hl7.org/events/syncerror/subscribername";

/// What went wrong, for the OperationOutcome's issue code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssueCode {
    Processing,
    TooLong,
}

/// The hub-generated SyncError OperationOutcome: severity warning, the
/// three codings naming the failed event and the subscriber, and a
/// human-readable `diagnostics`.
pub fn operation_outcome(
    event_id: &str,
    event_name: &str,
    subscriber: &str,
    diagnostics: &str,
    code: IssueCode,
) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "warning",
            "code": match code { IssueCode::Processing => "processing", IssueCode::TooLong => "too-long" },
            "diagnostics": diagnostics,
            "details": {
                "coding": [
                    {"system": EVENT_ID_SYSTEM, "code": event_id},
                    {"system": EVENT_NAME_SYSTEM, "code": event_name},
                    {"system": SUBSCRIBER_NAME_SYSTEM, "code": subscriber},
                ]
            }
        }]
    })
}

/// A complete SyncError event message for `topic`.
pub fn event(id: &str, timestamp: &str, topic: &str, outcome: Value) -> Value {
    json!({
        "timestamp": timestamp,
        "id": id,
        "event": {
            "hub.topic": topic,
            "hub.event": "SyncError",
            "context": [{"key": "operationoutcome", "resource": outcome}],
        }
    })
}
