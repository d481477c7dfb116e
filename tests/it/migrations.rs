//! Migrations on every backend, and the schema they make against src/db/schema.rs.

use crate::backend_tests;
use crate::fixtures::{document, plain_store};
use crate::support::{TestDb, T0};
use diesel::sql_types::Text;
use diesel::{Column, QueryableByName, RunQueryDsl};
use tokenbridge::activity::store as activities;
use tokenbridge::cache::store::CacheStoreError;
use tokenbridge::db::schema::{
    account_activities as aa, cache_key_checks as ck, logout_tokens_seen as lt,
    provider_sessions as ps, readiness_heartbeat as hb, sign_ins as si, token_cache as tc,
    worker_passes as wp,
};
use tokenbridge::db::{migrate, Backend, DbError};

backend_tests!(with_fresh:
    migrate_up_down_and_up_again,
    schemas_agree_with_schema_rs,
    an_unmigrated_database_says_run_migrate,
    the_binary_migrates_every_backend,
);

const NAMES: [&str; 11] = [
    "2026-11-25-000001_create_token_cache",
    "2026-11-25-000002_create_account_activities",
    "2026-11-27-000003_add_last_attempt_at",
    "2026-11-27-000004_add_session_epoch",
    "2026-11-27-000005_create_sign_ins",
    "2026-12-07-000006_create_cache_key_checks",
    "2026-12-07-000007_create_readiness_heartbeat",
    "2026-12-07-000008_create_worker_passes",
    "2026-12-07-000009_create_logout_tokens_seen",
    "2026-12-07-000010_add_subject_and_signed_out_by",
    "2026-12-07-000011_record_sessions",
];

fn migrate_up_down_and_up_again(db: &TestDb) {
    let c = &mut db.conn();
    assert_eq!(migrate::status(c).unwrap().pending, NAMES);
    assert_eq!(migrate::run_pending(c).unwrap(), NAMES);
    assert!(migrate::run_pending(c).unwrap().is_empty(), "idempotent");
    let status = migrate::status(c).unwrap();
    assert_eq!(status.applied, NAMES);
    assert!(status.pending.is_empty());
    migrate::ensure_migrated(c).unwrap();
    let mut reverted = migrate::revert_all(c).unwrap();
    reverted.reverse();
    assert_eq!(reverted, NAMES);
    assert_eq!(migrate::status(c).unwrap().pending, NAMES);
    assert_eq!(migrate::run_pending(c).unwrap(), NAMES);
    migrate::ensure_migrated(c).unwrap();
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Binary,
    BigInt,
    Integer,
    Bool,
    Timestamp,
}

#[derive(QueryableByName, Debug)]
struct ColumnInfo {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    data_type: String,
    #[diesel(sql_type = Text)]
    nullable: String,
}

fn kind(backend: Backend, data_type: &str) -> Kind {
    let t = data_type.to_ascii_lowercase();
    match t.as_str() {
        "varchar" | "character varying" | "text" => Kind::Text,
        "blob" | "bytea" | "longblob" => Kind::Binary,
        "bigint" => Kind::BigInt,
        "integer" | "int" => Kind::Integer,
        "boolean" | "tinyint" => Kind::Bool,
        "timestamp" | "timestamp without time zone" => Kind::Timestamp,
        "datetime" if backend == Backend::Mysql => Kind::Timestamp,
        t if t.starts_with("varchar(") => Kind::Text,
        other => panic!("unexpected column type {other} on {backend}"),
    }
}

