//! Keys, signed JWTs and a real JWKS server for the `private_key_jwt` and
//! external-issuer tests. Keys are generated per test run: nothing secret
//! is committed.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// A signing key and its public JWK.
pub struct TestKey {
    pub kid: String,
    pub alg: Algorithm,
    encoding: EncodingKey,
    pub jwk: Value,
}

impl TestKey {
    /// A fresh RSA-2048 key for `alg` (RS256/RS384).
    pub fn rsa(kid: &str, alg: Algorithm) -> TestKey {
        use rsa::pkcs1::EncodeRsaPrivateKey;
        use rsa::traits::PublicKeyParts;
        let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
        let der = key.to_pkcs1_der().expect("PKCS#1");
        TestKey {
            kid: kid.to_owned(),
            alg,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA",
                "kid": kid,
                "use": "sig",
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
        }
    }

    /// A fresh P-384 key (ES384).
    pub fn ec384(kid: &str) -> TestKey {
        use p384::pkcs8::EncodePrivateKey;
        let key = p384::ecdsa::SigningKey::random(&mut rsa::rand_core::OsRng);
        let der = key.to_pkcs8_der().expect("PKCS#8");
        let point = key.verifying_key().to_encoded_point(false);
        TestKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES384,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC",
                "crv": "P-384",
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            }),
        }
    }

    /// Signs `claims` with this key, its `alg` and `kid`.
    pub fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    /// Signs with this key but names `kid` in the header.
    pub fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.to_owned());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("sign")
    }
}

/// A JWK set of `keys`' public halves.
pub fn jwks(keys: &[&TestKey]) -> Value {
    json!({"keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>()})
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A real HTTP server on loopback serving a JWK set that tests can
/// change (key rotation), counting how often it is fetched. `/broken`
/// answers 500; `/silent` never answers.
pub struct JwksServer {
    pub addr: SocketAddr,
    served: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl JwksServer {
    pub async fn start(initial: Value) -> JwksServer {
        let served = Arc::new(Mutex::new(initial));
        let fetches = Arc::new(AtomicUsize::new(0));
        let (s, f) = (served.clone(), fetches.clone());
        let app = Router::new()
            .route(
                "/jwks",
                get(move || {
                    let (s, f) = (s.clone(), f.clone());
                    async move {
                        f.fetch_add(1, Ordering::SeqCst);
                        Json(s.lock().unwrap().clone())
                    }
                }),
            )
            .route(
                "/broken",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "down") }),
            )
            .route("/silent", get(std::future::pending::<String>));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        JwksServer {
            addr,
            served,
            fetches,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn serve(&self, set: Value) {
        *self.served.lock().unwrap() = set;
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
