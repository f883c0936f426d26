//! Authorization (issue 5; checklist 13, 14, 25, 47, 66, 113, 114): tokens
//! from the hub's own token endpoint, FHIRcast scopes, topics, leases
//! capped by token lifetime, revocation and rotation.

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// Registers an app and gets a token; returns (client_id, secret, token response).
async fn app_token(
    hub: &TestHub,
    name: &str,
    scopes: &str,
    topics: Vec<String>,
) -> (String, String, Value) {
    let (app, secret) = hub.hub.apps().register(name, scopes, topics).unwrap();
    let res = hub.token_with_secret(&app.client_id, &secret).await;
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["cache-control"], "no-store");
    (app.client_id, secret, res.json().await.unwrap())
}

/// Checklist 114: the token response carries hub.url and hub.topic (the session).
#[tokio::test]
async fn token_response_has_launch_context() {
    let hub = TestHub::start_with_auth().await;
    let (_, _, token) = app_token(&hub, "RIS", "fhircast/*.read", vec![]).await;
    assert_eq!(token["token_type"], "Bearer");
    assert!(token["expires_in"].as_u64().unwrap() > 0);
    assert_eq!(token["scope"], "fhircast/*.read");
    assert_eq!(token["hub.url"], hub.hub_url());
    assert_eq!(token["hub.topic"], hub.hub.session_topic());
    let smart = hub.smart_configuration().await;
    assert!(smart["token_endpoint"]
        .as_str()
        .unwrap()
        .ends_with("/oauth/token"));
    let at_hub = hub
        .http
        .get(format!("{}/.well-known/smart-configuration", hub.hub_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(at_hub.status(), 200);
}

/// Wrong secret, unknown client and unsupported grants are refused without saying which.
#[tokio::test]
async fn token_endpoint_refuses_bad_clients() {
    let hub = TestHub::start_with_auth().await;
    let (client_id, _, _) = app_token(&hub, "PACS", "fhircast/*.read", vec![]).await;
    let (status, body) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", "nope"),
        ])
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    let (status, _) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "ghost"),
            ("client_secret", "x"),
        ])
        .await;
    assert_eq!(status, 401);
    let (status, body) = hub.token_request(&[("grant_type", "password")]).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
}

/// Checklist 13: no token → 401 with a Bearer challenge, on subscribe, publish and get-context.
#[tokio::test]
async fn no_token_is_401() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let res = hub.post_form(&subscribe_form(&topic, "Patient-open")).await;
    assert_eq!(res.status(), 401);
    assert!(res.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    assert_eq!(hub.publish(&patient_open(&topic, "p1")).await.status(), 401);
    let ctx = hub
        .http
        .get(format!("{}/{}", hub.hub_url(), topic))
        .send()
        .await
        .unwrap();
    assert_eq!(ctx.status(), 401);
    let bad = hub
        .subscribe_with_token("not.a.jwt", &topic, "Patient-open")
        .await;
    assert_eq!(bad.status(), 401);
}

/// Checklist 47, 66: subscribe needs read for every event, publish needs write; 403 names the scope.
#[tokio::test]
async fn missing_scope_is_403_naming_it() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let (_, _, token) = app_token(
        &hub,
        "Viewer",
        "fhircast/Patient-open.read fhircast/Patient-close.read",
        vec![],
    )
    .await;
    let token = token["access_token"].as_str().unwrap();
    let res = hub
        .subscribe_with_token(token, &topic, "patient-open,DiagnosticReport-open")
        .await;
    assert_eq!(res.status(), 403);
    assert!(res
        .text()
        .await
        .unwrap()
        .contains("fhircast/DiagnosticReport-open.read"));
    assert_eq!(
        hub.subscribe_with_token(token, &topic, "Patient-open,Patient-close")
            .await
            .status(),
        202
    );
    let res = hub
        .publish_with_token(token, &patient_open(&topic, "p1"))
        .await;
    assert_eq!(res.status(), 403);
    let body: Value = res.json().await.unwrap();
    assert!(body["issue"][0]["details"]["text"]
        .as_str()
        .unwrap()
        .contains("fhircast/Patient-open.write"));
}

/// A token for topic A cannot touch topic B.
#[tokio::test]
async fn token_is_bound_to_its_topics() {
    let hub = TestHub::start_with_auth().await;
    let (a, b) = (topic(), topic());
    let (_, _, token) = app_token(&hub, "RIS", "fhircast/*.*", vec![a.clone()]).await;
    let token = token["access_token"].as_str().unwrap();
    assert_eq!(
        hub.subscribe_with_token(token, &a, "Patient-open")
            .await
            .status(),
        202
    );
    assert_eq!(
        hub.subscribe_with_token(token, &b, "Patient-open")
            .await
            .status(),
        403
    );
    assert_eq!(
        hub.publish_with_token(token, &patient_open(&b, "p1"))
            .await
            .status(),
        403
    );
    assert_eq!(hub.context_with_token(token, &b).await.status(), 403);
    assert_eq!(hub.context_with_token(token, &a).await.status(), 200);
}

