//! `private_key_jwt` client authentication at the hub's token endpoint
//! (SMART Backend Services, RFC 7523; issue 5). The assertions are real
//! JWTs signed with keys generated here; checklist 13 and 114 for what the
//! token then allows.

mod common;
mod jwt_support;

use common::*;
use jsonwebtoken::Algorithm;
use jwt_support::*;
use lockstep_hub::auth::PublicKeys;
use lockstep_hub::storage::ExportFormat;
use serde_json::{json, Value};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// Claims of a good assertion for `client_id` at `hub`.
fn claims(hub: &TestHub, client_id: &str) -> Value {
    json!({
        "iss": client_id,
        "sub": client_id,
        "aud": hub.token_url(),
        "exp": now() + 240,
        "jti": uuid::Uuid::new_v4().to_string(),
    })
}

async fn with_assertion(hub: &TestHub, assertion: &str) -> (u16, Value) {
    hub.token_request(&[
        ("grant_type", "client_credentials"),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
        ("scope", "fhircast/*.read"),
    ])
    .await
}

/// Registers a key-only app with `keys`; returns its client id.
fn register(hub: &TestHub, keys: &[&TestKey]) -> String {
    let (app, secret) = hub
        .hub
        .apps()
        .register_app(
            "Backend",
            "fhircast/*.read",
            vec![],
            Some(PublicKeys::Set(&jwks(keys).to_string())),
            false,
        )
        .unwrap();
    assert!(secret.is_none(), "a key-only app gets no secret");
    assert!(app.private_key_jwt);
    app.client_id
}

/// RS384 and ES384 (SMART's required pair) and RS256 assertions get a
/// token with the launch context (checklist 114), and the token works (13).
#[tokio::test]
async fn signed_assertions_get_working_tokens() {
    let hub = TestHub::start_with_auth().await;
    let rs384 = TestKey::rsa("rsa-1", Algorithm::RS384);
    let es384 = TestKey::ec384("ec-1");
    let rs256 = TestKey::rsa("rsa-2", Algorithm::RS256);
    let client_id = register(&hub, &[&rs384, &es384, &rs256]);
    let topic = hub.hub.session_topic().to_owned();
    for key in [&rs384, &es384, &rs256] {
        let (status, body) = with_assertion(&hub, &key.sign(&claims(&hub, &client_id))).await;
        assert_eq!(status, 200, "{:?}: {body}", key.alg);
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["scope"], "fhircast/*.read");
        assert_eq!(body["hub.topic"], topic.as_str());
        assert_eq!(body["hub.url"], hub.hub_url());
        let token = body["access_token"].as_str().unwrap();
        assert_eq!(
            hub.subscribe_with_token(token, &topic, "Patient-open")
                .await
                .status(),
            202
        );
    }
    // client_id in the form is allowed when it matches.
    let assertion = es384.sign(&claims(&hub, &client_id));
    let (status, _) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion),
        ])
        .await;
    assert_eq!(status, 200);
}

/// Discovery advertises the method and the algorithms.
#[tokio::test]
async fn smart_configuration_advertises_private_key_jwt() {
    let hub = TestHub::start_with_auth().await;
    let smart = hub.smart_configuration().await;
    let methods = smart["token_endpoint_auth_methods_supported"].to_string();
    assert!(methods.contains("private_key_jwt"), "{smart}");
    assert!(methods.contains("client_secret_basic"), "{smart}");
    let algs = smart["token_endpoint_auth_signing_alg_values_supported"].to_string();
    assert!(algs.contains("RS384") && algs.contains("ES384"), "{smart}");
    assert!(!algs.contains("HS"), "{smart}");
}

