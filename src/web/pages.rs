//! The app's pages (maud): clean, readable, no external assets.

use maud::{html, Markup, DOCTYPE};
use serde_json::{Map, Value};

const STYLE: &str = "\
:root{color-scheme:light dark}body{font-family:system-ui,-apple-system,sans-serif;max-width:46rem;\
margin:2.5rem auto;padding:0 1rem;line-height:1.5;color:#1f2328;background:#fff}\
header{display:flex;justify-content:space-between;align-items:center;border-bottom:1px solid #d0d7de;\
padding-bottom:.75rem;margin-bottom:1.5rem}header a{color:inherit;text-decoration:none;font-weight:600}\
h1{font-size:1.5rem;margin:.5rem 0 1rem}table{border-collapse:collapse;width:100%}\
th,td{text-align:left;padding:.45rem .6rem;border-bottom:1px solid #d8dee4;vertical-align:top}\
th{width:35%;color:#59636e;font-weight:500}button,.button{font:inherit;padding:.4rem .9rem;\
border:1px solid #d0d7de;border-radius:6px;background:#f6f8fa;color:#1f2328;cursor:pointer;\
text-decoration:none;display:inline-block}.primary{background:#1f6feb;border-color:#1f6feb;color:#fff}\
.muted{color:#59636e;font-size:.9rem}.error{border-left:4px solid #cf222e;padding:.25rem 1rem}\
@media (prefers-color-scheme:dark){body{color:#e6edf3;background:#0d1117}th{color:#9198a1}\
th,td{border-color:#30363d}header{border-color:#30363d}button,.button{background:#21262d;\
color:#e6edf3;border-color:#30363d}.muted{color:#9198a1}}";

fn layout(title: &str, header_right: Markup, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · tokenbridge" }
                style { (STYLE) }
            }
            body {
                header { a href="/" { "tokenbridge" } div { (header_right) } }
                main { (body) }
            }
        }
    }
}

/// The signed-in home page: a greeting and the profile from the API.
pub fn profile(name: &str, csrf: &str, profile: &Map<String, Value>) -> Markup {
    let sign_out = html! {
        form method="post" action="/signout" {
            input type="hidden" name="csrf" value=(csrf);
            button type="submit" { "Sign out" }
        }
    };
    layout(
        "Profile",
        sign_out,
        html! {
            h1 { "Hello, " (name) }
            p.muted { "Your profile, as the API returns it with your access token:" }
            table {
                @for (key, value) in profile {
                    @if !key.starts_with('@') {
                        tr { th scope="row" { (key) } td { (display(value)) } }
                    }
                }
            }
        },
    )
}

fn display(value: &Value) -> String {
    match value {
        Value::Null => "—".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(display).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

pub fn signed_out(message: &str) -> Markup {
    layout(
        "Signed out",
        html! { a.button.primary href="/signin" { "Sign in" } },
        html! {
            h1 { (message) }
            p { "Sign in to see your profile. tokenbridge keeps your tokens so background jobs can \
                 call the API for you while you are away." }
            p { a.button.primary href="/signin" { "Sign in" } }
        },
    )
}

/// What the provider's logout page loads in a hidden frame (Front-Channel Logout): a line of
/// text, no styles, scripts or links.
pub fn logout_frame(heading: &str) -> Markup {
    html! {
        (maud::DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (heading) } }
            body { p { (heading) } }
        }
    }
}

/// Signed out of this browser while the token store did not answer: said plainly, with the
/// provider's sign-out still on offer.
pub fn signed_out_pending(provider_logout: Option<&str>) -> Markup {
    layout(
        "Signed out",
        html! { a.button.primary href="/signin" { "Sign in" } },
        html! {
            h1 { "You have signed out of this browser" }
            p role="status" { "Your stored sign-in could not be removed just now: the token store \
                 is not answering. It will be removed as soon as the store is back, and until \
                 then nothing can use it from this browser." }
            @if let Some(url) = provider_logout {
                p { a.button href=(url) { "Sign out at the identity provider too" } }
            }
        },
    )
}

/// An error page: a human sentence and the request id, never a stack trace or a secret. A
/// signed-in user (`sign_out` holds their CSRF token) can always sign out from it.
pub fn error(title: &str, sentence: &str, request_id: &str, sign_out: Option<&str>) -> Markup {
    layout(
        title,
        html! {
            a.button href="/" { "Home" }
            @if let Some(csrf) = sign_out {
                form method="post" action="/signout" {
                    input type="hidden" name="csrf" value=(csrf);
                    button type="submit" { "Sign out" }
                }
            }
        },
        html! {
            h1 { (title) }
            p.error role="alert" { (sentence) }
            p.muted { "Request id: " code { (request_id) } }
        },
    )
}
