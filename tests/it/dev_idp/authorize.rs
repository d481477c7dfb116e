//! Discovery, `/authorize`, the sign-in form, sessions and `/logout`.

use super::*;
use tokenbridge::settings::DevIdpSettings;

#[tokio::test]
async fn discovery_and_jwks_describe_an_entra_shaped_provider() {
    let idp = spawn_idp().await;
    let url = format!("{}/.well-known/openid-configuration", idp.issuer);
    let meta: Value = idp
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["issuer"], idp.issuer.as_str());
    assert_eq!(idp.issuer, format!("{}/{}/v2.0", idp.base, idp.tenant));
    assert_eq!(
        meta["authorization_endpoint"],
        idp.endpoint("authorize").as_str()
    );
    assert_eq!(meta["token_endpoint"], idp.endpoint("token").as_str());
    assert_eq!(
        meta["end_session_endpoint"],
        idp.endpoint("logout").as_str()
    );
    assert_eq!(
        meta["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let jwks_uri = meta["jwks_uri"].as_str().unwrap();
    assert_eq!(
        jwks_uri,
        format!("{}/{}/discovery/v2.0/keys", idp.base, idp.tenant)
    );
    let jwks: Value = idp
        .http
        .get(jwks_uri)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    let other = idp
        .http
        .get(format!(
            "{}/other-tenant/v2.0/.well-known/openid-configuration",
            idp.base
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 400);
    let index = idp.http.get(format!("{}/", idp.base)).send().await.unwrap();
    assert_eq!(index.status(), 200);
    let index = index.text().await.unwrap();
    assert!(index.contains(&idp.issuer), "{index}");
    assert!(index.contains("Development identity provider"), "{index}");
    let missing = idp
        .http
        .get(format!("{}/nothing/here", idp.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn the_sign_in_form_then_a_redirect_with_code_and_state() {
    let idp = spawn_idp().await;
    let params = idp.authorize_params("openid profile offline_access User.Read");
    let form = idp.authorize(&params).await;
    assert_eq!(form.status(), 200);
    let html = form.text().await.unwrap();
    assert!(
        html.contains("Sign in") && html.contains("name=\"username\""),
        "{html}"
    );
    assert!(
        html.contains("value=\"ada\"") && html.contains("value=\"grace\""),
        "known users offered"
    );
    assert!(
        html.contains("name=\"code_challenge\""),
        "the request travels in hidden fields"
    );
    let code = idp
        .code_for("Ada", "openid profile offline_access User.Read")
        .await;
    assert!(code.len() >= 32);
}

#[tokio::test]
async fn a_bad_user_name_shows_the_form_again() {
    let idp = spawn_idp().await;
    let response = idp
        .submit(&idp.authorize_params("openid"), "<script>")
        .await;
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("role=\"alert\"") && !html.contains("<script>"),
        "{html}"
    );
}

#[tokio::test]
async fn the_provider_session_skips_the_form_unless_prompt_or_hint_say_otherwise() {
    let idp = spawn_idp().await;
    idp.code_for("ada", "openid").await;
    let mut params = idp.authorize_params("openid");
    let again = idp.authorize(&params).await;
    assert_eq!(again.status(), 302, "signed in at the provider already");
    assert!(location_params(&again).1.contains_key("code"));

    params.push(("prompt", "login".into()));
    assert_eq!(
        idp.authorize(&params).await.status(),
        200,
        "prompt=login shows the form"
    );
    params.pop();
    params.push(("login_hint", "grace".into()));
    let hinted = idp.authorize(&params).await;
    assert_eq!(hinted.status(), 200, "another user is hinted");
    assert!(hinted.text().await.unwrap().contains("value=\"grace\""));

    let fresh = spawn_idp().await;
    let mut params = fresh.authorize_params("openid");
    params.push(("prompt", "none".into()));
    let response = fresh.authorize(&params).await;
    let (_, query) = location_params(&response);
    assert_eq!(query["error"], "login_required");
    assert_eq!(query["state"], "state-123");
}

#[tokio::test]
async fn form_post_answers_with_a_self_posting_form() {
    let idp = spawn_idp().await;
    let mut params = idp.authorize_params("openid");
    params.push(("response_mode", "form_post".into()));
    let response = idp.submit(&params, "ada").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(
        html.contains(&format!("action=\"{REDIRECT_URI}\"")),
        "{html}"
    );
    assert!(
        html.contains("name=\"code\"") && html.contains("name=\"state\" value=\"state-123\""),
        "{html}"
    );
}

#[tokio::test]
async fn untrusted_clients_and_redirects_get_a_page_never_a_redirect() {
    let idp = spawn_idp().await;
    for (name, value) in [
        ("client_id", "unknown-client"),
        ("redirect_uri", "https://evil.example/cb"),
    ] {
        let params: Vec<(&str, String)> = idp
            .authorize_params("openid")
            .into_iter()
            .map(|(n, v)| {
                if n == name {
                    (n, value.to_owned())
                } else {
                    (n, v)
                }
            })
            .collect();
        let response = idp.authorize(&params).await;
        assert_eq!(response.status(), 400, "{name}");
        assert!(response.headers().get("location").is_none(), "{name}");
    }
}

#[tokio::test]
async fn request_errors_go_back_to_the_client_as_error_redirects() {
    let idp = spawn_idp().await;
    let cases: [(&str, Option<&str>, &str); 4] = [
        ("code_challenge", None, "invalid_request"),
        ("code_challenge_method", Some("plain"), "invalid_request"),
        ("response_type", Some("token"), "unsupported_response_type"),
        ("scope", None, "invalid_request"),
    ];
    for (name, value, expected) in cases {
        let params: Vec<(&str, String)> = idp
            .authorize_params("openid")
            .into_iter()
            .filter_map(|(n, v)| {
                if n == name {
                    value.map(|x| (n, x.to_owned()))
                } else {
                    Some((n, v))
                }
            })
            .collect();
        let response = idp.authorize(&params).await;
        assert_eq!(response.status(), 302, "{name}");
        let (target, query) = location_params(&response);
        assert_eq!(target, REDIRECT_URI);
        assert_eq!(query["error"], expected, "{name}");
        assert_eq!(query["state"], "state-123");
    }
}

#[tokio::test]
async fn disabled_users_are_denied_at_sign_in() {
    let idp = spawn_idp().await;
    idp.admin(reqwest::Method::POST, "users/mallory/disable", None)
        .await;
    let response = idp.submit(&idp.authorize_params("openid"), "mallory").await;
    assert_eq!(location_params(&response).1["error"], "access_denied");
}

#[tokio::test]
async fn logout_ends_the_session_and_returns_to_a_registered_uri() {
    let idp = spawn_idp().await;
    idp.code_for("ada", "openid").await;
    let back = "http://127.0.0.1:8080/signout-callback-oidc";
    let response = idp
        .browser
        .get(idp.endpoint("logout"))
        .query(&[("post_logout_redirect_uri", back), ("state", "bye")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    let (target, query) = location_params(&response);
    assert_eq!((target.as_str(), query["state"].as_str()), (back, "bye"));
    assert_eq!(
        idp.authorize(&idp.authorize_params("openid"))
            .await
            .status(),
        200,
        "session ended"
    );

    let unregistered = idp
        .browser
        .get(idp.endpoint("logout"))
        .query(&[("post_logout_redirect_uri", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(unregistered.status(), 400);
    assert!(unregistered.headers().get("location").is_none());
    let plain = idp
        .browser
        .get(idp.endpoint("logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
}

#[test]
fn it_refuses_to_bind_anywhere_but_loopback() {
    let mut settings: DevIdpSettings = default_settings();
    settings.listen = "0.0.0.0:0".parse().unwrap();
    let err = DevIdp::build(&settings).err().unwrap().to_string();
    assert!(err.contains("loopback"), "{err}");
    let err =
        tokenbridge::settings::loopback_addr("dev_idp.listen", "192.168.1.10:5556").unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(tokenbridge::settings::loopback_addr("k", "[::1]:5556").is_ok());
    assert!(tokenbridge::settings::loopback_addr("k", "localhost:5556").is_ok());
}

#[tokio::test]
async fn a_user_name_in_a_get_request_signs_nobody_in() {
    let idp = spawn_idp().await;
    let mut params = idp.authorize_params("openid");
    params.push(("username", "mallory".into()));
    let response = idp.authorize(&params).await;
    assert_eq!(response.status(), 200, "the form, not a code");
    assert!(response.text().await.unwrap().contains("Sign in"));
}
