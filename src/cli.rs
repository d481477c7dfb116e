//! The command line.

use crate::settings::{CallSpec, ReportFormat, Rotation};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;
use std::time::Duration;

/// tokenbridge: one token cache for a web app and its background jobs.
///
/// Users sign in to the web app with OpenID Connect; their MSAL-format token caches live in a
/// shared database, so background workers can call APIs on their behalf later.
#[derive(Debug, Parser)]
#[command(name = "tokenbridge", version, propagate_version = true)]
pub struct Cli {
    /// Settings file (TOML) [default: settings.toml, which may be absent: built-in defaults].
    /// A file named here or in TOKENBRIDGE_CONFIG must exist. Environment variables
    /// TOKENBRIDGE_<SECTION>__<KEY> override any key.
    #[arg(long, global = true, env = "TOKENBRIDGE_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The settings file, and whether it was named (then it must exist).
    pub fn settings_file(&self) -> (PathBuf, bool) {
        match &self.config {
            Some(path) => (path.clone(), true),
            None => (PathBuf::from("settings.toml"), false),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply the embedded database migrations to the configured database.
    ///
    /// Creates or upgrades the `token_cache` and `account_activities` tables. Safe to run
    /// again: it applies only what is pending and prints what it applied.
    Migrate(MigrateArgs),

    /// Run the web app: OpenID Connect sign-in, the profile page, sign-out, health checks.
    ///
    /// Users' tokens go to the shared token cache, where `worker` finds them later.
    Serve,

    /// Act for users who have left: refresh their tokens from the shared cache, call the API.
    ///
    /// Selects accounts idle in the web app for at least --older-than, not marked "interaction
    /// required" and not backing off; acquires an access token silently for each (refresh
    /// token, same client as the web app); calls the API; records each outcome on the
    /// account's activity row. One pass then exit, or --every DURATION until SIGINT/SIGTERM.
    /// Exit status: 0 when the pass ran (whatever the accounts' outcomes), 1 when the database
    /// failed, 2 on a configuration error. The report goes to stdout, logs to stderr.
    Worker(WorkerArgs),

    /// Print a fresh access token for one account from the shared cache.
    ///
    /// The same silent acquisition as the web app and the worker (the cache row's lease: one
    /// redemption per user across processes); never the refresh token. Text: the bare token
    /// and a newline, so `TOKEN=$(tokenbridge token --user ada)` works; JSON adds the expiry,
    /// scopes and account. Whoever can run it holds the client secret and cache keys already.
    /// Exit status: 0 printed; 1 storage; 2 configuration; 3 transient (try again later);
    /// 4 interaction required (the user must sign in again; the reason on stderr).
    Token(TokenArgs),

    /// Look at and erase accounts: who is marked, who has not worked, which key seals a row.
    ///
    /// `list` pages through every account (bounded memory), `show USER` one account and a
    /// summary of its token cache (never a token), `forget USER` erases it. Exit status: 0
    /// done; 1 storage; 2 configuration (settings, keys, an ambiguous user); 3 the provider
    /// did not revoke (`forget --revoke`: nothing was erased).
    Accounts(AccountsArgs),

    /// Work on the stored token caches: `reseal` rewrites every row with the first key.
    ///
    /// Key rotation: put the new key first in cache.keys (keeping the old one), run `cache
    /// reseal`, then remove the old key. Exit status: 0 done; 1 storage; 2 configuration.
    Cache(CacheArgs),

    /// Run a local development identity provider and Graph-like API (loopback only).
    ///
    /// An OpenID provider shaped like Microsoft Entra ID v2.0 that signs in any user name, for
    /// trying tokenbridge, its tests and its benchmarks. Flags override the [dev_idp] settings.
    /// Faults, revocation and counters: see the admin API printed at start.
    DevIdp(DevIdpArgs),
}

#[derive(Debug, Args)]
pub struct DevIdpArgs {
    /// Where to listen: a loopback address and port, e.g. 127.0.0.1:5556.
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// Lifetime of issued access tokens, e.g. 60s.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub access_token_ttl: Option<Duration>,
    /// Lifetime of issued refresh tokens, e.g. 90d.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub refresh_token_ttl: Option<Duration>,
    /// Refresh-token rotation.
    #[arg(long, value_enum)]
    pub rotation: Option<Rotation>,
    /// Delay added to every token request, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub token_latency: Option<Duration>,
    /// Delay added to every API call, e.g. 50ms.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub api_latency: Option<Duration>,
    /// A user name offered on the sign-in form (repeat for more; any name signs in anyway).
    #[arg(long = "user", value_name = "NAME")]
    pub users: Vec<String>,
}

/// Flags of `worker`; each overrides the `[worker]` setting of the same name.
#[derive(Debug, Default, Args)]
pub struct WorkerArgs {
    /// Process accounts whose last activity in the web app is at least this old, e.g. 5m.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Run a pass every DURATION until SIGINT/SIGTERM, e.g. 1m (default: one pass).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub every: Option<Duration>,
    /// Skip accounts a worker acted for less than DURATION ago, whatever --older-than says.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub min_interval: Option<Duration>,
    /// Accounts in flight at once.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub concurrency: Option<u16>,
    /// Process at most N accounts per pass.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Only this account: a user principal name or a home account id.
    #[arg(long, value_name = "UPN_OR_ID")]
    pub user: Option<String>,
    /// Also retry accounts marked "interaction required".
    #[arg(long)]
    pub include_failed: bool,
    /// List the accounts a pass would process; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Report format.
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub format: Option<ReportFormat>,
    /// The job: call METHOD /path on the API called NAME (`default` is [api]) with the user's
    /// token; repeat for several calls, made in order (default: GET {api.path} on default).
    #[arg(
        long = "call",
        value_name = "NAME:METHOD:/PATH",
        conflicts_with = "exec"
    )]
    pub calls: Vec<CallSpec>,
    /// The job: run COMMAND for each account, with the account and a fresh access token in
    /// its environment (TOKENBRIDGE_ACCESS_TOKEN, ...), never on its command line. Split as a
    /// shell would, run without one (write `sh -c '...'` for one). Exit 0: ok; 77: the API
    /// refused the token (refreshed once and run again once); another: the job failed.
    #[arg(long, value_name = "COMMAND", value_parser = parse_command)]
    pub exec: Option<CommandLine>,
    /// An API whose token the --exec job gets, as TOKENBRIDGE_ACCESS_TOKEN_<NAME> (the first
    /// also as TOKENBRIDGE_ACCESS_TOKEN); repeat for several (default: default).
    #[arg(long = "api", value_name = "NAME", requires = "exec")]
    pub exec_apis: Vec<String>,
    /// Kill an --exec job (its whole process group) still running after DURATION (default 5m).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, requires = "exec")]
    pub exec_timeout: Option<Duration>,
}