fn columns(db: &TestDb, table: &str) -> Vec<(String, Kind, bool)> {
    let sql = match db.backend() {
        Backend::Sqlite => format!(
            "SELECT name, type AS data_type, CASE \"notnull\" WHEN 0 THEN 'YES' ELSE 'NO' END AS nullable \
             FROM pragma_table_info('{table}') ORDER BY cid"
        ),
        Backend::Postgres => format!(
            "SELECT column_name::text AS name, data_type::text AS data_type, is_nullable::text AS nullable \
             FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = '{table}' \
             ORDER BY ordinal_position"
        ),
        Backend::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) AS name, CAST(data_type AS CHAR) AS data_type, \
             CAST(is_nullable AS CHAR) AS nullable FROM information_schema.columns \
             WHERE table_schema = DATABASE() AND table_name = '{table}' ORDER BY ordinal_position"
        ),
    };
    let rows: Vec<ColumnInfo> = diesel::sql_query(sql).load(&mut *db.conn()).unwrap();
    rows.into_iter()
        .map(|c| {
            (
                c.name,
                kind(db.backend(), &c.data_type),
                c.nullable == "YES",
            )
        })
        .collect()
}

fn schemas_agree_with_schema_rs(db: &TestDb) {
    migrate::run_pending(&mut db.conn()).unwrap();
    use Kind::*;
    let token_cache = [
        (tc::id::NAME, Text, false),
        (tc::value::NAME, Binary, false),
        (tc::version::NAME, BigInt, false),
        (tc::expires_at::NAME, Timestamp, false),
        (tc::lease_owner::NAME, Text, true),
        (tc::lease_until::NAME, Timestamp, true),
        (tc::updated_at::NAME, Timestamp, false),
        (tc::session_epoch::NAME, BigInt, false),
    ];
    let account_activities = [
        (aa::account_cache_key::NAME, Text, false),
        (aa::account_identifier::NAME, Text, false),
        (aa::account_object_id::NAME, Text, true),
        (aa::account_tenant_id::NAME, Text, true),
        (aa::user_principal_name::NAME, Text, true),
        (aa::last_activity::NAME, Timestamp, false),
        (aa::failed_to_acquire_token::NAME, Bool, false),
        (aa::last_error::NAME, Text, true),
        (aa::consecutive_failures::NAME, Integer, false),
        (aa::last_success_at::NAME, Timestamp, true),
        (aa::next_attempt_at::NAME, Timestamp, true),
        (aa::signed_out_at::NAME, Timestamp, true),
        (aa::lease_owner::NAME, Text, true),
        (aa::lease_until::NAME, Timestamp, true),
        (aa::last_attempt_at::NAME, Timestamp, true),
        (aa::subject::NAME, Text, true),
        (aa::signed_out_by::NAME, Text, true),
    ];
    let sign_ins = [
        (si::state_hash::NAME, Text, false),
        (si::started_at::NAME, Timestamp, false),
        (si::outcome::NAME, Text, false),
        (si::home_account_id::NAME, Text, true),
        (si::display_name::NAME, Text, true),
        (si::session_epoch::NAME, BigInt, true),
        (si::session_id::NAME, Text, true),
    ];
    let cache_key_checks = [
        (ck::key_id::NAME, Text, false),
        (ck::check_value::NAME, Text, false),
        (ck::created_at::NAME, Timestamp, false),
    ];
    let readiness_heartbeat = [
        (hb::id::NAME, Integer, false),
        (hb::beat_at::NAME, Timestamp, false),
        (hb::beats::NAME, BigInt, false),
    ];
    let worker_passes = [
        (wp::pass_id::NAME, Text, false),
        (wp::started_at::NAME, Timestamp, false),
        (wp::alive_until::NAME, Timestamp, false),
    ];
    let logout_tokens_seen = [
        (lt::token_key::NAME, Text, false),
        (lt::expires_at::NAME, Timestamp, false),
    ];
    let provider_sessions = [
        (ps::sid_key::NAME, Text, false),
        (ps::account_cache_key::NAME, Text, false),
        (ps::expires_at::NAME, Timestamp, false),
    ];
    let expect = |cols: &[(&str, Kind, bool)]| -> Vec<(String, Kind, bool)> {
        cols.iter()
            .map(|(n, k, null)| (n.to_string(), *k, *null))
            .collect()
    };
    assert_eq!(
        columns(db, "token_cache"),
        expect(&token_cache),
        "token_cache on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "account_activities"),
        expect(&account_activities),
        "account_activities on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "sign_ins"),
        expect(&sign_ins),
        "sign_ins on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "cache_key_checks"),
        expect(&cache_key_checks),
        "cache_key_checks on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "readiness_heartbeat"),
        expect(&readiness_heartbeat),
        "readiness_heartbeat on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "worker_passes"),
        expect(&worker_passes),
        "worker_passes on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "logout_tokens_seen"),
        expect(&logout_tokens_seen),
        "logout_tokens_seen on {}",
        db.backend()
    );
    assert_eq!(
        columns(db, "provider_sessions"),
        expect(&provider_sessions),
        "provider_sessions on {}",
        db.backend()
    );
    // The heartbeat's one row is there and takes its committed write.
    tokenbridge::db::health::heartbeat(&mut db.conn(), tokenbridge::clock::to_db(T0)).unwrap();
    let beats: i64 = {
        use diesel::prelude::*;
        hb::table
            .select(hb::beats)
            .get_result(&mut *db.conn())
            .unwrap()
    };
    assert_eq!(beats, 1);
    // Every column reads back through Diesel's types (a full row, nulls and all).
    let (doc, home) = document("u", "at", T0.unix_timestamp());
    plain_store()
        .save(&mut db.conn(), &home, &doc, None, T0)
        .unwrap();
    activities::upsert(
        &mut db.conn(),
        &crate::fixtures::activity(&home, "u@contoso.com"),
        T0,
    )
    .unwrap();
    let row = activities::get(&mut db.conn(), &home).unwrap().unwrap();
    assert_eq!(row.last_activity(), T0);
}

