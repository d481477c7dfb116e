//! The bearer validation matrix: each wrong claim, `none`, HS256 with the public key, expired,
//! not yet valid, wrong audience, missing scope, another tenant, an unknown key.

use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ISSUER: &str = "https://login.example.com/tenant-1/v2.0";

struct Signer {
    key: EncodingKey,
    jwk: Jwk,
    public_pem: String,
}

fn signer(kid: &str) -> Signer {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let key = EncodingKey::from_rsa_pem(pair.serialize_pem().as_bytes()).unwrap();
    let mut jwk = Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some(kid.to_owned());
    Signer {
        key,
        jwk,
        public_pem: pair.public_key_pem(),
    }
}

fn rules() -> BearerRules {
    BearerRules {
        audiences: vec!["api-client-id".into(), "api://tokenbridge".into()],
        scopes: vec!["access_as_user".into()],
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn claims(changes: Value) -> Value {
    let mut claims = json!({
        "iss": ISSUER,
        "aud": "api-client-id",
        "sub": "user-sub",
        "oid": "user-oid",
        "tid": "tenant-1",
        "scp": "openid access_as_user",
        "iat": now(),
        "nbf": now(),
        "exp": now() + 3600,
    });
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn sign(signer: &Signer, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &signer.key).unwrap()
}

fn check(jwks: &JwkSet, token: &str) -> Result<CallerToken, Option<BearerError>> {
    match check_access_token(jwks, ISSUER, Some("tenant-1"), &rules(), token) {
        Checked::Valid(caller) => Ok(caller),
        Checked::UnknownKey => Err(None),
        Checked::Refused(e) => Err(Some(e)),
    }
}

fn refused(jwks: &JwkSet, token: &str) -> String {
    match check(jwks, token) {
        Err(Some(BearerError::Invalid(why))) => why,
        other => panic!("expected invalid_token, got {other:?}"),
    }
}

#[test]
fn a_valid_token_is_accepted_with_its_user_and_scopes() {
    let s = signer("k1");
    let jwks = JwkSet {
        keys: vec![s.jwk.clone()],
    };
    let token = sign(&s, "k1", &claims(json!({})));
    let caller = check(&jwks, &token).unwrap();
    assert_eq!(caller.sub, "user-sub");
    assert_eq!(caller.oid.as_deref(), Some("user-oid"));
    assert_eq!(caller.scopes, ["openid", "access_as_user"]);
    assert_eq!(caller.raw.expose(), token);
    assert!(!format!("{caller:?}").contains(&token), "no token in Debug");
    // `scope` (RFC 9068) instead of Entra's `scp`, and the other audience.
    let token = sign(
        &s,
        "k1",
        &claims(json!({ "scp": null, "scope": "access_as_user", "aud": "api://tokenbridge" })),
    );
    assert!(check(&jwks, &token).is_ok());
}

#[test]
fn every_wrong_token_is_refused() {
    let s = signer("k1");
    let jwks = JwkSet {
        keys: vec![s.jwk.clone()],
    };
    let t = now();
    for (changes, why) in [
        (
            json!({ "iss": "https://login.example.com/other/v2.0" }),
            "issuer",
        ),
        (json!({ "aud": "someone-else" }), "audience"),
        (json!({ "exp": t - 3600, "nbf": t - 7200 }), "expired"),
        (json!({ "nbf": t + 3600 }), "immature"),
        (json!({ "tid": "tenant-2" }), "tenant"),
        (json!({ "sub": null }), "user"),
        (json!({ "exp": null }), "exp"),
    ] {
        let token = sign(&s, "k1", &claims(changes.clone()));
        let reason = refused(&jwks, &token);
        assert!(!reason.contains(&token), "{why}: no token in the reason");
        assert!(reason.to_ascii_lowercase().contains(why), "{why}: {reason}");
    }
    assert!(refused(&jwks, "not-a-jwt").contains("not a signed JWT"));

    // alg none: an unsigned token.
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims(json!({})).to_string())
    );
    assert!(matches!(
        check(&jwks, &unsigned),
        Err(Some(BearerError::Invalid(_)))
    ));

    // HS256 with the public key as the shared secret: the classic confusion.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let forged = jsonwebtoken::encode(
        &header,
        &claims(json!({})),
        &EncodingKey::from_secret(s.public_pem.as_bytes()),
    )
    .unwrap();
    assert!(refused(&jwks, &forged).contains("shared secret"));

    // Signed by another key under the published key's id.
    let other = signer("k1");
    let token = sign(&other, "k1", &claims(json!({})));
    assert!(matches!(
        check(&jwks, &token),
        Err(Some(BearerError::Invalid(_)))
    ));
}

#[test]
fn a_token_without_the_scope_is_insufficient_not_invalid() {
    let s = signer("k1");
    let jwks = JwkSet {
        keys: vec![s.jwk.clone()],
    };
    let token = sign(&s, "k1", &claims(json!({ "scp": "openid User.Read" })));
    assert_eq!(
        check(&jwks, &token).unwrap_err(),
        Some(BearerError::InsufficientScope(
            vec!["access_as_user".into()]
        ))
    );
}

#[test]
fn an_unknown_key_asks_for_the_keys_again_and_a_rotated_one_is_then_accepted() {
    let old = signer("old");
    let new = signer("new");
    let before = JwkSet {
        keys: vec![old.jwk.clone()],
    };
    let token = sign(&new, "new", &claims(json!({})));
    assert!(
        matches!(check(&before, &token), Err(None)),
        "unknown key: fetch again"
    );
    let after = JwkSet {
        keys: vec![old.jwk.clone(), new.jwk.clone()],
    };
    assert!(check(&after, &token).is_ok());
}
