//! What keeps a web page the developer visits from driving the development provider: every
//! request must name a loopback host (`Host`), so a DNS-rebinding page is refused; an admin
//! write must be JSON (which a cross-site form cannot send without a preflight) from no
//! `Origin` or a loopback one.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::{header, Method};
use actix_web::middleware::Next;
use actix_web::HttpResponse;

/// Whether `host` (a `Host` header, or an origin's host with its port) names this machine.
fn loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn refuse(status: actix_web::http::StatusCode, why: &str) -> HttpResponse {
    HttpResponse::build(status).json(serde_json::json!({
        "error": "refused",
        "error_description": why,
    }))
}

pub async fn loopback_only(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !loopback_host(host) {
        let response = refuse(
            actix_web::http::StatusCode::MISDIRECTED_REQUEST,
            "the development provider answers only to a loopback host name",
        );
        return Ok(req.into_response(response));
    }
    let admin_write = req.path().starts_with("/admin/") && req.method() != Method::GET;
    if admin_write {
        let origin_ok = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_none_or(|origin| {
                url::Url::parse(origin).is_ok_and(|u| {
                    u.host_str()
                        .is_some_and(|h| loopback_host(h.trim_matches(['[', ']'])))
                })
            });
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .is_some_and(|c| c.starts_with("application/json"));
        if !origin_ok || !json {
            let response = refuse(
                actix_web::http::StatusCode::FORBIDDEN,
                "admin writes take Content-Type: application/json, from no Origin or a \
                 loopback one",
            );
            return Ok(req.into_response(response));
        }
    }
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

#[cfg(test)]
mod tests {
    use super::loopback_host;

    #[test]
    fn loopback_hosts() {
        for host in [
            "127.0.0.1:5556",
            "localhost",
            "LOCALHOST:80",
            "[::1]:5556",
            "127.0.0.2",
        ] {
            assert!(loopback_host(host), "{host}");
        }
        for host in [
            "attacker.example:5556",
            "example.com",
            "10.0.0.1",
            "",
            "localhost.evil",
        ] {
            assert!(!loopback_host(host), "{host}");
        }
    }
}
