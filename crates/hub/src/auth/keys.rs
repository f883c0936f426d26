//! Public keys as JWK sets (RFC 7517): the keys registered apps sign their
//! client assertions with (`private_key_jwt`), and the keys of trusted
//! external issuers. Only asymmetric signature keys are kept: an `oct` key
//! would let whoever can read the set mint tokens, and accepting `HS*` with
//! a public key as the secret is the classic algorithm-confusion attack.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header};
use serde_json::Value;

/// What a signature may use. SMART Backend Services requires RS384 and
/// ES384; RS256 and ES256 are common enough to tolerate; the rest are for
/// external issuers' access tokens.
pub const ASSERTION_ALGS: [Algorithm; 4] = [
    Algorithm::RS384,
    Algorithm::ES384,
    Algorithm::RS256,
    Algorithm::ES256,
];
pub const ISSUER_ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A usable public key and its `kid`.
#[derive(Clone, Debug)]
pub struct PublicKey {
    pub kid: Option<String>,
    jwk: Jwk,
}

/// The signature keys of one JWK set.
#[derive(Clone, Debug, Default)]
pub struct KeySet {
    keys: Vec<PublicKey>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("the token is signed with {0:?}, which is not accepted here")]
    Algorithm(Algorithm),
    #[error("no key with kid {0:?}")]
    UnknownKid(String),
    #[error("no key for {0:?}")]
    NoKey(Algorithm),
    #[error("the token has no kid and several keys could have signed it")]
    Ambiguous,
}

impl KeySet {
    /// Parses a registered JWK set strictly: every key must be a public RSA
    /// or EC (P-256/P-384) signature key. A private key in the file is an
    /// error, so that it is noticed rather than stored.
    pub fn parse_registered(text: &str) -> Result<KeySet, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("not a JSON JWK set: {e}"))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("a JWK set is an object with a \"keys\" array")?;
        let mut set = KeySet::default();
        for (i, key) in keys.iter().enumerate() {
            if key.get("d").is_some() || key.get("p").is_some() {
                return Err(format!(
                    "key {i} is a private key: register the public key only (remove \"d\", \"p\", \"q\", …)"
                ));
            }
            let jwk: Jwk =
                serde_json::from_value(key.clone()).map_err(|e| format!("key {i}: {e}"))?;
            set.keys
                .push(usable(jwk).map_err(|e| format!("key {i}: {e}"))?);
        }
        if set.keys.is_empty() {
            return Err("the JWK set has no keys".into());
        }
        Ok(set)
    }

    /// Parses a JWK set served by an issuer leniently: keys that are not
    /// signature keys we can use (encryption keys, other curves) are skipped,
    /// as issuers often publish several kinds.
    pub fn parse_served(bytes: &[u8]) -> Result<KeySet, String> {
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("not a JSON JWK set: {e}"))?;
        let keys = value
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("not a JWK set (no \"keys\" array)")?;
        let keys = keys
            .iter()
            .filter_map(|k| serde_json::from_value::<Jwk>(k.clone()).ok())
            .filter_map(|jwk| usable(jwk).ok())
            .collect();
        Ok(KeySet { keys })
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The key that verifies a token with `header`, if `allowed` lists its
    /// algorithm: the one named by `kid`, or the only one that fits.
    pub fn key_for(&self, header: &Header, allowed: &[Algorithm]) -> Result<DecodingKey, KeyError> {
        if !allowed.contains(&header.alg) {
            return Err(KeyError::Algorithm(header.alg));
        }
        let key = match &header.kid {
            Some(kid) => {
                let key = self
                    .keys
                    .iter()
                    .find(|k| k.kid.as_deref() == Some(kid.as_str()))
                    .ok_or_else(|| KeyError::UnknownKid(kid.clone()))?;
                if !fits(&key.jwk, header.alg) {
                    return Err(KeyError::NoKey(header.alg));
                }
                key
            }
            None => {
                let mut fitting = self.keys.iter().filter(|k| fits(&k.jwk, header.alg));
                match (fitting.next(), fitting.next()) {
                    (Some(key), None) => key,
                    (None, _) => return Err(KeyError::NoKey(header.alg)),
                    (Some(_), Some(_)) => return Err(KeyError::Ambiguous),
                }
            }
        };
        DecodingKey::from_jwk(&key.jwk).map_err(|_| KeyError::NoKey(header.alg))
    }
}

