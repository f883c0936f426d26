//! Tolerance where a real client needs it, strictness where safety needs it
//! (issues 14 and 19). Each test names the client that needs the behaviour;
//! docs/CONFORMANCE.md "Tolerance" lists them. Real hub, real HTTP, real
//! WebSocket clients.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

/// `/api/hub`, where OHIF's cast client talks to the hub.
fn ohif_url(hub: &TestHub) -> String {
    hub.url("/api/hub")
}

fn stu2_url(hub: &TestHub) -> String {
    hub.url("/fhircast/STU2")
}

/// The sentence of an error answer (OperationOutcome or plain text).
async fn error_text(res: reqwest::Response) -> String {
    let text = res.text().await.unwrap();
    match serde_json::from_str::<Value>(&text) {
        Ok(outcome) => outcome["issue"][0]["details"]["text"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        Err(_) => text,
    }
}

/// Makes `topic` known to the hub (today a topic exists from its first
/// subscribe); the subscriber never connects, so it never ACKs or blocks.
async fn known_topic(hub: &TestHub) -> String {
    let topic = topic();
    hub.subscribe(&topic, "Patient-open").await;
    topic
}

/// Subscribes at `url` (with a bearer when given), connects, reads the
/// confirmation; returns the socket and the confirmation.
async fn join_at(
    hub: &TestHub,
    url: &str,
    token: Option<&str>,
    topic: &str,
    events: &str,
) -> (Ws, Value) {
    let mut request = hub.http.post(url).form(&subscribe_form(topic, events));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let res = request.send().await.unwrap();
    assert_eq!(res.status(), 202, "{}", res.text().await.unwrap());
    let endpoint = endpoint_of(res).await;
    let mut ws = Ws::connect(&endpoint).await;
    let confirmation = ws.next_json().await;
    assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
    (ws, confirmation)
}

/// OHIF's cast client sends `hub.events=*` when no events are configured:
/// on `/api/hub` it means every event (here `--no-auth`), custom ones too.
#[tokio::test]
async fn ohif_cast_client_star_on_api_hub_receives_every_event() {
    let hub = TestHub::start().await;
    let topic = topic();
    let (mut ws, confirmation) = join_at(&hub, &ohif_url(&hub), None, &topic, "*").await;
    assert_eq!(confirmation["hub.events"], "*");
    hub.publish_ok(&patient_open(&topic, "p1")).await;
    assert_eq!(ws.next_event().await["event"]["hub.event"], "Patient-open");
    let custom = event(
        &topic,
        "org.example.measure",
        json!([{"key": "x", "reference": {"reference": "Observation/1"}}]),
    );
    hub.publish_ok(&custom).await;
    assert_eq!(
        ws.next_event().await["event"]["hub.event"],
        "org.example.measure"
    );
    hub.publish_ok(&patient_close(&topic, "p1")).await;
    assert_eq!(ws.next_event().await["event"]["hub.event"], "Patient-close");
}

/// STU2's grammar allowed wildcards, so STU2 clients may send `*`.
#[tokio::test]
async fn stu2_client_star_on_stu2_path_receives_every_event() {
    let hub = TestHub::start().await;
    let topic = topic();
    let (mut ws, confirmation) = join_at(&hub, &stu2_url(&hub), None, &topic, "*").await;
    assert_eq!(confirmation["hub.events"], "*");
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    assert_eq!(
        ws.next_event().await["event"]["hub.event"],
        "DiagnosticReport-open"
    );
}

/// FHIRcast 3.0.0 removed wildcards (hub-digest §6): the STU3 path refuses
/// `*` with a sentence that says where it is accepted.
#[tokio::test]
async fn stu3_path_refuses_star() {
    let hub = TestHub::start().await;
    let res = hub.post_form(&subscribe_form(&topic(), "*")).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "hub.events: \"*\" is not supported on /fhircast/STU3: FHIRcast 3.0.0 has no wildcard subscriptions; list the events (STU2 clients: use /fhircast/STU2)"
    );
    // `*-open` (STU2's resource wildcard) stays refused everywhere.
    let res = hub
        .post_form_to(&ohif_url(&hub), &subscribe_form(&topic(), "*-open"))
        .await;
    assert_eq!(res.status(), 400);
    assert!(error_text(res).await.contains("wildcard"));
}

