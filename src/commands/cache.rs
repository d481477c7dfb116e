//! `tokenbridge cache reseal [--batch N]`: every row rewritten with the first key of
//! `cache.keys` (see `cache::reseal`), with a progress line on a terminal and a count at the
//! end. Key rotation: the new key first, `cache reseal`, then the old key removed.

use crate::cache::reseal::{Resealed, RowCursor};
use crate::cli::{CacheArgs, CacheCommand};
use crate::clock::{Clock, SystemClock};
use crate::db::Database;
use crate::settings::Settings;
use crate::Failure;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Write};

pub fn run(settings: &Settings, args: &CacheArgs) -> anyhow::Result<()> {
    let CacheCommand::Reseal { batch } = args.command;
    super::on_database(settings, async |db| reseal(settings, db, batch).await)
}

async fn reseal(settings: &Settings, db: &Database, batch: u32) -> anyhow::Result<()> {
    let clock = SystemClock;
    let caches = super::open_caches(settings, db, clock.now()).await?;
    let Some(key) = caches.sealer().writing_key().map(str::to_owned) else {
        return Err(Failure::configuration(
            "cache.keys: no key is configured, so there is nothing to seal rows with",
        )
        .into());
    };
    let progress = if std::io::stderr().is_terminal() {
        ProgressBar::new_spinner()
    } else {
        ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden())
    };
    if let Ok(style) = ProgressStyle::with_template("{spinner} {pos} row(s) looked at: {msg}") {
        progress.set_style(style);
    }
    let (mut rewritten, mut current, mut gone, mut corrupt) = (0_u64, 0_u64, 0_u64, 0_u64);
    let mut cursor = RowCursor::Start;
    while cursor != RowCursor::Done {
        let (ids, next) = caches
            .row_ids(cursor, batch)
            .await
            .map_err(|e| Failure::infrastructure(e.to_string()))?;
        cursor = next;
        for id in ids {
            match caches.reseal(&id, clock.now()).await {
                Ok(Resealed::Rewritten) => rewritten += 1,
                Ok(Resealed::Current) => current += 1,
                Ok(Resealed::Gone) => gone += 1,
                // It cannot be opened, so not resealed; it is replaced at the next sign-in.
                Err(e) if e.is_corrupt() => {
                    tracing::warn!(account = %id, error = %e, "cache reseal: a corrupt row is left as it is");
                    corrupt += 1;
                }
                Err(e) => {
                    progress.finish_and_clear();
                    return Err(if e.is_key_problem() {
                        Failure::configuration(format!("cache.keys: {e}"))
                    } else {
                        Failure::infrastructure(e.to_string())
                    }
                    .into());
                }
            }
            progress.inc(1);
            progress.set_message(format!("{rewritten} resealed with {key}"));
        }
    }
    progress.finish_and_clear();
    let mut out = std::io::stdout();
    writeln!(
        out,
        "{} row(s): {rewritten} resealed with key {key}, {current} already on it, {gone} gone \
         meanwhile{}",
        rewritten + current + gone + corrupt,
        if corrupt > 0 {
            format!(", {corrupt} corrupt left as they are")
        } else {
            String::new()
        }
    )?;
    out.flush()?;
    Ok(())
}