/// Checklist 14: the granted lease never outlives the token; the end of the lease ends the socket.
#[tokio::test]
async fn lease_is_capped_by_token_lifetime() {
    let hub = TestHub::start_with(|c| {
        c.no_auth = false;
        c.token_lifetime = Duration::from_secs(2);
    })
    .await;
    let topic = hub.hub.session_topic().to_owned();
    let (_, _, token) = app_token(&hub, "RIS", "fhircast/*.*", vec![]).await;
    let token = token["access_token"].as_str().unwrap();
    let res = hub
        .subscribe_with_token(token, &topic, "Patient-open")
        .await;
    let endpoint = endpoint_of(res).await;
    let mut ws = Ws::connect(&endpoint).await;
    let confirmation = ws.next_json().await;
    assert!(
        confirmation["hub.lease_seconds"].as_u64().unwrap() <= 2,
        "{confirmation}"
    );
    let (texts, close) = ws.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied");
    assert!(close.is_some());
}

/// Revoking an app cuts it off at once: its socket gets a denial, its token stops working.
#[tokio::test]
async fn revoked_app_is_cut_off() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let (client_id, _, token) = app_token(&hub, "Dictation", "fhircast/*.*", vec![]).await;
    let token = token["access_token"].as_str().unwrap().to_owned();
    let res = hub
        .subscribe_with_token(&token, &topic, "Patient-open")
        .await;
    let endpoint = endpoint_of(res).await;
    let mut ws = Ws::connect(&endpoint).await;
    ws.next_json().await;
    hub.hub.apps().revoke(&client_id).unwrap();
    let (texts, close) = ws.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied");
    assert_eq!(texts[0]["hub.reason"], "access revoked");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1008));
    assert_eq!(
        hub.publish_with_token(&token, &patient_open(&topic, "p1"))
            .await
            .status(),
        401
    );
}

/// Rotating the secret invalidates tokens issued with the old one.
#[tokio::test]
async fn rotation_invalidates_old_tokens() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let (client_id, _, token) = app_token(&hub, "PACS", "fhircast/*.*", vec![]).await;
    let old = token["access_token"].as_str().unwrap().to_owned();
    let secret = hub.hub.apps().rotate_secret(&client_id).unwrap();
    assert_eq!(
        hub.subscribe_with_token(&old, &topic, "Patient-open")
            .await
            .status(),
        401
    );
    let (_, fresh) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(
        hub.subscribe_with_token(
            fresh["access_token"].as_str().unwrap(),
            &topic,
            "Patient-open"
        )
        .await
        .status(),
        202
    );
}

/// A forged token (signed with another key) and a token with a tampered payload are refused.
#[tokio::test]
async fn forged_tokens_are_refused() {
    let hub = TestHub::start_with_auth().await;
    let other = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let (_, _, foreign) = app_token(&other, "Evil", "fhircast/*.*", vec![topic.clone()]).await;
    assert_eq!(
        hub.subscribe_with_token(
            foreign["access_token"].as_str().unwrap(),
            &topic,
            "Patient-open"
        )
        .await
        .status(),
        401
    );
    let (_, _, mine) = app_token(&hub, "RIS", "fhircast/Patient-open.read", vec![]).await;
    let parts: Vec<&str> = mine["access_token"].as_str().unwrap().split('.').collect();
    let tampered = format!("{}.{}x.{}", parts[0], parts[1], parts[2]);
    assert_eq!(
        hub.subscribe_with_token(&tampered, &topic, "Patient-open")
            .await
            .status(),
        401
    );
}

/// Unsubscribing another app's endpoint is refused.
#[tokio::test]
async fn apps_cannot_unsubscribe_each_other() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    let (_, _, a) = app_token(&hub, "A", "fhircast/*.*", vec![]).await;
    let (_, _, b) = app_token(&hub, "B", "fhircast/*.*", vec![]).await;
    let res = hub
        .subscribe_with_token(a["access_token"].as_str().unwrap(), &topic, "Patient-open")
        .await;
    let endpoint = endpoint_of(res).await;
    let res = hub
        .http
        .post(hub.hub_url())
        .bearer_auth(b["access_token"].as_str().unwrap())
        .form(&unsubscribe_form(&topic, &endpoint))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
}
