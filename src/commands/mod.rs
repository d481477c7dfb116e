//! One module per subcommand. Commands return `anyhow` errors with context for the terminal.

pub mod dev_idp;
pub mod migrate;
pub mod serve;
pub mod token;
pub mod worker;
