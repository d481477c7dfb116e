//! Interoperability with MSAL Python: each side reads the other's cache.

use crate::fixtures::{ctx, document};
use std::path::Path;
use std::process::Command;
use tokenbridge::cache::document::{CacheDocument, Grant, TokenResponse};
use tokenbridge::secret::Secret;

const AUTHORITY: &str = "https://login.microsoftonline.com/tenant-1";
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/interop/msal_interop.py");

/// The Python with MSAL: `TOKENBRIDGE_TEST_PYTHON` (CI's virtual environment), else `python3`.
/// Without it a developer's run skips these tests and says how to set it up; CI's fails.
fn python(test: &str) -> Option<&'static str> {
    let python: &'static str = match std::env::var("TOKENBRIDGE_TEST_PYTHON") {
        Ok(path) if !path.is_empty() => Box::leak(path.into_boxed_str()),
        _ => "python3",
    };
    let has_msal = Command::new(python)
        .args(["-c", "import msal"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_msal {
        crate::support::skip(
            test,
            "MSAL Python (python3 -m venv target/msal && target/msal/bin/pip install msal, \
             then TOKENBRIDGE_TEST_PYTHON=target/msal/bin/python)",
        );
        return None;
    }
    Some(python)
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn msal(python: &str, args: &[&str]) -> String {
    let out = Command::new(python)
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "msal_interop.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A second API's scope: its token lives beside Graph's in one document.
const SECOND_API_SCOPE: &str = "api://tokenbridge-tasks/Tasks.Read";

fn msal_reads(python: &str, path: &Path) -> serde_json::Value {
    msal_reads_for(python, path, "User.Read")
}

fn msal_reads_for(python: &str, path: &Path, scope: &str) -> serde_json::Value {
    let path = path.to_str().unwrap();
    let out = msal(python, &["read", path, &ctx().client_id, AUTHORITY, scope]);
    serde_json::from_str(&out).unwrap()
}

/// A refresh answer for the second API's scope, for `home`.
fn second_api_answer(access_token: &str, refresh_token: &str) -> TokenResponse {
    TokenResponse {
        access_token: Secret::new(access_token),
        token_type: None,
        expires_in: Some(3600),
        ext_expires_in: None,
        refresh_in: None,
        refresh_token: Some(Secret::new(refresh_token)),
        id_token: None,
        scope: Some(SECOND_API_SCOPE.into()),
        client_info: None,
        family_id: None,
        user_assertion_hash: None,
    }
}

#[test]
fn msal_python_reads_a_cache_tokenbridge_wrote_and_acquires_silently_from_it() {
    let Some(python) = python(
        "interop::msal_python_reads_a_cache_tokenbridge_wrote_and_acquires_silently_from_it",
    ) else {
        return;
    };
    let (mut doc, home) = document("oid-7", "tokenbridge-access-token", now());
    doc.add_token_response(
        &ctx(),
        &second_api_answer("tokenbridge-second-api-token", "rt-for-oid-7"),
        &[SECOND_API_SCOPE],
        Grant::RefreshToken,
        Some(&home),
        now(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    std::fs::write(&path, doc.to_json()).unwrap();

    let seen = msal_reads(python, &path);
    assert_eq!(
        seen["access_tokens"],
        serde_json::json!(["tokenbridge-access-token"])
    );
    assert_eq!(seen["refresh_tokens"], serde_json::json!(["rt-for-oid-7"]));
    assert_eq!(seen["accounts"][0]["home_account_id"], home.as_str());
    assert_eq!(seen["accounts"][0]["username"], "oid-7@contoso.com");
    assert_eq!(seen["accounts"][0]["local_account_id"], "oid-7");
    assert_eq!(seen["silent"], "tokenbridge-access-token");
    assert_eq!(seen["silent_source"], "cache");
    // The second API's token, beside it: MSAL finds it by its scope.
    let second = msal_reads_for(python, &path, SECOND_API_SCOPE);
    assert_eq!(
        second["access_tokens"],
        serde_json::json!(["tokenbridge-second-api-token"])
    );
    assert_eq!(second["silent"], "tokenbridge-second-api-token");
    assert_eq!(second["silent_source"], "cache");
}

#[test]
fn tokenbridge_reads_a_cache_msal_python_wrote_and_msal_reads_it_back_after_a_rotation() {
    let Some(python) = python("interop::tokenbridge_reads_a_cache_msal_python_wrote_and_msal_reads_it_back_after_a_rotation") else { return };
    let t = now();
    let written = msal(
        python,
        &[
            "write",
            &ctx().client_id,
            AUTHORITY,
            "py-uid",
            "tenant-1",
            &t.to_string(),
        ],
    );
    let mut doc = CacheDocument::parse(written.as_bytes()).unwrap();
    let home = "py-uid.tenant-1";
    let at = doc
        .find_access_token(&ctx(), home, &["User.Read"], t, 300)
        .unwrap();
    assert_eq!(at.entry.secret.expose(), "python-access-token");
    let second = doc
        .find_access_token(&ctx(), home, &[SECOND_API_SCOPE], t, 300)
        .unwrap();
    assert_eq!(second.entry.secret.expose(), "python-second-api-token");
    assert_eq!(
        doc.find_refresh_token(&ctx(), home)
            .unwrap()
            .secret
            .expose(),
        "python-refresh-token-2"
    );
    // MSAL Python rewrote the account on the refresh without an ID token, its
    // local_account_id as null: read as empty, not as a corrupt cache.
    let (_, account) = doc.accounts().next().unwrap();
    assert_eq!(account.home_account_id, home);
    assert_eq!(account.local_account_id, "");

    // tokenbridge refreshes (a rotated refresh token, no ID token) and writes the cache back.
    let refreshed = TokenResponse {
        access_token: Secret::new("rotated-access-token"),
        token_type: None,
        expires_in: Some(7200),
        ext_expires_in: None,
        refresh_in: None,
        refresh_token: Some(Secret::new("rotated-refresh-token")),
        id_token: None,
        scope: Some("User.Read openid profile offline_access".into()),
        client_info: None,
        family_id: None,
        user_assertion_hash: None,
    };
    doc.add_token_response(
        &ctx(),
        &refreshed,
        &["User.Read"],
        Grant::RefreshToken,
        Some(home),
        t + 60,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    std::fs::write(&path, doc.to_json()).unwrap();

    let seen = msal_reads(python, &path);
    // MSAL Python's two entries (one per scope set) both hold the rotated token: no stale copy
    // for MSAL to redeem (which strict rotation would take for reuse).
    assert_eq!(
        seen["refresh_tokens"],
        serde_json::json!(["rotated-refresh-token", "rotated-refresh-token"]),
        "rotated in place, no stale copy"
    );
    assert_eq!(seen["accounts"][0]["home_account_id"], home);
    assert_eq!(
        seen["silent"], "rotated-access-token",
        "the longest-lived token is chosen"
    );
    let second = msal_reads_for(python, &path, SECOND_API_SCOPE);
    assert_eq!(second["silent"], "python-second-api-token", "kept beside");
}

/// tokenbridge lists the app's sessions in a section of its own; MSAL Python, writing the cache
/// after a refresh of its own, keeps it (so a session is not ended by another program's write).
#[test]
fn msal_python_keeps_the_app_s_sessions_when_it_writes_the_cache() {
    let Some(python) =
        python("interop::msal_python_keeps_the_app_s_sessions_when_it_writes_the_cache")
    else {
        return;
    };
    let t = now();
    let (mut doc, home) = document("oid-8", "tokenbridge-access-token", t);
    doc.add_session("web-session-1", Some("sid-key-1"), t, t - 3600);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    std::fs::write(&path, doc.to_json()).unwrap();

    let written = msal(
        python,
        &[
            "rewrite",
            path.to_str().unwrap(),
            &ctx().client_id,
            AUTHORITY,
            &(t + 60).to_string(),
        ],
    );
    let doc = CacheDocument::parse(written.as_bytes()).unwrap();
    let at = doc
        .find_access_token(&ctx(), &home, &["User.Read"], t + 60, 300)
        .unwrap();
    assert_eq!(
        at.entry.secret.expose(),
        "python-rewritten-token",
        "MSAL wrote"
    );
    assert!(doc.has_session("web-session-1"), "{written}");
    let (_, session) = doc.sessions().next().unwrap();
    assert_eq!(session.sid_key, "sid-key-1");
}

/// A web API's user, whose tokens came from an on-behalf-of exchange: entries named as
/// MSAL.NET names them (`user_assertion_hash` on the access and refresh token), and MSAL
/// Python, which ignores the field, sees the account and acquires silently from the cache.
#[test]
fn msal_python_reads_the_tokens_of_an_on_behalf_of_exchange() {
    let Some(python) = python("interop::msal_python_reads_the_tokens_of_an_on_behalf_of_exchange")
    else {
        return;
    };
    let hash = tokenbridge::cache::document::user_assertion_hash("the-spa-s-token");
    // An on-behalf-of answer: with an ID token (`openid` is asked for) and a refresh token.
    let mut obo = crate::fixtures::answer("oid-8", "obo-access-token");
    obo.refresh_token = Some(Secret::new("obo-refresh-token"));
    obo.user_assertion_hash = Some(hash.clone());
    let home = "oid-8.tenant-1";
    let mut doc = CacheDocument::default();
    doc.add_token_response(
        &ctx(),
        &obo,
        &["User.Read"],
        Grant::RefreshToken,
        Some(home),
        now(),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&doc.to_json()).unwrap();
    for section in ["AccessToken", "RefreshToken"] {
        let entries = json[section].as_object().unwrap();
        assert_eq!(entries.len(), 1, "{section}");
        let entry = entries.values().next().unwrap();
        assert_eq!(entry["user_assertion_hash"], hash.as_str(), "{section}");
    }
    assert!(doc
        .find_access_token_for_assertion(&ctx(), home, &["User.Read"], &hash, now(), 300)
        .is_some());
    let other = tokenbridge::cache::document::user_assertion_hash("another-token");
    assert!(doc
        .find_access_token_for_assertion(&ctx(), home, &["User.Read"], &other, now(), 300)
        .is_none());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cache.json");
    std::fs::write(&path, doc.to_json()).unwrap();
    let seen = msal_reads(python, &path);
    assert_eq!(seen["accounts"][0]["home_account_id"], home);
    assert_eq!(
        seen["refresh_tokens"],
        serde_json::json!(["obo-refresh-token"])
    );
    assert_eq!(seen["silent"], "obo-access-token");
    assert_eq!(seen["silent_source"], "cache");
}
