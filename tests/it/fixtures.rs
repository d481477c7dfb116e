//! Documents and stores shared by the store tests.

use base64::Engine;
use std::time::Duration;
use tokenbridge::activity::store::ActivityUpsert;
use tokenbridge::cache::document::{
    CacheDocument, ClientContext, Grant, IdToken, IdTokenClaims, TokenResponse,
};
use tokenbridge::cache::seal::{SealKeys, Sealer};
use tokenbridge::cache::store::TokenCacheStore;
use tokenbridge::secret::Secret;

pub const KEY: &str = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
/// Another 32-byte key: what a typo, a truncated copy or a regenerated secret gives.
pub const OTHER_KEY: &str = "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

/// Cache keys from `spec` (`id=base64,...`).
pub fn keys(spec: &str) -> SealKeys {
    SealKeys::parse(&Secret::new(spec)).unwrap()
}
pub const NINETY_DAYS: Duration = Duration::from_secs(90 * 24 * 3600);

pub fn ctx() -> ClientContext {
    ClientContext {
        client_id: "tokenbridge-test-client".into(),
        environment: "login.microsoftonline.com".into(),
        realm: "tenant-1".into(),
    }
}

/// A signed-in user's document; returns it with the home account id (`{uid}.tenant-1`).
pub fn document(uid: &str, access_token: &str, now: i64) -> (CacheDocument, String) {
    let response = answer(uid, access_token);
    let mut doc = CacheDocument::default();
    let home = doc
        .add_token_response(
            &ctx(),
            &response,
            &["User.Read"],
            Grant::AuthorizationCode,
            None,
            now,
        )
        .expect("a valid response");
    (doc, home)
}

/// The provider's answer for user `uid` (in tenant `tenant-1`): `access_token`, a refresh token
/// `rt-for-{uid}`, an ID token and `client_info`.
pub fn answer(uid: &str, access_token: &str) -> TokenResponse {
    let client_info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!(r#"{{"uid":"{uid}","utid":"tenant-1"}}"#));
    TokenResponse {
        access_token: Secret::new(access_token),
        token_type: Some("Bearer".into()),
        expires_in: Some(3600),
        ext_expires_in: None,
        refresh_in: None,
        refresh_token: Some(Secret::new(format!("rt-for-{uid}"))),
        id_token: Some(IdToken {
            raw: Secret::new(format!("idt-for-{uid}")),
            claims: IdTokenClaims {
                sub: format!("sub-{uid}"),
                oid: Some(uid.into()),
                tid: Some("tenant-1".into()),
                preferred_username: Some(format!("{uid}@contoso.com")),
                upn: None,
                name: Some(format!("User {uid}")),
                sid: None,
            },
        }),
        scope: Some("User.Read openid profile offline_access".into()),
        client_info: Some(client_info),
        family_id: None,
        user_assertion_hash: None,
    }
}

pub fn activity<'a>(home: &'a str, upn: &'a str) -> ActivityUpsert<'a> {
    ActivityUpsert {
        account_cache_key: home,
        account_identifier: home,
        object_id: home.split('.').next(),
        tenant_id: Some("tenant-1"),
        user_principal_name: Some(upn),
        subject: Some(home),
        problem: None,
    }
}

/// A store sealing with `k1`, taken as compared with the store's check values already (the
/// tests that use it are about something else; `cache_store::key_checks` tests the comparison).
pub fn sealed_store() -> TokenCacheStore {
    TokenCacheStore::new(trusted(Sealer::new(Some(key_k1()), false)), NINETY_DAYS)
}

pub fn key_k1() -> SealKeys {
    SealKeys::parse(&Secret::new(format!("k1={KEY}"))).unwrap()
}

/// `sealer` with every key recorded as matching the store's check value.
pub fn trusted(sealer: Sealer) -> Sealer {
    for check in sealer.key_checks() {
        sealer.record_check(&check.id, tokenbridge::cache::seal::KeyState::Matches);
    }
    sealer
}

pub fn plain_store() -> TokenCacheStore {
    TokenCacheStore::new(Sealer::plaintext(), NINETY_DAYS)
}
