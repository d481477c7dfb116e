//! Account activity: who signed in, when, and whether background work can act for them.

pub mod accounts;
pub mod passes;
pub mod provider_sessions;
pub mod store;