/// Each rule of RFC 7523 §3 and SMART Backend Services is enforced, with
/// an OAuth error naming it; the refusals are in the audit trail.
#[tokio::test]
async fn bad_assertions_are_refused_with_the_reason() {
    let hub = TestHub::start_with_auth().await;
    let key = TestKey::ec384("ec-1");
    let stranger = TestKey::ec384("ec-1"); // same kid, other key
    let client_id = register(&hub, &[&key]);
    let good = || claims(&hub, &client_id);
    let with = |change: &dyn Fn(&mut Value)| {
        let mut c = good();
        change(&mut c);
        c
    };
    let cases: Vec<(&str, String)> = vec![
        (
            "aud must be this token endpoint",
            key.sign(&with(&|c| c["aud"] = "https://elsewhere/token".into())),
        ),
        (
            "iss and sub must both be the client_id",
            key.sign(&with(&|c| c["sub"] = "someone-else".into())),
        ),
        (
            "has expired",
            key.sign(&with(&|c| c["exp"] = (now() - 10).into())),
        ),
        (
            "more than 5 minutes ahead",
            key.sign(&with(&|c| c["exp"] = (now() + 3600).into())),
        ),
        (
            "no jti",
            key.sign(&with(&|c| {
                c.as_object_mut().unwrap().remove("jti");
            })),
        ),
        ("signature does not verify", stranger.sign(&good())),
        ("no key with kid", key.sign_as("ec-9", &good())),
        ("not a signed JWT", "not-a-jwt".to_owned()),
    ];
    for (reason, assertion) in &cases {
        let (status, body) = with_assertion(&hub, assertion).await;
        assert_eq!(status, 401, "{reason}: {body}");
        assert_eq!(body["error"], "invalid_client", "{reason}: {body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(reason), "{reason}: {body}");
    }

    // HS256 "signed" with the public key as the secret: algorithm confusion.
    let mut header = jsonwebtoken::Header::new(Algorithm::HS256);
    header.kid = Some("ec-1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &good(),
        &jsonwebtoken::EncodingKey::from_secret(key.jwk.to_string().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body) = with_assertion(&hub, &forged).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("HS256"));

    // A form client_id that is not the assertion's issuer.
    let (status, _) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", "another-app"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &key.sign(&good())),
        ])
        .await;
    assert_eq!(status, 401);
    // The wrong assertion type.
    let (status, body) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:something-else"),
            ("client_assertion", &key.sign(&good())),
        ])
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );

    // Every refusal is an auth-failure at the token endpoint in the audit.
    let storage = hub.hub.storage().unwrap();
    storage.flush().await.unwrap();
    let mut out = Vec::new();
    storage
        .export_audit(None, None, ExportFormat::Ndjson, &mut out)
        .unwrap();
    let failures: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["action"] == "auth-failure" && r["event_name"] == "token")
        .collect();
    assert!(failures.len() > cases.len(), "{failures:?}");
    assert!(failures
        .iter()
        .any(|r| r["detail"].as_str().unwrap().contains("aud must be")));
}

/// An assertion is good once: the same jti again is refused (RFC 7523 §3).
#[tokio::test]
async fn replayed_assertion_is_refused() {
    let hub = TestHub::start_with_auth().await;
    let key = TestKey::rsa("rsa-1", Algorithm::RS384);
    let client_id = register(&hub, &[&key]);
    let assertion = key.sign(&claims(&hub, &client_id));
    assert_eq!(with_assertion(&hub, &assertion).await.0, 200);
    let (status, body) = with_assertion(&hub, &assertion).await;
    assert_eq!(status, 401);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("already used"));
}

/// Secrets and keys do not stand in for each other; replacing the keys
/// ends the tokens issued under the old ones.
#[tokio::test]
async fn keys_and_secrets_are_separate_and_keys_rotate() {
    let hub = TestHub::start_with_auth().await;
    let topic = hub.hub.session_topic().to_owned();
    // A secret-only app cannot use an assertion.
    let (secret_app, secret) = hub
        .hub
        .apps()
        .register("Secret app", "fhircast/*.read", vec![])
        .unwrap();
    let key = TestKey::ec384("ec-1");
    let (status, body) =
        with_assertion(&hub, &key.sign(&claims(&hub, &secret_app.client_id))).await;
    assert_eq!(status, 401);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("no registered public keys"));
    // A key-only app cannot use a secret, nor both methods at once.
    let client_id = register(&hub, &[&key]);
    let (status, _) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client_id),
            ("client_secret", &secret),
        ])
        .await;
    assert_eq!(status, 401);
    let (status, _) = hub
        .token_request(&[
            ("grant_type", "client_credentials"),
            ("client_secret", &secret),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &key.sign(&claims(&hub, &client_id))),
        ])
        .await;
    assert_eq!(status, 400);

    let (status, body) = with_assertion(&hub, &key.sign(&claims(&hub, &client_id))).await;
    assert_eq!(status, 200);
    let old_token = body["access_token"].as_str().unwrap().to_owned();
    let new_key = TestKey::ec384("ec-2");
    hub.hub
        .apps()
        .set_keys(&client_id, PublicKeys::Set(&jwks(&[&new_key]).to_string()))
        .unwrap();
    assert_eq!(
        hub.subscribe_with_token(&old_token, &topic, "Patient-open")
            .await
            .status(),
        401
    );
    assert_eq!(
        with_assertion(&hub, &key.sign(&claims(&hub, &client_id)))
            .await
            .0,
        401
    );
    let (status, body) = with_assertion(&hub, &new_key.sign(&claims(&hub, &client_id))).await;
    assert_eq!(status, 200);
    assert_eq!(
        hub.subscribe_with_token(
            body["access_token"].as_str().unwrap(),
            &topic,
            "Patient-open"
        )
        .await
        .status(),
        202
    );
}

