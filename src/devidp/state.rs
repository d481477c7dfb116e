//! The provider's memory and rules: authorization codes, refresh-token families and rotation,
//! users, injected faults and counters. No HTTP here; every rule takes `now` (Unix seconds).

use super::keys::{pkce_challenge, random_token};
use super::sessions::Sessions;
use crate::settings::Rotation;
use std::collections::{HashMap, HashSet, VecDeque};

/// How long an authorization code may wait for redemption.
pub const CODE_TTL: i64 = 600;

/// A token-endpoint error, as RFC 6749 section 5.2 names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantError {
    pub error: &'static str,
    pub description: String,
}

/// Entra ID's answer for an API scope the user never consented to.
pub fn not_consented(scope: &str) -> GrantError {
    grant_error(
        "invalid_grant",
        format!(
            "AADSTS65001: The user or administrator has not consented to use the application \
             with scope {scope}. Send an interactive authorization request for this user and \
             resource."
        ),
    )
}

fn grant_error(error: &'static str, description: impl Into<String>) -> GrantError {
    GrantError {
        error,
        description: description.into(),
    }
}

/// What a successful grant entitles the client to; the HTTP layer mints the tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub username: String,
    pub scopes: Vec<String>,
    pub nonce: Option<String>,
    pub refresh_token: Option<String>,
    /// The user's revocation generation when granted: the API refuses access tokens of an
    /// older one, as resources that honour revocation at once do.
    pub generation: u64,
    /// The provider session the grant began in (the ID token's `sid`).
    pub sid: Option<String>,
}

#[derive(Debug, Clone)]
struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: Option<String>,
    scopes: Vec<String>,
    username: String,
    expires_at: i64,
    family: String,
    redeemed: bool,
}

#[derive(Debug, Clone)]
struct RefreshRecord {
    username: String,
    client_id: String,
    scopes: Vec<String>,
    family: String,
    generation: u64,
    expires_at: i64,
    superseded: bool,
}

#[derive(Debug, Clone, Default)]
struct UserState {
    disabled: bool,
    /// Scopes the user withdrew consent for: refreshes answer without them, as providers
    /// that let users decline scopes do.
    declined: Vec<String>,
    /// Tokens issued under an older generation are revoked.
    generation: u64,
}

/// What `/authorize` remembers until the code is redeemed.
#[derive(Debug, Clone)]
pub struct CodeRequest {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: String,
    pub nonce: Option<String>,
    pub scopes: Vec<String>,
    pub username: String,
    /// The provider session the user signed in through.
    pub sid: Option<String>,
}

#[derive(Debug, Default)]
pub struct State {
    codes: HashMap<String, Code>,
    refresh_tokens: HashMap<String, RefreshRecord>,
    /// Expired refresh tokens are dropped when the map reaches this size (then it doubles), so
    /// memory follows the live tokens at amortised constant cost.
    purge_at: usize,
    revoked_families: HashSet<String>,
    pub sessions: Sessions,
    /// The session each sign-in (a refresh-token family) began in.
    family_sids: HashMap<String, String>,
    users: HashMap<String, UserState>,
    faults: VecDeque<(Fault, u32)>,
    /// The next API calls that answer 401 `invalid_token` whatever the token (as an API does
    /// for a token revoked, or expired by its clock).
    api_refusals: u32,
    /// Client assertions' `jti`s seen, by client, until their `exp`.
    assertion_jtis: HashMap<(String, String), i64>,
    pub counters: Counters,
}

impl State {
    pub fn is_disabled(&self, username: &str) -> bool {
        self.users.get(username).is_some_and(|u| u.disabled)
    }

    pub fn set_disabled(&mut self, username: &str, disabled: bool) {
        self.users.entry(username.to_owned()).or_default().disabled = disabled;
    }

    /// The user withdraws consent for `scopes` (an empty list restores it).
    pub fn set_declined(&mut self, username: &str, scopes: Vec<String>) {
        self.users.entry(username.to_owned()).or_default().declined = scopes;
    }

    fn declined(&self, username: &str) -> &[String] {
        self.users
            .get(username)
            .map_or(&[][..], |u| u.declined.as_slice())
    }

    /// Revokes every refresh token the user holds.
    pub fn revoke_user(&mut self, username: &str) {
        self.users
            .entry(username.to_owned())
            .or_default()
            .generation += 1;
    }

    pub fn generation(&self, username: &str) -> u64 {
        self.users.get(username).map_or(0, |u| u.generation)
    }

