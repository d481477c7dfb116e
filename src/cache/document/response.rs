//! Adding a provider's token response to a document, as MSAL does: the access token beside
//! the others (one per scope set), the refresh token rotated in place, the ID token and the
//! account, and for on-behalf-of the user token's hash MSAL.NET names its entries with.

use super::*;

impl CacheDocument {
    /// Adds the tokens of a provider response, as MSAL does, and returns the home account id.
    ///
    /// `refreshing` names the account whose refresh token was redeemed: the new tokens are
    /// stored under it even when the response has no ID token, and a response for anybody else
    /// is refused. The refresh token entry is overwritten in place (rotation), and expired access
    /// tokens are dropped.
    pub fn add_token_response(
        &mut self,
        ctx: &ClientContext,
        response: &TokenResponse,
        requested_scopes: &[&str],
        grant: Grant,
        refreshing: Option<&str>,
        now: i64,
    ) -> Result<String, DocumentError> {
        let claims = response.id_token.as_ref().map(|t| &t.claims);
        let home = match (
            home_account_id(response.client_info.as_deref(), claims),
            refreshing,
        ) {
            (Some(got), Some(expected)) if got != expected => {
                return Err(DocumentError::AccountMismatch {
                    expected: expected.to_owned(),
                    got,
                })
            }
            (Some(home), _) => home,
            (None, Some(expected)) => expected.to_owned(),
            (None, None) => return Err(DocumentError::NoAccount),
        };
        let target = match response.scope.as_deref().filter(|s| !s.trim().is_empty()) {
            Some(granted) => keys::target([granted]),
            None => keys::target(requested_scopes.iter().copied()),
        };

        self.add_access_token(ctx, &home, &target, response, now);
        if let Some(secret) = &response.refresh_token {
            self.put_refresh_token(ctx, &home, secret, response.family_id.as_deref(), now);
            if let Some(hash) = &response.user_assertion_hash {
                self.tag_refresh_tokens(ctx, &home, hash);
            }
        }
        if let Some(id_token) = &response.id_token {
            self.id_tokens.insert(
                keys::id_token(&home, &ctx.environment, &ctx.client_id, &ctx.realm),
                IdTokenEntry {
                    credential_type: "IdToken".into(),
                    secret: id_token.raw.clone(),
                    home_account_id: home.clone(),
                    environment: ctx.environment.clone(),
                    realm: ctx.realm.clone(),
                    client_id: ctx.client_id.clone(),
                    extra: Map::new(),
                },
            );
            self.put_account(ctx, &home, &id_token.claims, grant);
        }
        let metadata_key = keys::app_metadata(&ctx.environment, &ctx.client_id);
        let metadata = self.app_metadata.entry(metadata_key).or_default();
        metadata.client_id.clone_from(&ctx.client_id);
        metadata.environment.clone_from(&ctx.environment);
        if response.family_id.is_some() {
            metadata.family_id.clone_from(&response.family_id);
        }
        self.remove_expired_access_tokens(now);
        Ok(home)
    }

    fn add_access_token(
        &mut self,
        ctx: &ClientContext,
        home: &str,
        target: &str,
        response: &TokenResponse,
        now: i64,
    ) {
        // RFC 6749 makes expires_in optional; MSAL assumes 10 minutes when it is missing.
        let expires_in = response.expires_in.unwrap_or(600).max(0);
        let ext_expires_in = response.ext_expires_in.unwrap_or(expires_in).max(0);
        let entry = AccessTokenEntry {
            credential_type: "AccessToken".into(),
            secret: response.access_token.clone(),
            home_account_id: home.to_owned(),
            environment: ctx.environment.clone(),
            client_id: ctx.client_id.clone(),
            realm: ctx.realm.clone(),
            target: target.to_owned(),
            token_type: response
                .token_type
                .clone()
                .unwrap_or_else(|| "Bearer".into()),
            cached_at: now.to_string(),
            expires_on: now.saturating_add(expires_in).to_string(),
            extended_expires_on: now.saturating_add(ext_expires_in).to_string(),
            refresh_on: response
                .refresh_in
                .map(|r| now.saturating_add(r).to_string()),
            extra: assertion_extra(response),
        };
        let key = keys::access_token(home, &ctx.environment, &ctx.client_id, &ctx.realm, target);
        self.access_tokens.insert(key, entry);
    }

    /// Stores a new refresh token: in place of every entry the account's refresh token is in
    /// (rotation leaves no stale copy for another MSAL reader to pick), or as a new entry.
    fn put_refresh_token(
        &mut self,
        ctx: &ClientContext,
        home: &str,
        secret: &Secret,
        family_id: Option<&str>,
        now: i64,
    ) {
        let mut keys: Vec<String> = self
            .refresh_tokens_of(ctx, home)
            .into_iter()
            .map(|(key, _)| key.clone())
            .collect();
        if keys.is_empty() {
            keys.push(keys::refresh_token(home, &ctx.environment, &ctx.client_id));
        }
        for key in keys {
            let entry = self.refresh_tokens.entry(key).or_default();
            entry.credential_type = "RefreshToken".into();
            entry.secret = secret.clone();
            if entry.home_account_id.is_empty() {
                entry.home_account_id = home.to_owned();
                entry.environment.clone_from(&ctx.environment);
                entry.client_id.clone_from(&ctx.client_id);
            }
            if let Some(family) = family_id {
                entry.family_id = Some(family.to_owned());
            }
            entry.last_modification_time = Some(now.to_string());
        }
    }

    /// Names the user token an on-behalf-of exchange was for on the account's refresh
    /// tokens, as MSAL.NET does (a later refresh keeps it: entries are rotated in place).
    fn tag_refresh_tokens(&mut self, ctx: &ClientContext, home: &str, hash: &str) {
        let keys: Vec<String> = self
            .refresh_tokens_of(ctx, home)
            .into_iter()
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            if let Some(entry) = self.refresh_tokens.get_mut(&key) {
                entry
                    .extra
                    .insert(USER_ASSERTION_HASH.into(), Value::String(hash.to_owned()));
            }
        }
    }

    fn put_account(
        &mut self,
        ctx: &ClientContext,
        home: &str,
        claims: &IdTokenClaims,
        grant: Grant,
    ) {
        let key = keys::account(home, &ctx.environment, &ctx.realm);
        let account = self.accounts.entry(key).or_default();
        account.home_account_id = home.to_owned();
        account.environment.clone_from(&ctx.environment);
        account.realm.clone_from(&ctx.realm);
        account.local_account_id = claims.oid.clone().unwrap_or_else(|| claims.sub.clone());
        account.username = claims
            .preferred_username
            .clone()
            .or_else(|| claims.upn.clone())
            .unwrap_or_default();
        account.authority_type = "MSSTS".into();
        if grant == Grant::AuthorizationCode {
            account.account_source = Some("authorization_code".into());
        }
        if claims.name.is_some() {
            account.name.clone_from(&claims.name);
        }
    }
}

/// An access token entry's fields beyond MSAL's common ones: the on-behalf-of user token's
/// hash, when there is one.
fn assertion_extra(response: &TokenResponse) -> Map<String, Value> {
    let mut extra = Map::new();
    if let Some(hash) = &response.user_assertion_hash {
        extra.insert(USER_ASSERTION_HASH.into(), Value::String(hash.clone()));
    }
    extra
}
