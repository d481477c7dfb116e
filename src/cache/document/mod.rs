//! One user's token cache in the MSAL format (see shared MSAL_CACHE.md): parse, serialize,
//! add the tokens of a provider response, and find what silent acquisition needs.

mod entries;
pub mod keys;
mod response;
mod sessions;

pub use entries::{
    AccessTokenEntry, AccountEntry, AppMetadataEntry, IdTokenEntry, RefreshTokenEntry,
};
pub use sessions::AppSession;

use crate::secret::Secret;
use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The default refresh margin: an access token with less than this many seconds left is
/// refreshed (MSAL uses 5 minutes). See [`CacheDocument::find_access_token`] for short tokens.
pub const DEFAULT_REFRESH_MARGIN: i64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("the cache document is not valid MSAL-format JSON: {0}")]
    Malformed(String),
    #[error("the token response identifies no account (no client_info and no ID token)")]
    NoAccount,
    #[error("the token response is for account {got}, not for {expected}")]
    AccountMismatch { expected: String, got: String },
}

/// Where entries are written: our client registration at one authority.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientContext {
    pub client_id: String,
    /// The authority's host, lowercase, without port (`login.microsoftonline.com`).
    pub environment: String,
    /// Entra ID: the tenant id. Other providers: the token endpoint's first path segment.
    pub realm: String,
}

/// Claims of an ID token the caller has already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdTokenClaims {
    pub sub: String,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub preferred_username: Option<String>,
    pub upn: Option<String>,
    pub name: Option<String>,
    /// The provider session the sign-in belongs to (Front-/Back-Channel Logout's `sid`).
    pub sid: Option<String>,
}

#[derive(Debug, Clone)]
pub struct IdToken {
    pub raw: Secret,
    pub claims: IdTokenClaims,
}

/// How the tokens were obtained; only sign-in establishes an account's `account_source`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    AuthorizationCode,
    RefreshToken,
}

/// A successful token response, already validated by the caller.
#[derive(Debug, Clone)]
pub struct TokenResponse {
    pub access_token: Secret,
    pub token_type: Option<String>,
    pub expires_in: Option<i64>,
    pub ext_expires_in: Option<i64>,
    pub refresh_in: Option<i64>,
    pub refresh_token: Option<Secret>,
    pub id_token: Option<IdToken>,
    /// Granted scopes, space separated, when the provider says.
    pub scope: Option<String>,
    /// Entra ID's base64url `{"uid":…,"utid":…}`.
    pub client_info: Option<String>,
    /// Entra ID's family of client ids (`foci`).
    pub family_id: Option<String>,
    /// On-behalf-of: [`user_assertion_hash`] of the user's token the tokens were exchanged
    /// for, written on the access and refresh token as MSAL.NET writes it, so a later call
    /// with the same token finds its access token (MSAL Python keeps the field and ignores it).
    pub user_assertion_hash: Option<String>,
}

/// MSAL's field naming the user token an on-behalf-of exchange was for.
const USER_ASSERTION_HASH: &str = "user_assertion_hash";

/// How MSAL.NET names a user's token in its on-behalf-of cache entries: the base64url SHA-256
/// of the token as sent.
pub fn user_assertion_hash(assertion: &str) -> String {
    use sha2::Digest;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(assertion))
}