/// OHIF's `*` under a token that may read only some events: exactly those
/// (the confirmation lists them), never the others; with no read scope, 403.
#[tokio::test]
async fn ohif_cast_client_star_gets_only_what_its_token_may_read() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let token = |scopes: &str| {
        let (app, secret) = hub
            .hub
            .apps()
            .register(&format!("app {scopes}"), scopes, vec![])
            .unwrap();
        let hub = &hub;
        async move {
            let res = hub.token_with_secret(&app.client_id, &secret).await;
            let body: Value = res.json().await.unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let narrow = token("fhircast/Patient-open.read fhircast/Patient-close.read").await;
    let everything = token("fhircast/*.read").await;
    let writer = token("fhircast/*.write").await;
    let (mut narrow_ws, confirmation) =
        join_at(&hub, &ohif_url(&hub), Some(&narrow), &topic, "*").await;
    assert_eq!(confirmation["hub.events"], "Patient-open,Patient-close");
    let (mut wide_ws, confirmation) =
        join_at(&hub, &ohif_url(&hub), Some(&everything), &topic, "*").await;
    assert_eq!(confirmation["hub.events"], "*");

    let res = hub
        .http
        .post(ohif_url(&hub))
        .bearer_auth(&writer)
        .form(&subscribe_form(&topic, "*"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert!(error_text(res).await.contains("read scope"));

    // The report open is not the narrow app's to see: its next event is the patient's.
    assert!(hub
        .publish_with_token(&writer, &report_open(&topic, "r1", "p1"))
        .await
        .status()
        .is_success());
    assert!(hub
        .publish_with_token(&writer, &patient_open(&topic, "p2"))
        .await
        .status()
        .is_success());
    assert_eq!(
        narrow_ws.next_event().await["event"]["hub.event"],
        "Patient-open"
    );
    assert_eq!(
        wide_ws.next_event().await["event"]["hub.event"],
        "DiagnosticReport-open"
    );
    assert_eq!(
        wide_ws.next_event().await["event"]["hub.event"],
        "Patient-open"
    );
}

/// The FHIRcast event-validator CLI sends `context.versionId: ""` on an
/// open; the hub assigns the open's versionId anyway, so "" is ignored.
#[tokio::test]
async fn event_validator_cli_empty_version_id_on_open_is_ignored() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub.join(&topic, "DiagnosticReport-open", "viewer").await;
    let mut open = report_open(&topic, "r1", "p1");
    open["event"]["context.versionId"] = "".into();
    hub.publish_ok(&open).await;
    let got = ws.next_event().await;
    let version = got["event"]["context.versionId"]
        .as_str()
        .expect("the hub's versionId");
    assert!(!version.is_empty());
    assert_eq!(hub.context(&topic).await["context.versionId"], version);
    // Elsewhere an empty versionId is still an error (an update must name one).
    let update = report_update(&topic, "r1", "", json!([put_observation("o1")]));
    assert_eq!(hub.publish(&update).await.status(), 400);
}

/// A widely deployed AI reporting assistant documents `request.method: POST`
/// for the findings it adds: with an id the entry is stored like PUT.
#[tokio::test]
async fn ai_reporting_assistant_post_entries_with_an_id_are_stored_like_put() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ws = hub
        .join(
            &topic,
            "DiagnosticReport-open,DiagnosticReport-update",
            "dictation",
        )
        .await;
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    let version = ws.next_event().await["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = json!({"request": {"method": "POST", "url": "Observation"},
                      "resource": {"resourceType": "Observation", "id": "ai-1", "status": "preliminary"}});
    hub.publish_ok(&report_update(&topic, "r1", &version, json!([post])))
        .await;
    let got = ws.next_event().await;
    assert_eq!(got["event"]["context.priorVersionId"], version.as_str());
    let current = hub.context(&topic).await;
    let content = current["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "content")
        .unwrap();
    assert_eq!(content["resource"]["entry"][0]["resource"]["id"], "ai-1");
}

/// The same assistant's POST without an id cannot be keyed: a 400 naming
/// the entry, and the context (version, content) is unchanged.
#[tokio::test]
async fn ai_reporting_assistant_post_without_an_id_is_refused_naming_the_entry() {
    let hub = TestHub::start().await;
    let topic = known_topic(&hub).await;
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    let before = hub.context(&topic).await;
    let version = before["context.versionId"].as_str().unwrap();
    let post = json!({"request": {"method": "POST", "url": "Observation"},
                      "resource": {"resourceType": "Observation", "status": "preliminary"}});
    let res = hub
        .publish(&report_update(
            &topic,
            "r1",
            version,
            json!([put_observation("o1"), post]),
        ))
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "updates entry 1: POST of a resource without an id; give the resource a resourceType and an id (it is then stored like PUT)"
    );
    assert_eq!(hub.context(&topic).await, before);
}

