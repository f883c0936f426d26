//! The audit trail: a scripted session's records exported as NDJSON and
//! CSV with since/until filters, CSV quoting, pruning by age, and the
//! patient-data rule of `resource_ids`.

use std::time::SystemTime;

use lockstep_hub::storage::{resource_ids, AuditAction, AuditRecord, ExportFormat, Storage};
use serde_json::{json, Value};

use super::{at, open};

fn record(ms: i64, action: AuditAction, outcome: &str) -> AuditRecord {
    AuditRecord {
        at: super::at(ms),
        ..AuditRecord::new(action, outcome)
    }
}

/// A short session: the PACS subscribes, the RIS opens a patient, the PACS
/// fails to ACK, an unknown app is refused.
async fn scripted_session(storage: &Storage) {
    let mut subscribe = record(1_000, AuditAction::Subscribe, "202");
    subscribe.subscriber_name = Some("PACS, main".into());
    subscribe.client_id = Some("pacs".into());
    subscribe.topic = Some("topic-1".into());
    let mut publish = record(2_000, AuditAction::Publish, "202");
    publish.client_id = Some("ris".into());
    publish.token_subject = Some("dr.house".into());
    publish.topic = Some("topic-1".into());
    publish.event_name = Some("Patient-open".into());
    publish.event_id = Some("ev-1".into());
    publish.resource_ids = Some("Patient/p1".into());
    let mut failure = record(3_000, AuditAction::DeliveryFailure, "timeout");
    failure.subscriber_name = Some("=cmd|' /C calc'!A0".into());
    failure.detail = Some("no ACK within 10 s, \"retried\"\nonce".into());
    let denied = record(
        4_000,
        AuditAction::AuthFailure,
        "403 missing fhircast/Patient-open.write",
    );
    for r in [subscribe, publish, failure, denied] {
        storage.audit(r);
    }
    storage.flush().await.unwrap();
}

