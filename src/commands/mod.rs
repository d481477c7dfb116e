//! One module per subcommand. Commands return `anyhow` errors with context for the terminal.

pub mod accounts;
pub mod cache;
pub mod dev_idp;
pub mod migrate;
pub mod serve;
pub mod token;
pub mod worker;

use crate::activity::store as activities;
use crate::db::{Database, DbError};
use crate::settings::Settings;
use crate::text::{bounded, LOG_FIELD};
use crate::Failure;

/// Runs a one-shot command's `work` on the migrated database (a current-thread runtime), then,
/// whatever came of it, waits for the pool to stop making connections before the process
/// exits (`Database::settle`: libpq and OpenSSL's exit handlers race otherwise).
pub(crate) fn on_database<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&Database) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let db = Database::open_migrated(settings.database.clone())
            .await
            .map_err(|e| Failure::infrastructure(e.to_string()))?;
        let done = work(&db).await;
        db.settle(settings.database.connect_timeout);
        done
    })
}

/// The accounts `user` names (a user principal name or a home account id), and names close
/// to it when none does.
pub(crate) async fn lookup_account(
    db: &Database,
    user: &str,
) -> Result<(Vec<activities::Activity>, Vec<String>), Failure> {
    let wanted = user.to_owned();
    db.run(move |conn| activities::lookup(conn, &wanted).map_err(DbError::from))
        .await
        .map_err(|e| Failure::infrastructure(e.to_string()))
}

/// The one account `user` (given as `flag`) names; none, or several, is a configuration error
/// that says what to give instead.
pub(crate) async fn find_account(
    db: &Database,
    flag: &str,
    user: &str,
) -> Result<activities::Activity, Failure> {
    let (found, close) = lookup_account(db, user).await?;
    the_one(found, &close, flag, user)
}

/// The one account of a lookup's result (see [`find_account`]).
pub(crate) fn the_one(
    mut found: Vec<activities::Activity>,
    close: &[String],
    flag: &str,
    user: &str,
) -> Result<activities::Activity, Failure> {
    let shown = bounded(user, LOG_FIELD);
    match found.len() {
        1 => Ok(found.remove(0)),
        0 if close.is_empty() => Err(Failure::configuration(format!(
            "{flag} {shown} matches no account (a user principal name or a home account id)"
        ))),
        0 => Err(Failure::configuration(format!(
            "{flag} {shown} matches no account; did you mean {}?",
            close.join(", ")
        ))),
        _ => {
            let ids: Vec<&str> = found.iter().map(|a| a.account_cache_key.as_str()).collect();
            Err(Failure::configuration(format!(
                "{flag} {shown} matches {} accounts; give one's home account id: {}",
                found.len(),
                ids.join(", ")
            )))
        }
    }
}

/// The stored caches `settings` name, their keys compared with the store's check values: a
/// key that differs (or a store that cannot be asked) is the command's failure.
pub(crate) async fn open_caches(
    settings: &crate::settings::Settings,
    db: &Database,
    now: time::OffsetDateTime,
) -> Result<crate::cache::backend::CacheBackend, Failure> {
    let caches = crate::identity::acquire::caches_from_settings(db.clone(), settings)
        .map_err(|e| Failure::configuration(e.to_string()))?;
    caches
        .verify_keys(now)
        .await
        .map_err(|e| match e.key_problem() {
            Some(problem) => Failure::configuration(format!("cache.keys: {problem}")),
            None => Failure::infrastructure(e.to_string()),
        })?;
    Ok(caches)
}
