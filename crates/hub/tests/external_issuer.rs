//! Access tokens from an external issuer (the hospital's SMART server),
//! verified against its JWKS served by a real HTTP server on loopback
//! (issue 5; checklist 13 and 47/66 for the 401/403 rules, hub-digest §10
//! for topic binding). Keys are generated and tokens signed here.

mod common;
mod jwt_support;

use std::time::{Duration, Instant};

use common::*;
use jsonwebtoken::Algorithm;
use jwt_support::*;
use lockstep_hub::auth::{Issuer, JwksPolicy};
use serde_json::{json, Value};

const ISS: &str = "https://auth.hospital.example";

async fn hub_trusting(jwks_url: String, audience: Option<&str>, policy: JwksPolicy) -> TestHub {
    let audience = audience.map(str::to_owned);
    TestHub::start_with(move |c| {
        c.no_auth = false;
        c.external_issuers = vec![Issuer {
            issuer: ISS.into(),
            jwks_url,
            audience,
        }];
        c.jwks_policy = policy;
    })
    .await
}

fn claims(scope: &str) -> Value {
    json!({
        "iss": ISS,
        "sub": "dr-jones",
        "client_id": "radiology-viewer",
        "exp": now() + 600,
        "scope": scope,
    })
}

/// Subscribes with `token`: the status and the body (a refusal's reason).
async fn subscribe_with(hub: &TestHub, token: &str, topic: &str, events: &str) -> (u16, String) {
    let res = hub.subscribe_with_token(token, topic, events).await;
    (res.status().as_u16(), res.text().await.unwrap())
}

