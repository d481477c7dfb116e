//! The user's activity row as identity writes it beside their cache: what is known of the
//! account (one builder for sign-in and refresh alike), and the companion writes
//! ([`Companion`]) the cache layer runs with a cache write or a sign-out.

use crate::activity::provider_sessions;
use crate::activity::store::{self as activities, ActivityRecord, SignedOutBy};
use crate::cache::backend::Companion;
use crate::cache::document::{AccountEntry, IdTokenClaims};
use crate::db::DbError;
use crate::settings::ProviderKind;
use std::sync::Arc;
use time::OffsetDateTime;

/// The activity of account `id` from its cache's account entry and the ID token just received,
/// if any. Each field comes from what names it: the object id from the token's `oid`, else the
/// account's local id, else the token's `sub`; the tenant from the token's `tid`, else, at
/// Entra ID, the account's realm (its tenant id; another provider's realm is a URL, which
/// names no tenant); the user name from the token, else the account's. A field left unknown
/// keeps what the row holds.
pub(crate) fn account_activity(
    id: &str,
    account: Option<&AccountEntry>,
    claims: Option<&IdTokenClaims>,
    kind: ProviderKind,
    problem: Option<String>,
) -> ActivityRecord {
    let tenant = claims.and_then(|c| c.tid.clone()).or_else(|| match kind {
        ProviderKind::Entra => account.map(|a| a.realm.clone()),
        ProviderKind::Oidc => None,
    });
    let user_name = claims
        .and_then(|c| c.preferred_username.clone().or_else(|| c.upn.clone()))
        .or_else(|| account.map(|a| a.username.clone()))
        .filter(|name| !name.is_empty());
    ActivityRecord {
        account_cache_key: id.to_owned(),
        account_identifier: id.to_owned(),
        object_id: claims
            .and_then(|c| c.oid.clone())
            .or_else(|| account.map(|a| a.local_account_id.clone()))
            .or_else(|| claims.map(|c| c.sub.clone())),
        tenant_id: tenant,
        user_principal_name: user_name,
        subject: claims.map(|c| c.sub.clone()).filter(|sub| !sub.is_empty()),
        problem,
    }
}

/// Records `activity` (the web app's write is the user's activity) with a cache write.
pub(crate) fn recorded(activity: ActivityRecord, now: OffsetDateTime) -> Companion {
    Arc::new(move |conn| {
        activities::upsert(conn, &activity.as_upsert(), now).map_err(DbError::from)
    })
}

/// `companion`, and then records that account `id` signed in through provider session
/// `sid_key` until `until` (see [`provider_sessions`]).
pub(crate) fn with_provider_session(
    companion: Companion,
    sid_key: String,
    id: &str,
    until: OffsetDateTime,
) -> Companion {
    let id = id.to_owned();
    Arc::new(move |conn| {
        companion(conn)?;
        provider_sessions::record(conn, &sid_key, &id, until).map_err(DbError::from)
    })
}

/// Marks account `id` signed out with the deletion of its cache.
pub(crate) fn signed_out(id: &str, by: SignedOutBy, now: OffsetDateTime) -> Companion {
    let id = id.to_owned();
    Arc::new(move |conn| {
        activities::mark_signed_out(conn, &id, by, now)
            .map(drop)
            .map_err(DbError::from)
    })
}
