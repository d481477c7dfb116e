//! `GET /v1.0/me` and its RFC 6750 challenges.

use super::*;

fn challenge(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("www-authenticate")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn me_returns_a_graph_shaped_profile() {
    let idp = spawn_idp().await;
    let tokens = idp.tokens_for("ada.lovelace").await;
    let response = idp.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!(me["displayName"], "Ada Lovelace");
    assert_eq!(me["givenName"], "Ada");
    assert_eq!(me["surname"], "Lovelace");
    assert_eq!(me["userPrincipalName"], "ada.lovelace@tokenbridge.dev");
    assert_eq!(me["mail"], "ada.lovelace@tokenbridge.dev");
    for field in ["id", "jobTitle", "officeLocation"] {
        assert!(me[field].is_string(), "{field}");
    }
    assert_eq!(
        idp.counters().await["users"]["ada.lovelace"]["api_calls"],
        1
    );
}

#[tokio::test]
async fn requests_without_a_valid_token_get_401_with_a_bearer_challenge() {
    let idp = spawn_idp().await;
    let me = format!("{}/v1.0/me", idp.base);
    let none = idp.http.get(&me).send().await.unwrap();
    assert_eq!(none.status(), 401);
    assert_eq!(
        challenge(&none),
        "Bearer realm=\"tokenbridge dev-idp\"",
        "no error code without credentials"
    );

    let basic = idp
        .http
        .get(&me)
        .header("Authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(basic.status(), 401);
    assert!(challenge(&basic).contains("error=\"invalid_request\""));

    let garbage = idp.me("not-a-jwt").await;
    assert_eq!(garbage.status(), 401);
    assert!(challenge(&garbage).contains("error=\"invalid_token\""));

    // An ID token is signed by the provider but is not an access token for the API.
    let tokens = idp.tokens_for("ada").await;
    let id_token = idp.me(tokens["id_token"].as_str().unwrap()).await;
    assert_eq!(id_token.status(), 401);

    // A token from another provider instance (another key) is rejected.
    let other = spawn_idp().await;
    let foreign = other.tokens_for("ada").await;
    assert_eq!(
        idp.me(foreign["access_token"].as_str().unwrap())
            .await
            .status(),
        401
    );
}

#[tokio::test]
async fn expired_tokens_get_invalid_token() {
    let idp = spawn_idp_with(|s| s.access_token_ttl = std::time::Duration::from_secs(1)).await;
    let tokens = idp.tokens_for("ada").await;
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let response = idp.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 401);
    let header = challenge(&response);
    assert!(
        header.contains("error=\"invalid_token\"") && header.contains("expired"),
        "{header}"
    );
}

#[tokio::test]
async fn a_token_without_user_read_is_insufficient_scope() {
    let idp = spawn_idp().await;
    let code = idp.code_for("ada", "openid profile").await;
    let tokens: Value = idp.redeem(&code).await.json().await.unwrap();
    let response = idp.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 403);
    let header = challenge(&response);
    assert!(
        header.contains("error=\"insufficient_scope\"") && header.contains("scope=\"User.Read\""),
        "{header}"
    );
}

#[tokio::test]
async fn disabled_users_are_refused_by_the_api() {
    let idp = spawn_idp().await;
    let tokens = idp.tokens_for("ada").await;
    idp.admin(reqwest::Method::POST, "users/ada/disable", None)
        .await;
    let response = idp.me(tokens["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), 401);
    assert!(challenge(&response).contains("disabled"));
}
