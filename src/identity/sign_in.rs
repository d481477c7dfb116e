//! Signing in: storing a new user's tokens and activity.

use super::acquire::{SignedIn, TokenAcquirer};
use super::error::AcquireError;
use super::provider::SignInState;
use crate::activity::store::ActivityUpsert;
use crate::cache::document::{home_account_id, CacheDocument, Grant};
use crate::cache::store::{CacheStoreError, TokenCacheStore};
use crate::db::DbConnection;
use crate::settings::ProviderKind;
use diesel::Connection;
use time::OffsetDateTime;

impl TokenAcquirer {
    /// Redeems the code from a sign-in callback, stores the user's cache and activity in one
    /// transaction, and says who signed in. Called once per response, by
    /// [`TokenAcquirer::sign_in`].
    pub(super) async fn redeem_sign_in(
        &self,
        code: &str,
        state: &SignInState,
    ) -> Result<SignedIn, AcquireError> {
        let core = &self.core;
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
        };
        let scopes: Vec<String> = core
            .provider
            .scopes()
            .into_iter()
            .map(str::to_owned)
            .collect();
        let (store, now, kind) = (core.store.clone(), core.now(), core.provider.kind());
        let (version, session_epoch, document) = core
            .db
            .run(move |conn| -> Result<_, AcquireError> {
                let upn = claims
                    .preferred_username
                    .clone()
                    .or_else(|| claims.upn.clone());
                let object_id = claims.oid.clone().unwrap_or_else(|| claims.sub.clone());
                for _ in 0..3 {
                    let (mut document, version) = current(&store, conn, &home, now)?;
                    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
                    document
                        .add_token_response(
                            &context,
                            &response,
                            &scope_refs,
                            Grant::AuthorizationCode,
                            None,
                            now.unix_timestamp(),
                        )
                        .map_err(|e| AcquireError::Configuration(e.to_string()))?;
                    let problem = document
                        .find_refresh_token(&context, &home)
                        .is_none()
                        .then(|| no_refresh_token(kind));
                    // The tenant only from the ID token: a URL names no tenant.
                    let activity = ActivityUpsert {
                        account_cache_key: &home,
                        account_identifier: &home,
                        object_id: Some(&object_id),
                        tenant_id: claims.tid.as_deref(),
                        user_principal_name: upn.as_deref(),
                        problem: problem.as_deref(),
                    };
                    if let Some(problem) = &problem {
                        tracing::warn!(account = %home, "signed in, but {problem}");
                    }
                    // The epoch read in the same transaction as the write: the session gets
                    // the one its row holds.
                    let saved = conn.transaction(|conn| {
                        let version = store
                            .save_with_activity(conn, &document, version, None, &activity, now)?;
                        let epoch = store
                            .version_and_epoch(conn, &home, now)?
                            .map_or(0, |(_, epoch)| epoch);
                        Ok::<_, CacheStoreError>((version, epoch))
                    });
                    match saved {
                        Ok((version, epoch)) => return Ok((version, epoch, document)),
                        Err(CacheStoreError::Conflict { .. }) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(AcquireError::Storage(
                    "the token cache kept changing while signing in".into(),
                ))
            })
            .await
            .map_err(|e| core.noting(e))?;
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

/// The user's current document and version for a sign-in: a corrupt row is replaced (its
/// version is still honoured), an absent one starts empty. A row this process has no key for is
/// an error: it may belong to a correctly configured replica, and is never overwritten.
fn current(
    store: &TokenCacheStore,
    conn: &mut DbConnection,
    id: &str,
    now: OffsetDateTime,
) -> Result<(CacheDocument, Option<i64>), AcquireError> {
    match store.load(conn, id, now) {
        Ok(Some(loaded)) => Ok((loaded.document, Some(loaded.version))),
        Ok(None) => Ok((CacheDocument::default(), None)),
        Err(e) if e.is_corrupt() => {
            tracing::warn!(error = %e, "replacing a corrupt token cache at sign-in");
            Ok((
                CacheDocument::default(),
                store.current_version(conn, id, now)?,
            ))
        }
        Err(e) => Err(e.into()),
    }
}