fn an_unmigrated_database_says_run_migrate(db: &TestDb) {
    let c = &mut db.conn();
    let err = migrate::ensure_migrated(c).unwrap_err();
    assert!(
        err.to_string().contains("run `tokenbridge migrate`"),
        "{err}"
    );
    let err = plain_store().load(c, "someone", T0).unwrap_err();
    assert!(
        matches!(err, CacheStoreError::Db(DbError::NotMigrated { .. })),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("run `tokenbridge migrate`"),
        "{err}"
    );
    let err = DbError::from(activities::get(c, "someone").unwrap_err());
    assert!(
        err.to_string().contains("run `tokenbridge migrate`"),
        "{err}"
    );
}

fn the_binary_migrates_every_backend(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .current_dir(dir.path())
            .args(args)
            .env("TOKENBRIDGE_DATABASE__URL", db.settings.url.full_url())
            .output()
            .unwrap()
    };
    let out = run(&["migrate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.matches(": applied ").count(),
        NAMES.len(),
        "{stdout}"
    );
    migrate::ensure_migrated(&mut db.conn()).unwrap();
    let out = run(&["migrate", "--status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("up to date"), "{stdout}");

    // With cache keys, migrate compares them with the store's check values: the first use of
    // a key writes its value; the same id with another value is refused (exit 2), named.
    let with_keys = |keys: String| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .current_dir(dir.path())
            .arg("migrate")
            .env("TOKENBRIDGE_DATABASE__URL", db.settings.url.full_url())
            .env("TOKENBRIDGE_CACHE__KEYS", keys)
            .output()
            .unwrap();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.code(), text(&out.stdout), text(&out.stderr))
    };
    let (code, stdout, stderr) = with_keys(format!("k1={}", crate::fixtures::KEY));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("cache keys k1: match"), "{stdout}");
    let (code, _, stderr) = with_keys(format!("k1={}", crate::fixtures::OTHER_KEY));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("cache key `k1` is not the key"), "{stderr}");
    assert!(!stderr.contains(crate::fixtures::OTHER_KEY), "{stderr}");
}
