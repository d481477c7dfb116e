//! The provider's few HTML pages.

use super::Provider;
use actix_web::{web, HttpResponse};
use maud::{html, Markup, DOCTYPE};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;\
padding:0 1rem;color:#1b1f24}h1{font-size:1.4rem}.dev{background:#fff3cd;border:1px solid #e0c36a;\
padding:.5rem .75rem;border-radius:6px;font-size:.9rem}input[type=text]{width:100%;padding:.5rem;\
font-size:1rem;box-sizing:border-box}button{padding:.5rem 1rem;font-size:1rem;margin:.5rem .5rem 0 0;\
cursor:pointer}.error{color:#a40e26}code{background:#f3f4f6;padding:0 .25rem}";

fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tokenbridge dev-idp" }
                style { (STYLE) }
            }
            body {
                p.dev { "Development identity provider: it signs in anyone by name. Never expose it." }
                (body)
            }
        }
    }
}

fn page(status: actix_web::http::StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(markup.into_string())
}

pub async fn index(p: web::Data<Provider>) -> HttpResponse {
    page(
        actix_web::http::StatusCode::OK,
        layout(
            "tokenbridge dev-idp",
            html! {
                h1 { "tokenbridge dev-idp" }
                p { "Issuer: " code { (p.issuer()) } }
                p { "Discovery: " code { (p.issuer()) "/.well-known/openid-configuration" } }
                p { "API: " code { (p.base_url) "/v1.0/me" } }
                p { "Admin: " code { (p.base_url) "/admin/counters" } }
            },
        ),
    )
}

/// The sign-in form. Every authorization parameter travels in hidden fields.
pub fn sign_in(
    hidden: &[(String, String)],
    action: &str,
    hint: &str,
    users: &[String],
    error: Option<&str>,
) -> HttpResponse {
    let status = if error.is_some() {
        actix_web::http::StatusCode::BAD_REQUEST
    } else {
        actix_web::http::StatusCode::OK
    };
    page(
        status,
        layout(
            "Sign in",
            html! {
                h1 { "Sign in" }
                @if let Some(error) = error { p.error role="alert" { (error) } }
                form method="post" action=(action) {
                    @for (name, value) in hidden {
                        @if name != "username" { input type="hidden" name=(name) value=(value); }
                    }
                    label for="username" { "User name (any name works)" }
                    input #username type="text" name="username" value=(hint) autofocus autocomplete="username";
                    button type="submit" { "Sign in" }
                }
                @if !users.is_empty() {
                    p { "Or sign in as:" }
                    form method="post" action=(action) {
                        @for (name, value) in hidden {
                            @if name != "username" { input type="hidden" name=(name) value=(value); }
                        }
                        @for user in users { button type="submit" name="username" value=(user) { (user) } }
                    }
                }
            },
        ),
    )
}

pub fn error(status: actix_web::http::StatusCode, message: &str) -> HttpResponse {
    page(
        status,
        layout(
            "Sign-in error",
            html! {
                h1 { "This sign-in request cannot be completed" }
                p.error role="alert" { (message) }
            },
        ),
    )
}

/// `response_mode=form_post`: the browser posts the answer to the client.
pub fn form_post(redirect_uri: &str, fields: &[(&str, &str)]) -> HttpResponse {
    page(
        actix_web::http::StatusCode::OK,
        html! {
            (DOCTYPE)
            html lang="en" {
                head { meta charset="utf-8"; title { "Signing in…" } }
                body onload="document.forms[0].submit()" {
                    form method="post" action=(redirect_uri) {
                        @for (name, value) in fields { input type="hidden" name=(name) value=(value); }
                        noscript { button type="submit" { "Continue" } }
                    }
                }
            }
        },
    )
}

/// The page after a sign-out: each client's front-channel logout URL in a hidden iframe, and,
/// when the client named where to go next, a link there the page follows by itself.
pub fn signed_out(frames: &[String], next: Option<&str>) -> HttpResponse {
    let body = html! {
        h1 { "You have signed out" }
        @for frame in frames {
            iframe src=(frame) hidden title="front-channel logout" {}
        }
        @if let Some(next) = next {
            p { a href=(next) id="continue" { "Continue" } }
            script { "window.addEventListener('load',function(){location.replace(document.getElementById('continue').href)})" }
        }
    };
    page(actix_web::http::StatusCode::OK, layout("Signed out", body))
}
