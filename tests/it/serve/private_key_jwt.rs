//! Client credentials without a shared secret (`private_key_jwt`) against the development
//! provider, which checks assertions as Entra ID does: sign-in, refresh in the web app and the
//! worker; RS256 (the fixture key) and ES256; a key rotated on disk while serving; a key whose
//! certificate has expired skipped; a refused assertion a configuration error that says what
//! was sent.

use super::{spawn_app_with, TestApp};
use crate::worker::{outcomes, pass, run_pass};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};
use tokenbridge::db::Backend;
use tokenbridge::settings::{AssertionAudience, ClientAuth, Settings};
use tokenbridge::worker::PassError;

pub const FIXTURE_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/dev-idp-client-key.pem");
pub const FIXTURE_CERT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/dev/dev-idp-client-cert.pem");

/// A key pair made for a test: PKCS#8 key and self-signed certificate, PEM.
pub struct TestKey {
    pub key: String,
    pub cert: String,
}

impl TestKey {
    /// An EC P-256 key (ES256) whose certificate is valid from `from` until `until`.
    pub fn ec(from: OffsetDateTime, until: OffsetDateTime) -> Self {
        Self::made(&rcgen::PKCS_ECDSA_P256_SHA256, from, until)
    }

    /// An RSA key (RS256), valid for a year from yesterday.
    pub fn rsa() -> Self {
        let now = OffsetDateTime::now_utc();
        Self::made(
            &rcgen::PKCS_RSA_SHA256,
            now - Duration::days(1),
            now + Duration::days(365),
        )
    }

    fn made(
        algorithm: &'static rcgen::SignatureAlgorithm,
        from: OffsetDateTime,
        until: OffsetDateTime,
    ) -> Self {
        let key = rcgen::KeyPair::generate_for(algorithm).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["tokenbridge-test".into()]).unwrap();
        params.not_before = from;
        params.not_after = until;
        let cert = params.self_signed(&key).unwrap();
        Self {
            key: key.serialize_pem(),
            cert: cert.pem(),
        }
    }

    /// Key and certificate in one PEM file, as `client_key_file` takes them.
    pub fn write(&self, path: &Path) {
        std::fs::write(path, format!("{}{}", self.key, self.cert)).unwrap();
    }

    pub fn thumbprint(&self) -> String {
        thumbprint(&self.cert)
    }
}

/// A certificate's `x5t#S256`: SHA-256 of its DER, base64url.
pub fn thumbprint(cert_pem: &str) -> String {
    let der = pem::parse(cert_pem).unwrap();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(der.contents()))
}

/// The app signing its requests with the key file or directory `key`, no secret.
pub fn with_key(s: &mut Settings, key: &Path) {
    s.identity.client_auth = ClientAuth::PrivateKeyJwt;
    s.identity.client_secret = None;
    s.identity.client_key_file = Some(key.to_owned());
    s.identity.client_certificate_file = None;
}

async fn assertions_by(app: &TestApp, thumbprint: &str) -> u64 {
    app.idp.counters().await["client_assertions"][thumbprint]
        .as_u64()
        .unwrap_or(0)
}

/// The provider knows the fixture's certificate and those of `keys` for the app's client.
fn registered(dir: &Path, keys: &[&TestKey]) -> PathBuf {
    let mut pem = std::fs::read_to_string(FIXTURE_CERT).unwrap();
    for key in keys {
        pem.push_str(&key.cert);
    }
    let path = dir.join("registered.pem");
    std::fs::write(&path, pem).unwrap();
    path
}