    pub fn issue_code(&mut self, request: CodeRequest, now: i64) -> String {
        let code = random_token();
        self.purge_codes(now);
        let family = random_token();
        if let Some(sid) = &request.sid {
            self.sessions.joined(sid, &request.client_id);
            self.family_sids.insert(family.clone(), sid.clone());
        }
        self.codes.insert(
            code.clone(),
            Code {
                client_id: request.client_id,
                redirect_uri: request.redirect_uri,
                challenge: request.challenge,
                nonce: request.nonce,
                scopes: request.scopes,
                username: request.username,
                expires_at: now + CODE_TTL,
                family,
                redeemed: false,
            },
        );
        code
    }

    fn purge_codes(&mut self, now: i64) {
        // Keep redeemed codes until they expire, so a replay is recognised as one.
        self.codes.retain(|_, c| c.expires_at > now);
    }

    /// Redeems an authorization code (single use; a replay revokes what the code issued).
    /// `always_refresh`: issue a refresh token even without `offline_access`.
    #[allow(clippy::too_many_arguments)]
    pub fn redeem_code(
        &mut self,
        client_id: &str,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        always_refresh: bool,
        refresh_ttl: i64,
        now: i64,
    ) -> Result<Grant, GrantError> {
        let Some(entry) = self.codes.get_mut(code) else {
            return Err(grant_error(
                "invalid_grant",
                "the authorization code is unknown or expired",
            ));
        };
        if entry.expires_at <= now {
            return Err(grant_error(
                "invalid_grant",
                "the authorization code has expired",
            ));
        }
        if entry.client_id != client_id {
            return Err(grant_error(
                "invalid_grant",
                "the authorization code was issued to another client",
            ));
        }
        if entry.redeemed {
            let family = entry.family.clone();
            self.revoked_families.insert(family);
            return Err(grant_error(
                "invalid_grant",
                "the authorization code was already redeemed; the tokens it issued are revoked",
            ));
        }
        if entry.redirect_uri != redirect_uri {
            return Err(grant_error(
                "invalid_grant",
                "redirect_uri does not match the authorization request",
            ));
        }
        let verifier_ok = (43..=128).contains(&verifier.len())
            && verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
        if !verifier_ok || pkce_challenge(verifier) != entry.challenge {
            return Err(grant_error(
                "invalid_grant",
                "code_verifier does not match the code_challenge",
            ));
        }
        entry.redeemed = true;
        let entry = entry.clone();
        if self.is_disabled(&entry.username) {
            return Err(grant_error("invalid_grant", "the user account is disabled"));
        }
        self.counters.codes_redeemed += 1;
        self.counters.user(&entry.username).codes_redeemed += 1;
        let offline = always_refresh || entry.scopes.iter().any(|s| s == "offline_access");
        let refresh_token = offline.then(|| {
            self.new_refresh_token(
                &entry.username,
                client_id,
                &entry.scopes,
                &entry.family,
                refresh_ttl,
                now,
            )
        });
        Ok(Grant {
            generation: self.generation(&entry.username),
            sid: self.family_sids.get(&entry.family).cloned(),
            username: entry.username,
            scopes: entry.scopes,
            nonce: entry.nonce,
            refresh_token,
        })
    }

    fn new_refresh_token(
        &mut self,
        username: &str,
        client_id: &str,
        scopes: &[String],
        family: &str,
        ttl: i64,
        now: i64,
    ) -> String {
        if self.refresh_tokens.len() >= self.purge_at.max(1024) {
            self.refresh_tokens.retain(|_, r| r.expires_at > now);
            self.purge_at = self.refresh_tokens.len() * 2;
        }
        let token = random_token();
        let generation = self.generation(username);
        self.refresh_tokens.insert(
            token.clone(),
            RefreshRecord {
                username: username.to_owned(),
                client_id: client_id.to_owned(),
                scopes: scopes.to_vec(),
                family: family.to_owned(),
                generation,
                expires_at: now.saturating_add(ttl),
                superseded: false,
            },
        );
        token
    }

    /// On-behalf-of: `client` (an API that `username` called with a token for it) gets
    /// `scopes` for the user, a grant family of its own (a refresh token with
    /// `offline_access`), as Entra ID's OBO grant does.
    pub fn grant_on_behalf_of(
        &mut self,
        client_id: &str,
        username: &str,
        scopes: Vec<String>,
        refresh_ttl: i64,
        now: i64,
    ) -> Result<Grant, GrantError> {
        if self.is_disabled(username) {
            return Err(grant_error("invalid_grant", "the user account is disabled"));
        }
        self.counters.on_behalf_of += 1;
        let family = random_token();
        let refresh_token = scopes.iter().any(|s| s == "offline_access").then(|| {
            self.new_refresh_token(username, client_id, &scopes, &family, refresh_ttl, now)
        });
        Ok(Grant {
            generation: self.generation(username),
            sid: None,
            username: username.to_owned(),
            scopes,
            nonce: None,
            refresh_token,
        })
    }

