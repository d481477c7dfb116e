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
    /// The answer is larger than `identity.max_response_size`: not read further.
    #[error("the provider's answer is larger than {limit} bytes (identity.max_response_size)")]
    TooLarge { limit: usize },
}

/// Why a body could not be read whole.
#[derive(Debug)]
pub enum BodyError {
    /// Larger than the limit (by its `Content-Length`, or as it arrived): read no further.
    TooLarge {
        limit: usize,
    },
    Read(reqwest::Error),
}

/// Reads `response`'s body, at most `limit` bytes of it: a body announced or found to be
/// larger is refused as soon as that is known, so memory stays bounded whatever the peer sends.
pub async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, BodyError> {
    let too_large = BodyError::TooLarge { limit };
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Err(too_large);
    }
    let mut body = Vec::with_capacity(usize::try_from(announced).unwrap_or(0).min(limit));
    while let Some(chunk) = response.chunk().await.map_err(BodyError::Read)? {
        if body.len() + chunk.len() > limit {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
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
    max_response_size: usize,
}

impl ProviderHttp {
    pub fn new(timeout: Duration, max_response_size: usize) -> Result<Self, HttpError> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("tokenbridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Request(e.to_string()))?;
        Ok(Self {
            client,
            max_response_size,
        })
    }

    /// Sends one request; 5xx, 429 and 408 become [`HttpError::Unavailable`].
    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, HttpError> {
        let (parts, body) = request.into_parts();
        let uri = parts.uri.clone();
        let started = std::time::Instant::now();
        let response = self
            .client
            .request(parts.method, uri.to_string())
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
        let body = match read_capped(response, self.max_response_size).await {
            Ok(body) => body,
            Err(BodyError::Read(e)) => return Err(classify(e)),
            Err(BodyError::TooLarge { limit }) => {
                // The endpoint without its query (no code or token is ever in one, but no
                // need to log it either).
                let url = format!(
                    "{}{}",
                    uri.authority().map_or("", |a| a.as_str()),
                    uri.path()
                );
                crate::metrics::metrics().oversized_answer("provider");
                tracing::warn!(%url, limit, "the provider's answer is larger than identity.max_response_size: refused");
                return Err(HttpError::TooLarge { limit });
            }
        };
        let mut out = HttpResponse::new(body);
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
