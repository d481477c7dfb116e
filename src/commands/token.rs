//! `tokenbridge token --user UPN_OR_ID [--api NAME] [--format text|json]`: a fresh access token
//! for one account from the shared cache, through the same acquisition as the web app and the
//! worker (the row's lease: one redemption per user across processes), for cron scripts,
//! debugging and programs in other languages. It never prints the refresh token.
//!
//! Exit status: 0 printed; 1 storage; 2 configuration (settings, keys, an unknown or ambiguous
//! user, an unknown API); 3 transient (the provider did not answer: try again); 4 interaction
//! required (the user must sign in to the web app again; the reason on stderr).

use crate::cli::{TokenArgs, TokenFormat};
use crate::clock::{Clock, SystemClock};
use crate::db::Database;
use crate::identity::acquire::{AcquirerOptions, Caller, TokenAcquirer};
use crate::identity::AcquireError;
use crate::settings::Settings;
use crate::text::{bounded, LOG_FIELD};
use crate::Failure;
use std::io::Write;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;

/// Exit status 3: the provider or the store answered "not now"; trying again later may work.
const TRANSIENT: u8 = 3;
/// Exit status 4: the user must sign in to the web app again.
const INTERACTION_REQUIRED: u8 = 4;

pub fn run(settings: &Settings, args: &TokenArgs, out: &mut impl Write) -> anyhow::Result<()> {
    settings.identity.require_client().map_err(|e| {
        Failure::configuration(format!(
            "cannot acquire tokens: {e}{}",
            settings.file_hint()
        ))
    })?;
    let api = settings.api_named(&args.api).ok_or_else(|| {
        let known: Vec<&str> = settings.apis().map(|a| a.name.as_str()).collect();
        Failure::configuration(format!(
            "--api {}: no such API ({})",
            bounded(&args.api, LOG_FIELD),
            known.join(", ")
        ))
    })?;
    let scopes = settings.scopes_of(api);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    super::on_database(settings, async |db| {
        print(settings, args, db, clock, &api.name, &scopes, out).await
    })
}

/// Acquires and prints the token.
async fn print(
    settings: &Settings,
    args: &TokenArgs,
    db: &Database,
    clock: Arc<dyn Clock>,
    api: &str,
    scopes: &[String],
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let mut options = AcquirerOptions::from_settings(
        &settings.identity,
        &settings.cache,
        crate::process::owner_id(),
    );
    options.memory_entries = 0;
    let acquirer = TokenAcquirer::from_settings(db.clone(), settings, clock.clone(), options)
        .map_err(|e| Failure::configuration(e.to_string()))?;
    acquirer
        .caches()
        .verify_keys(clock.now())
        .await
        .map_err(|e| match e.key_problem() {
            Some(problem) => Failure::configuration(format!("cache.keys: {problem}")),
            None => Failure::infrastructure(e.to_string()),
        })?;
    let account = super::find_account(db, "--user", &args.user).await?;
    let scope_refs: Vec<&str> = scopes.iter().map(String::as_str).collect();
    let token = acquirer
        .acquire_silent(&account.account_cache_key, &scope_refs, Caller::Worker)
        .await
        .map_err(refused)?;
    match args.format {
        TokenFormat::Text => writeln!(out, "{}", token.secret.expose())?,
        TokenFormat::Json => {
            let expires_at = time::OffsetDateTime::from_unix_timestamp(token.expires_on)
                .ok()
                .and_then(|at| at.format(&Rfc3339).ok());
            let line = serde_json::json!({
                "access_token": token.secret.expose(),
                "token_type": "Bearer",
                "expires_on": token.expires_on,
                "expires_at": expires_at,
                "api": api,
                "scopes": scopes,
                "account": account.account_cache_key,
                "user": account.user_principal_name,
                "tenant_id": account.account_tenant_id,
            });
            writeln!(out, "{line}")?;
        }
    }
    out.flush()?;
    Ok(())
}

/// An acquisition that failed, as the exit status it calls for.
fn refused(e: AcquireError) -> Failure {
    let message = e.to_string();
    match e {
        AcquireError::InteractionRequired { .. } | AcquireError::SessionEnded => {
            Failure::with_code(INTERACTION_REQUIRED, message)
        }
        AcquireError::Transient { .. } => Failure::with_code(TRANSIENT, message),
        AcquireError::Storage(_) => Failure::infrastructure(message),
        AcquireError::Configuration(_) | AcquireError::CacheKeys(_) | AcquireError::Rejected(_) => {
            Failure::configuration(message)
        }
    }
}