    /// A refresh token as a sign-in would have issued it (a family of its own), without the
    /// sign-in: for seeding benchmarks with many users.
    pub fn mint_refresh_token(
        &mut self,
        username: &str,
        client_id: &str,
        scopes: &[String],
        ttl: i64,
        now: i64,
    ) -> String {
        let family = random_token();
        self.new_refresh_token(username, client_id, scopes, &family, ttl, now)
    }

    /// Redeems a refresh token under the rotation mode in force.
    pub fn redeem_refresh_token(
        &mut self,
        client_id: &str,
        token: &str,
        requested: Option<&[String]>,
        rotation: Rotation,
        refresh_ttl: i64,
        now: i64,
    ) -> Result<Grant, GrantError> {
        let Some(record) = self.refresh_tokens.get(token).cloned() else {
            return Err(grant_error("invalid_grant", "the refresh token is unknown"));
        };
        if record.client_id != client_id {
            return Err(grant_error(
                "invalid_grant",
                "the refresh token was issued to another client",
            ));
        }
        if record.expires_at <= now {
            return Err(grant_error(
                "invalid_grant",
                "the refresh token has expired",
            ));
        }
        if record.generation != self.generation(&record.username)
            || self.revoked_families.contains(&record.family)
        {
            return Err(grant_error(
                "invalid_grant",
                "the refresh token has been revoked",
            ));
        }
        if self.is_disabled(&record.username) {
            return Err(grant_error("invalid_grant", "the user account is disabled"));
        }
        if record.superseded && rotation == Rotation::Strict {
            // Reuse of a rotated token: someone else may hold the family. Revoke everything.
            self.revoke_user(&record.username);
            self.counters.reuse_detections += 1;
            self.counters.user(&record.username).reuse_detections += 1;
            return Err(grant_error(
                "invalid_grant",
                "the refresh token was already used; every token of this user is revoked",
            ));
        }
        let scopes = match requested {
            Some(requested) => {
                if let Some(extra) = requested.iter().find(|s| !record.scopes.contains(s)) {
                    if super::resources::resource_of(extra).is_some() {
                        return Err(not_consented(extra));
                    }
                    return Err(grant_error(
                        "invalid_scope",
                        format!("scope {extra} was not granted"),
                    ));
                }
                requested.to_vec()
            }
            None => record.scopes.clone(),
        };
        // Consent the user withdrew: the answer grants less than was asked for.
        let declined = self.declined(&record.username);
        let scopes: Vec<String> = scopes
            .into_iter()
            .filter(|s| !declined.contains(s))
            .collect();
        self.counters.refreshes += 1;
        self.counters.user(&record.username).refreshes += 1;
        let refresh_token = match rotation {
            Rotation::Off => token.to_owned(),
            Rotation::Rotate | Rotation::Strict => {
                if let Some(old) = self.refresh_tokens.get_mut(token) {
                    old.superseded = true;
                }
                self.counters.rotations += 1;
                self.counters.user(&record.username).rotations += 1;
                self.new_refresh_token(
                    &record.username,
                    client_id,
                    &record.scopes,
                    &record.family,
                    refresh_ttl,
                    now,
                )
            }
        };
        Ok(Grant {
            generation: self.generation(&record.username),
            sid: self.family_sids.get(&record.family).cloned(),
            username: record.username,
            scopes,
            nonce: None,
            refresh_token: Some(refresh_token),
        })
    }
}

mod counters;
pub use counters::{Counters, Fault, FaultKind, UserCounters};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_refresh_tokens_are_purged_as_the_map_grows() {
        let mut state = State::default();
        let scopes = vec!["offline_access".to_owned()];
        for _ in 0..1024 {
            state.new_refresh_token("ada", "c", &scopes, "f", 10, 0);
        }
        assert_eq!(state.refresh_tokens.len(), 1024);
        // All of those expired at 10; the next issue (at 100) drops them.
        let live = state.new_refresh_token("ada", "c", &scopes, "f", 10, 100);
        assert_eq!(state.refresh_tokens.len(), 1);
        assert!(state.refresh_tokens.contains_key(&live));
    }
}
