//! The provider's signing keys: `openidconnect`'s own [`CoreJsonWebKey`] in every respect but
//! one. RSA signatures (what Entra ID and most providers sign ID tokens with) are checked with
//! aws-lc-rs, the library `jsonwebtoken` already uses here, instead of the pure-Rust `rsa`
//! crate `openidconnect` uses, which took about a third of a millisecond per check: a fifth of
//! a worker's CPU per refreshed account. Key selection, `use` and `alg` checks stay the
//! library's; keys aws-lc-rs does not take (under 2048 bits, odd exponents) keep the old path.

use aws_lc_rs::signature::{self, RsaParameters, RsaPublicKeyComponents};
use base64::Engine;
use openidconnect::core::{
    CoreJsonWebKey, CoreJsonWebKeyType, CoreJsonWebKeyUse, CoreJwsSigningAlgorithm,
};
use openidconnect::{
    JsonWebKey, JsonWebKeyAlgorithm, JsonWebKeyId, JsonWebKeyUse, JwsSigningAlgorithm,
    SignatureVerificationError,
};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::Arc;

#[derive(Clone, Debug, Serialize)]
#[serde(transparent)]
pub struct Jwk {
    core: CoreJsonWebKey,
    #[serde(skip)]
    rsa: Option<Arc<RsaKey>>,
}

/// An RSA public key aws-lc-rs accepts: big-endian, without leading zeros.
#[derive(Debug)]
struct RsaKey {
    n: Vec<u8>,
    e: Vec<u8>,
}

impl RsaKey {
    fn from_jwk(jwk: &serde_json::Value) -> Option<Self> {
        if jwk["kty"] != "RSA" {
            return None;
        }
        let decode = |field: &str| {
            let text = jwk[field].as_str()?.trim_end_matches('=');
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(text)
                .ok()?;
            let first = bytes.iter().position(|b| *b != 0)?;
            Some(bytes[first..].to_vec())
        };
        let (n, e) = (decode("n")?, decode("e")?);
        let bits = n.len() * 8 - n[0].leading_zeros() as usize;
        let exponent_ok = e.len() <= 4 && e.last().is_some_and(|b| b & 1 == 1) && e != [1];
        ((2048..=8192).contains(&bits) && exponent_ok).then_some(Self { n, e })
    }
}

fn rsa_parameters(alg: &CoreJwsSigningAlgorithm) -> Option<&'static RsaParameters> {
    Some(match alg {
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        CoreJwsSigningAlgorithm::RsaSsaPssSha256 => &signature::RSA_PSS_2048_8192_SHA256,
        CoreJwsSigningAlgorithm::RsaSsaPssSha384 => &signature::RSA_PSS_2048_8192_SHA384,
        CoreJwsSigningAlgorithm::RsaSsaPssSha512 => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl<'de> Deserialize<'de> for Jwk {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        let core = CoreJsonWebKey::deserialize(&value).map_err(serde::de::Error::custom)?;
        let rsa = RsaKey::from_jwk(&value).map(Arc::new);
        Ok(Self { core, rsa })
    }
}

/// What `openidconnect` checks before any signature (its own check is not public): the key may
/// sign, is of the algorithm's type, and names no other algorithm.
fn check_compatibility(key: &Jwk, alg: &CoreJwsSigningAlgorithm) -> Result<(), &'static str> {
    if key.key_use().is_some_and(|u| !u.allows_signature()) {
        return Err("key usage not permitted for digital signatures");
    }
    if alg.key_type().as_ref() != Some(key.key_type()) {
        return Err("key type does not match signature algorithm");
    }
    match key.signing_alg() {
        JsonWebKeyAlgorithm::Unspecified => Ok(()),
        JsonWebKeyAlgorithm::Unsupported => Err("key algorithm is not a signing algorithm"),
        JsonWebKeyAlgorithm::Algorithm(key_alg) if key_alg == alg => Ok(()),
        JsonWebKeyAlgorithm::Algorithm(_) => Err("incompatible key algorithm"),
    }
}

impl JsonWebKey for Jwk {
    type KeyUse = CoreJsonWebKeyUse;
    type SigningAlgorithm = CoreJwsSigningAlgorithm;

    fn key_id(&self) -> Option<&JsonWebKeyId> {
        self.core.key_id()
    }

    fn key_type(&self) -> &CoreJsonWebKeyType {
        self.core.key_type()
    }

    fn key_use(&self) -> Option<&CoreJsonWebKeyUse> {
        self.core.key_use()
    }

    fn signing_alg(&self) -> JsonWebKeyAlgorithm<&CoreJwsSigningAlgorithm> {
        self.core.signing_alg()
    }

    fn new_symmetric(key: Vec<u8>) -> Self {
        Self {
            core: CoreJsonWebKey::new_symmetric(key),
            rsa: None,
        }
    }

