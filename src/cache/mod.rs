//! Each user's MSAL-format token cache: the document, its sealing, and its table.

pub mod document;
pub mod lease;
pub mod seal;
pub mod store;
