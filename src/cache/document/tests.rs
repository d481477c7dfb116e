use super::*;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

const NOW: i64 = 1_795_637_614;
const MARGIN: i64 = DEFAULT_REFRESH_MARGIN;

fn ctx() -> ClientContext {
    ClientContext {
        client_id: "11111111-aaaa-bbbb-cccc-222222222222".into(),
        environment: "login.microsoftonline.com".into(),
        realm: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
    }
}

fn client_info(uid: &str, utid: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!(r#"{{"uid":"{uid}","utid":"{utid}"}}"#))
}

fn claims() -> IdTokenClaims {
    IdTokenClaims {
        sub: "sub-123".into(),
        oid: Some("Oid-1".into()),
        tid: Some(ctx().realm),
        preferred_username: Some("Ada@Contoso.com".into()),
        upn: None,
        name: Some("Ada Lovelace".into()),
        sid: None,
    }
}

fn sign_in_response() -> TokenResponse {
    TokenResponse {
        access_token: Secret::new("at-1"),
        token_type: Some("Bearer".into()),
        expires_in: Some(3600),
        ext_expires_in: Some(7200),
        refresh_in: None,
        refresh_token: Some(Secret::new("rt-1")),
        id_token: Some(IdToken {
            raw: Secret::new("header.payload.sig"),
            claims: claims(),
        }),
        scope: Some("User.Read openid profile offline_access".into()),
        client_info: Some(client_info("Oid-1", "Tenant-1")),
        family_id: None,
        user_assertion_hash: None,
    }
}

fn signed_in() -> (CacheDocument, String) {
    let mut doc = CacheDocument::default();
    let home = doc
        .add_token_response(
            &ctx(),
            &sign_in_response(),
            &["User.Read"],
            Grant::AuthorizationCode,
            None,
            NOW,
        )
        .unwrap();
    (doc, home)
}

fn json(doc: &CacheDocument) -> serde_json::Value {
    serde_json::from_slice(&doc.to_json()).unwrap()
}

#[test]
fn home_account_id_prefers_client_info_then_sub() {
    let c = claims();
    assert_eq!(
        home_account_id(Some(&client_info("u", "t")), Some(&c)).as_deref(),
        Some("u.t")
    );
    assert_eq!(home_account_id(None, Some(&c)).as_deref(), Some("sub-123"));
    // client_info without utid (seen from some accounts) falls back to sub, as MSAL Python does.
    let partial = URL_SAFE_NO_PAD.encode(r#"{"uid":"u"}"#);
    assert_eq!(
        home_account_id(Some(&partial), Some(&c)).as_deref(),
        Some("sub-123")
    );
    assert_eq!(home_account_id(Some("%%%not base64"), None), None);
    assert_eq!(home_account_id(None, None), None);
}

#[test]
fn sign_in_writes_every_entry_under_the_exact_msal_keys() {
    let (doc, home) = signed_in();
    assert_eq!(home, "Oid-1.Tenant-1");
    let c = ctx();
    let v = json(&doc);
    let at_key = format!(
        "oid-1.tenant-1-login.microsoftonline.com-accesstoken-{}-{}-user.read offline_access openid profile",
        c.client_id, c.realm
    );
    let at = &v["AccessToken"][&at_key];
    assert_eq!(at["credential_type"], "AccessToken");
    assert_eq!(at["secret"], "at-1");
    assert_eq!(at["home_account_id"], "Oid-1.Tenant-1");
    assert_eq!(at["target"], "User.Read offline_access openid profile");
    assert_eq!(at["token_type"], "Bearer");
    assert_eq!(at["cached_at"], NOW.to_string());
    assert_eq!(at["expires_on"], (NOW + 3600).to_string());
    assert_eq!(at["extended_expires_on"], (NOW + 7200).to_string());
    assert!(at.get("refresh_on").is_none());

    let rt_key = format!(
        "oid-1.tenant-1-login.microsoftonline.com-refreshtoken-{}--",
        c.client_id
    );
    let rt = &v["RefreshToken"][&rt_key];
    assert_eq!(rt["secret"], "rt-1");
    assert!(rt.get("target").is_none() && rt.get("realm").is_none());

    let idt_key = format!(
        "oid-1.tenant-1-login.microsoftonline.com-idtoken-{}-{}-",
        c.client_id, c.realm
    );
    assert_eq!(v["IdToken"][&idt_key]["secret"], "header.payload.sig");

    let account = &v["Account"][&format!("oid-1.tenant-1-login.microsoftonline.com-{}", c.realm)];
    assert_eq!(account["local_account_id"], "Oid-1");
    assert_eq!(account["username"], "Ada@Contoso.com");
    assert_eq!(account["authority_type"], "MSSTS");
    assert_eq!(account["account_source"], "authorization_code");
    assert_eq!(account["name"], "Ada Lovelace");

    // AppMetadata keys keep their case (MSAL Python does not lowercase them).
    let meta_key = format!("appmetadata-login.microsoftonline.com-{}", c.client_id);
    assert_eq!(
        v["AppMetadata"][&meta_key]["client_id"],
        c.client_id.as_str()
    );
}

#[test]
fn every_value_is_a_string() {
    let (doc, _) = signed_in();
    for (_, section) in json(&doc).as_object().unwrap() {
        for (_, entry) in section.as_object().unwrap() {
            for (field, value) in entry.as_object().unwrap() {
                assert!(value.is_string(), "{field} = {value}");
            }
        }
    }
}

#[test]
fn target_falls_back_to_the_requested_scopes_sorted() {
    let mut response = sign_in_response();
    response.scope = None;
    let mut doc = CacheDocument::default();
    doc.add_token_response(
        &ctx(),
        &response,
        &["profile", "User.Read", "openid", "User.Read"],
        Grant::AuthorizationCode,
        None,
        NOW,
    )
    .unwrap();
    let (_, at) = doc.access_tokens().next().unwrap();
    assert_eq!(at.target, "User.Read openid profile");
}

#[test]
fn usable_access_token_needs_a_scope_subset_and_300_seconds() {
    let (doc, home) = signed_in();
    let c = ctx();
    assert!(doc
        .find_access_token(&c, &home, &["User.Read"], NOW, MARGIN)
        .is_some());
    assert!(doc
        .find_access_token(&c, &home, &["user.read", "openid"], NOW, MARGIN)
        .is_some());
    assert!(doc.find_access_token(&c, &home, &[], NOW, MARGIN).is_some());
    assert!(doc
        .find_access_token(&c, &home, &["Mail.Read"], NOW, MARGIN)
        .is_none());
    // exactly 300 s left is enough; 299 is not
    assert!(doc
        .find_access_token(&c, &home, &["User.Read"], NOW + 3600 - 300, MARGIN)
        .is_some());
    assert!(doc
        .find_access_token(&c, &home, &["User.Read"], NOW + 3600 - 299, MARGIN)
        .is_none());
    let mut other = c.clone();
    other.client_id = "another-client".into();
    assert!(doc
        .find_access_token(&other, &home, &["User.Read"], NOW, MARGIN)
        .is_none());
    let mut other = c.clone();
    other.realm = "another-tenant".into();
    assert!(doc
        .find_access_token(&other, &home, &["User.Read"], NOW, MARGIN)
        .is_none());
    assert!(doc
        .find_access_token(&c, "someone.else", &["User.Read"], NOW, MARGIN)
        .is_none());
}

#[test]
fn the_margin_is_at_most_half_a_short_tokens_lifetime() {
    for (lifetime, usable_for) in [(60, 30), (300, 150), (601, 301), (3600, 3300)] {
        let mut response = sign_in_response();
        response.expires_in = Some(lifetime);
        let mut doc = CacheDocument::default();
        let home = doc
            .add_token_response(&ctx(), &response, &[], Grant::AuthorizationCode, None, NOW)
            .unwrap();
        let at = |t: i64| doc.find_access_token(&ctx(), &home, &["User.Read"], t, MARGIN);
        assert!(at(NOW).is_some(), "{lifetime} s token, just issued");
        assert!(
            at(NOW + usable_for).is_some(),
            "{lifetime} s token at {usable_for} s"
        );
        assert!(
            at(NOW + usable_for + 1).is_none(),
            "{lifetime} s token at {} s",
            usable_for + 1
        );
    }
    // Without a margin (a token just redeemed), a token is used until, not at, its expiry.
    let (doc, home) = signed_in();
    let at = |t: i64| doc.find_access_token(&ctx(), &home, &["User.Read"], t, 0);
    assert!(at(NOW + 3599).is_some());
    assert!(at(NOW + 3600).is_none());
    // A smaller configured margin is honoured as it is.
    let (doc, home) = signed_in();
    assert!(doc
        .find_access_token(&ctx(), &home, &["User.Read"], NOW + 3600 - 60, 60)
        .is_some());
}

#[test]
fn entries_written_under_an_alias_of_the_authority_are_found() {
    let (doc, home) = signed_in();
    let mut alias = ctx();
    alias.environment = "login.windows.net".into();
    assert!(doc
        .find_access_token(&alias, &home, &["User.Read"], NOW, MARGIN)
        .is_some());
    assert!(doc.find_refresh_token(&alias, &home).is_some());
    let mut other_cloud = ctx();
    other_cloud.environment = "login.microsoftonline.us".into();
    assert!(doc
        .find_access_token(&other_cloud, &home, &["User.Read"], NOW, MARGIN)
        .is_none());
}

#[test]
fn refresh_on_marks_a_token_due_but_still_usable() {
    let mut response = sign_in_response();
    response.refresh_in = Some(1800);
    let mut doc = CacheDocument::default();
    let home = doc
        .add_token_response(&ctx(), &response, &[], Grant::AuthorizationCode, None, NOW)
        .unwrap();
    let early = doc
        .find_access_token(&ctx(), &home, &["User.Read"], NOW + 10, MARGIN)
        .unwrap();
    assert!(!early.refresh_due);
    assert_eq!(
        early.entry.refresh_on.as_deref(),
        Some((NOW + 1800).to_string().as_str())
    );
    let late = doc
        .find_access_token(&ctx(), &home, &["User.Read"], NOW + 1800, MARGIN)
        .unwrap();
    assert!(late.refresh_due);
}

#[test]
fn refresh_rotates_the_refresh_token_in_place_and_keeps_the_account() {
    let (mut doc, home) = signed_in();
    let refreshed = TokenResponse {
        access_token: Secret::new("at-2"),
        refresh_token: Some(Secret::new("rt-2")),
        id_token: None,
        client_info: None,
        ..sign_in_response()
    };
    let later = NOW + 3000;
    let got = doc
        .add_token_response(
            &ctx(),
            &refreshed,
            &["User.Read"],
            Grant::RefreshToken,
            Some(&home),
            later,
        )
        .unwrap();
    assert_eq!(got, home);
    assert_eq!(doc.refresh_tokens().count(), 1);
    let rt = doc.find_refresh_token(&ctx(), &home).unwrap();
    assert_eq!(rt.secret.expose(), "rt-2");
    assert_eq!(
        rt.last_modification_time.as_deref(),
        Some(later.to_string().as_str())
    );
    let at = doc
        .find_access_token(&ctx(), &home, &["User.Read"], later, MARGIN)
        .unwrap();
    assert_eq!(at.entry.secret.expose(), "at-2");
    assert_eq!(doc.accounts().count(), 1);
    assert_eq!(
        doc.account(&ctx(), &home)
            .unwrap()
            .account_source
            .as_deref(),
        Some("authorization_code")
    );
}

#[test]
fn a_refresh_answered_for_another_account_is_refused() {
    let (mut doc, _) = signed_in();
    let before = doc.clone();
    let err = doc
        .add_token_response(
            &ctx(),
            &sign_in_response(),
            &[],
            Grant::RefreshToken,
            Some("victim.tenant"),
            NOW,
        )
        .unwrap_err();
    assert!(matches!(err, DocumentError::AccountMismatch { .. }));
    assert_eq!(doc, before);
}

#[test]
fn a_response_without_any_account_is_refused() {
    let mut response = sign_in_response();
    response.client_info = None;
    response.id_token = None;
    let err = CacheDocument::default()
        .add_token_response(&ctx(), &response, &[], Grant::AuthorizationCode, None, NOW)
        .unwrap_err();
    assert!(matches!(err, DocumentError::NoAccount));
}

#[test]
fn generic_providers_use_sub_and_no_client_info() {
    let mut response = sign_in_response();
    response.client_info = None;
    let mut doc = CacheDocument::default();
    let home = doc
        .add_token_response(&ctx(), &response, &[], Grant::AuthorizationCode, None, NOW)
        .unwrap();
    assert_eq!(home, "sub-123");
    assert!(doc.find_refresh_token(&ctx(), "sub-123").is_some());
}

#[test]
fn expired_access_tokens_are_dropped() {
    let (mut doc, _) = signed_in();
    assert_eq!(doc.remove_expired_access_tokens(NOW + 3600), 0);
    assert_eq!(doc.remove_expired_access_tokens(NOW + 3601), 1);
    assert_eq!(doc.access_tokens().count(), 0);
    assert_eq!(doc.refresh_tokens().count(), 1);
}

#[test]
fn unknown_sections_and_fields_survive_a_read_modify_write() {
    let (doc, home) = signed_in();
    let mut v = json(&doc);
    v["FutureSection"] = serde_json::json!({"k": {"x": "1"}});
    for (_, at) in v["AccessToken"].as_object_mut().unwrap() {
        at["key_id"] = "pop-key".into();
    }
    let mut doc = CacheDocument::parse(&serde_json::to_vec(&v).unwrap()).unwrap();
    let refreshed = TokenResponse {
        access_token: Secret::new("at-2"),
        refresh_token: Some(Secret::new("rt-2")),
        id_token: None,
        client_info: None,
        scope: Some("Mail.Read".into()),
        ..sign_in_response()
    };
    doc.add_token_response(
        &ctx(),
        &refreshed,
        &[],
        Grant::RefreshToken,
        Some(&home),
        NOW + 10,
    )
    .unwrap();
    let after = json(&doc);
    assert_eq!(after["FutureSection"]["k"]["x"], "1");
    let kept = after["AccessToken"]
        .as_object()
        .unwrap()
        .values()
        .filter(|at| at["key_id"] == "pop-key")
        .count();
    assert_eq!(kept, 1);
}

#[test]
fn numeric_timestamps_are_read_and_written_back_as_strings() {
    let raw = br#"{"AccessToken":{"k":{"credential_type":"AccessToken","secret":"s","home_account_id":"h","environment":"e","client_id":"c","realm":"r","target":"a","cached_at":1,"expires_on":2000000000,"extended_expires_on":2000000000}}}"#;
    let doc = CacheDocument::parse(raw).unwrap();
    assert_eq!(
        doc.access_tokens().next().unwrap().1.expires_on(),
        2_000_000_000
    );
    assert_eq!(json(&doc)["AccessToken"]["k"]["expires_on"], "2000000000");
}

#[test]
fn malformed_documents_are_errors() {
    for raw in [
        &b"not json"[..],
        b"[]",
        br#"{"AccessToken": []}"#,
        br#"{"AccessToken":{"k":{"expires_on":{}}}}"#,
    ] {
        assert!(
            matches!(CacheDocument::parse(raw), Err(DocumentError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(raw)
        );
    }
    // An entry missing fields is kept but never matches.
    let doc = CacheDocument::parse(br#"{"AccessToken":{"k":{"secret":"s"}}}"#).unwrap();
    assert!(doc
        .find_access_token(&ctx(), "", &[], NOW, MARGIN)
        .is_none());
}

#[test]
fn debug_output_has_no_token_secrets() {
    let (doc, _) = signed_in();
    let debug = format!("{doc:?}");
    for secret in ["at-1", "rt-1", "header.payload.sig"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn a_field_written_as_null_reads_as_empty() {
    // What MSAL Python writes for an account after a refresh that brought no ID token.
    let json = br#"{"Account":{"h-login.microsoftonline.com-r":{"home_account_id":"h",
        "environment":"login.microsoftonline.com","realm":"r","local_account_id":null,
        "username":"","authority_type":"MSSTS"}}}"#;
    let doc = CacheDocument::parse(json).unwrap();
    let (_, account) = doc.accounts().next().unwrap();
    assert_eq!(account.local_account_id, "");
    assert_eq!(account.home_account_id, "h");
}

#[test]
fn of_several_refresh_token_entries_the_latest_is_used_and_rotation_rewrites_them_all() {
    let (mut doc, home) = signed_in();
    // MSAL Python's second entry, keyed by the scope it redeemed for, written a minute later.
    let mut second = doc.find_refresh_token(&ctx(), &home).unwrap().clone();
    second.secret = Secret::new("rt-2");
    second.last_modification_time = Some((NOW + 60).to_string());
    let key = format!(
        "{}-refreshtoken-{}--api://tasks/tasks.read",
        home.to_lowercase(),
        ctx().client_id
    )
    .replacen(
        "-refreshtoken",
        &format!("-{}-refreshtoken", ctx().environment),
        1,
    );
    doc.refresh_tokens.insert(key, second);
    assert_eq!(
        doc.find_refresh_token(&ctx(), &home)
            .unwrap()
            .secret
            .expose(),
        "rt-2"
    );
    let mut refreshed = sign_in_response();
    refreshed.refresh_token = Some(Secret::new("rt-3"));
    refreshed.id_token = None;
    doc.add_token_response(
        &ctx(),
        &refreshed,
        &["User.Read"],
        Grant::RefreshToken,
        Some(&home),
        NOW + 120,
    )
    .unwrap();
    let secrets: Vec<&str> = doc
        .refresh_tokens()
        .map(|(_, rt)| rt.secret.expose())
        .collect();
    assert_eq!(secrets, ["rt-3", "rt-3"], "no stale copy");
}

#[test]
fn the_app_s_sessions_are_listed_pruned_and_ended_by_provider_session() {
    let mut doc = CacheDocument::default();
    doc.add_session("s-old", Some("sid-a"), NOW - 1_000, NOW - 2_000);
    doc.add_session("s-1", Some("sid-a"), NOW, NOW - 500);
    assert!(
        !doc.has_session("s-old"),
        "begun before the longest a session lives"
    );
    doc.add_session("s-2", Some("sid-b"), NOW, NOW - 500);
    doc.add_session("s-3", None, NOW, NOW - 500);
    assert!(doc.has_session("s-1") && doc.has_session("s-2") && doc.has_session("s-3"));

    // Kept as tokenbridge's own section through a round trip (and so through MSAL, which keeps
    // sections it does not know).
    let json: Value = serde_json::from_slice(&doc.to_json()).unwrap();
    assert_eq!(json["TokenBridgeSession"]["s-2"]["sid_key"], "sid-b");
    assert_eq!(json["TokenBridgeSession"]["s-3"]["sid_key"], "");
    let mut doc = CacheDocument::parse(&doc.to_json()).unwrap();
    assert_eq!(doc.sessions().count(), 3);

    assert_eq!(doc.end_sessions_from("sid-a"), 1);
    assert_eq!(doc.end_sessions_from("sid-a"), 0, "ended already");
    assert!(!doc.has_session("s-1") && doc.has_session("s-2"));
    assert_eq!(doc.end_sessions_from("sid-b"), 1);
    assert_eq!(
        doc.sessions().count(),
        1,
        "a session with no provider session is left"
    );
}
