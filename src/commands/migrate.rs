//! `tokenbridge migrate [--status]`.

use crate::cli::MigrateArgs;
use crate::db::{migrate, DbConnection};
use crate::settings::Settings;
use anyhow::Context;
use std::io::Write;

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
    Ok(())
}

/// `--status` with migrations to apply: exit status 3.
fn pending(count: usize) -> anyhow::Error {
    crate::Failure::pending(format!(
        "{count} migration(s) pending: run `tokenbridge migrate`"
    ))
    .into()
}
