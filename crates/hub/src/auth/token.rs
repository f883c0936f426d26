//! Access tokens: JWTs signed HS256 with a 256-bit key that the hub keeps
//! in its secret store. Only the hub verifies them, so a symmetric key is
//! enough; tokens from other issuers would be checked against their JWKS.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::AuthError;

pub const ISSUER: &str = "lockstep";
pub const AUDIENCE: &str = "lockstep-hub";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    /// The app's client id.
    pub sub: String,
    pub exp: u64,
    pub iat: u64,
    pub jti: String,
    pub scope: String,
    /// Topics this token may touch.
    pub topics: Vec<String>,
    /// The app's secret generation when issued (see `registry`).
    pub generation: u64,
}

pub struct Signer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Signer {
    /// `key`: the HMAC key, 32 bytes or more (`Auth::new` makes or checks
    /// it); jsonwebtoken refuses only an empty one.
    pub fn new(key: &[u8]) -> Signer {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        Signer {
            encoding: EncodingKey::from_secret(key).expect("a non-empty signing key"),
            decoding: DecodingKey::from_secret(key).expect("a non-empty signing key"),
            validation,
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| AuthError::Store(e.to_string()))
    }

    /// Checks signature, algorithm, issuer, audience and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
                _ => AuthError::InvalidToken(e.to_string()),
            })
    }
}
