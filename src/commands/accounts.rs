//! `tokenbridge accounts list|show|forget`: the operator's view of the accounts, and erasure.
//!
//! `list` pages through `account_activities` in key order (500 rows in memory at most, however
//! many accounts there are), each with the key that seals its cache row; `show` opens one
//! account's cache and summarises it (entries, scopes, expiries; never a token or any part of
//! one); `forget` erases an account (see `identity::forget`).

use super::find_account;
use crate::activity::accounts::page_after;
use crate::activity::store::Activity;
use crate::cache::backend::CacheBackend;
use crate::cli::{AccountState, AccountsArgs, AccountsCommand, AccountsListArgs, TokenFormat};
use crate::clock::{Clock, SystemClock};
use crate::db::{Database, DbError};
use crate::identity::acquire::{AcquirerOptions, TokenAcquirer};
use crate::identity::{AcquireError, Revocation};
use crate::settings::Settings;
use crate::text::{bounded, LOG_FIELD};
use crate::Failure;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Rows read at a time.
const PAGE: i64 = 500;
/// Exit status 3: the provider did not revoke; nothing was erased.
const NOT_REVOKED: u8 = 3;

pub fn run(settings: &Settings, args: &AccountsArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    super::on_database(settings, async |db| {
        run_on(settings, args, db, clock, out).await
    })
}

async fn run_on(
    settings: &Settings,
    args: &AccountsArgs,
    db: &Database,
    clock: Arc<dyn Clock>,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let caches = super::open_caches(settings, db, clock.now()).await?;
    match &args.command {
        AccountsCommand::List(list_args) => {
            list(settings, db, &caches, list_args, clock.now(), out).await
        }
        AccountsCommand::Show { user, format } => match find_account(db, "USER", user).await {
            Ok(account) => show(&caches, &account, *format, clock.now(), out).await,
            Err(e) => Err(e.into()),
        },
        AccountsCommand::Forget { user, revoke } => {
            forget(settings, db, clock, user, *revoke, out).await
        }
    }
}

/// The state `list` shows: signed out, marked "interaction required", failing (transient
/// failures in a row), or ok.
fn state(a: &Activity) -> &'static str {
    if a.signed_out_at.is_some() {
        "signed-out"
    } else if a.failed_to_acquire_token {
        "interaction-required"
    } else if a.consecutive_failures > 0 {
        "failing"
    } else {
        "ok"
    }
}

/// Whether a worker pass with `older_than` would take the account now.
fn due(a: &Activity, now: OffsetDateTime, older_than: std::time::Duration) -> bool {
    let idle = a.last_activity() <= now - older_than;
    let waiting = a
        .next_attempt_at
        .is_some_and(|at| crate::clock::from_db(at) > now);
    matches!(state(a), "ok" | "failing") && idle && !waiting
}

fn time_text(at: Option<time::PrimitiveDateTime>) -> String {
    at.and_then(|at| crate::clock::from_db(at).format(&Rfc3339).ok())
        .unwrap_or_else(|| "-".into())
}

