//! Signing in: storing a new user's tokens and activity.

use super::acquire::{SignedIn, TokenAcquirer};
use super::activity::{account_activity, recorded, with_provider_session};
use super::error::AcquireError;
use super::provider::SignInState;
use crate::cache::backend::{CacheBackend, Expected};
use crate::cache::document::{home_account_id, CacheDocument, Grant};
use crate::cache::store::CacheStoreError;
use crate::settings::ProviderKind;
use std::time::Duration;
use time::OffsetDateTime;

impl TokenAcquirer {
    /// Redeems the code from a sign-in callback, stores the user's cache and activity (see
    /// [`CacheBackend::save_with`]), and says who signed in. Called once per response, by
    /// [`TokenAcquirer::sign_in`].
    /// The sign-in begins app session `session_id`, listed in the user's document (with the
    /// provider session it began in, which is recorded for a logout that names it) for
    /// `session_lifetime`, the longest an app session lives.
    pub(super) async fn redeem_sign_in(
        &self,
        code: &str,
        state: &SignInState,
        session_id: &str,
        session_lifetime: Duration,
    ) -> Result<SignedIn, AcquireError> {
        let core = &self.core;
        // Lifetimes count from before the request was sent: the provider started them no
        // earlier, so a token is never taken for valid longer than it is.
        let sent_at = core.now();
        let response = core.provider.redeem_code(code, state).await?;
        let context = core.provider.metadata().await?.context.clone();
        let claims = response
            .id_token
            .as_ref()
            .map(|t| t.claims.clone())
            .unwrap_or_default();
        let home =
            home_account_id(response.client_info.as_deref(), Some(&claims)).ok_or_else(|| {
                AcquireError::Configuration("the provider identified no account".into())
            })?;
        let signed_in = SignedIn {
            home_account_id: home.clone(),
            display_name: claims
                .name
                .clone()
                .or_else(|| claims.preferred_username.clone())
                .unwrap_or_else(|| home.clone()),
            session_epoch: 0,
            session_id: Some(session_id.to_owned()),
        };
        let sid_key = claims
            .sid
            .as_deref()
            .map(|sid| core.provider.session_key(sid));
        let lifetime = time::Duration::try_from(session_lifetime).unwrap_or(time::Duration::MAX);
        let scopes: Vec<String> = core
            .provider
            .first_token_scopes()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let (now, kind) = (core.now(), core.provider.kind());
        let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
        let mut stored = None;
        for _ in 0..3 {
            let (mut document, version) = current(&core.caches, &home, now)
                .await
                .map_err(|e| core.noting(e))?;
            document
                .add_token_response(
                    &context,
                    &response,
                    &scope_refs,
                    Grant::AuthorizationCode,
                    None,
                    sent_at.unix_timestamp(),
                )
                .map_err(|e| AcquireError::Configuration(e.to_string()))?;
            document.add_session(
                session_id,
                sid_key.as_deref(),
                now.unix_timestamp(),
                (now - lifetime).unix_timestamp(),
            );
            let problem = document
                .find_refresh_token(&context, &home)
                .is_none()
                .then(|| no_refresh_token(kind));
            if let Some(problem) = &problem {
                tracing::warn!(account = %home, "signed in, but {problem}");
            }
            let activity = account_activity(
                &home,
                document.account(&context, &home),
                Some(&claims),
                kind,
                problem,
            );
            let companion = match &sid_key {
                Some(key) => with_provider_session(
                    recorded(activity, now),
                    key.clone(),
                    &home,
                    now.saturating_add(lifetime),
                ),
                None => recorded(activity, now),
            };
            let saved = core
                .caches
                .save_with(&home, document.clone(), version, None, companion, now)
                .await;
            match saved {
                Ok(saved) => {
                    stored = Some((saved.version, saved.session_epoch, document));
                    break;
                }
                Err(CacheStoreError::Conflict { .. }) => continue,
                Err(e) => return Err(core.noting(e.into())),
            }
        }
        let Some((version, session_epoch, document)) = stored else {
            return Err(AcquireError::Storage(
                "the token cache kept changing while signing in".into(),
            ));
        };
        core.remember(&signed_in.home_account_id, version, document);
        Ok(SignedIn {
            session_epoch,
            ..signed_in
        })
    }
}

/// Why a sign-in answer can hold no refresh token, and what to change.
fn no_refresh_token(kind: ProviderKind) -> String {
    let cause = match kind {
        ProviderKind::Oidc => {
            "a provider that follows OpenID Connect Core section 11 grants offline_access only \
             when the sign-in asks for consent (set identity.prompt = \"consent\"), and only to \
             a client allowed the refresh_token grant"
        }
        ProviderKind::Entra => {
            "the app registration must be allowed offline_access, and the scopes must include it"
        }
    };
    format!("no refresh token: the provider issued none at sign-in; {cause}")
}

/// The user's current document and the row to write over for a sign-in: a corrupt row is
/// replaced (its version is still honoured), an absent one starts empty. A row this process has
/// no key for is an error: it may belong to a correctly configured replica, and is never
/// overwritten.
async fn current(
    caches: &CacheBackend,
    id: &str,
    now: OffsetDateTime,
) -> Result<(CacheDocument, Option<Expected>), AcquireError> {
    Ok(match caches.load_to_write_over(id, now).await? {
        Some((row, document)) => (document, Some(row)),
        None => (CacheDocument::default(), None),
    })
}
