//! Signing keys: a fresh RSA key for ID tokens (RS256, published in the JWKS) and a random
//! HMAC key for access tokens. Access tokens are opaque to clients and only this process's API
//! checks them, so HS256 keeps the provider fast enough that benchmarks measure tokenbridge.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::traits::PublicKeyParts;
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub struct Keys {
    /// The ID-token key; replaced by [`Keys::rotate_id_key`], as providers rotate theirs.
    id_key: std::sync::RwLock<IdKey>,
    access_encoding: EncodingKey,
    access_decoding: DecodingKey,
    access_kid: String,
}

struct IdKey {
    kid: String,
    encoding: EncodingKey,
    jwk: serde_json::Value,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("kid", &self.id_key().kid)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot generate the signing key: {0}")]
    Generate(String),
    #[error("cannot sign a token: {0}")]
    Sign(String),
}

impl IdKey {
    fn generate() -> Result<Self, KeyError> {
        let private = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048)
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let der = private
            .to_pkcs1_der()
            .map_err(|e| KeyError::Generate(e.to_string()))?;
        let n = URL_SAFE_NO_PAD.encode(private.n().to_bytes_be());
        let e = URL_SAFE_NO_PAD.encode(private.e().to_bytes_be());
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(n.as_bytes())[..12]);
        let jwk = serde_json::json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid, "n": n, "e": e,
        });
        Ok(Self {
            kid,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk,
        })
    }
}

impl Keys {
    pub fn generate() -> Result<Self, KeyError> {
        let mut secret = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut secret);
        let access_kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(secret)[..9]);
        Ok(Self {
            id_key: std::sync::RwLock::new(IdKey::generate()?),
            access_encoding: EncodingKey::from_secret(&secret),
            access_decoding: DecodingKey::from_secret(&secret),
            access_kid,
        })
    }

    fn id_key(&self) -> std::sync::RwLockReadGuard<'_, IdKey> {
        self.id_key.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the ID-token signing key; the JWKS then lists only the new one.
    pub fn rotate_id_key(&self) -> Result<(), KeyError> {
        let fresh = IdKey::generate()?;
        *self.id_key.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// `{"keys": [...]}` as served at the JWKS endpoint.
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": [self.id_key().jwk] })
    }

    pub fn sign_id_token<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let key = self.id_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// A Back-Channel Logout token, signed as ID tokens are, typed `logout+jwt` (section 2.4).
    pub fn sign_logout_token<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let key = self.id_key();
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(key.kid.clone());
        header.typ = Some("logout+jwt".into());
        jsonwebtoken::encode(&header, claims, &key.encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    pub fn sign_access_token<T: Serialize>(&self, claims: &T) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(self.access_kid.clone());
        jsonwebtoken::encode(&header, claims, &self.access_encoding)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Checks an access token's signature, expiry, issuer and audience.
    pub fn verify_access_token<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, jsonwebtoken::errors::Error> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<T>(token, &self.access_decoding, &validation).map(|data| data.claims)
    }

    /// Checks a token signed with the published key (the web API's access tokens, as an
    /// on-behalf-of assertion): signature, expiry, issuer and audience.
    pub fn verify_published<T: DeserializeOwned>(
        &self,
        token: &str,
        issuer: &str,
        audience: &str,
    ) -> Result<T, jsonwebtoken::errors::Error> {
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(self.id_key().jwk.clone())
            .map_err(|e| {
                jsonwebtoken::errors::new_error(jsonwebtoken::errors::ErrorKind::Json(e.into()))
            })?;
        let key = DecodingKey::from_jwk(&jwk)?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = 0;
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        jsonwebtoken::decode::<T>(token, &key, &validation).map(|data| data.claims)
    }
}

/// OpenID Connect `at_hash`: base64url of the left half of SHA-256 of the access token.
pub fn at_hash(access_token: &str) -> String {
    let digest = Sha256::digest(access_token.as_bytes());
    URL_SAFE_NO_PAD.encode(&digest[..16])
}

/// PKCE S256: base64url(SHA-256(verifier)).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

pub use crate::secret::random_token;

/// A stable GUID-shaped id derived from a name (the same user name always gets the same oid).
pub fn stable_guid(namespace: &str, name: &str) -> String {
    let digest = Sha256::digest(format!("{namespace}:{name}").as_bytes());
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_the_rfc_7636_example() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn stable_guids_are_stable_and_distinct() {
        assert_eq!(stable_guid("oid", "ada"), stable_guid("oid", "ada"));
        assert_ne!(stable_guid("oid", "ada"), stable_guid("oid", "grace"));
        assert_eq!(stable_guid("oid", "ada").len(), 36);
    }

    #[test]
    fn access_tokens_round_trip_and_reject_other_audiences() {
        let keys = Keys::generate().unwrap();
        let claims =
            serde_json::json!({"iss": "i", "aud": "a", "exp": i64::MAX / 2, "scp": "User.Read"});
        let token = keys.sign_access_token(&claims).unwrap();
        let back: serde_json::Value = keys.verify_access_token(&token, "i", "a").unwrap();
        assert_eq!(back["scp"], "User.Read");
        assert!(keys
            .verify_access_token::<serde_json::Value>(&token, "i", "other")
            .is_err());
        assert!(keys
            .verify_access_token::<serde_json::Value>(&token, "other", "a")
            .is_err());
        assert!(keys.jwks()["keys"][0]["n"].as_str().unwrap().len() > 300);
        assert!(!format!("{keys:?}").contains("secret"));
    }
}
