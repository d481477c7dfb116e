//! A bearer access token an API is called with (the web API mode: a single-page or mobile app
//! calls tokenbridge's API with the user's token), checked as a resource server must (RFC 6750,
//! RFC 9068): signed by a key the provider publishes (fetched once more for an unknown key
//! id; never `none`, never a shared secret), `iss` exactly the issuer, `aud` one of this API's
//! audiences, `exp` and `nbf` with 60 seconds of skew, a `scp` or `scope` holding one of the
//! required scopes, and at Entra ID a `tid` that is the configured tenant. What is refused is
//! `invalid_token` (401), or `insufficient_scope` (403) for a valid token without the scope.

use super::logout_token::{key_for, KeyFor};
use super::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Validation;

const LEEWAY_SECS: u64 = 60;

/// What this API accepts.
#[derive(Debug, Clone, Default)]
pub struct BearerRules {
    /// Its audiences (`aud`): Entra ID v2 tokens name the API's client id, v1 tokens its
    /// Application ID URI.
    pub audiences: Vec<String>,
    /// A token must carry one of these (in `scp` or `scope`).
    pub scopes: Vec<String>,
}

/// A bearer token that passed every check.
#[derive(Clone)]
pub struct CallerToken {
    /// The token itself, for an on-behalf-of exchange.
    pub raw: Secret,
    pub sub: String,
    pub oid: Option<String>,
    pub tid: Option<String>,
    pub scopes: Vec<String>,
    pub expires_at: i64,
}

impl CallerToken {
    /// The user's home account id as the provider's token answers name it, which keys their
    /// cache: Entra ID's `{oid}.{tid}` (its `client_info`), another provider's `sub`. None at
    /// Entra ID for a token without `oid` (an application's own token, not a user's).
    pub fn home_account_id(&self, kind: ProviderKind) -> Option<String> {
        match kind {
            ProviderKind::Entra => Some(format!("{}.{}", self.oid.as_ref()?, self.tid.as_ref()?)),
            ProviderKind::Oidc => Some(self.sub.clone()),
        }
    }
}

impl std::fmt::Debug for CallerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallerToken")
            .field("sub", &self.sub)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BearerError {
    /// RFC 6750 `invalid_token` (401): why, without the token.
    #[error("invalid_token: {0}")]
    Invalid(String),
    /// RFC 6750 `insufficient_scope` (403): the scopes that would do.
    #[error("insufficient_scope: one of {0:?} is needed")]
    InsufficientScope(Vec<String>),
    /// The provider's keys could not be loaded (503).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Claims {
    exp: i64,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    oid: Option<String>,
    #[serde(default)]
    tid: Option<String>,
    #[serde(default)]
    scp: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

pub(super) enum Checked {
    Valid(CallerToken),
    UnknownKey,
    Refused(BearerError),
}

/// Checks `token` against the keys `jwks`, for `issuer` (and at Entra ID `tenant`), by
/// `rules`. No network.
pub(super) fn check_access_token(
    jwks: &JwkSet,
    issuer: &str,
    tenant: Option<&str>,
    rules: &BearerRules,
    token: &str,
) -> Checked {
    let invalid = |why: String| {
        Checked::Refused(BearerError::Invalid(crate::text::bound(
            why,
            crate::text::REASON,
        )))
    };
    let header = match jsonwebtoken::decode_header(token) {
        Ok(header) => header,
        Err(e) => return invalid(format!("not a signed JWT ({e})")),
    };
    let key = match key_for(jwks, &header) {
        KeyFor::Found(key) => key,
        KeyFor::Unknown => return Checked::UnknownKey,
        KeyFor::Invalid(why) => return invalid(why),
    };
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&rules.audiences);
    validation.set_required_spec_claims(&["iss", "aud", "exp"]);
    validation.validate_nbf = true;
    validation.leeway = LEEWAY_SECS;
    let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
        Ok(data) => data.claims,
        Err(e) => return invalid(format!("{e}")),
    };
    if let Some(tenant) = tenant {
        if claims.tid.as_deref() != Some(tenant) {
            return invalid("it was issued for another tenant (tid)".into());
        }
    }
    let Some(sub) = claims.sub.filter(|s| !s.is_empty()) else {
        return invalid("it names no user (sub)".into());
    };
    let scopes: Vec<String> = claims
        .scp
        .or(claims.scope)
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if !rules.scopes.iter().any(|wanted| scopes.contains(wanted)) {
        return Checked::Refused(BearerError::InsufficientScope(rules.scopes.clone()));
    }
    Checked::Valid(CallerToken {
        raw: Secret::new(token),
        sub,
        oid: claims.oid,
        tid: claims.tid,
        scopes,
        expires_at: claims.exp,
    })
}

impl OidcProvider {
    /// Validates a bearer token this API was called with (see the module documentation).
    pub async fn validate_access_token(
        &self,
        token: &str,
        rules: &BearerRules,
    ) -> Result<CallerToken, BearerError> {
        let unavailable = |e: AcquireError| BearerError::Unavailable(e.to_string());
        let tenant = (self.kind == ProviderKind::Entra).then_some(self.tenant_id.as_str());
        let loaded = self.metadata().await.map_err(unavailable)?;
        let checked = match check_access_token(&loaded.jwks, self.issuer(), tenant, rules, token) {
            // The provider may have rotated its keys: fetch them once more.
            Checked::UnknownKey => {
                let reloaded = self.reload(Some(&loaded)).await.map_err(unavailable)?;
                check_access_token(&reloaded.jwks, self.issuer(), tenant, rules, token)
            }
            checked => checked,
        };
        match checked {
            Checked::Valid(caller) => Ok(caller),
            Checked::UnknownKey => Err(BearerError::Invalid(
                "it is signed with a key the provider does not publish".into(),
            )),
            Checked::Refused(e) => Err(e),
        }
    }
}

#[cfg(test)]
#[path = "access_token_tests.rs"]
mod tests;