fn export(storage: &Storage, since: Option<i64>, until: Option<i64>, f: ExportFormat) -> String {
    let mut out = Vec::new();
    storage
        .export_audit(since.map(at), until.map(at), f, &mut out)
        .unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn audit_export_ndjson_lists_the_session() {
    let dir = tempfile::tempdir().unwrap();
    let storage = open(dir.path());
    scripted_session(&storage).await;
    drop(storage);
    let storage = open(dir.path());

    let all = export(&storage, None, None, ExportFormat::Ndjson);
    let lines: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actions: Vec<_> = lines
        .iter()
        .map(|l| l["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["subscribe", "publish", "delivery-failure", "auth-failure"]
    );
    assert_eq!(
        lines[1],
        json!({"seq": 2, "at": "1970-01-01T00:00:02.000Z", "action": "publish",
               "client_id": "ris", "subscriber_name": null, "token_subject": "dr.house",
               "topic": "topic-1", "event_name": "Patient-open", "event_id": "ev-1",
               "resource_ids": "Patient/p1", "outcome": "202", "detail": null})
    );
    // since is inclusive, until exclusive.
    let some = export(&storage, Some(2_000), Some(4_000), ExportFormat::Ndjson);
    let seqs: Vec<i64> = some
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(
        export(&storage, Some(5_000), None, ExportFormat::Ndjson),
        ""
    );
}

#[tokio::test]
async fn audit_export_csv_quotes_what_needs_quoting() {
    let storage = Storage::open_in_memory().unwrap();
    scripted_session(&storage).await;
    let csv = export(&storage, Some(1_000), None, ExportFormat::Csv);
    let expected = "seq,at,action,client_id,subscriber_name,token_subject,topic,event_name,\
        event_id,resource_ids,outcome,detail\r\n\
        1,1970-01-01T00:00:01.000Z,subscribe,pacs,\"PACS, main\",,topic-1,,,,202,\r\n\
        2,1970-01-01T00:00:02.000Z,publish,ris,,dr.house,topic-1,Patient-open,ev-1,Patient/p1,202,\r\n\
        3,1970-01-01T00:00:03.000Z,delivery-failure,,'=cmd|' /C calc'!A0,,,,,,timeout,\
        \"no ACK within 10 s, \"\"retried\"\"\nonce\"\r\n\
        4,1970-01-01T00:00:04.000Z,auth-failure,,,,,,,,403 missing fhircast/Patient-open.write,\r\n";
    assert_eq!(csv, expected);
    // An empty range still has its header.
    let empty = export(&storage, None, Some(1_000), ExportFormat::Csv);
    assert_eq!(empty.lines().count(), 1);
}

#[tokio::test]
async fn prune_audit_removes_old_records_only() {
    let storage = Storage::open_in_memory().unwrap();
    scripted_session(&storage).await;
    assert_eq!(storage.prune_audit(at(2_500)).await.unwrap(), 2);
    assert_eq!(storage.prune_audit(at(2_500)).await.unwrap(), 0);
    let left = export(&storage, None, None, ExportFormat::Ndjson);
    assert_eq!(left.lines().count(), 2);
    assert!(left.contains("auth-failure"));
    // A retention of 30 days, as the hub will apply it.
    storage.audit(AuditRecord::new(AuditAction::Connect, "101"));
    let cutoff = SystemTime::now() - std::time::Duration::from_secs(30 * 24 * 3600);
    assert_eq!(storage.prune_audit(cutoff).await.unwrap(), 2);
    assert_eq!(
        export(&storage, None, None, ExportFormat::Ndjson)
            .lines()
            .count(),
        1
    );
}

#[test]
fn audit_actions_have_stable_names() {
    let names: Vec<_> = AuditAction::ALL.iter().map(|a| a.as_str()).collect();
    assert_eq!(
        names,
        [
            "subscribe",
            "unsubscribe",
            "publish",
            "get-context",
            "auth-failure",
            "delivery-failure",
            "sync-error",
            "lease-expired",
            "connect",
            "disconnect",
            "admin"
        ]
    );
    for a in AuditAction::ALL {
        assert_eq!(AuditAction::parse(a.as_str()), Some(a));
    }
    assert_eq!(AuditAction::parse("reboot"), None);
}

/// The patient-data rule: only `Type/id`, never names or identifiers.
#[test]
fn resource_ids_keep_only_type_and_id() {
    let context = json!([
        {"key": "report", "resource": {"resourceType": "DiagnosticReport", "id": "r1",
            "identifier": [{"value": "ACC-123"}]}},
        {"key": "patient", "resource": {"resourceType": "Patient", "id": "p1",
            "name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1970-01-01",
            "identifier": [{"system": "urn:mrn", "value": "MRN-999"}]}},
        {"key": "study", "resource": {"resourceType": "ImagingStudy", "id": "s1"}},
        {"key": "study", "resource": {"resourceType": "ImagingStudy", "id": "s1"}},
        {"key": "select", "reference": {"reference": "Observation/o1"}},
        {"key": "select", "reference": {"reference": "https://ehr/fhir/Observation/o2"}},
        {"key": "updates", "resource": {"resourceType": "Bundle", "id": "b1", "entry": [
            {"resource": {"resourceType": "Observation", "id": "o3", "valueString": "Jane Doe"},
             "request": {"method": "PUT"}},
            {"request": {"method": "DELETE", "url": "Observation/o4"}}
        ]}},
        {"key": "patient", "resource": {"resourceType": "Patient", "id": "Doe, Jane"}},
        {"key": "odd", "resource": {"resourceType": "Patient"}},
        "not even an object"
    ]);
    let ids = resource_ids(context.as_array().unwrap());
    assert_eq!(
        ids,
        "DiagnosticReport/r1,Patient/p1,ImagingStudy/s1,Observation/o1,Observation/o2,\
         Bundle/b1,Observation/o3,Observation/o4"
    );
    for secret in ["Doe", "Jane", "MRN", "ACC", "1970"] {
        assert!(!ids.contains(secret), "{secret} leaked: {ids}");
    }
    assert_eq!(resource_ids(&[]), "");
}
