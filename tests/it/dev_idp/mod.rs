//! `tokenbridge dev-idp` over HTTP on loopback: the code flow, tokens, faults, the API, and the
//! openidconnect crate against it.

mod api;
mod authorize;
mod client_auth;
mod faults;
mod logout;
mod oidc;
mod tokens;
pub mod web_api;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::header::LOCATION;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::collections::HashMap as Env;
use tokenbridge::devidp::DevIdp;
use tokenbridge::settings::{DevIdpSettings, Settings};

pub use tokenbridge::settings::{
    DEFAULT_CLIENT_ID as CLIENT_ID, DEFAULT_CLIENT_SECRET as CLIENT_SECRET,
};
pub const REDIRECT_URI: &str = "http://127.0.0.1:8080/signin-oidc";
pub const VERIFIER: &str = "a-pkce-code-verifier-that-is-long-enough-0123456789";

pub struct TestIdp {
    pub base: String,
    pub issuer: String,
    pub tenant: String,
    /// A browser: keeps cookies, never follows redirects.
    pub browser: reqwest::Client,
    /// A server-side HTTP client (the app's back channel).
    pub http: reqwest::Client,
}

/// The shipped defaults, on a free loopback port.
pub fn default_settings() -> DevIdpSettings {
    let mut settings = Settings::from_sources("", "test", &Env::new())
        .unwrap()
        .dev_idp;
    settings.listen = "127.0.0.1:0".parse().unwrap();
    // No app listens at the shipped logout URIs here: tests that want one set it.
    settings.clients[0].backchannel_logout_uri = None;
    settings.clients[0].frontchannel_logout_uri = None;
    settings
}

pub async fn spawn_idp_with(change: impl FnOnce(&mut DevIdpSettings)) -> TestIdp {
    let mut settings = default_settings();
    change(&mut settings);
    let idp = DevIdp::build(&settings).unwrap();
    let (base, issuer) = (idp.base_url().to_owned(), idp.issuer().to_owned());
    tokio::spawn(idp.run_until_stopped());
    TestIdp {
        base,
        issuer,
        tenant: settings.tenant_id,
        browser: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(10))
            // Below the server's keep-alive (5 s), so an idle connection is never reused
            // just as the server closes it.
            .pool_idle_timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap(),
    }
}

pub async fn spawn_idp() -> TestIdp {
    spawn_idp_with(|_| {}).await
}

pub fn challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The query parameters of a redirect's Location.
pub fn location_params(response: &reqwest::Response) -> (String, HashMap<String, String>) {
    let location = response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} response", response.status()))
        .to_str()
        .unwrap();
    let url = url::Url::parse(location).unwrap();
    let base = format!("{}://{}{}", url.scheme(), url.authority(), url.path());
    (base, url.query_pairs().into_owned().collect())
}

impl TestIdp {
    pub fn endpoint(&self, path: &str) -> String {
        format!("{}/{}/oauth2/v2.0/{path}", self.base, self.tenant)
    }

    pub fn authorize_params(&self, scope: &str) -> Vec<(&'static str, String)> {
        vec![
            ("client_id", CLIENT_ID.into()),
            ("redirect_uri", REDIRECT_URI.into()),
            ("response_type", "code".into()),
            ("scope", scope.into()),
            ("state", "state-123".into()),
            ("nonce", "nonce-456".into()),
            ("code_challenge", challenge(VERIFIER)),
            ("code_challenge_method", "S256".into()),
        ]
    }

    pub async fn authorize(&self, params: &[(&str, String)]) -> reqwest::Response {
        self.browser
            .get(self.endpoint("authorize"))
            .query(params)
            .send()
            .await
            .unwrap()
    }

    /// Submits the sign-in form as `user` for `params`.
    pub async fn submit(&self, params: &[(&str, String)], user: &str) -> reqwest::Response {
        let mut form: Vec<(&str, String)> = params.to_vec();
        form.push(("username", user.into()));
        self.browser
            .post(self.endpoint("authorize"))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// Signs `user` in with `scope` and returns the authorization code.
    pub async fn code_for(&self, user: &str, scope: &str) -> String {
        let params = self.authorize_params(scope);
        let response = self.submit(&params, user).await;
        assert_eq!(
            response.status(),
            302,
            "{}",
            response.text().await.unwrap_or_default()
        );
        let (target, query) = location_params(&response);
        assert_eq!(target, REDIRECT_URI);
        assert_eq!(query.get("state").map(String::as_str), Some("state-123"));
        query
            .get("code")
            .cloned()
            .unwrap_or_else(|| panic!("no code: {query:?}"))
    }

    pub async fn token_request(&self, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(self.endpoint("token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(form)
            .send()
            .await
            .unwrap()
    }

    pub async fn redeem(&self, code: &str) -> reqwest::Response {
        self.token_request(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT_URI),
            ("code_verifier", VERIFIER),
            ("client_info", "1"),
        ])
        .await
    }

    /// Signs in and redeems: the token response.
    pub async fn tokens_for(&self, user: &str) -> Value {
        let code = self
            .code_for(user, "openid profile offline_access User.Read")
            .await;
        let response = self.redeem(&code).await;
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// A refresh that may fail at the transport level (dropped connections).
    pub async fn try_refresh(&self, refresh_token: &str) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.endpoint("token"))
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.token_request(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ])
        .await
    }

    pub async fn me(&self, access_token: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/v1.0/me", self.base))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .http
            .request(method.clone(), format!("{}/admin/{path}", self.base));
        // Admin writes are JSON, even those without a body.
        if body.is_some() || method != reqwest::Method::GET {
            request = request.json(&body.unwrap_or_else(|| serde_json::json!({})));
        }
        let response = request.send().await.unwrap();
        assert!(
            response.status().is_success(),
            "admin {path}: {}",
            response.status()
        );
        response
    }

    /// `claims` signed as a logout token with the provider's key, whatever they say.
    pub async fn logout_token(&self, claims: &Value) -> String {
        self.admin(
            reqwest::Method::POST,
            "logout-tokens",
            Some(serde_json::json!({ "claims": claims })),
        )
        .await
        .json::<Value>()
        .await
        .unwrap()["logout_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    pub async fn counters(&self) -> Value {
        self.admin(reqwest::Method::GET, "counters", None)
            .await
            .json()
            .await
            .unwrap()
    }

    pub async fn inject(&self, kind: &str, count: u32) {
        let body = serde_json::json!({ "kind": kind, "count": count, "retry_after": 7 });
        self.admin(reqwest::Method::POST, "faults", Some(body))
            .await;
    }

    pub async fn behave(&self, patch: Value) {
        self.admin(reqwest::Method::PATCH, "behaviour", Some(patch))
            .await;
    }
}

pub async fn error_of(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"].as_str().unwrap_or_default().to_owned(),
    )
}
