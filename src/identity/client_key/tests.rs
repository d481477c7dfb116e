use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::DecodingKey;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};

struct Made {
    key: String,
    cert: String,
}

fn made(algorithm: &'static rcgen::SignatureAlgorithm, from: i64, until: i64) -> Made {
    let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["client".into()]).unwrap();
    params.not_before = OffsetDateTime::from_unix_timestamp(from).unwrap();
    params.not_after = OffsetDateTime::from_unix_timestamp(until).unwrap();
    let cert = params.self_signed(&key).unwrap();
    Made {
        key: key.serialize_pem(),
        cert: cert.pem(),
    }
}

fn now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

fn ec() -> Made {
    made(&rcgen::PKCS_ECDSA_P256_SHA256, now() - 60, now() + 3600)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn header(jwt: &str) -> Header {
    jsonwebtoken::decode_header(jwt).unwrap()
}

#[test]
fn an_assertion_has_the_claims_and_headers_providers_check() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ec();
    let path = write(dir.path(), "key.pem", &format!("{}{}", pair.key, pair.cert));
    let keys = ClientKeys::open(&path, None).unwrap();
    let t = now();
    let one = keys
        .assertion("client-1", "https://op.example/token", None, t)
        .unwrap();
    let two = keys
        .assertion("client-1", "https://op.example/token", None, t)
        .unwrap();
    let h = header(&one.jwt);
    assert_eq!(h.alg, Algorithm::ES256);
    assert_eq!(h.typ.as_deref(), Some("JWT"));
    let der = pem::parse(&pair.cert).unwrap();
    assert_eq!(
        h.x5t_s256.as_deref(),
        Some(
            URL_SAFE_NO_PAD
                .encode(Sha256::digest(der.contents()))
                .as_str()
        )
    );
    assert!(h.x5t.is_some());
    // Verified with the certificate's key, as the provider does.
    let public = DecodingKey::from_ec_pem(pair.cert.as_bytes()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(Algorithm::ES256);
    validation.set_audience(&["https://op.example/token"]);
    validation.set_issuer(&["client-1"]);
    validation.sub = Some("client-1".into());
    let claims: serde_json::Value = jsonwebtoken::decode(&one.jwt, &public, &validation)
        .unwrap()
        .claims;
    assert_eq!(claims["exp"].as_i64(), Some(t + LIFETIME_SECS));
    assert_eq!(claims["iat"].as_i64(), Some(t));
    assert_eq!(claims["nbf"].as_i64(), Some(t));
    let other: serde_json::Value = jsonwebtoken::decode(&two.jwt, &public, &validation)
        .unwrap()
        .claims;
    assert_ne!(claims["jti"], other["jti"], "a fresh jti each time");
    // What an error may say: no key, no assertion.
    assert!(one.described.contains("ES256") && one.described.contains("key.pem#1"));
    assert!(!one.described.contains("PRIVATE") && !one.described.contains(&one.jwt));
    assert!(!format!("{keys:?}{one:?}").contains("PRIVATE"));
    assert!(!format!("{one:?}").contains(&one.jwt));
}

#[test]
fn the_algorithm_follows_the_key_and_what_the_provider_lists() {
    let list = |algs: &[&str]| algs.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    assert_eq!(algorithm(Family::Rsa, None).unwrap(), Algorithm::RS256);
    assert_eq!(
        algorithm(Family::Rsa, Some(&list(&["PS256", "ES256"]))).unwrap(),
        Algorithm::PS256
    );
    assert_eq!(
        algorithm(Family::Ec, Some(&list(&["RS256", "ES256"]))).unwrap(),
        Algorithm::ES256
    );
    let refused = algorithm(Family::Ec, Some(&list(&["RS256"]))).unwrap_err();
    assert!(
        refused.contains("ES256") && refused.contains("RS256"),
        "{refused}"
    );
    // PS256 signs with an RSA key.
    let dir = tempfile::tempdir().unwrap();
    let pair = made(&rcgen::PKCS_RSA_SHA256, now() - 60, now() + 3600);
    let path = write(dir.path(), "rsa.pem", &format!("{}{}", pair.key, pair.cert));
    let keys = ClientKeys::open(&path, None).unwrap();
    let signed = keys
        .assertion("c", "aud", Some(&list(&["PS256"])), now())
        .unwrap();
    assert_eq!(header(&signed.jwt).alg, Algorithm::PS256);
}

#[test]
fn keys_the_files_hold_wrongly_are_refused_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ec();
    let other = ec();
    let refused = |text: &str, certificate: Option<&str>| {
        let key = write(dir.path(), "k.pem", text);
        let cert = certificate.map(|c| write(dir.path(), "c.pem", c));
        let e = ClientKeys::open(&key, cert.as_deref()).unwrap_err();
        assert!(!e.contains("BEGIN"), "no key material in errors: {e}");
        e
    };
    let e = refused(&format!("{}{}", pair.key, other.cert), None);
    assert!(e.contains("none of the certificates"), "{e}");
    let e = refused(&pair.key, Some(&other.cert));
    assert!(e.contains("none of the certificates"), "{e}");
    let e = refused(&pair.cert, None);
    assert!(e.contains("no private key"), "{e}");
    let e = refused("not pem at all", None);
    assert!(
        e.contains("no private key") || e.contains("not a PEM"),
        "{e}"
    );
    let sec1 = "-----BEGIN EC PRIVATE KEY-----\nMAA=\n-----END EC PRIVATE KEY-----\n";
    let e = refused(sec1, None);
    assert!(e.contains("PKCS#8"), "{e}");
    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let e = refused(encrypted, None);
    assert!(e.contains("encrypted"), "{e}");
    let p384 = made(&rcgen::PKCS_ECDSA_P384_SHA384, now() - 60, now() + 3600);
    let e = refused(&p384.key, None);
    assert!(e.contains("P-256"), "{e}");
    let e = refused(&pair.key, Some(&pair.key));
    assert!(e.contains("certificates only"), "{e}");
    // A certificate file beside the key pairs with it.
    let key = write(dir.path(), "k.pem", &pair.key);
    let cert = write(dir.path(), "c.pem", &format!("{}{}", other.cert, pair.cert));
    let keys = ClientKeys::open(&key, Some(&cert)).unwrap();
    let signed = keys.assertion("c", "aud", None, now()).unwrap();
    let der = pem::parse(&pair.cert).unwrap();
    assert_eq!(
        header(&signed.jwt).x5t_s256.unwrap(),
        URL_SAFE_NO_PAD.encode(Sha256::digest(der.contents()))
    );
}

