//! ID tokens and authorization responses: signature, issuer, audience, expiry (with clock
//! skew), nonce and `at_hash`, Entra ID's tenant, and RFC 9207's `iss` check.

use super::*;

impl OidcProvider {
    /// Validates a refresh answer's ID token with the keys already held, without any network
    /// request; an error also when the token names a key not yet fetched.
    pub fn check_id_token_offline(
        &self,
        redeemed: &Redeemed,
    ) -> Result<Option<IdToken>, AcquireError> {
        self.check(&redeemed.loaded, &redeemed.response, None)
    }

    /// Validates a refresh answer's ID token, fetching the provider's keys again when it names
    /// one not yet seen.
    pub async fn validate_id_token(
        &self,
        redeemed: &Redeemed,
    ) -> Result<Option<IdToken>, AcquireError> {
        self.validate(redeemed.loaded.clone(), &redeemed.response, None)
            .await
    }

    pub(super) async fn validate(
        &self,
        loaded: Arc<Loaded>,
        response: &ProviderTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<Option<IdToken>, AcquireError> {
        match check_claims(&loaded, response, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                // The provider may have rotated its keys: fetch them once more.
                let reloaded = self.reload(Some(&loaded)).await?;
                self.check(&reloaded, response, nonce)
            }
            _ => self.check(&loaded, response, nonce),
        }
    }

    /// Validates the ID token of `response` with the keys in `loaded` (no network).
    fn check(
        &self,
        loaded: &Loaded,
        response: &ProviderTokenResponse,
        nonce: Option<&Nonce>,
    ) -> Result<Option<IdToken>, AcquireError> {
        let Some(id_token) = response.id_token() else {
            return Ok(None);
        };
        let claims = check_claims(loaded, response, nonce)
            .map_err(|e| config(format!("the ID token is not valid: {e}")))?;
        let extra = claims.additional_claims();
        if self.kind == ProviderKind::Entra
            && extra
                .tid
                .as_deref()
                .is_some_and(|tid| tid != self.tenant_id)
        {
            return Err(config("the ID token was issued for another tenant"));
        }
        Ok(Some(IdToken {
            raw: Secret::new(id_token.to_string()),
            claims: IdTokenClaims {
                sub: claims.subject().as_str().to_owned(),
                oid: extra.oid.clone(),
                tid: extra.tid.clone(),
                preferred_username: claims.preferred_username().map(|u| u.as_str().to_owned()),
                upn: extra.upn.clone(),
                name: claims
                    .name()
                    .and_then(|n| n.get(None))
                    .map(|n| n.as_str().to_owned()),
                sid: extra.sid.clone().filter(|sid| !sid.is_empty()),
            },
        }))
    }

    /// RFC 9207's mix-up defence: an authorization response's `iss` must be the issuer this app
    /// sent the user to, compared as strings; a provider that advertises the parameter must
    /// send it. A response without `iss` from one that does not advertise it is accepted.
    pub async fn check_response_issuer(&self, iss: Option<&str>) -> Result<(), ResponseIssuer> {
        let loaded = self.metadata().await.map_err(ResponseIssuer::Unavailable)?;
        match iss {
            Some(iss) if iss == self.issuer.as_str() => Ok(()),
            Some(_) => Err(ResponseIssuer::Mismatch),
            None if loaded.iss_parameter => Err(ResponseIssuer::Missing),
            None => Ok(()),
        }
    }
}

/// Clock skew allowed when checking an ID token's expiry, as Microsoft's and most OpenID
/// libraries allow: a provider whose clock runs a little behind ours is not an error.
const CLOCK_SKEW: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// Signature, issuer, audience, expiry (with [`CLOCK_SKEW`]), nonce and `at_hash`.
fn check_claims(
    loaded: &Loaded,
    response: &ProviderTokenResponse,
    nonce: Option<&Nonce>,
) -> Result<IdTokenClaimsOf, ClaimsVerificationError> {
    let Some(id_token) = response.id_token() else {
        return Err(ClaimsVerificationError::Other("no ID token".into()));
    };
    let verifier = loaded
        .client
        .id_token_verifier()
        .set_time_fn(|| chrono::Utc::now() - CLOCK_SKEW);
    let claims = match nonce {
        Some(nonce) => id_token.claims(&verifier, nonce),
        None => id_token.claims(&verifier, |_: Option<&Nonce>| Ok(())),
    }?;
    if let Some(expected) = claims.access_token_hash() {
        let alg = id_token
            .signing_alg()
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let key = id_token
            .signing_key(&verifier)
            .map_err(ClaimsVerificationError::SignatureVerification)?;
        let actual = AccessTokenHash::from_token(response.access_token(), alg, key)
            .map_err(|e| ClaimsVerificationError::Other(e.to_string()))?;
        if &actual != expected {
            return Err(ClaimsVerificationError::InvalidNonce(
                "at_hash does not match the access token".into(),
            ));
        }
    }
    Ok(claims.clone())
}

/// Why an authorization response's issuer is refused (RFC 9207).
#[derive(Debug)]
pub enum ResponseIssuer {
    /// `iss` names another issuer: the response may come from a provider mixed up with ours.
    Mismatch,
    /// The provider advertises `iss` but the response has none.
    Missing,
    /// The provider's metadata could not be loaded to tell.
    Unavailable(AcquireError),
}