/// A private key in the registered file is refused, not stored.
#[tokio::test]
async fn registering_a_private_key_is_refused() {
    let hub = TestHub::start_with_auth().await;
    let key = TestKey::ec384("ec-1");
    let mut private = key.jwk.clone();
    private["d"] = "AAAA".into();
    let err = hub
        .hub
        .apps()
        .register_app(
            "Oops",
            "fhircast/*.read",
            vec![],
            Some(PublicKeys::Set(&json!({"keys": [private]}).to_string())),
            false,
        )
        .unwrap_err();
    assert!(err.to_string().contains("private key"), "{err}");
    assert!(hub.hub.apps().list().is_empty());
}

/// `lockstep-hub apps add --jwks FILE` registers a key-only app (no
/// secret printed) in the database; a hub on that data folder then gives
/// it a token for a signed assertion.
#[tokio::test]
async fn cli_registers_an_app_with_its_public_keys() {
    let data = tempfile::tempdir().unwrap();
    let key = TestKey::rsa("backend-1", Algorithm::RS384);
    let file = data.path().join("backend.jwks.json");
    std::fs::write(&file, jwks(&[&key]).to_string()).unwrap();
    let dir = data.path().to_str().unwrap();
    let out = run_to_exit(&[
        "--data-dir",
        dir,
        "--secret-store",
        "file",
        "apps",
        "add",
        "Backend",
        "--scopes",
        "fhircast/*.read",
        "--jwks",
        file.to_str().unwrap(),
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("client_secret"), "{stdout}");
    assert!(stdout.contains("private_key_jwt"), "{stdout}");
    let client_id = printed_field(&stdout, "client_id:");

    // A private key file is refused with exit 2 and nothing registered.
    let mut private = key.jwk.clone();
    private["d"] = "AAAA".into();
    std::fs::write(&file, json!({"keys": [private]}).to_string()).unwrap();
    let out = run_to_exit(&[
        "--data-dir",
        dir,
        "--secret-store",
        "file",
        "apps",
        "add",
        "Oops",
        "--jwks",
        file.to_str().unwrap(),
    ])
    .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));

    let data_dir = data.path().to_path_buf();
    let hub = TestHub::start_with(move |c| {
        c.no_auth = false;
        c.secret_store = std::sync::Arc::new(lockstep_hub::auth::FileStore::new(
            data_dir.join("secrets.json"),
        ));
        c.data_dir = data_dir;
    })
    .await;
    assert_eq!(hub.hub.apps().list().len(), 1);
    let (status, body) = with_assertion(&hub, &key.sign(&claims(&hub, &client_id))).await;
    assert_eq!(status, 200, "{body}");
}

/// An app can register a JWKS URL instead of the keys: the hub fetches
/// them (a real server on loopback), follows a key rotation, and refuses
/// with the reason when the URL fails.
#[tokio::test]
async fn app_keys_from_a_jwks_url() {
    let key = TestKey::ec384("2026-01");
    let server = JwksServer::start(jwks(&[&key])).await;
    let hub = TestHub::start_with(|c| {
        c.no_auth = false;
        c.jwks_policy = lockstep_hub::auth::JwksPolicy {
            min_refetch: std::time::Duration::ZERO,
            ..Default::default()
        };
    })
    .await;
    let register = |url: String| {
        hub.hub
            .apps()
            .register_app(
                "Backend",
                "fhircast/*.read",
                vec![],
                Some(PublicKeys::Url(&url)),
                false,
            )
            .unwrap()
            .0
            .client_id
    };
    let client_id = register(server.url("/jwks"));
    let (status, body) = with_assertion(&hub, &key.sign(&claims(&hub, &client_id))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.fetches(), 1);
    let (status, _) = with_assertion(&hub, &key.sign(&claims(&hub, &client_id))).await;
    assert_eq!((status, server.fetches()), (200, 1), "cached");

    let rotated = TestKey::rsa("2026-02", Algorithm::RS384);
    server.serve(jwks(&[&rotated]));
    let (status, body) = with_assertion(&hub, &rotated.sign(&claims(&hub, &client_id))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(server.fetches(), 2);

    let broken = register(server.url("/broken"));
    let (status, body) = with_assertion(&hub, &key.sign(&claims(&hub, &broken))).await;
    assert_eq!(status, 401);
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("cannot get the signing keys"));

    // Plain http elsewhere than loopback is refused at registration.
    assert!(hub
        .hub
        .apps()
        .register_app(
            "Insecure",
            "fhircast/*.read",
            vec![],
            Some(PublicKeys::Url("http://keys.example/jwks")),
            false,
        )
        .is_err());
}
