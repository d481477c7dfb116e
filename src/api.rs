//! The downstream API (Microsoft Graph `/me` by default), called with a user's access token.

use crate::identity::acquire::AccessToken;
use crate::identity::http::{read_capped, BodyError};
use crate::settings::ApiSettings;
use crate::text::{bounded, REASON};
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API refused the token (401/403): its `WWW-Authenticate` says why.
    #[error("the API refused the access token: {0}")]
    Refused(String),
    /// 401 with `error="invalid_token"` (RFC 6750): the token expired on the way, was revoked,
    /// or the clocks disagree. A token refreshed past the cached one may well be accepted.
    #[error("the API refused the access token as invalid: {0}")]
    InvalidToken(String),
    /// The API or the network failed; try again later.
    #[error("the API is unavailable: {0}")]
    Unavailable(String),
    #[error("the API answered something unexpected: {0}")]
    Unexpected(String),
}

#[derive(Debug, Clone)]
pub struct ApiClient {
    http: reqwest::Client,
    settings: ApiSettings,
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
            settings: settings.clone(),
        })
    }

    /// The API's name (`default` for `[api]`).
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// `GET {path}`: the signed-in user's profile properties.
    pub async fn me(&self, token: &AccessToken) -> Result<Map<String, Value>, ApiError> {
        let url = self.settings.me_url();
        let body = self.send(reqwest::Method::GET, &url, token).await?.1;
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(ApiError::Unexpected(
                "the profile is not a JSON object".into(),
            )),
            Err(e) => Err(ApiError::Unexpected(format!(
                "the profile is not JSON: {e}"
            ))),
        }
    }

    /// `METHOD {path}` on this API, no body sent: its status when 2xx (the answer is read, up
    /// to `max_response_size`, and dropped).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &AccessToken,
    ) -> Result<u16, ApiError> {
        let url = self.settings.url_of(path);
        Ok(self.send(method, &url, token).await?.0)
    }

    /// Sends one request with the token. An idempotent request whose connection fails before
    /// any answer (a pooled keep-alive connection the server had already closed) is sent once
    /// more on a new one.
    async fn send(
        &self,
        method: reqwest::Method,
        url: &str,
        token: &AccessToken,
    ) -> Result<(u16, Vec<u8>), ApiError> {
        let send = || {
            self.http
                .request(method.clone(), url)
                .bearer_auth(token.secret.expose())
                .send()
        };
        let response = match send().await {
            Err(e) if is_idempotent(&method) && !e.is_timeout() && (e.is_connect() || e.is_request()) => {
                tracing::debug!(error = %e.without_url(), "the API connection failed before an answer; sending again");
                send().await
            }
            other => other,
        }
        .map_err(|e| ApiError::Unavailable(e.without_url().to_string()))?;
        let status = response.status();
        if status.as_u16() == 401 || status.as_u16() == 403 {
            let challenge = response
                .headers()
                .get(reqwest::header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("no WWW-Authenticate");
            let invalid = status.as_u16() == 401 && challenge.contains("invalid_token");
            let challenge = format!("HTTP {status}: {}", bounded(challenge, REASON));
            return Err(if invalid {
                ApiError::InvalidToken(challenge)
            } else {
                ApiError::Refused(challenge)
            });
        }
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(ApiError::Unavailable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            return Err(ApiError::Unexpected(format!("HTTP {status}")));
        }
        let body = match read_capped(response, self.settings.max_response_size).await {
            Ok(body) => body,
            Err(BodyError::Read(e)) => {
                return Err(ApiError::Unavailable(e.without_url().to_string()))
            }
            Err(BodyError::TooLarge { limit }) => {
                crate::metrics::metrics().oversized_answer("api");
                tracing::warn!(
                    limit,
                    api = %self.settings.name,
                    "the API's answer is larger than its max_response_size: refused"
                );
                return Err(ApiError::Unavailable(format!(
                    "the answer is larger than {limit} bytes (max_response_size)"
                )));
            }
        };
        Ok((status.as_u16(), body))
    }
}

/// Methods a repeat cannot do twice (RFC 9110 section 9.2.2): only these are sent again.
pub fn is_idempotent(method: &reqwest::Method) -> bool {
    use reqwest::Method;
    [
        Method::GET,
        Method::HEAD,
        Method::PUT,
        Method::DELETE,
        Method::OPTIONS,
    ]
    .contains(method)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// A server whose first connection is closed before any answer (a stale keep-alive
    /// connection), and whose second gets a profile.
    fn flaky_server() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for (n, stream) in listener.incoming().take(2).enumerate() {
                let mut stream = stream.unwrap();
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf);
                if n == 1 {
                    let body = r#"{"displayName":"Ada"}"#;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn a_get_is_sent_again_when_the_connection_fails_before_an_answer() {
        let base = flaky_server();
        let settings = ApiSettings {
            name: "default".into(),
            scopes: Vec::new(),
            base_url: url::Url::parse(&base).unwrap(),
            path: "/me".into(),
            timeout: Duration::from_secs(5),
            max_response_size: 1 << 20,
            allow_insecure_http: false,
        };
        let client = ApiClient::new(&settings).unwrap();
        let token = AccessToken {
            secret: Secret::new("t"),
            expires_on: 0,
        };
        let profile = client.me(&token).await.unwrap();
        assert_eq!(profile["displayName"], "Ada");
    }
}
