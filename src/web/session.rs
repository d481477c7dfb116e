//! The session: an encrypted, signed cookie holding who is signed in (home account id and
//! display name), a CSRF token, when they signed in, the session epoch of their token-cache
//! row, which makes it valid only while that row lives, and the session's id, which makes it
//! valid only while the user's document lists it. Never tokens.

use crate::identity::acquire::AppSessionRef;
use actix_session::{Session, SessionExt};
use actix_web::dev::Payload;
use actix_web::{FromRequest, HttpRequest};
use std::future::{ready, Ready};

const HOME: &str = "home_account_id";
const NAME: &str = "name";
const CSRF: &str = "csrf";
const SINCE: &str = "signed_in_at";
const SEEN: &str = "seen_at";
const EPOCH: &str = "epoch";
const ID: &str = "session_id";
/// How stale `seen_at` may be before a request records it again. Recording it changes the
/// session, which re-seals the cookie and sends it back on that response: once a minute is
/// plenty for an idle limit counted in hours, and spares almost every page that work.
const SEEN_EVERY: i64 = 60;

pub struct TypedSession(Session);

/// Who the session says is signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInUser {
    pub home_account_id: String,
    pub name: String,
    pub csrf: String,
    /// The session epoch of the user's token-cache row when they signed in: the session is
    /// good only while the row still has it (sign-out deletes the row).
    pub session_epoch: i64,
    /// The session's id in the user's document: the session is good only while it is listed
    /// there (a logout at the provider may end it). None in a cookie from before sessions
    /// were listed.
    pub session_id: Option<String>,
}

impl SignedInUser {
    /// The session as acquisition checks it.
    pub fn session(&self) -> AppSessionRef<'_> {
        AppSessionRef {
            epoch: self.session_epoch,
            id: self.session_id.as_deref(),
        }
    }
}

impl TypedSession {
    /// Starts a new session for a user (a new cookie: no session fixation).
    pub fn sign_in(
        &self,
        home_account_id: &str,
        name: &str,
        session_epoch: i64,
        session_id: Option<&str>,
        now: i64,
    ) -> Result<(), actix_web::Error> {
        self.0.renew();
        self.0.clear();
        let csrf = crate::secret::random_token();
        self.0.insert(HOME, home_account_id)?;
        self.0.insert(NAME, name)?;
        self.0.insert(CSRF, csrf)?;
        self.0.insert(SINCE, now)?;
        self.0.insert(SEEN, now)?;
        self.0.insert(EPOCH, session_epoch)?;
        if let Some(id) = session_id {
            self.0.insert(ID, id)?;
        }
        Ok(())
    }

    /// The signed-in user, unless the session is absent or malformed, has been idle longer
    /// than `idle`, or began longer than `absolute` ago (checked here, not only by the
    /// cookie's lifetime, so a copied cookie does not outlive them). Marks the session seen
    /// (at most once a minute).
    /// Whether the session still belongs to the user's sign-ins is the caller's check, against
    /// the row ([`SignedInUser::session_epoch`]).
    pub fn user(&self, now: i64, idle: i64, absolute: i64) -> Option<SignedInUser> {
        let since: i64 = self.0.get(SINCE).ok().flatten()?;
        let seen: i64 = self.0.get(SEEN).ok().flatten().unwrap_or(since);
        if now.saturating_sub(since) > absolute || now.saturating_sub(seen) > idle {
            self.0.purge();
            return None;
        }
        if now.saturating_sub(seen) >= SEEN_EVERY {
            let _ = self.0.insert(SEEN, now);
        }
        Some(SignedInUser {
            home_account_id: self.0.get(HOME).ok().flatten()?,
            name: self.0.get(NAME).ok().flatten()?,
            csrf: self.0.get(CSRF).ok().flatten()?,
            session_epoch: self.0.get(EPOCH).ok().flatten()?,
            session_id: self.0.get(ID).ok().flatten(),
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