/// Any client: `timestamp` orders events for subscribers, so "yesterday"
/// is a 400; the spec's own 3.0.0 example forms (no offset, `T010:38`)
/// that clients copy are accepted.
#[tokio::test]
async fn timestamp_that_is_not_an_instant_is_refused_spec_example_forms_accepted() {
    let hub = TestHub::start().await;
    let topic = known_topic(&hub).await;
    let mut open = patient_open(&topic, "p1");
    open["timestamp"] = "yesterday".into();
    let res = hub.publish(&open).await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "timestamp \"yesterday\" is not an RFC 3339 instant such as \"2026-01-01T08:30:00Z\""
    );
    for copied in [
        "2023-04-01T010:38:04.16",
        "2018-01-08T01:37:05.14",
        "2026-11-22T10:42:00+01:00",
    ] {
        let mut open = patient_open(&topic, "p1");
        open["timestamp"] = copied.into();
        hub.publish_ok(&open).await;
    }
}

/// FHIR validators: FHIR JSON has no empty arrays, and 2-9 says an empty
/// content Bundle "SHALL contain no entries": no `"entry": []`.
#[tokio::test]
async fn fhir_validators_empty_content_bundle_has_no_entry_array() {
    let hub = TestHub::start().await;
    let topic = known_topic(&hub).await;
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    let current = hub.context(&topic).await;
    let content = current["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "content")
        .unwrap()
        .clone();
    let version = current["context.versionId"].as_str().unwrap();
    assert_eq!(
        content["resource"],
        json!({"resourceType": "Bundle", "id": version, "type": "collection"})
    );
}

/// Hostile local input (issue 14): a 100,000-field subscribe form costs a
/// bounded, small amount of work (it used to take 12 s of CPU) and is
/// refused with a clear error; the hub goes on serving.
#[tokio::test]
async fn hundred_thousand_field_form_is_refused_quickly() {
    let hub = TestHub::start().await;
    let body = (0..100_000)
        .map(|i| format!("f{i}=v"))
        .collect::<Vec<_>>()
        .join("&");
    let started = Instant::now();
    let res = hub
        .publish_raw(
            &hub.hub_url(),
            "application/x-www-form-urlencoded",
            body.into_bytes(),
        )
        .await;
    // A complexity bound (generous for debug builds), not a timing race.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "a subscription request has at most 64 fields; this one has more"
    );
    hub.publish_ok(&patient_open(&known_topic(&hub).await, "p1"))
        .await;
}

