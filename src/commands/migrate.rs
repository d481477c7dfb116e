//! `tokenbridge migrate [--status]`.

use crate::cache::redis::RedisCacheStore;
use crate::cache::seal::{new_key_entry, SealKeys, Sealer};
use crate::cache::store::TokenCacheStore;
use crate::cli::MigrateArgs;
use crate::db::schema::token_cache::dsl::token_cache;
use crate::db::{migrate, DbConnection};
use crate::settings::Settings;
use crate::Failure;
use anyhow::Context;
use diesel::prelude::*;
use std::io::Write;
use std::path::Path;

pub fn run(settings: &Settings, args: &MigrateArgs, out: &mut dyn Write) -> anyhow::Result<()> {
    // No cache warnings here: migrate writes no token caches.
    let url = &settings.database.url;
    if let Some(redis) = &settings.cache.redis {
        writeln!(
            out,
            "token caches: Redis at {} (prefix {:?}): nothing to migrate there; its keys carry \
             their own expiry",
            redis.url, redis.key_prefix
        )?;
    }
    if args.status && url.sqlite_path().is_some_and(|path| !path.exists()) {
        // Opening would create the file; --status changes nothing.
        writeln!(out, "database: {url} (no file yet)")?;
        let names = migrate::embedded_names(url.backend());
        for name in &names {
            writeln!(out, "pending  {name}")?;
        }
        return Err(pending(names.len()));
    }
    let mut conn = DbConnection::open(url, settings.database.busy_timeout)
        .with_context(|| format!("cannot connect to the database at {url}"))?;
    if args.status {
        let status = migrate::status(&mut conn).context("cannot read migration status")?;
        writeln!(out, "database: {url}")?;
        for name in &status.applied {
            writeln!(out, "applied  {name}")?;
        }
        for name in &status.pending {
            writeln!(out, "pending  {name}")?;
        }
        if status.pending.is_empty() {
            writeln!(out, "up to date")?;
            return Ok(());
        }
        return Err(pending(status.pending.len()));
    }
    let applied = migrate::run_pending(&mut conn).context("migration failed")?;
    if applied.is_empty() {
        writeln!(out, "{url}: up to date, nothing to apply")?;
    }
    for name in &applied {
        writeln!(out, "{url}: applied {name}")?;
    }
    let created;
    let settings = match &settings.cache.create_keys_file {
        None => settings,
        // Only the embedded default makes its own key: a database server is a deployment,
        // whose keys come from its operator (a key made up here would become the reference
        // for `k1` and refuse the real one).
        Some(path) if url.backend() != crate::db::Backend::Sqlite => {
            writeln!(
                out,
                "cache keys: cache.keys_file {} does not exist; not created for a database \
                 server: give serve and worker the keys (TOKENBRIDGE_CACHE__KEYS or the file)",
                path.display()
            )?;
            settings
        }
        Some(path) => {
            created = with_new_keys_file(settings, path, &mut conn, out)?;
            &created
        }
    };
    check_cache_keys(settings, &mut conn, out)
}

/// `cache.keys_file` names a file that does not exist: for a database without token caches
/// (the quick start's first run), a new key is written there, owner-only, so tokens are sealed
/// from the first sign-in; `settings` with that key.
fn with_new_keys_file(
    settings: &Settings,
    path: &Path,
    conn: &mut DbConnection,
    out: &mut dyn Write,
) -> anyhow::Result<Settings> {
    let refuse = |why: &str| -> anyhow::Error {
        Failure::configuration(format!(
            "cache.keys_file {} does not exist, and {why}: give the keys the stored token \
             caches are sealed with (or, for plain rows, create a key and set \
             cache.read_plaintext = true until every row is rewritten)",
            path.display()
        ))
        .into()
    };
    if settings.cache.redis.is_some() {
        return Err(refuse(
            "the token caches are in Redis, which migrate does not look into",
        ));
    }
    let rows: i64 = token_cache
        .count()
        .get_result(conn)
        .context("cannot count the token caches")?;
    if rows > 0 {
        return Err(refuse("the database already holds token caches"));
    }
    let entry = new_key_entry("k1");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create cache.keys_file {}", path.display()))?;
    writeln!(file, "{}", entry.expose())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write cache.keys_file {}", path.display()))?;
    writeln!(
        out,
        "cache keys: created {} with a new key `k1` (readable by its owner only); back it up: \
         without it the stored tokens cannot be opened",
        path.display()
    )?;
    let mut settings = settings.clone();
    settings.cache.keys = Some(SealKeys::parse(&entry)?);
    settings.cache.create_keys_file = None;
    Ok(settings)
}

/// With cache keys given, compares them with the check values the token cache store holds for
/// their ids (writing those of new keys), so that a deploy step finds a key mistake before
/// `serve` or `worker` start: exit 2 naming the key.
fn check_cache_keys(
    settings: &Settings,
    conn: &mut DbConnection,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let Some(keys) = &settings.cache.keys else {
        return Ok(());
    };
    let sealer = Sealer::new(Some(keys.clone()), settings.cache.read_plaintext);
    let now = time::OffsetDateTime::now_utc();
    let sliding = settings.cache.sliding_expiration;
    let checked = match &settings.cache.redis {
        None => TokenCacheStore::new(sealer, sliding).verify_keys(conn, now),
        Some(redis) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(async {
                let timeout = settings.database.connect_timeout;
                RedisCacheStore::new(&redis.url, &redis.key_prefix, sealer, sliding, timeout)?
                    .verify_keys()
                    .await
            }),
    };
    let ids: Vec<&str> = keys.ids().collect();
    match checked {
        Ok(()) => {
            writeln!(
                out,
                "cache keys {}: match the token cache store",
                ids.join(", ")
            )?;
            Ok(())
        }
        Err(e) => Err(match e.key_problem() {
            Some(problem) => Failure::configuration(format!("cache.keys: {problem}")).into(),
            None => Failure::infrastructure(format!(
                "cannot compare the cache keys with the token cache store: {e}"
            ))
            .into(),
        }),
    }
}

/// `--status` with migrations to apply: exit status 3.
fn pending(count: usize) -> anyhow::Error {
    crate::Failure::pending(format!(
        "{count} migration(s) pending: run `tokenbridge migrate`"
    ))
    .into()
}