/// A command line split into its words (see [`crate::settings::split_command`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine(pub Vec<String>);

fn parse_command(line: &str) -> Result<CommandLine, String> {
    crate::settings::split_command(line)
        .map(CommandLine)
        .map_err(|e| format!("the command {e}"))
}

#[derive(Debug, Args)]
pub struct AccountsArgs {
    #[command(subcommand)]
    pub command: AccountsCommand,
}

#[derive(Debug, Subcommand)]
pub enum AccountsCommand {
    /// One line per account, and a count by state at the end.
    List(AccountsListArgs),
    /// One account: its activity and a summary of its token cache (no token, nor any part).
    Show {
        /// A user principal name or a home account id.
        user: String,
        #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
        format: TokenFormat,
    },
    /// Erase one account: its token cache, activity row and recorded sessions (the right to
    /// erasure). Running it again changes nothing.
    Forget {
        /// A user principal name or a home account id (two matches: give the id).
        user: String,
        /// Revoke the refresh token at the provider first (RFC 7009); if that fails, nothing
        /// is erased.
        #[arg(long)]
        revoke: bool,
    },
}

/// Flags of `accounts list`.
#[derive(Debug, Args)]
pub struct AccountsListArgs {
    /// Only accounts in this state (`due`: what a worker pass would take now).
    #[arg(long, value_enum, value_name = "STATE")]
    pub state: Option<AccountState>,
    /// Only accounts idle in the web app at least this long.
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub older_than: Option<Duration>,
    /// Only this account (a user principal name or home account id).
    #[arg(long, value_name = "UPN_OR_ID")]
    pub user: Option<String>,
    /// One line each and a summary, or one JSON object per line.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub format: TokenFormat,
    /// Show at most N accounts (all are still counted).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
}

