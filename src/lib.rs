//! tokenbridge: a web app and its background jobs sharing users' OAuth/OpenID Connect tokens.
//!
//! `main.rs` only parses the command line and calls [`run`]; everything else lives here so
//! tests drive it directly.

pub mod activity;
pub mod api;
pub mod cache;
pub mod cli;
pub mod clock;
pub mod commands;
pub mod db;
pub mod devidp;
pub mod identity;
pub mod secret;
pub mod settings;
pub mod sync;
pub mod telemetry;
pub mod web;

use anyhow::Context;
use cli::{Cli, Command};
use settings::Settings;

/// Logs what an operator of a command that stores token caches should hear about.
pub fn warn_about_settings(settings: &Settings) {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
}

/// Loads settings, sets up logging and runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::load(&cli.config)
        .with_context(|| format!("invalid settings ({})", cli.config.display()))?;
    telemetry::init(&settings.log);
    match cli.command {
        Command::Migrate(args) => commands::migrate::run(&settings, &args, &mut std::io::stdout()),
        Command::DevIdp(args) => commands::dev_idp::run(settings, &args),
        Command::Serve => commands::serve::run(&settings),
    }
}
