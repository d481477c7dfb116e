//! `/token`: the code grant, refresh under each rotation mode, client authentication, errors.

use super::*;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use tokenbridge::settings::Rotation;

async fn id_token_claims(idp: &TestIdp, id_token: &str) -> Value {
    let jwks: Value = idp
        .http
        .get(format!("{}/{}/discovery/v2.0/keys", idp.base, idp.tenant))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = &jwks["keys"][0];
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    assert_eq!(
        (header.alg, header.kid.as_deref()),
        (Algorithm::RS256, key["kid"].as_str())
    );
    let decoding =
        DecodingKey::from_rsa_components(key["n"].as_str().unwrap(), key["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[&idp.issuer]);
    jsonwebtoken::decode::<Value>(id_token, &decoding, &validation)
        .unwrap()
        .claims
}

fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

#[tokio::test]
async fn the_code_grant_returns_entra_shaped_tokens() {
    let idp = spawn_idp().await;
    let tokens = idp.tokens_for("ada").await;
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 3600);
    assert!(tokens["refresh_token"].as_str().unwrap().len() >= 32);
    let scope = tokens["scope"].as_str().unwrap();
    assert!(
        scope.contains("User.Read") && scope.contains("openid"),
        "{scope}"
    );

    let access_token = tokens["access_token"].as_str().unwrap();
    let claims = id_token_claims(&idp, tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(claims["nonce"], "nonce-456");
    assert_eq!(claims["at_hash"], at_hash(access_token).as_str());
    assert_eq!(claims["tid"], idp.tenant.as_str());
    assert_eq!(claims["name"], "Ada");
    assert_eq!(claims["preferred_username"], "ada@tokenbridge.dev");
    for claim in ["sub", "oid", "exp", "iat"] {
        assert!(claims.get(claim).is_some(), "{claim}");
    }
    // client_info, as Entra returns it for client_info=1
    let info: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(tokens["client_info"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(info["uid"], claims["oid"]);
    assert_eq!(info["utid"], idp.tenant.as_str());
    // the access token is a JWT for the API with scp, oid and tid
    let payload: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(access_token.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["scp"], "User.Read");
    assert_eq!(payload["oid"], claims["oid"]);
    assert_eq!(payload["tid"], idp.tenant.as_str());
    assert_eq!(payload["aud"], "00000003-0000-0000-c000-000000000000");
    // the same name always gets the same identity
    assert_eq!(
        id_token_claims(
            &idp,
            idp.tokens_for("ada").await["id_token"].as_str().unwrap()
        )
        .await["oid"],
        claims["oid"]
    );
}

#[tokio::test]
async fn no_offline_access_no_refresh_token_and_client_info_only_on_request() {
    let idp = spawn_idp().await;
    let code = idp.code_for("ada", "openid User.Read").await;
    let response = idp
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
        ])
        .await;
    let tokens: Value = response.json().await.unwrap();
    assert!(
        tokens.get("refresh_token").is_none() && tokens.get("client_info").is_none(),
        "{tokens}"
    );
    assert!(tokens.get("id_token").is_some());
}

#[tokio::test]
async fn client_secret_post_works_and_bad_clients_get_invalid_client() {
    let idp = spawn_idp().await;
    let code = idp.code_for("ada", "openid").await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", VERIFIER),
        ("client_id", CLIENT_ID),
        ("client_secret", CLIENT_SECRET),
    ];
    let ok = idp
        .http
        .post(idp.endpoint("token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);

    let wrong = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some("wrong"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(error_of(wrong).await, (401, "invalid_client".into()));
    let unknown = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth("nobody", Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(unknown).await, (401, "invalid_client".into()));
    let anonymous = idp
        .http
        .post(idp.endpoint("token"))
        .form(&[("grant_type", "refresh_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(anonymous).await, (401, "invalid_client".into()));
    let both = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("client_secret", CLIENT_SECRET)])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(both).await, (400, "invalid_request".into()));
}

#[tokio::test]
async fn bad_token_requests_get_rfc_6749_errors() {
    let idp = spawn_idp().await;
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "invalid_request"),
        (vec![("grant_type", "password")], "unsupported_grant_type"),
        (
            vec![("grant_type", "authorization_code"), ("code", "x")],
            "invalid_request",
        ),
        (vec![("grant_type", "refresh_token")], "invalid_request"),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", "made-up"),
            ],
            "invalid_grant",
        ),
    ];
    for (form, expected) in cases {
        assert_eq!(
            error_of(idp.token_request(&form).await).await,
            (400, expected.into()),
            "{form:?}"
        );
    }
    let repeated = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&grant_type=authorization_code")
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(repeated).await, (400, "invalid_request".into()));
    let garbage = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .body(vec![0xff_u8, 0xfe, 0x00])
        .send()
        .await
        .unwrap();
    assert!(garbage.status().is_client_error());
}

