//! The development provider for the web API mode: a public single-page app (no secret, PKCE)
//! signs a user in and gets an access token for tokenbridge's own API
//! (`api://tokenbridge-dev/access_as_user`), signed with the published keys, so that API can
//! check it as a resource server does.

use super::{challenge, location_params, spawn_idp_with, TestIdp, CLIENT_ID, VERIFIER};
use serde_json::Value;
use tokenbridge::secret::Secret;
use tokenbridge::settings::DevClient;

const SPA: &str = "tokenbridge-spa";
const SPA_REDIRECT: &str = "http://127.0.0.1:3000/spa/";
const WEB_API_SCOPE: &str = "api://tokenbridge-dev/access_as_user";

/// Registers the single-page app (a public client).
pub fn with_spa(s: &mut tokenbridge::settings::DevIdpSettings) {
    s.clients.push(DevClient {
        client_id: SPA.into(),
        client_secret: Secret::new(""),
        public: true,
        redirect_uris: vec![SPA_REDIRECT.into()],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        frontchannel_logout_uri: None,
        certificate_file: None,
    })
}

async fn idp_with_spa() -> TestIdp {
    spawn_idp_with(with_spa).await
}

/// ada signs in to the SPA, which gets a token for tokenbridge's API.
pub async fn spa_token(idp: &TestIdp) -> String {
    spa_token_for(idp, "ada").await
}

/// `user` signs in to the SPA, which gets a token for tokenbridge's API.
pub async fn spa_token_for(idp: &TestIdp, user: &str) -> String {
    let code = spa_code(idp, &format!("openid {WEB_API_SCOPE}"), user).await;
    let (status, tokens) = redeem(
        idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    tokens["access_token"].as_str().unwrap().to_owned()
}

/// The SPA's sign-in: a code for `scope`.
async fn spa_code(idp: &TestIdp, scope: &str, user: &str) -> String {
    let params = vec![
        ("client_id", SPA.to_owned()),
        ("redirect_uri", SPA_REDIRECT.to_owned()),
        ("response_type", "code".to_owned()),
        ("scope", scope.to_owned()),
        ("state", "s".to_owned()),
        ("nonce", "n".to_owned()),
        ("code_challenge", challenge(VERIFIER)),
        ("code_challenge_method", "S256".to_owned()),
    ];
    let answer = idp.submit(&params, user).await;
    assert_eq!(answer.status(), 302);
    location_params(&answer).1["code"].clone()
}

async fn redeem(idp: &TestIdp, form: &[(&str, &str)]) -> (u16, Value) {
    let answer = idp
        .http
        .post(idp.endpoint("token"))
        .form(form)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test]
async fn a_public_spa_gets_a_token_for_tokenbridge_s_api_signed_with_the_published_keys() {
    let idp = idp_with_spa().await;
    let token = &spa_token(&idp).await;
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    // Checked with the JWKS, as the API will.
    let jwks: jsonwebtoken::jwk::JwkSet = idp
        .http
        .get(format!("{}/{}/discovery/v2.0/keys", idp.base, idp.tenant))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = jwks
        .find(header.kid.as_deref().unwrap())
        .expect("signed with a published key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[CLIENT_ID]);
    validation.set_issuer(&[idp.issuer.as_str()]);
    let claims: Value = jsonwebtoken::decode(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(key).unwrap(),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["scp"], "access_as_user");
    assert_eq!(claims["appid"], SPA);

    // A public client has no secret to send; one that sends none for a confidential client is
    // refused, and the SPA cannot pass for one with a secret.
    let code = spa_code(&idp, &format!("openid {WEB_API_SCOPE}"), "ada").await;
    let (status, body) = redeem(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", CLIENT_ID),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = redeem(
        &idp,
        &[
            ("grant_type", "authorization_code"),
            ("client_id", SPA),
            ("client_secret", "guess"),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 401, "{body}");
}

/// The API exchanges the user's token for Graph tokens on their behalf (Entra ID's OBO grant),
/// with a refresh token of its own that later refreshes without the user.
#[tokio::test]
async fn the_api_gets_tokens_on_behalf_of_the_user() {
    let idp = idp_with_spa().await;
    let user_token = spa_token(&idp).await;
    let obo = |assertion: String, use_: &'static str| {
        let idp = &idp;
        async move {
            let answer = idp
                .http
                .post(idp.endpoint("token"))
                .basic_auth(CLIENT_ID, Some(super::CLIENT_SECRET))
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("requested_token_use", use_),
                    ("assertion", assertion.as_str()),
                    ("scope", "User.Read offline_access"),
                ])
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, body) = obo(user_token.clone(), "something_else").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = obo("not-a-token".into(), "on_behalf_of").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let (status, tokens) = obo(user_token.clone(), "on_behalf_of").await;
    assert_eq!(status, 200, "{tokens}");
    let graph = tokens["access_token"].as_str().unwrap();
    let me: Value = idp.me(graph).await.json().await.unwrap();
    assert_eq!(me["userPrincipalName"], "ada@tokenbridge.dev");
    assert_eq!(idp.counters().await["on_behalf_of"], 1);
    // Its refresh token works later, without the user.
    let refreshed = idp.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(refreshed.status(), 200);

    // A token for another audience is no assertion for this API (a Graph token here).
    let (status, body) = obo(graph.to_owned(), "on_behalf_of").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant")),
        "{body}"
    );
}

