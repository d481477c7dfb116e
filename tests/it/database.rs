//! The connection layer: per-connection set-up and failures at connect time.

use crate::backend_tests;
use crate::fixtures::{document, plain_store};
use crate::support::{self, T0};
use diesel::connection::InstrumentationEvent;
use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokenbridge::db::{Backend, ConnectionManager, Database, DatabaseUrl, DbError};

#[derive(QueryableByName)]
struct Mode {
    #[diesel(sql_type = Text)]
    journal_mode: String,
}

#[derive(QueryableByName)]
struct Timeout {
    #[diesel(sql_type = BigInt)]
    timeout: i64,
}

#[test]
fn sqlite_connections_use_wal_and_wait_for_locks() {
    let db = support::migrated(Backend::Sqlite).unwrap();
    // Two connections from the pool: every one is set up, not just the first.
    let (mut a, mut b) = (db.conn(), db.conn());
    for conn in [&mut a, &mut b] {
        let mode: Vec<Mode> = diesel::sql_query("PRAGMA journal_mode")
            .load(&mut **conn)
            .unwrap();
        assert_eq!(mode[0].journal_mode, "wal");
        let timeout: Vec<Timeout> = diesel::sql_query("PRAGMA busy_timeout")
            .load(&mut **conn)
            .unwrap();
        assert_eq!(timeout[0].timeout, 20_000);
    }
}

backend_tests!(with_migrated: a_checkout_checks_only_server_connections);

/// Every checkout of a server connection costs a round trip (`SELECT 1`), so a connection the
/// server dropped is replaced rather than handed out; SQLite's need no check.
fn a_checkout_checks_only_server_connections(db: &support::TestDb) {
    let statements = Arc::new(AtomicUsize::new(0));
    let mut conn = db.conn();
    let counted = statements.clone();
    diesel::Connection::set_instrumentation(&mut *conn, move |event: InstrumentationEvent<'_>| {
        if let InstrumentationEvent::StartQuery { .. } = event {
            counted.fetch_add(1, Ordering::SeqCst);
        }
    });
    let manager = ConnectionManager::new(db.settings.url.clone(), Duration::from_secs(5));
    r2d2::ManageConnection::is_valid(&manager, &mut conn).unwrap();
    let expected = usize::from(db.backend() != Backend::Sqlite);
    assert_eq!(statements.load(Ordering::SeqCst), expected);
}

#[test]
fn two_processes_share_one_sqlite_file() {
    // `serve` and `worker` are separate pools on one file: a write by one is read by the other.
    let db = support::migrated(Backend::Sqlite).unwrap();
    let other = Database::connect(&db.settings).unwrap();
    let store = plain_store();
    let (doc, home) = document("shared", "at", T0.unix_timestamp());
    store.save(&mut db.conn(), &home, &doc, None, T0).unwrap();
    let loaded = store
        .load(&mut other.get().unwrap(), &home, T0)
        .unwrap()
        .unwrap();
    assert_eq!(loaded.document, doc);
}

#[test]
fn an_unreachable_server_fails_fast_with_the_reason() {
    for raw in [
        "postgres://postgres:pw@127.0.0.1:1/test",
        "mysql://root:pw@127.0.0.1:1/test",
    ] {
        let settings = support::settings_for(DatabaseUrl::parse(raw).unwrap());
        let started = Instant::now();
        let err = Database::connect(&settings).unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{raw} took {:?}",
            started.elapsed()
        );
        assert!(matches!(err, DbError::Connect { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("127.0.0.1:1") && !msg.contains("pw@"), "{msg}");
    }
}

#[test]
fn a_missing_sqlite_directory_is_named() {
    let url = DatabaseUrl::parse("sqlite:///nonexistent-dir/tokenbridge.db").unwrap();
    let err = Database::connect(&support::settings_for(url)).unwrap_err();
    assert!(
        err.to_string().contains("/nonexistent-dir does not exist"),
        "{err}"
    );
}
