//! A request id for every request: in the log span, on error pages, in `X-Request-Id`.

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest};
use std::fmt;
use std::future::{ready, Ready};
use std::time::Instant;
use tracing::Instrument;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(String);

impl RequestId {
    fn new() -> Self {
        Self(format!("{:016x}", rand::random::<u64>()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(RequestId::new);
        ready(Ok(id))
    }
}

/// Middleware: assigns the id, logs one line per request, and returns the id in a header.
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = RequestId::new();
    req.extensions_mut().insert(id.clone());
    // The method from a fixed set, the path cut short: a client cannot make a log line long.
    let method_label = crate::metrics::method_label(req.method().as_str());
    let path = crate::text::bounded(req.path(), crate::text::LOG_FIELD);
    let span =
        tracing::info_span!("request", request_id = %id, method = %method_label, path = %path);
    let started = Instant::now();
    let method = req.method().clone();
    // The route's pattern, never the raw path: one series per route, not per URL.
    let route = req
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    let mut response = next.call(req).instrument(span.clone()).await?;
    crate::metrics::metrics().request(
        &route,
        method.as_str(),
        response.status().as_u16(),
        started.elapsed(),
    );
    span.in_scope(|| {
        tracing::info!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "request"
        )
    });
    if let Ok(value) = HeaderValue::from_str(id.as_str()) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    Ok(response)
}