/// A valid token from the trusted issuer subscribes, receives and reads
/// the context of the session topic; without hub.topic it may use the
/// session topic only.
#[tokio::test]
async fn valid_external_token_subscribes() {
    let key = TestKey::rsa("k1", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    let token = key.sign(&claims(
        "openid fhircast/*.read fhircast/Patient-open.write",
    ));
    let (status, body) = subscribe_with(&hub, &token, &topic, "Patient-open").await;
    assert_eq!(status, 202, "{body}");
    let endpoint = serde_json::from_str::<Value>(&body).unwrap()["hub.channel.endpoint"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = Ws::connect(&endpoint).await;
    assert_eq!(ws.next_json().await["hub.mode"], "subscribe");
    let res = hub
        .publish_with_token(&token, &patient_open(&topic, "p1"))
        .await;
    assert!(res.status().is_success(), "{}", res.status());
    let event = ws.next_json().await;
    assert_eq!(event["event"]["hub.event"], "Patient-open", "{event}");
    assert_eq!(hub.context_with_token(&token, &topic).await.status(), 200);
    // Only the session topic without a hub.topic claim.
    assert_eq!(
        subscribe_with(&hub, &token, &common::topic(), "Patient-open")
            .await
            .0,
        403
    );
    assert_eq!(jwks_server.fetches(), 1, "keys are cached");
}

/// hub.topic in the token binds it to that topic.
#[tokio::test]
async fn hub_topic_claim_binds_the_token() {
    let key = TestKey::ec384("k1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let mine = common::topic();
    let mut c = claims("fhircast/*.read");
    c["hub.topic"] = mine.clone().into();
    let token = key.sign(&c);
    assert_eq!(
        subscribe_with(&hub, &token, &mine, "Patient-open").await.0,
        202
    );
    let session = hub.hub.session_topic().to_owned();
    assert_eq!(
        subscribe_with(&hub, &token, &session, "Patient-open")
            .await
            .0,
        403
    );
}

/// A token from an issuer not trusted, or signed by a key not in the
/// issuer's JWKS, or with `alg: HS256`, is 401.
#[tokio::test]
async fn untrusted_issuer_or_key_is_401() {
    let key = TestKey::rsa("k1", Algorithm::RS384);
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    let mut c = claims("fhircast/*.read");
    c["iss"] = "https://evil.example".into();
    let (status, body) = subscribe_with(&hub, &key.sign(&c), &topic, "Patient-open").await;
    assert_eq!(status, 401, "{body}");
    let impostor = TestKey::rsa("k1", Algorithm::RS384);
    let (status, body) = subscribe_with(
        &hub,
        &impostor.sign(&claims("fhircast/*.read")),
        &topic,
        "Patient-open",
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("InvalidSignature"), "{body}");
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims("fhircast/*.read"),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body) = subscribe_with(&hub, &forged, &topic, "Patient-open").await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("HS256"), "{body}");
}

/// Expired (beyond the 30 s skew allowance) and not-yet-valid tokens are 401.
#[tokio::test]
async fn expired_external_token_is_401() {
    let key = TestKey::ec384("k1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    let mut c = claims("fhircast/*.read");
    c["exp"] = (now() - 120).into();
    let (status, body) = subscribe_with(&hub, &key.sign(&c), &topic, "Patient-open").await;
    assert_eq!(status, 401);
    assert!(body.contains("expired"), "{body}");
    let mut c = claims("fhircast/*.read");
    c["nbf"] = (now() + 600).into();
    let (status, body) = subscribe_with(&hub, &key.sign(&c), &topic, "Patient-open").await;
    assert_eq!(status, 401);
    assert!(body.contains("nbf"), "{body}");
}

/// The issuer rotates its keys: a token with the new kid makes the hub
/// fetch the JWKS again, and it is accepted.
#[tokio::test]
async fn rotated_key_is_accepted_after_refetch() {
    let old = TestKey::rsa("2026-01", Algorithm::RS256);
    let jwks_server = JwksServer::start(jwks(&[&old])).await;
    let policy = JwksPolicy {
        min_refetch: Duration::ZERO,
        ..JwksPolicy::default()
    };
    let hub = hub_trusting(jwks_server.url("/jwks"), None, policy).await;
    let topic = hub.hub.session_topic().to_owned();
    let (status, _) = subscribe_with(
        &hub,
        &old.sign(&claims("fhircast/*.read")),
        &topic,
        "Patient-open",
    )
    .await;
    assert_eq!(status, 202);
    assert_eq!(jwks_server.fetches(), 1);
    let new = TestKey::ec384("2026-02");
    jwks_server.serve(jwks(&[&new]));
    let (status, body) = subscribe_with(
        &hub,
        &new.sign(&claims("fhircast/*.read")),
        &topic,
        "Patient-open",
    )
    .await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(jwks_server.fetches(), 2);
}

/// Unknown kids do not cause a fetch storm: within the minimum interval
/// the hub does not fetch again, and answers 401 naming the kid.
#[tokio::test]
async fn unknown_kids_do_not_storm_the_issuer() {
    let key = TestKey::ec384("k1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    for i in 0..5 {
        let token = key.sign_as(&format!("made-up-{i}"), &claims("fhircast/*.read"));
        let (status, body) = subscribe_with(&hub, &token, &topic, "Patient-open").await;
        assert_eq!(status, 401);
        assert!(body.contains(&format!("made-up-{i}")), "{body}");
    }
    assert_eq!(jwks_server.fetches(), 1);
    // The known key still works meanwhile.
    assert_eq!(
        subscribe_with(
            &hub,
            &key.sign(&claims("fhircast/*.read")),
            &topic,
            "Patient-open"
        )
        .await
        .0,
        202
    );
}

/// A JWKS endpoint that fails, or never answers, gives a prompt 401 with
/// the reason, not a hang or a panic.
#[tokio::test]
async fn jwks_failure_is_a_clear_401() {
    let key = TestKey::ec384("k1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let token = key.sign(&claims("fhircast/*.read"));
    let hub = hub_trusting(jwks_server.url("/broken"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    let (status, body) = subscribe_with(&hub, &token, &topic, "Patient-open").await;
    assert_eq!(status, 401);
    assert!(body.contains("cannot get the signing keys"), "{body}");
    assert!(body.contains("500"), "{body}");

    let policy = JwksPolicy {
        timeout: Duration::from_millis(500),
        ..JwksPolicy::default()
    };
    let hub = hub_trusting(jwks_server.url("/silent"), None, policy).await;
    let started = Instant::now();
    let (status, body) = subscribe_with(&hub, &token, &topic, "Patient-open").await;
    assert_eq!(status, 401);
    assert!(body.contains("cannot get the signing keys"), "{body}");
    assert!(started.elapsed() < WAIT, "took {:?}", started.elapsed());
}

/// Checklist 47: a valid external token without the needed scope is 403
/// naming the scope.
#[tokio::test]
async fn missing_scope_is_403() {
    let key = TestKey::rsa("k1", Algorithm::RS384);
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(jwks_server.url("/jwks"), None, JwksPolicy::default()).await;
    let topic = hub.hub.session_topic().to_owned();
    let token = key.sign(&claims("openid fhircast/Patient-close.read"));
    let (status, body) = subscribe_with(&hub, &token, &topic, "Patient-open").await;
    assert_eq!(status, 403);
    assert!(body.contains("fhircast/Patient-open.read"), "{body}");
}

/// With an audience configured, the token's aud must name it.
#[tokio::test]
async fn audience_is_checked_when_configured() {
    let key = TestKey::ec384("k1");
    let jwks_server = JwksServer::start(jwks(&[&key])).await;
    let hub = hub_trusting(
        jwks_server.url("/jwks"),
        Some("lockstep-ws-42"),
        JwksPolicy::default(),
    )
    .await;
    let topic = hub.hub.session_topic().to_owned();
    let (status, body) = subscribe_with(
        &hub,
        &key.sign(&claims("fhircast/*.read")),
        &topic,
        "Patient-open",
    )
    .await;
    assert_eq!(status, 401, "no aud: {body}");
    let mut c = claims("fhircast/*.read");
    c["aud"] = "another-hub".into();
    assert_eq!(
        subscribe_with(&hub, &key.sign(&c), &topic, "Patient-open")
            .await
            .0,
        401
    );
    c["aud"] = json!(["fhir-server", "lockstep-ws-42"]);
    assert_eq!(
        subscribe_with(&hub, &key.sign(&c), &topic, "Patient-open")
            .await
            .0,
        202
    );
}

/// `--trust-issuer` wants ISSUER=JWKS_URL with an https URL (http only on
/// loopback); `--issuer-audience` must name a trusted issuer.
#[tokio::test]
async fn trust_issuer_flags_are_checked() {
    let run = |args: &'static [&'static str]| async move {
        run_to_exit(&[args, &["--no-persist", "--secret-store", "memory"]].concat()).await
    };
    let out = run(&[
        "--trust-issuer",
        "https://auth.example=http://auth.example/jwks",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be https"));
    let out = run(&["--trust-issuer", "no-equals-sign"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run(&[
        "--trust-issuer",
        "https://auth.example=https://auth.example/jwks",
        "--issuer-audience",
        "https://other.example=hub",
    ])
    .await;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--issuer-audience"));
}
