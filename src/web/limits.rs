//! What one client can hold: a request body must arrive within `web.body_timeout` (a body
//! trickled byte by byte ends with 408 and the connection closed), and one client address may
//! have at most `web.max_requests_per_client` requests in flight (beyond: 429, connection
//! closed). Slow headers are actix's own `client_request_timeout` (408 after 5 s).

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::error::{PayloadError, UrlencodedError};
use actix_web::http::header::{HeaderValue, RETRY_AFTER};
use actix_web::middleware::Next;
use actix_web::HttpMessage as _;
use actix_web::{HttpRequest, HttpResponse};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn timed_out() -> PayloadError {
    PayloadError::Io(std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request body did not arrive in time",
    ))
}

/// Replaces the request's body with one that fails once the body timeout has passed. A
/// request without a body (most: every GET) is passed on untouched.
pub async fn body_deadline(
    mut req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let headers = req.headers();
    let has_body = headers.contains_key(actix_web::http::header::TRANSFER_ENCODING)
        || headers
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if !has_body {
        return next.call(req).await;
    }
    let timeout = req
        .app_data::<actix_web::web::Data<Limits>>()
        .map_or(Duration::from_secs(15), |l| l.body_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    let payload = req.take_payload();
    let bounded = futures_util::stream::unfold(Some(payload), move |payload| async move {
        let mut payload = payload?;
        match tokio::time::timeout_at(deadline, payload.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some(payload))),
            Ok(None) => None,
            // One error, then the end.
            Err(_) => Some((Err(timed_out()), None)),
        }
    });
    req.set_payload(Payload::Stream {
        payload: Box::pin(bounded),
    });
    next.call(req).await
}

/// The form extractor's errors: a body that did not arrive in time is 408 with the connection
/// closed; the rest keep actix's answers (413 for too large, 400 otherwise).
pub fn form_error(error: UrlencodedError, _: &HttpRequest) -> actix_web::Error {
    let slow = matches!(
        &error,
        UrlencodedError::Payload(PayloadError::Io(e)) if e.kind() == std::io::ErrorKind::TimedOut
    );
    if slow {
        let response = HttpResponse::RequestTimeout()
            .force_close()
            .body("The request body did not arrive in time.");
        actix_web::error::InternalError::from_response(error, response).into()
    } else {
        error.into()
    }
}

/// The limits, and the requests in flight per client address.
#[derive(Clone, Default)]
pub struct Limits {
    body_timeout: Duration,
    max: usize,
    in_flight: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Limits {
    /// Bodies within `body_timeout`; at most `max` requests in flight per address (0: no
    /// limit).
    pub fn new(body_timeout: Duration, max: usize) -> Self {
        Self {
            body_timeout,
            max,
            in_flight: Arc::default(),
        }
    }

    /// Counts one more request from `ip`, unless it has `max` already.
    fn enter(&self, ip: IpAddr) -> Option<InFlight> {
        let mut counts = crate::sync::lock(&self.in_flight);
        let count = counts.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(InFlight {
            ip,
            counts: self.in_flight.clone(),
        })
    }
}

/// One request counted; uncounted when dropped (the response is done, or the client left).
struct InFlight {
    ip: IpAddr,
    counts: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut counts = crate::sync::lock(&self.counts);
        if let Some(count) = counts.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// Refuses a client address's request beyond its limit in flight: 429, connection closed.
pub async fn per_client(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let limits = req.app_data::<actix_web::web::Data<Limits>>().cloned();
    let peer = req.peer_addr().map(|a| a.ip());
    let (Some(limits), Some(ip)) = (limits, peer) else {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    if limits.max == 0 {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    let Some(guard) = limits.enter(ip) else {
        tracing::info!(client = %ip, limit = limits.max, "too many requests in flight from one address");
        let response = HttpResponse::TooManyRequests()
            .force_close()
            .insert_header((RETRY_AFTER, HeaderValue::from_static("1")))
            .body("Too many requests at once from your address.");
        return Ok(req.into_response(response));
    };
    let response = next.call(req).await;
    drop(guard);
    response.map(ServiceResponse::map_into_boxed_body)
}