#[tokio::test]
async fn codes_are_single_use_bound_to_pkce_and_redirect_uri() {
    let idp = spawn_idp().await;
    let code = idp.code_for("ada", "openid offline_access User.Read").await;
    let wrong_verifier = idp
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", "x".repeat(43).as_str()),
        ])
        .await;
    assert_eq!(
        error_of(wrong_verifier).await,
        (400, "invalid_grant".into())
    );

    let code = idp.code_for("ada", "openid offline_access User.Read").await;
    let wrong_redirect = idp
        .token_request(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://localhost:8080/signin-oidc"),
            ("code_verifier", VERIFIER),
        ])
        .await;
    assert_eq!(
        error_of(wrong_redirect).await,
        (400, "invalid_grant".into())
    );

    let code = idp.code_for("ada", "openid offline_access User.Read").await;
    let first: Value = idp.redeem(&code).await.json().await.unwrap();
    let replay = idp.redeem(&code).await;
    assert_eq!(error_of(replay).await, (400, "invalid_grant".into()));
    let refresh = idp.refresh(first["refresh_token"].as_str().unwrap()).await;
    assert_eq!(
        error_of(refresh).await,
        (400, "invalid_grant".into()),
        "a replayed code revokes what it issued"
    );
}

async fn refresh_ok(idp: &TestIdp, token: &str) -> Value {
    let response = idp.refresh(token).await;
    assert_eq!(
        response.status(),
        200,
        "{}",
        response.text().await.unwrap_or_default()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn rotation_off_keeps_one_refresh_token() {
    let idp = spawn_idp_with(|s| s.rotation = Rotation::Off).await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let refreshed = refresh_ok(&idp, &rt).await;
    assert_eq!(refreshed["refresh_token"], rt.as_str());
    refresh_ok(&idp, &rt).await;
    let counters = idp.counters().await;
    assert_eq!(
        (
            counters["refreshes"].as_u64(),
            counters["rotations"].as_u64()
        ),
        (Some(2), Some(0))
    );
}

#[tokio::test]
async fn rotate_issues_new_tokens_and_old_ones_keep_working() {
    let idp = spawn_idp().await;
    let tokens = idp.tokens_for("ada").await;
    let rt = tokens["refresh_token"].as_str().unwrap();
    let refreshed = refresh_ok(&idp, rt).await;
    let rt2 = refreshed["refresh_token"].as_str().unwrap();
    assert_ne!(rt, rt2);
    assert_ne!(refreshed["access_token"], tokens["access_token"]);
    // ID token on refresh, with at_hash and no nonce
    let claims = id_token_claims(&idp, refreshed["id_token"].as_str().unwrap()).await;
    assert_eq!(
        claims["at_hash"],
        at_hash(refreshed["access_token"].as_str().unwrap()).as_str()
    );
    assert!(claims.get("nonce").is_none());
    refresh_ok(&idp, rt).await;
    refresh_ok(&idp, rt2).await;
    let counters = idp.counters().await;
    assert_eq!(counters["rotations"], 3);
    assert_eq!(counters["reuse_detections"], 0);
    assert_eq!(counters["users"]["ada"]["refreshes"], 3);
    assert_eq!(counters["users"]["ada"]["codes_redeemed"], 1);
}

#[tokio::test]
async fn strict_rotation_treats_reuse_as_theft_and_revokes_the_user() {
    let idp = spawn_idp_with(|s| s.rotation = Rotation::Strict).await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let other_user = idp.tokens_for("grace").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let rt2 = refresh_ok(&idp, &rt).await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        error_of(idp.refresh(&rt).await).await,
        (400, "invalid_grant".into()),
        "reuse"
    );
    assert_eq!(
        error_of(idp.refresh(&rt2).await).await,
        (400, "invalid_grant".into()),
        "the whole user is revoked"
    );
    refresh_ok(&idp, &other_user).await;
    let counters = idp.counters().await;
    assert_eq!(counters["reuse_detections"], 1);
    assert_eq!(counters["users"]["ada"]["reuse_detections"], 1);
    // Signing in again starts a new, working family.
    let fresh = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    refresh_ok(&idp, &fresh).await;
}

#[tokio::test]
async fn refresh_may_narrow_scopes_but_not_widen_them() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let narrowed = idp
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "User.Read"),
        ])
        .await;
    assert_eq!(narrowed.status(), 200);
    let widened = idp
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "Mail.Read"),
        ])
        .await;
    // An API scope never consented to: Entra ID's AADSTS65001, the user's to fix.
    let body: serde_json::Value = widened.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    assert!(body["error_description"]
        .as_str()
        .unwrap()
        .contains("AADSTS65001"));
    let sign_in_scope = idp
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", "email"),
        ])
        .await;
    assert_eq!(error_of(sign_in_scope).await, (400, "invalid_scope".into()));
}

