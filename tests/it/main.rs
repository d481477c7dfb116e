//! One integration test binary (one link step): stores against SQLite, PostgreSQL and MariaDB,
//! migrations, the command line, and interoperability with MSAL Python.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

mod accounts;
mod acquire;
mod activity_store;
mod cache_backends;
mod cache_keys;
mod cache_store;
mod cli;
mod concurrency;
mod database;
mod deploy;
mod dev_idp;
mod files;
mod fixtures;
mod hostile;
mod interop;
mod layers;
mod migrations;
mod newcomer;
mod oidc_provider;
mod replay;
mod reseal;
mod serve;
mod test_command;
mod token;
mod worker;