    fn verify_signature(
        &self,
        alg: &CoreJwsSigningAlgorithm,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), SignatureVerificationError> {
        let (Some(rsa), Some(parameters)) = (&self.rsa, rsa_parameters(alg)) else {
            return self.core.verify_signature(alg, message, signature);
        };
        check_compatibility(self, alg)
            .map_err(|e| SignatureVerificationError::InvalidKey(e.to_owned()))?;
        RsaPublicKeyComponents {
            n: rsa.n.as_slice(),
            e: rsa.e.as_slice(),
        }
        .verify(parameters, message, signature)
        .map_err(|_| SignatureVerificationError::CryptoError("bad signature".to_owned()))
    }

    fn hash_bytes(&self, bytes: &[u8], alg: &CoreJwsSigningAlgorithm) -> Result<Vec<u8>, String> {
        self.core.hash_bytes(bytes, alg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1v15::SigningKey;
    use rsa::signature::{RandomizedSigner, SignatureEncoding, Signer};
    use rsa::traits::PublicKeyParts;
    use sha2::Sha256;

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    }

    fn jwk_of(key: &rsa::RsaPrivateKey, extra: serde_json::Value) -> Jwk {
        let mut jwk = serde_json::json!({
            "kty": "RSA", "kid": "k1",
            "n": b64(&key.n().to_bytes_be()), "e": b64(&key.e().to_bytes_be()),
        });
        jwk.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(jwk).unwrap()
    }

    #[test]
    fn rsa_signatures_are_checked_by_aws_lc_and_agree_with_the_library() {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let jwk = jwk_of(&key, serde_json::json!({ "use": "sig" }));
        assert!(jwk.rsa.is_some(), "a 2048-bit key takes the fast path");
        let message = b"header.claims";
        let pkcs1 = SigningKey::<Sha256>::new(key.clone())
            .sign(message)
            .to_vec();
        let pss = rsa::pss::SigningKey::<Sha256>::new(key.clone())
            .sign_with_rng(&mut rand::thread_rng(), message)
            .to_vec();
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        let ps256 = CoreJwsSigningAlgorithm::RsaSsaPssSha256;
        for (alg, signature) in [(&rs256, &pkcs1), (&ps256, &pss)] {
            jwk.verify_signature(alg, message, signature).unwrap();
            jwk.core.verify_signature(alg, message, signature).unwrap();
            let mut tampered = signature.clone();
            tampered[10] ^= 1;
            assert!(jwk.verify_signature(alg, message, &tampered).is_err());
            assert!(jwk
                .verify_signature(alg, b"header.other", signature)
                .is_err());
        }
        // The wrong algorithm for the signature, another hash: refused.
        let rs384 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384;
        assert!(jwk.verify_signature(&rs384, message, &pkcs1).is_err());
        // The same document serializes as the library's own key.
        let json = serde_json::to_value(&jwk).unwrap();
        assert_eq!(json, serde_json::to_value(&jwk.core).unwrap());
    }

    #[test]
    fn the_key_must_be_fit_for_the_signature_as_before() {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let message = b"header.claims";
        let signature = SigningKey::<Sha256>::new(key.clone())
            .sign(message)
            .to_vec();
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        for extra in [
            serde_json::json!({ "use": "enc" }),
            serde_json::json!({ "alg": "RS512" }),
        ] {
            let jwk = jwk_of(&key, extra);
            let error = jwk
                .verify_signature(&rs256, message, &signature)
                .unwrap_err();
            assert!(
                matches!(error, SignatureVerificationError::InvalidKey(_)),
                "{error:?}"
            );
        }
        let es256 = CoreJwsSigningAlgorithm::EcdsaP256Sha256;
        assert!(jwk_of(&key, serde_json::json!({}))
            .verify_signature(&es256, message, &signature)
            .is_err());
    }

    #[test]
    fn keys_aws_lc_does_not_take_keep_the_library_path() {
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 1024).unwrap();
        let jwk = jwk_of(&key, serde_json::json!({}));
        assert!(jwk.rsa.is_none());
        let message = b"header.claims";
        let signature = SigningKey::<Sha256>::new(key).sign(message).to_vec();
        let rs256 = CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256;
        jwk.verify_signature(&rs256, message, &signature).unwrap();
        // Leading zeros in `n` are dropped before aws-lc-rs sees it.
        let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
        let mut n = vec![0, 0];
        n.extend(key.n().to_bytes_be());
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "RSA", "n": b64(&n), "e": b64(&key.e().to_bytes_be()),
        }))
        .unwrap();
        let signature = SigningKey::<Sha256>::new(key).sign(message).to_vec();
        assert!(jwk.rsa.is_some());
        jwk.verify_signature(&rs256, message, &signature).unwrap();
    }
}