/// Keeps `jwk` if it is a public RSA or EC P-256/P-384 key meant for signatures.
fn usable(jwk: Jwk) -> Result<PublicKey, String> {
    if matches!(jwk.common.public_key_use, Some(PublicKeyUse::Encryption)) {
        return Err("an encryption key (\"use\": \"enc\"), not a signature key".into());
    }
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {}
        AlgorithmParameters::EllipticCurve(ec)
            if matches!(ec.curve, EllipticCurve::P256 | EllipticCurve::P384) => {}
        AlgorithmParameters::EllipticCurve(_) => {
            return Err("only the P-256 and P-384 curves are supported".into())
        }
        AlgorithmParameters::OctetKey(_) => {
            return Err("a symmetric (\"oct\") key; a JWK set here holds public keys".into())
        }
        AlgorithmParameters::OctetKeyPair(_) => {
            return Err("OKP (EdDSA) keys are not supported; use RSA or EC P-384".into())
        }
        // Key types jsonwebtoken reads but cannot verify with.
        _ => return Err("an unsupported key type (\"kty\"); use RSA or EC P-384".into()),
    }
    // Reject keys we cannot build a verifier from now, not at the first token.
    DecodingKey::from_jwk(&jwk).map_err(|e| format!("unusable key: {e}"))?;
    Ok(PublicKey {
        kid: jwk.common.key_id.clone(),
        jwk,
    })
}

/// May `jwk` verify a signature made with `alg`?
fn fits(jwk: &Jwk, alg: Algorithm) -> bool {
    if let Some(declared) = jwk.common.key_algorithm {
        if key_alg(declared) != Some(alg) {
            return false;
        }
    }
    match (&jwk.algorithm, alg) {
        (
            AlgorithmParameters::RSA(_),
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512,
        ) => true,
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES384) => {
            ec.curve == EllipticCurve::P384
        }
        _ => false,
    }
}

fn key_alg(a: KeyAlgorithm) -> Option<Algorithm> {
    Some(match a {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        KeyAlgorithm::PS384 => Algorithm::PS384,
        KeyAlgorithm::PS512 => Algorithm::PS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::ES384 => Algorithm::ES384,
        _ => return None,
    })
}

/// The names of `algs`, for discovery documents.
pub fn alg_names(algs: &[Algorithm]) -> Vec<String> {
    algs.iter().map(|a| format!("{a:?}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_sets_hold_public_signature_keys_only() {
        let private = r#"{"keys":[{"kty":"EC","crv":"P-384","x":"AA","y":"AA","d":"AA"}]}"#;
        assert!(KeySet::parse_registered(private)
            .unwrap_err()
            .contains("private key"));
        let oct = r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#;
        assert!(KeySet::parse_registered(oct).unwrap_err().contains("oct"));
        assert!(KeySet::parse_registered(r#"{"keys":[]}"#).is_err());
        assert!(KeySet::parse_registered("[]").is_err());
        // Served sets skip what they cannot use instead of failing.
        assert!(KeySet::parse_served(oct.as_bytes()).unwrap().is_empty());
    }

    #[test]
    fn hmac_and_none_are_never_accepted() {
        let set = KeySet::default();
        let header = Header::new(Algorithm::HS256);
        assert_eq!(
            set.key_for(&header, &ISSUER_ALGS).err(),
            Some(KeyError::Algorithm(Algorithm::HS256))
        );
    }
}
