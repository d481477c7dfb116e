//! The command line.

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// tokenbridge: one token cache for a web app and its background jobs.
///
/// Users sign in to the web app with OpenID Connect; their MSAL-format token caches live in a
/// shared database, so background workers can call APIs on their behalf later.
#[derive(Debug, Parser)]
#[command(name = "tokenbridge", version, propagate_version = true)]
pub struct Cli {
    /// Settings file (TOML). A missing file means built-in defaults; environment variables
    /// TOKENBRIDGE_<SECTION>__<KEY> override any key.
    #[arg(
        long,
        global = true,
        env = "TOKENBRIDGE_CONFIG",
        default_value = "settings.toml",
        value_name = "PATH"
    )]
    pub config: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded database migrations to the configured database.
    ///
    /// Creates or upgrades the `token_cache` and `account_activities` tables. Safe to run
    /// again: it applies only what is pending and prints what it applied.
    Migrate(MigrateArgs),
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// List applied and pending migrations without changing anything.
    #[arg(long)]
    pub status: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Cli::command().debug_assert();
    }

    #[test]
    fn config_defaults_to_settings_toml() {
        let cli = Cli::try_parse_from(["tokenbridge", "migrate"]).unwrap();
        assert_eq!(cli.config, PathBuf::from("settings.toml"));
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs { status: false })
        ));
    }

    #[test]
    fn config_is_global_and_status_is_a_flag() {
        let cli = Cli::try_parse_from(["tokenbridge", "migrate", "--status", "--config", "x.toml"])
            .unwrap();
        assert_eq!(cli.config, PathBuf::from("x.toml"));
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs { status: true })
        ));
    }
}