#[test]
fn a_rewrite_that_does_not_parse_keeps_the_keys_read_before() {
    let dir = tempfile::tempdir().unwrap();
    let pair = ec();
    let path = write(dir.path(), "key.pem", &format!("{}{}", pair.key, pair.cert));
    let keys = ClientKeys::open(&path, None).unwrap();
    // Half-written, as a rotation caught in the middle leaves it.
    std::fs::write(&path, &pair.key[..40]).unwrap();
    let signed = keys.assertion("c", "aud", None, now()).unwrap();
    assert_eq!(header(&signed.jwt).alg, Algorithm::ES256);
    // Finished: the new key is used.
    let next = made(&rcgen::PKCS_RSA_SHA256, now() - 60, now() + 3600);
    std::fs::write(&path, format!("{}{}", next.key, next.cert)).unwrap();
    let signed = keys.assertion("c", "aud", None, now()).unwrap();
    assert_eq!(header(&signed.jwt).alg, Algorithm::RS256);
}

#[test]
fn with_every_certificate_out_of_date_nothing_signs() {
    let dir = tempfile::tempdir().unwrap();
    let t = now();
    let expired = made(&rcgen::PKCS_ECDSA_P256_SHA256, t - 7200, t - 3600);
    let future = made(&rcgen::PKCS_ECDSA_P256_SHA256, t + 3600, t + 7200);
    write(
        dir.path(),
        "a.pem",
        &format!("{}{}", expired.key, expired.cert),
    );
    write(
        dir.path(),
        "b.pem",
        &format!("{}{}", future.key, future.cert),
    );
    let keys = ClientKeys::open(dir.path(), None).unwrap();
    let e = keys.assertion("c", "aud", None, t).unwrap_err();
    assert!(e.contains("no usable key"), "{e}");
    // Once the second's time has come, it signs.
    let later = t + 3600 + Duration::minutes(1).whole_seconds();
    assert!(keys.assertion("c", "aud", None, later).is_ok());
}
