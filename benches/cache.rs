//! Cost of one user's token cache: document size, parse and serialize, seal and open, and the
//! store's load (read + open + parse) and save (serialize + seal + compare-and-swap write).
//! Run: `cargo bench --bench cache`. SQLite by default; TOKENBRIDGE_BENCH_DATABASE_URL picks
//! another (an empty database; it is migrated).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine;
use std::time::{Duration, Instant};
use tokenbridge::cache::document::{
    CacheDocument, ClientContext, Grant, IdToken, IdTokenClaims, TokenResponse,
};
use tokenbridge::cache::seal::{SealKeys, Sealer};
use tokenbridge::cache::store::TokenCacheStore;
use tokenbridge::db::{migrate, Database, DatabaseUrl};
use tokenbridge::secret::Secret;
use tokenbridge::settings::Settings;

const ROUNDS: u32 = 2_000;

fn context() -> ClientContext {
    ClientContext {
        client_id: "11111111-2222-3333-4444-555555555555".into(),
        environment: "login.microsoftonline.com".into(),
        realm: "72f988bf-86f1-41af-91ab-2d7cd011db47".into(),
    }
}

/// A document shaped like a real Entra ID user's: JWT-sized tokens, one of each entry.
fn document(now: i64) -> CacheDocument {
    let jwt = |len: usize| "x".repeat(len);
    let client_info = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"uid":"00000000-0000-0000-66f3-3332eca7ea81","utid":"72f988bf-86f1-41af-91ab-2d7cd011db47"}"#);
    let response = TokenResponse {
        access_token: Secret::new(jwt(1_800)),
        token_type: Some("Bearer".into()),
        expires_in: Some(4_000),
        ext_expires_in: Some(4_000),
        refresh_in: None,
        refresh_token: Some(Secret::new(jwt(1_100))),
        id_token: Some(IdToken {
            raw: Secret::new(jwt(1_400)),
            claims: IdTokenClaims {
                sub: "sub".into(),
                oid: Some("00000000-0000-0000-66f3-3332eca7ea81".into()),
                tid: Some("72f988bf-86f1-41af-91ab-2d7cd011db47".into()),
                preferred_username: Some("ada.lovelace@contoso.com".into()),
                upn: None,
                name: Some("Ada Lovelace".into()),
                sid: None,
            },
        }),
        scope: Some("User.Read openid profile offline_access email".into()),
        client_info: Some(client_info),
        family_id: None,
        user_assertion_hash: None,
    };
    let mut doc = CacheDocument::default();
    doc.add_token_response(
        &context(),
        &response,
        &["User.Read"],
        Grant::AuthorizationCode,
        None,
        now,
    )
    .unwrap();
    doc
}

fn per_op(started: Instant, rounds: u32) -> String {
    let each: Duration = started.elapsed() / rounds;
    format!("{:.1} µs", each.as_secs_f64() * 1e6)
}

fn main() {
    let now = time::OffsetDateTime::now_utc();
    let doc = document(now.unix_timestamp());
    let json = doc.to_json();
    let keys = SealKeys::parse(&Secret::new(
        "k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    ))
    .unwrap();
    let sealer = Sealer::new(Some(keys), false);
    let sealed = sealer.seal("uid.utid", &json).unwrap();
    println!(
        "document: {} bytes JSON, {} bytes sealed",
        json.len(),
        sealed.len()
    );

    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(CacheDocument::parse(std::hint::black_box(&json)).unwrap());
    }
    println!("parse: {}", per_op(started, ROUNDS));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(std::hint::black_box(&doc).to_json());
    }
    println!("serialize: {}", per_op(started, ROUNDS));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(sealer.seal("uid.utid", &json).unwrap());
    }
    println!("seal: {}", per_op(started, ROUNDS));
    let started = Instant::now();
    for _ in 0..ROUNDS {
        std::hint::black_box(sealer.open("uid.utid", &sealed).unwrap());
    }
    println!("open: {}", per_op(started, ROUNDS));

    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::from_sources("", "bench", &std::collections::HashMap::new())
        .unwrap()
        .database;
    let url = std::env::var("TOKENBRIDGE_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| format!("sqlite://{}", dir.path().join("bench.db").display()));
    settings.url = DatabaseUrl::parse(&url).unwrap();
    let db = Database::connect(&settings).unwrap();
    let mut conn = db.get().unwrap();
    migrate::run_pending(&mut conn).unwrap();
    let store = TokenCacheStore::new(sealer, Duration::from_secs(90 * 86_400));
    // As every process does before it seals: the key against the database's check value.
    store.verify_keys(&mut conn, now).unwrap();
    let ids: Vec<String> = (0..ROUNDS).map(|i| format!("user-{i}.tenant")).collect();
    let started = Instant::now();
    for id in &ids {
        store.save(&mut conn, id, &doc, None, now).unwrap();
    }
    println!(
        "{} store save (insert): {}",
        settings.url.backend(),
        per_op(started, ROUNDS)
    );
    let started = Instant::now();
    for id in &ids {
        store.save(&mut conn, id, &doc, Some(1), now).unwrap();
    }
    println!(
        "{} store save (compare-and-swap update): {}",
        settings.url.backend(),
        per_op(started, ROUNDS)
    );
    let started = Instant::now();
    for id in &ids {
        std::hint::black_box(store.load(&mut conn, id, now).unwrap().unwrap());
    }
    println!(
        "{} store load (read + open + parse): {}",
        settings.url.backend(),
        per_op(started, ROUNDS)
    );
    let started = Instant::now();
    for id in &ids {
        std::hint::black_box(store.current_version(&mut conn, id, now).unwrap());
    }
    println!(
        "{} version check (a cached page's only query): {}",
        settings.url.backend(),
        per_op(started, ROUNDS)
    );
}