#[tokio::test]
async fn revoked_and_disabled_users_cannot_refresh() {
    let idp = spawn_idp().await;
    let ada = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let grace = idp.tokens_for("grace").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.admin(reqwest::Method::POST, "users/ada/revoke", None)
        .await;
    assert_eq!(
        error_of(idp.refresh(&ada).await).await,
        (400, "invalid_grant".into())
    );
    idp.admin(reqwest::Method::POST, "users/grace/disable", None)
        .await;
    assert_eq!(
        error_of(idp.refresh(&grace).await).await,
        (400, "invalid_grant".into())
    );
    idp.admin(reqwest::Method::POST, "users/grace/enable", None)
        .await;
    refresh_ok(&idp, &grace).await;
}

#[tokio::test]
async fn lifetimes_follow_the_settings_and_the_admin_api() {
    let idp = spawn_idp_with(|s| s.access_token_ttl = std::time::Duration::from_secs(60)).await;
    let tokens = idp.tokens_for("ada").await;
    assert_eq!(tokens["expires_in"], 60);
    idp.behave(serde_json::json!({ "access_token_ttl_secs": 120, "refresh_token_ttl_secs": 0 }))
        .await;
    let refreshed = refresh_ok(&idp, tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed["expires_in"], 120);
    // A zero refresh-token lifetime: the new refresh token is already expired.
    let dead = refreshed["refresh_token"].as_str().unwrap();
    assert_eq!(
        error_of(idp.refresh(dead).await).await,
        (400, "invalid_grant".into())
    );
}

/// `offline_access` modes: as Entra ID (the scope brings a refresh token), as OpenID Connect
/// Core 11 to the letter (only with `prompt=consent`), and "a refresh token always, but
/// `offline_access` only with consent".
#[tokio::test]
async fn offline_access_follows_the_configured_mode() {
    let idp = spawn_idp().await;
    let scope = "openid profile offline_access User.Read";
    let redeem_with = |prompt: Option<&'static str>| {
        let idp = &idp;
        async move {
            let mut params = idp.authorize_params(scope);
            if let Some(prompt) = prompt {
                params.push(("prompt", prompt.into()));
            }
            let response = idp.submit(&params, "ada").await;
            let (_, query) = location_params(&response);
            let tokens: Value = idp.redeem(&query["code"]).await.json().await.unwrap();
            tokens
        }
    };
    let entra = redeem_with(None).await;
    assert!(entra["refresh_token"].is_string());

    idp.behave(serde_json::json!({ "offline_access": "consent" }))
        .await;
    let without = redeem_with(None).await;
    assert!(without["refresh_token"].is_null(), "{without}");
    assert!(!without["scope"]
        .as_str()
        .unwrap()
        .contains("offline_access"));
    let with = redeem_with(Some("consent")).await;
    assert!(with["refresh_token"].is_string(), "{with}");

    idp.behave(serde_json::json!({ "offline_access": "always" }))
        .await;
    let always = redeem_with(None).await;
    let rt = always["refresh_token"].as_str().unwrap().to_owned();
    assert!(!always["scope"].as_str().unwrap().contains("offline_access"));
    let asked_again = idp
        .token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &rt),
            ("scope", scope),
        ])
        .await;
    assert_eq!(error_of(asked_again).await, (400, "invalid_scope".into()));
    assert_eq!(
        idp.refresh(&rt).await.status(),
        200,
        "no scope: the same scopes"
    );
}

/// Benchmarks seed many users at once: each minted refresh token works like a signed-in
/// user's (refresh, rotation, the API as that user), and the request is bounded.
#[tokio::test]
async fn refresh_tokens_minted_in_bulk_act_as_their_users() {
    let idp = spawn_idp().await;
    let minted: Value = idp
        .admin(
            reqwest::Method::POST,
            "refresh-tokens",
            Some(serde_json::json!({
                "client_id": "tokenbridge-dev", "prefix": "seed-", "count": 3
            })),
        )
        .await
        .json()
        .await
        .unwrap();
    let users = minted["users"].as_array().unwrap();
    assert_eq!(users.len(), 3);
    assert_eq!(users[2]["username"], "seed-0000002");
    let profile = tokenbridge::devidp::users::Profile::of("seed-0000002");
    assert_eq!(users[2]["oid"], profile.id.as_str());

    let refreshed = idp
        .refresh(users[2]["refresh_token"].as_str().unwrap())
        .await;
    assert_eq!(refreshed.status(), 200);
    let body: Value = refreshed.json().await.unwrap();
    assert_ne!(body["refresh_token"], users[2]["refresh_token"], "rotated");
    let me: Value = idp
        .me(body["access_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(me["userPrincipalName"], "seed-0000002@tokenbridge.dev");
    assert_eq!(idp.counters().await["refreshes"], 1);

    for (body, why) in [
        (
            serde_json::json!({ "client_id": "tokenbridge-dev", "prefix": "x", "count": 2_000_000 }),
            "too many",
        ),
        (
            serde_json::json!({ "client_id": "nobody", "prefix": "x", "count": 1 }),
            "unknown client",
        ),
    ] {
        let refused = idp
            .http
            .post(format!("{}/admin/refresh-tokens", idp.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 400, "{why}");
    }
}