/// Hostile local input (issue 14): an 80,000-key JSON body (as subscribe or
/// as event) and a 10,000-deep one are refused by the bounded parser.
#[tokio::test]
async fn eighty_thousand_key_and_deep_json_are_refused_quickly() {
    let hub = TestHub::start().await;
    let fields = (0..80_000)
        .map(|i| format!("\"k{i}\":0"))
        .collect::<Vec<_>>()
        .join(",");
    let body = format!("{{\"hub.mode\":\"subscribe\",{fields}}}");
    let started = Instant::now();
    let res = hub
        .publish_raw(&hub.hub_url(), "application/json", body.into_bytes())
        .await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "JSON has more than 20000 object keys"
    );

    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let res = hub
        .publish_raw(
            &format!("{}/{}", hub.hub_url(), topic()),
            "application/json",
            deep.into_bytes(),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "JSON is nested deeper than 64 levels"
    );

    // A JSON subscribe with more fields than any real one.
    let mut many = serde_json::Map::new();
    for (k, v) in subscribe_form(&topic(), "Patient-open") {
        many.insert(k.to_owned(), v.into());
    }
    for i in 0..70 {
        many.insert(format!("x{i}"), "1".into());
    }
    let res = hub
        .publish_raw(
            &hub.hub_url(),
            "application/json",
            Value::Object(many).to_string().into_bytes(),
        )
        .await;
    assert_eq!(res.status(), 400);
    assert_eq!(
        error_text(res).await,
        "a subscription request has at most 64 fields; this one has more"
    );
}

/// A real report update fits the caps with room: a Bundle of 80 entries,
/// each an Observation with components, codings and an extension.
#[tokio::test]
async fn a_large_real_report_update_fits_the_caps() {
    let hub = TestHub::start().await;
    let topic = known_topic(&hub).await;
    hub.publish_ok(&report_open(&topic, "r1", "p1")).await;
    let version = hub.context(&topic).await["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let entries: Vec<Value> = (0..80)
        .map(|i| {
            json!({"fullUrl": format!("urn:uuid:obs-{i}"), "request": {"method": "PUT", "url": format!("Observation/obs-{i}")},
                   "resource": {"resourceType": "Observation", "id": format!("obs-{i}"), "status": "preliminary",
                       "extension": [{"url": "http://example.org/ai", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "1"}]}}],
                       "code": {"coding": [{"system": "http://loinc.org", "code": "18782-3", "display": "Study observation"}]},
                       "subject": {"reference": "Patient/p1"},
                       "component": [
                           {"code": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "121206"}]},
                            "valueQuantity": {"value": 12.5, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}},
                           {"code": {"coding": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "121207"}]},
                            "valueQuantity": {"value": 3.1, "unit": "mm", "system": "http://unitsofmeasure.org", "code": "mm"}}]}})
        })
        .collect();
    hub.publish_ok(&report_update(
        &topic,
        "r1",
        &version,
        Value::Array(entries),
    ))
    .await;
    let current = hub.context(&topic).await;
    let content = current["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "content")
        .unwrap();
    assert_eq!(content["resource"]["entry"].as_array().unwrap().len(), 80);
}

/// OHIF's `*` survives a restart as it was granted: `*` stays every event,
/// and a `*` narrowed by the token stays narrowed (stored as the list).
#[tokio::test]
async fn ohif_cast_client_star_is_restored_as_granted_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let hub = TestHub::start_in(dir.path(), |c| c.no_auth = false).await;
    let topic = hub.hub.session_topic().to_owned();
    let mut tokens = Vec::new();
    for scopes in ["fhircast/Patient-open.read", "fhircast/*.read"] {
        let (app, secret) = hub.hub.apps().register(scopes, scopes, vec![]).unwrap();
        let res = hub.token_with_secret(&app.client_id, &secret).await;
        let body: Value = res.json().await.unwrap();
        tokens.push(body["access_token"].as_str().unwrap().to_owned());
    }
    let mut endpoints = Vec::new();
    for token in &tokens {
        let res = hub
            .http
            .post(ohif_url(&hub))
            .bearer_auth(token)
            .form(&subscribe_form(&topic, "*"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 202);
        endpoints.push(endpoint_of(res).await);
    }
    let old_addr = hub.addr.to_string();
    hub.stop().await;

    let hub = TestHub::start_in(dir.path(), |c| c.no_auth = false).await;
    let mut granted = Vec::new();
    for endpoint in &endpoints {
        let mut ws = Ws::connect(&endpoint.replace(&old_addr, &hub.addr.to_string())).await;
        let confirmation = ws.next_json().await;
        assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
        granted.push(confirmation["hub.events"].as_str().unwrap().to_owned());
    }
    assert_eq!(granted, ["Patient-open", "*"]);
}