#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_rotates_and_skips_an_expired_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let es256 = TestKey::ec(now - Duration::days(1), now + Duration::days(30));
    let expired = TestKey::ec(now - Duration::days(60), now - Duration::days(1));
    let certificates = registered(dir.path(), &[&es256, &expired]);
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    let fixture = format!(
        "{}{}",
        std::fs::read_to_string(FIXTURE_KEY).unwrap(),
        std::fs::read_to_string(FIXTURE_CERT).unwrap()
    );
    std::fs::write(keys.join("c-current.pem"), fixture).unwrap();
    let Some(app) = spawn_app_with(
        "serve::private_key_jwt",
        Backend::Sqlite,
        |idp| idp.clients[0].certificate_file = Some(certificates.clone()),
        |s| with_key(s, &keys),
    )
    .await
    else {
        return;
    };
    let rs256 = thumbprint(&std::fs::read_to_string(FIXTURE_CERT).unwrap());

    // Sign-in and a refresh in the web app, signed RS256 with the fixture key.
    app.sign_in("ada").await;
    assert_eq!(assertions_by(&app, &rs256).await, 1, "the code redemption");
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(assertions_by(&app, &rs256).await, 2, "the refresh");

    // A new key is written beside it (first in name order) while the app serves: the next
    // request signs with it, ES256.
    es256.write(&keys.join("b-next.pem"));
    app.clock.advance(Duration::hours(2));
    assert_eq!(app.home_html().await.0, 200);
    assert_eq!(assertions_by(&app, &es256.thumbprint()).await, 1);
    assert_eq!(assertions_by(&app, &rs256).await, 2);

    // A key whose certificate has expired, first in name order, is skipped.
    expired.write(&keys.join("a-expired.pem"));
    app.clock.advance(Duration::hours(2));
    let run = pass(&app, |o| o.older_than = std::time::Duration::ZERO).await;
    assert_eq!(run.outcomes(), outcomes(&[("ada", "ok")]));
    assert_eq!(assertions_by(&app, &expired.thumbprint()).await, 0);
    assert_eq!(
        assertions_by(&app, &es256.thumbprint()).await,
        2,
        "the worker's refresh"
    );
    assert_eq!(app.idp.counters().await["refreshes"], 3);
}

#[tokio::test]
async fn a_refused_assertion_is_a_configuration_error_that_says_what_was_sent() {
    let dir = tempfile::tempdir().unwrap();
    let Some(app) = spawn_app_with(
        "serve::private_key_jwt_refused",
        Backend::Sqlite,
        |_| {},
        |s| {
            with_key(s, Path::new(FIXTURE_KEY));
            s.identity.client_certificate_file = Some(PathBuf::from(FIXTURE_CERT));
        },
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    // A replica, and a worker, signing with a key the provider does not know.
    let unknown = TestKey::rsa();
    let key = dir.path().join("client.pem");
    unknown.write(&key);
    let mut wrong = app.settings.clone();
    with_key(&mut wrong, &key);
    let replica = app.replica_with(&wrong).await;
    app.clock.advance(Duration::hours(2));
    let page = app.browser.get(format!("{replica}/")).send().await.unwrap();
    assert_eq!(page.status(), 500);
    let html = page.text().await.unwrap();
    assert!(html.contains("Configuration problem"), "{html}");
    let ready = reqwest::get(format!("{replica}/readyz")).await.unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("misconfigured"), "{body}");

    // The worker's pass stops with the reason, which names the algorithm, the key's
    // certificate and the audience, and holds no part of the key or of the assertion.
    let worker = tokenbridge::worker::Worker::build(
        &wrong,
        wrong.worker.clone(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .unwrap();
    let result = run_pass(&worker, std::future::ready(())).await.result;
    let Err(PassError::Configuration(reason)) = &result else {
        panic!("{result:?}");
    };
    assert!(reason.contains("invalid_client"), "{reason}");
    assert!(reason.contains("RS256"), "{reason}");
    assert!(reason.contains(&unknown.thumbprint()), "{reason}");
    assert!(reason.contains("/oauth2/v2.0/token"), "{reason}");
    assert!(
        !reason.contains("PRIVATE KEY") && !reason.contains("eyJ"),
        "{reason}"
    );
    assert_eq!(app.idp.counters().await["refreshes"], 0, "nothing redeemed");

    // The right key addressed to the issuer, which this provider (as Entra ID) refuses: the
    // same configuration error, naming the audience sent.
    let mut issuer_aud = app.settings.clone();
    issuer_aud.identity.client_assertion_audience = AssertionAudience::Issuer;
    let worker = tokenbridge::worker::Worker::build(
        &issuer_aud,
        issuer_aud.worker.clone(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .unwrap();
    let result = run_pass(&worker, std::future::ready(())).await.result;
    let Err(PassError::Configuration(reason)) = &result else {
        panic!("{result:?}");
    };
    assert!(reason.contains("AADSTS700023"), "{reason}");
    assert!(
        reason.contains(&format!("aud {}", app.idp.issuer)),
        "{reason}"
    );
}
