//! tokenbridge: a web app and its background jobs sharing users' OAuth/OpenID Connect tokens.
//!
//! `main.rs` only parses the command line and calls [`run`]; everything else lives here so
//! tests drive it directly.

pub mod activity;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod db;
pub mod secret;
pub mod settings;
pub mod telemetry;

use anyhow::Context;
use cli::{Cli, Command};
use settings::Settings;

/// Loads settings, sets up logging and runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config)
        .with_context(|| format!("invalid settings ({})", cli.config.display()))?;
    telemetry::init(&settings.log);
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    match cli.command {
        Command::Migrate(args) => commands::migrate::run(&settings, &args, &mut std::io::stdout()),
    }
}
