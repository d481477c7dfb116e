//! Each sign-in response is acted on once, across every replica: the callback claims its state
//! in `sign_ins` before the code is redeemed. A repeated callback (a reload while the first is
//! still redeeming, or a replayed sign-in cookie) never redeems the code again, so a provider
//! that revokes tokens on code replay never sees one; it waits for the first callback's outcome
//! and signs the same browser in with it.

use super::acquire::{SignedIn, TokenAcquirer};
use super::error::AcquireError;
use super::provider::SignInState;
use crate::clock::to_db;
use crate::db::schema::sign_ins::{self as si, dsl};
use crate::db::{DbConnection, DbError};
use base64::Engine as _;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use sha2::{Digest, Sha256};
use std::time::Duration;
use time::OffsetDateTime;

/// How long a sign-in may take at the provider, and so how long its claim is kept.
pub const SIGN_IN_TTL: time::Duration = time::Duration::minutes(10);
/// How long a repeated callback waits for the first one's outcome.
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(100);

const PENDING: &str = "pending";
const SIGNED_IN: &str = "signed_in";
const FAILED: &str = "failed";

/// The state as stored: its SHA-256, base64url (a database dump holds no usable state).
fn state_hash(state: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(state.as_bytes()))
}

/// Claims the response with `hash` for this request: true the first time, false when another
/// request claimed it already. Claims older than [`SIGN_IN_TTL`] are dropped on the way.
fn claim(conn: &mut DbConnection, hash: &str, now: OffsetDateTime) -> Result<bool, DbError> {
    diesel::delete(si::table.filter(dsl::started_at.lt(to_db(now - SIGN_IN_TTL)))).execute(conn)?;
    let inserted = diesel::insert_into(si::table)
        .values((
            dsl::state_hash.eq(hash),
            dsl::started_at.eq(to_db(now)),
            dsl::outcome.eq(PENDING),
        ))
        .execute(conn);
    match inserted {
        Ok(_) => Ok(true),
        Err(DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _)) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Records how the claimed sign-in ended, for a repeated callback to follow.
fn record(conn: &mut DbConnection, hash: &str, outcome: Option<&SignedIn>) -> Result<(), DbError> {
    let target = si::table.filter(dsl::state_hash.eq(hash));
    match outcome {
        Some(signed_in) => {
            let name: String = signed_in.display_name.chars().take(400).collect();
            diesel::update(target)
                .set((
                    dsl::outcome.eq(SIGNED_IN),
                    dsl::home_account_id.eq(&signed_in.home_account_id),
                    dsl::display_name.eq(name),
                    dsl::session_epoch.eq(signed_in.session_epoch),
                    dsl::session_id.eq(signed_in.session_id.as_deref()),
                ))
                .execute(conn)?
        }
        None => diesel::update(target)
            .set(dsl::outcome.eq(FAILED))
            .execute(conn)?,
    };
    Ok(())
}

type Row = (
    String,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
);

fn outcome(conn: &mut DbConnection, hash: &str) -> Result<Option<Row>, DbError> {
    Ok(si::table
        .filter(dsl::state_hash.eq(hash))
        .select((
            dsl::outcome,
            dsl::home_account_id,
            dsl::display_name,
            dsl::session_epoch,
            dsl::session_id,
        ))
        .get_result(conn)
        .optional()?)
}

impl TokenAcquirer {
    /// Completes a sign-in callback once: the first callback for `state` redeems the code
    /// ([`TokenAcquirer::redeem_sign_in`]); a repeated one waits for that outcome and shares it.
    /// The sign-in begins a new app session, which lives at most `session_lifetime`.
    pub async fn sign_in(
        &self,
        code: &str,
        state: &SignInState,
        session_lifetime: Duration,
    ) -> Result<SignedIn, AcquireError> {
        let (hash, now) = (state_hash(&state.state), self.core.now());
        let first = {
            let hash = hash.clone();
            let claimed = self.core.db.run(move |conn| claim(conn, &hash, now)).await;
            // A sign-in's first write: whether the database takes writes, for `/readyz`.
            self.core.db.note_write(&claimed);
            claimed?
        };
        if !first {
            tracing::info!("a repeated sign-in callback: waiting for the first one's outcome");
            return self.follow(hash).await;
        }
        let session_id = crate::secret::random_token();
        let result = match self
            .redeem_sign_in(code, state, &session_id, session_lifetime)
            .await
        {
            Ok(signed_in) => {
                self.core.provider_accepted();
                Ok(signed_in)
            }
            Err(e) => Err(self.core.noting(e)),
        };
        let signed_in = result.as_ref().ok().cloned();
        let recorded = self
            .core
            .db
            .run(move |conn| record(conn, &hash, signed_in.as_ref()))
            .await;
        if let Err(e) = recorded {
            // Only a repeated callback would miss it; it then times out and asks to sign in.
            tracing::warn!(error = %e, "the sign-in's outcome could not be recorded");
        }
        result
    }

    /// The outcome of a sign-in another request claimed, once it is known.
    async fn follow(&self, hash: String) -> Result<SignedIn, AcquireError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let row = {
                let hash = hash.clone();
                self.core.db.run(move |conn| outcome(conn, &hash)).await?
            };
            match row {
                Some((
                    state,
                    Some(home_account_id),
                    Some(display_name),
                    Some(session_epoch),
                    session_id,
                )) if state == SIGNED_IN => {
                    return Ok(SignedIn {
                        home_account_id,
                        display_name,
                        session_epoch,
                        session_id,
                    });
                }
                Some((state, ..)) if state == PENDING => {}
                _ => {
                    return Err(AcquireError::InteractionRequired {
                        reason: "this sign-in response was used already and did not sign anyone in"
                            .into(),
                    })
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AcquireError::Transient {
                    reason: "the first request for this sign-in is still being completed".into(),
                    retry_after: Some(Duration::from_secs(2)),
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_stored_hashed() {
        let hash = state_hash("abc");
        assert_eq!(hash.len(), 43);
        assert_ne!(hash, "abc");
        assert_eq!(hash, state_hash("abc"));
        assert_ne!(hash, state_hash("abd"));
    }
}