/// A usable access token found by [`CacheDocument::find_access_token`].
#[derive(Debug, Clone, Copy)]
pub struct AccessTokenHit<'a> {
    pub entry: &'a AccessTokenEntry,
    /// Past the provider's `refresh_on`: refresh now, but this token may still be used if the
    /// provider fails.
    pub refresh_due: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CacheDocument {
    #[serde(
        rename = "AccessToken",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    access_tokens: BTreeMap<String, AccessTokenEntry>,
    #[serde(
        rename = "RefreshToken",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    refresh_tokens: BTreeMap<String, RefreshTokenEntry>,
    #[serde(
        rename = "IdToken",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    id_tokens: BTreeMap<String, IdTokenEntry>,
    #[serde(
        rename = "Account",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    accounts: BTreeMap<String, AccountEntry>,
    #[serde(
        rename = "AppMetadata",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    app_metadata: BTreeMap<String, AppMetadataEntry>,
    /// tokenbridge's own: the app's sessions signed in with this cache (see `sessions.rs`).
    #[serde(
        rename = "TokenBridgeSession",
        default,
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    sessions: BTreeMap<String, AppSession>,
    /// Sections we do not know, kept as they were.
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// The home account id: `uid.utid` from Entra's `client_info`, else the ID token's `sub`.
pub fn home_account_id(
    client_info: Option<&str>,
    id_token: Option<&IdTokenClaims>,
) -> Option<String> {
    #[derive(Deserialize)]
    struct ClientInfo {
        uid: Option<String>,
        utid: Option<String>,
    }
    let from_client_info = client_info.and_then(|raw| {
        let raw = raw.trim_end_matches('=');
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(raw)
            .ok()?;
        let info: ClientInfo = serde_json::from_slice(&bytes).ok()?;
        Some(format!("{}.{}", info.uid?, info.utid?))
    });
    from_client_info.or_else(|| id_token.map(|c| c.sub.clone()).filter(|s| !s.is_empty()))
}

impl CacheDocument {
    pub fn parse(bytes: &[u8]) -> Result<Self, DocumentError> {
        serde_json::from_slice(bytes).map_err(|e| DocumentError::Malformed(e.to_string()))
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing maps of strings cannot fail; an empty object is the safe fallback.
        serde_json::to_vec(self).unwrap_or_else(|_| b"{}".to_vec())
    }

    pub fn is_empty(&self) -> bool {
        self.access_tokens.is_empty()
            && self.refresh_tokens.is_empty()
            && self.id_tokens.is_empty()
            && self.accounts.is_empty()
            && self.app_metadata.is_empty()
            && self.sessions.is_empty()
            && self.other.is_empty()
    }

    pub fn access_tokens(&self) -> impl Iterator<Item = (&String, &AccessTokenEntry)> {
        self.access_tokens.iter()
    }

    pub fn refresh_tokens(&self) -> impl Iterator<Item = (&String, &RefreshTokenEntry)> {
        self.refresh_tokens.iter()
    }

    pub fn id_tokens(&self) -> impl Iterator<Item = (&String, &IdTokenEntry)> {
        self.id_tokens.iter()
    }

    pub fn accounts(&self) -> impl Iterator<Item = (&String, &AccountEntry)> {
        self.accounts.iter()
    }

    pub fn app_metadata(&self) -> impl Iterator<Item = (&String, &AppMetadataEntry)> {
        self.app_metadata.iter()
    }

    /// The account entry for a home account id at our authority.
    pub fn account(&self, ctx: &ClientContext, home_account_id: &str) -> Option<&AccountEntry> {
        self.accounts.values().find(|a| {
            a.home_account_id == home_account_id
                && keys::same_environment(&a.environment, &ctx.environment)
        })
    }

    /// An access token for `scopes` with at least `margin` seconds left at `now` (Unix
    /// seconds), and never one at or past its expiry; the one that lives longest when several
    /// match. The margin never exceeds half
    /// of a token's lifetime, so a 60-second token is used for about 30 seconds rather than
    /// being refreshed on every call.
    pub fn find_access_token(
        &self,
        ctx: &ClientContext,
        home_account_id: &str,
        scopes: &[&str],
        now: i64,
        margin: i64,
    ) -> Option<AccessTokenHit<'_>> {
        self.find_access_token_where(ctx, home_account_id, scopes, now, margin, |_| true)
    }

    fn find_access_token_where(
        &self,
        ctx: &ClientContext,
        home_account_id: &str,
        scopes: &[&str],
        now: i64,
        margin: i64,
        keep: impl Fn(&AccessTokenEntry) -> bool,
    ) -> Option<AccessTokenHit<'_>> {
        self.access_tokens
            .values()
            .filter(|at| keep(at))
            .filter(|at| {
                at.home_account_id == home_account_id
                    && at.client_id == ctx.client_id
                    && at.realm.eq_ignore_ascii_case(&ctx.realm)
                    && keys::same_environment(&at.environment, &ctx.environment)
                    && keys::target_covers(&at.target, scopes)
                    && {
                        let left = at.expires_on().saturating_sub(now);
                        left > 0 && left >= at.refresh_margin(margin)
                    }
            })
            .max_by_key(|at| at.expires_on())
            .map(|entry| AccessTokenHit {
                entry,
                refresh_due: entry.refresh_on().is_some_and(|at| at <= now),
            })
    }

    /// [`Self::find_access_token`] among the tokens an on-behalf-of exchange of the user token
    /// hashed `assertion_hash` stored (see [`user_assertion_hash`]).
    pub fn find_access_token_for_assertion(
        &self,
        ctx: &ClientContext,
        home_account_id: &str,
        scopes: &[&str],
        assertion_hash: &str,
        now: i64,
        margin: i64,
    ) -> Option<AccessTokenHit<'_>> {
        self.find_access_token_where(ctx, home_account_id, scopes, now, margin, |at| {
            at.extra.get(USER_ASSERTION_HASH).and_then(Value::as_str) == Some(assertion_hash)
        })
    }

    /// The refresh token for an account: matched by environment, home account id and client id,
    /// not by realm or scope (refresh tokens are cross-tenant). MSAL Python may keep one entry
    /// per scope set it redeemed for; the one written last is the current one.
    pub fn find_refresh_token(
        &self,
        ctx: &ClientContext,
        home_account_id: &str,
    ) -> Option<&RefreshTokenEntry> {
        let exact = keys::refresh_token(home_account_id, &ctx.environment, &ctx.client_id);
        self.refresh_tokens_of(ctx, home_account_id)
            .into_iter()
            .max_by_key(|(key, rt)| {
                let written: i64 = rt
                    .last_modification_time
                    .as_deref()
                    .and_then(|t| t.trim().parse().ok())
                    .unwrap_or(i64::MIN);
                (written, **key == exact)
            })
            .map(|(_, rt)| rt)
    }

    /// Every refresh-token entry of an account (usually one).
    fn refresh_tokens_of<'s>(
        &'s self,
        ctx: &ClientContext,
        home_account_id: &str,
    ) -> Vec<(&'s String, &'s RefreshTokenEntry)> {
        self.refresh_tokens
            .iter()
            .filter(|(_, rt)| {
                rt.home_account_id == home_account_id
                    && rt.client_id == ctx.client_id
                    && keys::same_environment(&rt.environment, &ctx.environment)
            })
            .collect()
    }

    /// Removes access tokens that expired before `now`; returns how many.
    pub fn remove_expired_access_tokens(&mut self, now: i64) -> usize {
        let before = self.access_tokens.len();
        self.access_tokens.retain(|_, at| at.expires_on() >= now);
        before - self.access_tokens.len()
    }
}

#[cfg(test)]
mod tests;
