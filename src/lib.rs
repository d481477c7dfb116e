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
#[cfg(feature = "dev-idp")]
pub mod devidp;
pub mod identity;
pub mod metrics;
pub mod process;
pub mod secret;
pub mod settings;
pub mod sync;
pub mod telemetry;
pub mod text;
pub mod web;
pub mod worker;

use anyhow::Context;
use cli::{Cli, Command};
use settings::{Sections, Settings};

/// Logs what an operator of a command that stores token caches should hear about.
pub fn warn_about_settings(settings: &Settings) {
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
}

/// A command's failure with the exit status it calls for (without one, a failure exits 1).
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    pub exit_code: u8,
    message: String,
}

impl Failure {
    /// Something the operator must fix (settings, registration, keys): exit status 2.
    pub fn configuration(message: impl Into<String>) -> Self {
        Self {
            exit_code: 2,
            message: message.into(),
        }
    }

    /// `migrate --status` found migrations to apply: exit status 3, so a deploy script can
    /// test for it apart from a failure.
    pub fn pending(message: impl Into<String>) -> Self {
        Self {
            exit_code: 3,
            message: message.into(),
        }
    }

    /// A failure with its own exit status (see each command's documentation).
    pub fn with_code(exit_code: u8, message: impl Into<String>) -> Self {
        Self {
            exit_code,
            message: message.into(),
        }
    }

    /// A service the command depends on failed (the database): exit status 1.
    pub fn infrastructure(message: impl Into<String>) -> Self {
        Self {
            exit_code: 1,
            message: message.into(),
        }
    }
}

/// The exit status for an error `run` returned.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    error
        .downcast_ref::<Failure>()
        .map_or(1, |failure| failure.exit_code)
}

/// Loads settings, sets up logging and runs the chosen subcommand.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let (path, named) = cli.settings_file();
    // Each command validates the settings it uses: migrate needs the database (and the cache
    // keys only when given), so a deploy step with only the database URL can run it; a worker
    // needs no session key; serve ignores `[worker]`.
    let sections = match cli.command {
        Command::Migrate(_) => Sections::MIGRATE,
        Command::Serve => Sections::SERVE,
        Command::Worker(_) | Command::Token(_) | Command::Accounts(_) | Command::Cache(_) => {
            Sections::WORKER
        }
        Command::DevIdp(_) => Sections::DEV_IDP,
    };
    let settings = match Settings::load(&path, named, sections) {
        Ok(settings) => settings,
        // The worker's and token's contract: a configuration error exits 2.
        // Each message says where the value came from (the file or an environment variable).
        Err(e)
            if matches!(
                cli.command,
                Command::Worker(_) | Command::Token(_) | Command::Accounts(_) | Command::Cache(_)
            ) =>
        {
            return Err(Failure::configuration(format!("invalid settings: {e}")).into())
        }
        Err(e) => return Err(e).context("invalid settings"),
    };
    telemetry::init(&settings.log);
    match cli.command {
        Command::Migrate(args) => commands::migrate::run(&settings, &args, &mut std::io::stdout()),
        Command::DevIdp(args) => commands::dev_idp::run(settings, &args),
        Command::Serve => commands::serve::run(&settings),
        Command::Worker(args) => commands::worker::run(&settings, &args),
        Command::Token(args) => commands::token::run(&settings, &args, &mut std::io::stdout()),
        Command::Accounts(args) => {
            commands::accounts::run(&settings, &args, &mut std::io::stdout())
        }
        Command::Cache(args) => commands::cache::run(&settings, &args),
    }
}
