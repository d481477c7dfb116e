//! The sample single-page app, served at `/spa/` for the web API mode's quick start and its
//! browser test: the files in `dev/spa` (built into the binary), as the public client
//! `tokenbridge-spa` registered for it (PKCE, no secret), asking for a token for tokenbridge's
//! API. It calls the app named by `?api=` (default `http://127.0.0.1:8080`), which must allow
//! this origin (`web_api.allowed_origins`).

use super::resources::WEB_API;
use super::Provider;
use crate::settings::{DevClient, DEV_SPA_CLIENT_ID};
use actix_web::{web, HttpResponse};

const PAGE: &str = include_str!("../../dev/spa/index.html");
const SCRIPT: &str = include_str!("../../dev/spa/app.js");

/// Scripts from this origin only; the API may be any loopback app (the provider refuses other
/// hosts anyway).
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; \
connect-src 'self' http://127.0.0.1:* http://localhost:* http://[::1]:*; base-uri 'none'; \
form-action 'none'; frame-ancestors 'none'";

/// The sample SPA's registration, unless the settings register a client of that id: public,
/// redirected back to the page at `base_url`.
pub fn client(base_url: &str) -> DevClient {
    DevClient {
        client_id: DEV_SPA_CLIENT_ID.into(),
        client_secret: crate::secret::Secret::new(""),
        public: true,
        redirect_uris: vec![format!("{base_url}/spa/")],
        post_logout_redirect_uris: Vec::new(),
        backchannel_logout_uri: None,
        frontchannel_logout_uri: None,
        certificate_file: None,
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/spa", web::get().to(to_page))
        .route("/spa/", web::get().to(page))
        .route("/spa/app.js", web::get().to(script));
}

async fn to_page() -> HttpResponse {
    HttpResponse::MovedPermanently()
        .insert_header(("Location", "/spa/"))
        .finish()
}

async fn page(p: web::Data<Provider>) -> HttpResponse {
    let escaped = |value: &str| maud::html! { (value) }.into_string();
    let scope = format!("{}{}", WEB_API.prefix, WEB_API.scope);
    let body = PAGE
        .replace("{{TENANT}}", &escaped(&p.tenant_id))
        .replace("{{CLIENT_ID}}", &escaped(DEV_SPA_CLIENT_ID))
        .replace("{{SCOPE}}", &escaped(&scope));
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Content-Security-Policy", POLICY))
        .body(body)
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header(("Cache-Control", "no-cache"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .body(SCRIPT)
}
