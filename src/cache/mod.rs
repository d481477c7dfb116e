//! Each user's MSAL-format token cache: the document, its sealing, and its table.

pub mod backend;
pub mod document;
pub mod key_check;
pub mod lease;
pub mod peek;
pub mod redis;
pub mod replay;
pub mod reseal;
pub mod seal;
pub mod store;
