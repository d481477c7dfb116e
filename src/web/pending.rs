//! Pending sign-ins: each in an encrypted cookie of its own, named for its state (as ASP.NET's
//! correlation cookies are), so sign-ins started in several tabs can each finish. A few at
//! most: starting one more drops the oldest.

use super::AppState;
use crate::identity::SignInState;
use actix_web::cookie::{time::Duration as CookieDuration, Cookie, CookieJar, SameSite};
use actix_web::HttpRequest;
use serde::{Deserialize, Serialize};

/// Cookie names start so: `__Host-` too when cookies are Secure.
fn prefix(app: &AppState) -> &'static str {
    if app.web.secure_cookies {
        "__Host-tb_signin."
    } else {
        "tb_signin."
    }
}
/// `/`, not the callback's path: `/signin` must see them to keep their number down. They live
/// only while a sign-in is under way (the callback removes its own, and each expires).
const PATH: &str = "/";
/// Sign-ins pending at once in one browser.
pub const MAX_PENDING: usize = 4;
/// How long a sign-in may take at the provider (seconds).
pub const TTL: i64 = 600;

/// What a sign-in cookie carries from `/signin` to `/signin-oidc`.
#[derive(Serialize, Deserialize)]
pub struct PendingSignIn {
    #[serde(flatten)]
    pub state: SignInState,
    pub return_url: String,
    pub started: i64,
    /// Wall-clock nanoseconds at the start, only to tell which pending sign-in is the oldest.
    #[serde(default)]
    pub order: i128,
}

/// The cookie name for the sign-in with `state` (a prefix of it: the state itself is checked
/// in full, in constant time, after decryption).
pub fn name(app: &AppState, state: &str) -> String {
    let id: String = state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(16)
        .collect();
    format!("{}{id}", prefix(app))
}

/// The encrypted cookie for a new pending sign-in.
pub fn seal(app: &AppState, pending: &PendingSignIn) -> Option<Cookie<'static>> {
    let value = serde_json::to_string(pending).ok()?;
    let mut jar = CookieJar::new();
    jar.private_mut(&app.cookie_key).add(
        Cookie::build(name(app, &pending.state.state), value)
            .path(PATH)
            .http_only(true)
            .secure(app.web.secure_cookies)
            .same_site(SameSite::Lax)
            .max_age(CookieDuration::seconds(TTL))
            .finish(),
    );
    jar.delta().next().cloned()
}

fn open_cookie(app: &AppState, cookie: Cookie<'static>) -> Option<PendingSignIn> {
    let name = cookie.name().to_owned();
    let mut jar = CookieJar::new();
    jar.add_original(cookie);
    let plain = jar.private(&app.cookie_key).get(&name)?;
    serde_json::from_str(plain.value()).ok()
}

/// The pending sign-in the callback for `state` belongs to, if this browser started it.
pub fn open(app: &AppState, req: &HttpRequest, state: &str) -> Option<PendingSignIn> {
    open_cookie(app, req.cookie(&name(app, state))?)
}

/// A cookie that removes the one named `name` (Secure like it: browsers ignore a `__Host-`
/// cookie without).
pub fn removal(app: &AppState, name: &str) -> Cookie<'static> {
    let mut cookie = Cookie::build(name.to_owned(), "")
        .path(PATH)
        .secure(app.web.secure_cookies)
        .finish();
    cookie.make_removal();
    cookie
}

/// Sign-in cookies looked at per request: a browser has at most [`MAX_PENDING`] of ours, so
/// more were planted; each request clears this many at most (no answer grows with them).
pub const MAX_LOOKED_AT: usize = 16;

/// Removals for the pending sign-ins to drop before one more starts: unreadable or expired
/// ones, and the oldest beyond [`MAX_PENDING`] - 1; at most [`MAX_LOOKED_AT`].
pub fn to_drop(app: &AppState, req: &HttpRequest, now: i64) -> Vec<Cookie<'static>> {
    let cookies = req.cookies().map(|c| c.clone()).unwrap_or_default();
    let mut drop = Vec::new();
    let mut live = Vec::new();
    let ours = cookies
        .into_iter()
        .filter(|c| c.name().starts_with(prefix(app)))
        .take(MAX_LOOKED_AT);
    for cookie in ours {
        let name = cookie.name().to_owned();
        match open_cookie(app, cookie.into_owned()) {
            Some(p) if now - p.started <= TTL => live.push((p.order, name)),
            _ => drop.push(removal(app, &name)),
        }
    }
    live.sort();
    let excess = (live.len() + 1).saturating_sub(MAX_PENDING);
    drop.extend(
        live.into_iter()
            .take(excess)
            .map(|(_, name)| removal(app, &name)),
    );
    drop
}
