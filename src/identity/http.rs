//! The HTTP client used for the provider: no redirects, timeouts, and answers that mean "try
//! later" (5xx, 429, 408) turned into a typed error carrying `Retry-After`, which the OAuth
//! library's own error type would otherwise lose.

use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot reach the provider: {0}")]
    Network(String),
    #[error("the provider timed out")]
    Timeout,
    #[error("the provider answered HTTP {status}")]
    Unavailable {
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl HttpError {
    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Unavailable { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ProviderHttp {
    client: reqwest::Client,
}

impl ProviderHttp {
    pub fn new(timeout: Duration) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tokenbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Request(e.to_string()))?;
        Ok(Self { client })
    }

    /// Sends one request; 5xx, 429 and 408 become [`HttpError::Unavailable`].
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let started = std::time::Instant::now();
        let response = self
            .client
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await
            .map_err(classify);
        crate::metrics::metrics().provider_request(started.elapsed());
        let response = response?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            return Err(HttpError::Unavailable {
                status: status.as_u16(),
                retry_after,
            });
        }
        let headers = response.headers().clone();
        let body = response.bytes().await.map_err(classify)?;
        let mut out = HttpResponse::new(body.to_vec());
        *out.status_mut() = status;
        *out.headers_mut() = headers;
        Ok(out)
    }
}

fn classify(e: reqwest::Error) -> HttpError {
    if e.is_timeout() {
        HttpError::Timeout
    } else {
        // reqwest's message names the URL, never a body or credentials.
        HttpError::Network(e.without_url().to_string())
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = HttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