/// An account's state as `accounts list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountState {
    Ok,
    InteractionRequired,
    SignedOut,
    Failing,
    Due,
}

#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Rewrite every row sealed with another key than the first of cache.keys (and, with
    /// cache.read_plaintext, every plain row) with the first key, by compare-and-swap: a
    /// refresh at the same moment loses nothing. Rows already on the first key are left
    /// alone, so an interrupted run is simply run again.
    Reseal {
        /// Rows listed at a time.
        #[arg(long, value_name = "N", default_value_t = 500, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        batch: u32,
    },
}

/// Flags of `token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The account: a user principal name or a home account id.
    #[arg(long, value_name = "UPN_OR_ID")]
    pub user: String,
    /// The API whose token to print: `default` ([api]) or a NAME of [apis.NAME].
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub api: String,
    /// What is printed.
    #[arg(long, value_enum, value_name = "FORMAT", default_value = "text")]
    pub format: TokenFormat,
}

/// How `token` prints the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TokenFormat {
    /// The bare access token and a newline.
    Text,
    /// One JSON object: the token, its expiry, scopes, API and account.
    Json,
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
        assert_eq!(cli.settings_file(), (PathBuf::from("settings.toml"), false));
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs { status: false })
        ));
    }

    #[test]
    fn dev_idp_flags_parse() {
        let cli = Cli::try_parse_from([
            "tokenbridge",
            "dev-idp",
            "--listen",
            "127.0.0.1:0",
            "--access-token-ttl",
            "60s",
            "--rotation",
            "strict",
            "--token-latency",
            "50ms",
            "--user",
            "ada",
            "--user",
            "bob",
        ])
        .unwrap();
        let Command::DevIdp(args) = cli.command else {
            panic!("not dev-idp")
        };
        assert_eq!(args.listen.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(args.access_token_ttl, Some(Duration::from_secs(60)));
        assert_eq!(args.rotation, Some(Rotation::Strict));
        assert_eq!(args.token_latency, Some(Duration::from_millis(50)));
        assert_eq!(args.users, ["ada", "bob"]);
    }

    #[test]
    fn worker_flags_parse() {
        let cli = Cli::try_parse_from([
            "tokenbridge",
            "worker",
            "--older-than",
            "5m",
            "--every",
            "1m",
            "--concurrency",
            "4",
            "--limit",
            "10",
            "--user",
            "ada@contoso.com",
            "--include-failed",
            "--dry-run",
            "--format",
            "json",
        ])
        .unwrap();
        let Command::Worker(args) = cli.command else {
            panic!("not worker")
        };
        assert_eq!(args.older_than, Some(Duration::from_secs(300)));
        assert_eq!(args.every, Some(Duration::from_secs(60)));
        assert_eq!(args.concurrency, Some(4));
        assert_eq!(args.limit, Some(10));
        assert_eq!(args.user.as_deref(), Some("ada@contoso.com"));
        assert!(args.include_failed && args.dry_run);
        assert_eq!(args.format, Some(ReportFormat::Json));
        for bad in [
            ["--concurrency", "0"],
            ["--older-than", "soon"],
            ["--format", "xml"],
        ] {
            let mut argv = vec!["tokenbridge", "worker"];
            argv.extend(bad);
            assert!(Cli::try_parse_from(argv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn config_is_global_and_status_is_a_flag() {
        let cli = Cli::try_parse_from(["tokenbridge", "migrate", "--status", "--config", "x.toml"])
            .unwrap();
        assert_eq!(cli.settings_file(), (PathBuf::from("x.toml"), true));
        assert!(matches!(
            cli.command,
            Command::Migrate(MigrateArgs { status: true })
        ));
    }
}
