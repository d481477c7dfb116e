//! The downstream API (Microsoft Graph `/me` by default), called with a user's access token.

use crate::identity::acquire::AccessToken;
use crate::settings::ApiSettings;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API refused the token (401/403): its `WWW-Authenticate` says why.
    #[error("the API refused the access token: {0}")]
    Refused(String),
    /// The API or the network failed; try again later.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    #[error("the API answered something unexpected: {0}")]
    Unexpected(String),
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    me_url: String,
}

impl ApiClient {
    pub fn new(settings: &ApiSettings) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("tokenbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Unexpected(e.to_string()))?;
        Ok(Self {
            http,
            me_url: settings.me_url(),
        })
    }

    /// `GET /me`: the signed-in user's profile properties.
    pub async fn me(&self, token: &AccessToken) -> Result<Map<String, Value>, ApiError> {
        let response = self
            .http
            .get(&self.me_url)
            .bearer_auth(token.secret.expose())
            .send()
            .await
            .map_err(|e| ApiError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no WWW-Authenticate")
                .to_owned();
            return Err(ApiError::Refused(format!("HTTP {status}: {challenge}")));
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ApiError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(ApiError::Unexpected(format!("HTTP {status}")));
        }
        match response.json::<Value>().await {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::Unexpected(
                "the profile is not a JSON object".into(),
            )),
            Err(e) => Err(ApiError::Unexpected(e.without_url().to_string())),
        }
    }
}
