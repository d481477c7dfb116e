//! `private_key_jwt` at the development provider, checked as Entra ID checks it: the registered
//! certificate's key, `iss` = `sub` = the client id, `aud` = its token endpoint, a lifetime
//! that has begun and not ended, and a `jti` used once.

use super::{spawn_idp, TestIdp, CLIENT_ID, CLIENT_SECRET, REDIRECT_URI, VERIFIER};
use crate::serve::private_key_jwt::{thumbprint, TestKey, FIXTURE_CERT, FIXTURE_KEY};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An assertion signed with the fixture key (RS256, the certificate's `x5t#S256`) from
/// `claims` over valid defaults.
fn assertion(idp: &TestIdp, claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(&std::fs::read(FIXTURE_KEY).unwrap()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.x5t_s256 = Some(thumbprint(&std::fs::read_to_string(FIXTURE_CERT).unwrap()));
    jsonwebtoken::encode(&header, &with_defaults(idp, claims), &key).unwrap()
}

fn with_defaults(idp: &TestIdp, claims: Value) -> Value {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut full = json!({
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": idp.endpoint("token"),
        "jti": tokenbridge::secret::random_token(),
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    });
    for (name, value) in claims.as_object().unwrap() {
        full[name] = value.clone();
    }
    full
}

/// A token request authenticated with `assertion`: status and body.
async fn send(idp: &TestIdp, grant: &[(&str, &str)], assertion: &str) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = grant.to_vec();
    form.extend([
        ("client_id", CLIENT_ID),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ]);
    let answer = idp
        .http
        .post(idp.endpoint("token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn client_assertions_are_checked_as_entra_id_checks_them() {
    let idp = spawn_idp().await;
    let code = idp.code_for("ada", "openid offline_access User.Read").await;
    let grant = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
    ];
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let other = TestKey::rsa();
    let foreign = {
        let key = EncodingKey::from_rsa_pem(other.key.as_bytes()).unwrap();
        let mut header = Header::new(Algorithm::RS256);
        header.x5t_s256 = Some(other.thumbprint());
        jsonwebtoken::encode(&header, &with_defaults(&idp, json!({})), &key).unwrap()
    };
    let unnamed_foreign = {
        let key = EncodingKey::from_rsa_pem(other.key.as_bytes()).unwrap();
        jsonwebtoken::encode(
            &Header::new(Algorithm::RS256),
            &with_defaults(&idp, json!({})),
            &key,
        )
        .unwrap()
    };
    for (bad, code_expected) in [
        (
            assertion(&idp, json!({ "aud": idp.issuer.clone() })),
            "AADSTS700023",
        ),
        (
            assertion(&idp, json!({ "aud": "https://login.example.com/token" })),
            "AADSTS700023",
        ),
        (
            assertion(
                &idp,
                json!({ "exp": now - 600, "nbf": now - 900, "iat": now - 900 }),
            ),
            "AADSTS700024",
        ),
        (assertion(&idp, json!({ "nbf": now + 600 })), "AADSTS700024"),
        (
            assertion(&idp, json!({ "iss": "someone-else" })),
            "AADSTS700021",
        ),
        (
            assertion(&idp, json!({ "sub": "someone-else" })),
            "AADSTS700021",
        ),
        (foreign, "AADSTS700027"),
        (unnamed_foreign, "AADSTS700027"),
        ("not.a.jwt".to_owned(), "AADSTS50027"),
    ] {
        let (status, body) = send(&idp, &grant, &bad).await;
        assert_eq!(status, 401, "{code_expected}: {body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        let description = body["error_description"].as_str().unwrap();
        assert!(description.starts_with(code_expected), "{description}");
    }
    // A secret beside an assertion is two methods: refused.
    let both = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_assertion_type", ASSERTION_TYPE),
            ("client_assertion", &assertion(&idp, json!({}))),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);

    // A valid one redeems the code (which none of the refusals used up) ...
    let valid = assertion(&idp, json!({}));
    let (status, tokens) = send(&idp, &grant, &valid).await;
    assert_eq!(status, 200, "{tokens}");
    // ... once: the same assertion again, for a refresh, is a replay.
    let refresh_token = tokens["refresh_token"].as_str().unwrap();
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", refresh_token),
    ];
    let (status, body) = send(&idp, &refresh, &valid).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("used already"));
    let (status, body) = send(&idp, &refresh, &assertion(&idp, json!({}))).await;
    assert_eq!(status, 200, "{body}");
    let counters = idp.counters().await;
    let fixture = thumbprint(&std::fs::read_to_string(FIXTURE_CERT).unwrap());
    assert_eq!(counters["client_assertions"][fixture.as_str()], 2);
}