/// A time in a column: to the second.
fn column_time(at: Option<time::PrimitiveDateTime>) -> String {
    const SECONDS: &[time::format_description::BorrowedFormatItem<'_>] =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
    at.and_then(|at| at.format(SECONDS).ok())
        .unwrap_or_else(|| "-".into())
}

fn user_of(a: &Activity) -> &str {
    a.user_principal_name
        .as_deref()
        .unwrap_or(&a.account_cache_key)
}

/// One line of the reason: bounded, control characters out.
fn reason_of(a: &Activity) -> String {
    a.last_error
        .as_deref()
        .map(|r| bounded(&r.replace(['\n', '\r', '\t'], " "), LOG_FIELD).into_owned())
        .unwrap_or_default()
}

async fn list(
    settings: &Settings,
    db: &Database,
    caches: &CacheBackend,
    args: &AccountsListArgs,
    now: OffsetDateTime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let wanted = |a: &Activity| {
        let state_ok = match args.state {
            None => true,
            Some(AccountState::Ok) => state(a) == "ok",
            Some(AccountState::InteractionRequired) => state(a) == "interaction-required",
            Some(AccountState::SignedOut) => state(a) == "signed-out",
            Some(AccountState::Failing) => state(a) == "failing",
            Some(AccountState::Due) => due(a, now, settings.worker.older_than),
        };
        let idle_ok = args.older_than.is_none_or(|d| a.last_activity() <= now - d);
        state_ok && idle_ok
    };
    let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
    let (mut shown, mut matched) = (0_u64, 0_u64);
    if args.format == TokenFormat::Text {
        writeln!(
            out,
            "{:<40} {:<21} {:<8} {:<20} {:<20} {:>8} {:<20} {:<36} REASON",
            "USER",
            "STATE",
            "SEALED",
            "LAST ACTIVITY",
            "LAST SUCCESS",
            "FAILURES",
            "NEXT ATTEMPT",
            "TENANT"
        )?;
    }
    let single = match &args.user {
        Some(user) => Some(find_account(db, "--user", user).await?),
        None => None,
    };
    let mut after: Option<String> = None;
    loop {
        let page = match &single {
            Some(account) if after.is_none() => vec![account.clone()],
            Some(_) => Vec::new(),
            None => {
                let from = after.clone();
                db.run(move |conn| page_after(conn, from.as_deref(), PAGE).map_err(DbError::from))
                    .await
                    .map_err(|e| Failure::infrastructure(e.to_string()))?
            }
        };
        let Some(last) = page.last() else { break };
        after = Some(last.account_cache_key.clone());
        for account in page.iter().filter(|a| wanted(a)) {
            matched += 1;
            *counts.entry(state(account)).or_default() += 1;
            if args.limit.is_some_and(|limit| shown >= limit) {
                continue;
            }
            shown += 1;
            let sealed = match caches.peek(&account.account_cache_key, now).await {
                Ok(Some(row)) => row.sealed_with().unwrap_or("plain").to_owned(),
                Ok(None) => "-".to_owned(),
                Err(e) => return Err(Failure::infrastructure(e.to_string()).into()),
            };
            line(account, &sealed, args.format, out)?;
        }
        if single.is_some() || (page.len() as i64) < PAGE {
            break;
        }
    }
    let by_state: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
    match args.format {
        TokenFormat::Text => writeln!(
            out,
            "{matched} account(s){}{}",
            if by_state.is_empty() {
                String::new()
            } else {
                format!(": {}", by_state.join(", "))
            },
            if shown < matched {
                format!(" ({shown} shown)")
            } else {
                String::new()
            }
        )?,
        TokenFormat::Json => writeln!(
            out,
            "{}",
            json!({ "summary": { "accounts": matched, "shown": shown, "by_state": counts } })
        )?,
    }
    out.flush()?;
    Ok(())
}

fn line(
    a: &Activity,
    sealed: &str,
    format: TokenFormat,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match format {
        TokenFormat::Text => {
            let text = format!(
                "{:<40} {:<21} {:<8} {:<20} {:<20} {:>8} {:<20} {:<36} {}",
                bounded(user_of(a), 40),
                state(a),
                sealed,
                column_time(Some(a.last_activity)),
                column_time(a.last_success_at),
                a.consecutive_failures,
                column_time(a.next_attempt_at),
                bounded(a.account_tenant_id.as_deref().unwrap_or("-"), 36),
                reason_of(a),
            );
            writeln!(out, "{}", text.trim_end())?
        }
        TokenFormat::Json => writeln!(out, "{}", account_json(a, sealed))?,
    }
    Ok(())
}

fn account_json(a: &Activity, sealed: &str) -> Value {
    json!({
        "account": a.account_cache_key,
        "user": a.user_principal_name,
        "tenant_id": a.account_tenant_id,
        "state": state(a),
        "reason": a.last_error.as_deref().map(|r| bounded(r, LOG_FIELD)),
        "signed_out_by": a.signed_out_by,
        "last_activity": time_text(Some(a.last_activity)),
        "last_success_at": a.last_success_at.map(|_| time_text(a.last_success_at)),
        "consecutive_failures": a.consecutive_failures,
        "next_attempt_at": a.next_attempt_at.map(|_| time_text(a.next_attempt_at)),
        "sealed_with": sealed,
    })
}

/// The account and a summary of its cache: which entries, for which scopes, until when.
async fn show(
    caches: &CacheBackend,
    account: &Activity,
    format: TokenFormat,
    now: OffsetDateTime,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let id = &account.account_cache_key;
    let row = caches
        .peek(id, now)
        .await
        .map_err(|e| Failure::infrastructure(e.to_string()))?;
    let sealed = row
        .as_ref()
        .map_or("-", |r| r.sealed_with().unwrap_or("plain"))
        .to_owned();
    let mut summary = account_json(account, &sealed);
    let cache = match &row {
        None => json!(null),
        Some(row) => {
            let mut cache = json!({
                "version": row.version,
                "session_epoch": row.session_epoch,
            });
            match row.open(caches.sealer(), id) {
                Ok(document) => {
                    let expiry = |secs: i64| {
                        OffsetDateTime::from_unix_timestamp(secs)
                            .ok()
                            .and_then(|t| t.format(&Rfc3339).ok())
                    };
                    cache["accounts"] = document
                        .accounts()
                        .map(|(_, a)| json!({ "home_account_id": a.home_account_id, "username": a.username, "environment": a.environment, "realm": a.realm }))
                        .collect();
                    cache["access_tokens"] = document
                        .access_tokens()
                        .map(|(_, t)| json!({ "scopes": t.target, "expires_at": expiry(t.expires_on()) }))
                        .collect();
                    cache["refresh_tokens"] = json!(document.refresh_tokens().count());
                    cache["id_tokens"] = json!(document.id_tokens().count());
                    cache["app_sessions"] = json!(document.sessions().count());
                }
                Err(e) if e.is_key_problem() => {
                    return Err(Failure::configuration(format!("cache.keys: {e}")).into())
                }
                Err(e) => cache["unreadable"] = json!(bounded(&e.to_string(), LOG_FIELD)),
            }
            cache
        }
    };
    summary["cache"] = cache;
    match format {
        TokenFormat::Json => writeln!(out, "{summary}")?,
        TokenFormat::Text => {
            for (key, value) in summary.as_object().into_iter().flatten() {
                if key == "cache" {
                    continue;
                }
                writeln!(out, "{key:<22} {}", plain(value))?;
            }
            match summary["cache"].as_object() {
                None => writeln!(out, "{:<22} none (signed out, or never signed in)", "cache")?,
                Some(cache) => {
                    for (key, value) in cache {
                        match value.as_array() {
                            Some(entries) => {
                                writeln!(out, "{key}:")?;
                                for entry in entries {
                                    writeln!(out, "  {}", plain(entry))?;
                                }
                            }
                            None => {
                                writeln!(out, "{:<22} {}", format!("cache {key}"), plain(value))?
                            }
                        }
                    }
                }
            }
        }
    }
    out.flush()?;
    Ok(())
}

/// A JSON value as text: strings bare, null as `-`, objects as `key=value` pairs.
fn plain(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

async fn forget(
    settings: &Settings,
    db: &Database,
    clock: Arc<dyn Clock>,
    user: &str,
    revoke: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let (found, close) = super::lookup_account(db, user).await?;
    if found.is_empty() {
        // Erased already (or never here): nothing to do, and that is fine; a near miss is
        // named, so a typo is not taken for an erasure.
        let hint = if close.is_empty() {
            String::new()
        } else {
            format!(" (did you mean {}?)", close.join(", "))
        };
        writeln!(
            out,
            "{}: no account matches; nothing to forget{hint}",
            bounded(user, LOG_FIELD)
        )?;
        return Ok(());
    }
    let account = super::the_one(found, &close, "USER", user)?;
    let mut options = AcquirerOptions::from_settings(
        &settings.identity,
        &settings.cache,
        crate::process::owner_id(),
    );
    options.memory_entries = 0;
    let acquirer = TokenAcquirer::from_settings(db.clone(), settings, clock, options)
        .map_err(|e| Failure::configuration(e.to_string()))?;
    let id = &account.account_cache_key;
    let forgotten = acquirer
        .forget_account(id, revoke)
        .await
        .map_err(|e| match e {
            AcquireError::Transient { .. } => Failure::with_code(
                NOT_REVOKED,
                format!(
                    "the provider did not revoke the refresh token, so nothing was erased: {e}"
                ),
            ),
            AcquireError::Storage(_) => Failure::infrastructure(e.to_string()),
            other => Failure::configuration(other.to_string()),
        })?;
    let revocation = match forgotten.revocation {
        Revocation::NotAsked => "",
        Revocation::Revoked => "; refresh token revoked at the provider",
        Revocation::NotOffered => "; the provider offers no revocation (RFC 7009): nothing revoked",
        Revocation::NoRefreshToken => "; no refresh token to revoke",
    };
    writeln!(
        out,
        "{} ({id}): forgotten: token cache {}, activity {}{revocation}",
        user_of(&account),
        if forgotten.cache { "deleted" } else { "absent" },
        if forgotten.activity {
            "deleted"
        } else {
            "absent"
        },
    )?;
    out.flush()?;
    Ok(())
}
