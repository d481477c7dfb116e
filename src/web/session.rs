//! The session: an encrypted, signed cookie holding who is signed in (home account id and
//! display name), a CSRF token and when they signed in. Never tokens.

use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use std::future::{ready, Ready};

const HOME: &str = "home_account_id";
const NAME: &str = "name";
const CSRF: &str = "csrf";
const SINCE: &str = "signed_in_at";

pub struct TypedSession(Session);

/// Who the session says is signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    pub home_account_id: String,
    pub name: String,
    pub csrf: String,
}

impl TypedSession {
    /// Starts a new session for a user (a new cookie: no session fixation).
    pub fn sign_in(
        &self,
        home_account_id: &str,
        name: &str,
        now: i64,
    ) -> Result<(), actix_web::Error> {
        self.0.renew();
        self.0.clear();
        let csrf = crate::devidp::keys::random_token();
        self.0.insert(HOME, home_account_id)?;
        self.0.insert(NAME, name)?;
        self.0.insert(CSRF, csrf)?;
        self.0.insert(SINCE, now)?;
        Ok(())
    }

    /// The signed-in user, unless the session is absent, malformed or older than `max_age`.
    pub fn user(&self, now: i64, max_age: i64) -> Option<SignedInUser> {
        let since: i64 = self.0.get(SINCE).ok().flatten()?;
        if now.saturating_sub(since) > max_age {
            self.0.purge();
            return None;
        }
        Some(SignedInUser {
            home_account_id: self.0.get(HOME).ok().flatten()?,
            name: self.0.get(NAME).ok().flatten()?,
            csrf: self.0.get(CSRF).ok().flatten()?,
        })
    }

    pub fn sign_out(&self) {
        self.0.purge();
    }
}

impl FromRequest for TypedSession {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(Ok(TypedSession(req.get_session())))
    }
}
