//! Back-Channel Logout tokens, checked as the spec says (section 2.6), against the development
//! provider's keys: a valid one names its sub, sid and jti; every kind of invalid one is
//! refused with a reason (and no token in it).

use super::Rig;
use serde_json::{json, Value};
use tokenbridge::db::Backend;
use tokenbridge::identity::provider::{LogoutTokenError, BACKCHANNEL_EVENT};

/// A token the provider signs with its key, with these claims.
async fn signed(rig: &Rig, claims: &Value) -> String {
    rig.idp.logout_token(claims).await
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn valid(rig: &Rig) -> Value {
    json!({
        "iss": rig.idp.issuer,
        "aud": crate::dev_idp::CLIENT_ID,
        "iat": now(),
        "exp": now() + 120,
        "jti": "jti-1",
        "events": { BACKCHANNEL_EVENT: {} },
        "sub": "the-sub",
        "sid": "the-sid",
    })
}

#[tokio::test]
async fn a_logout_token_is_checked_as_the_spec_says() {
    let rig = Rig::new("acquire::logout_token", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let acquirer = rig.acquirer(&rig.clock);
    let provider = acquirer.provider();

    let token = signed(&rig, &valid(&rig)).await;
    let checked = provider.validate_logout_token(&token, now()).await.unwrap();
    assert_eq!(checked.sub.as_deref(), Some("the-sub"));
    assert_eq!(checked.sid.as_deref(), Some("the-sid"));
    assert_eq!(checked.jti, "jti-1");
    assert!(checked.expires_at > now());
    // sid alone, or sub alone, is enough.
    for drop in ["sub", "sid"] {
        let mut claims = valid(&rig);
        claims.as_object_mut().unwrap().remove(drop);
        let token = signed(&rig, &claims).await;
        assert!(
            provider.validate_logout_token(&token, now()).await.is_ok(),
            "{drop}"
        );
    }

    let mut cases: Vec<(&str, Value)> = Vec::new();
    let change = |key: &str, value: Value| {
        let mut claims = valid(&rig);
        claims[key] = value;
        claims
    };
    let without = |keys: &[&str]| {
        let mut claims = valid(&rig);
        for key in keys {
            claims.as_object_mut().unwrap().remove(*key);
        }
        claims
    };
    cases.push((
        "InvalidIssuer",
        change("iss", json!("https://evil.example")),
    ));
    cases.push(("InvalidAudience", change("aud", json!("another-client"))));
    cases.push(("ExpiredSignature", change("exp", json!(now() - 3600))));
    cases.push(("too far from now", change("iat", json!(now() + 3600))));
    cases.push(("nonce", change("nonce", json!("n"))));
    cases.push(("event", without(&["events"])));
    cases.push(("event", change("events", json!({ "urn:other": {} }))));
    cases.push(("neither a sub nor a sid", without(&["sub", "sid"])));
    cases.push(("jti", without(&["jti"])));
    cases.push(("exp", without(&["exp"])));
    for (expected, claims) in cases {
        let token = signed(&rig, &claims).await;
        match provider.validate_logout_token(&token, now()).await {
            Err(LogoutTokenError::Invalid(why)) => {
                assert!(why.contains(expected), "{expected}: {why}");
                assert!(!why.contains(&token));
            }
            other => panic!("{expected}: {other:?}"),
        }
    }

    // A signature that does not match, and no signature at all.
    let token = signed(&rig, &valid(&rig)).await;
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped = if signature.starts_with('A') { "B" } else { "A" };
    let forged = format!("{head}.{flipped}{}", &signature[1..]);
    let payload = head.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoibG9nb3V0K2p3dCJ9.{payload}.");
    for token in [forged, unsigned, "not a jwt".to_owned()] {
        assert!(matches!(
            provider.validate_logout_token(&token, now()).await,
            Err(LogoutTokenError::Invalid(_))
        ));
    }

    // The provider rotated its key: the new one is fetched once, and the token accepted.
    rig.idp
        .admin(reqwest::Method::POST, "keys/rotate", None)
        .await;
    let token = signed(&rig, &valid(&rig)).await;
    assert!(provider.validate_logout_token(&token, now()).await.is_ok());
}
