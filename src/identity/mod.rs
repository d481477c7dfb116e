//! Signing users in and getting their tokens: the provider client, and token acquisition
//! (code redemption and silent refresh) over the shared cache, used by `serve` and `worker`.

pub mod acquire;
mod activity;
pub mod client_key;
pub mod error;
mod forget;
pub mod http;
mod jwk;
mod oidc_types;
pub mod provider;
mod sign_in;
mod sign_in_once;
mod sign_out;
mod transport;

pub use error::AcquireError;
pub use forget::{Forgotten, Revocation};
pub use provider::{OidcProvider, ResponseIssuer, SignInState};
pub use sign_out::{ProviderSessionEnded, SignedOut};