/// RFC 8693 token exchange, as generic providers offer it: the same exchange as on-behalf-of
/// with the RFC's parameters, the answer saying what it issued; the subject token is checked
/// as the assertion is, and only access tokens are taken or issued.
#[tokio::test]
async fn the_api_gets_tokens_by_rfc_8693_token_exchange() {
    let idp = idp_with_spa().await;
    let user_token = spa_token(&idp).await;
    let exchange_for = |subject: String,
                        subject_type: &'static str,
                        requested: &'static str,
                        scope: &'static str| {
        let idp = &idp;
        async move {
            let answer = idp
                .http
                .post(idp.endpoint("token"))
                .basic_auth(CLIENT_ID, Some(super::CLIENT_SECRET))
                .form(&[
                    (
                        "grant_type",
                        "urn:ietf:params:oauth:grant-type:token-exchange",
                    ),
                    ("subject_token", subject.as_str()),
                    ("subject_token_type", subject_type),
                    ("requested_token_type", requested),
                    ("scope", scope),
                ])
                .send()
                .await
                .unwrap();
            (
                answer.status().as_u16(),
                answer.json::<Value>().await.unwrap(),
            )
        }
    };
    let exchange = |subject: String, subject_type: &'static str, requested: &'static str| {
        exchange_for(subject, subject_type, requested, "openid User.Read")
    };
    const ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";
    const REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    const ID: &str = "urn:ietf:params:oauth:token-type:id_token";
    let (status, body) = exchange(user_token.clone(), ID, REFRESH).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = exchange(user_token.clone(), ACCESS, ID).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, body) = exchange("not-a-token".into(), ACCESS, REFRESH).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    // As Keycloak's standard exchange: a refresh token by its type, never offline_access.
    let (status, body) = exchange_for(
        user_token.clone(),
        ACCESS,
        REFRESH,
        "openid User.Read offline_access",
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope")),
        "{body}"
    );
    assert_eq!(idp.counters().await["token_exchanges"], 0);
    let (status, access_only) = exchange(user_token.clone(), ACCESS, ACCESS).await;
    assert_eq!(status, 200, "{access_only}");
    assert!(access_only["refresh_token"].is_null(), "none asked for");

    let (status, tokens) = exchange(user_token, ACCESS, REFRESH).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["issued_token_type"], ACCESS);
    assert!(tokens["refresh_token"].is_string());
    assert!(tokens["id_token"].is_string());
    let me = idp.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    let counters = idp.counters().await;
    assert_eq!(
        (&counters["token_exchanges"], &counters["on_behalf_of"]),
        (&2.into(), &2.into())
    );
}
