//! OpenID Connect Back-Channel Logout 1.0, section 2.6: a logout token is a JWT from the
//! provider, checked as strictly as an ID token: signed (never `none`, never with a shared
//! secret) by a key of the provider's JWKS (fetched once more for an unknown key id), `iss`
//! exactly the issuer, `aud` this client, unexpired, `iat` near now, the back-channel event in
//! `events`, a `sub` or a `sid`, a `jti`, and no `nonce` (which would make it an ID token).
//! Signatures and standard claims are `jsonwebtoken`'s work, not ours.

use super::*;
use jsonwebtoken::jwk::{Jwk as LogoutJwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};

/// The member of `events` that makes a JWT a logout token.
pub const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How far from now a logout token's `iat` may be, and the clock skew allowed on `exp`.
const IAT_WINDOW_SECS: i64 = 300;
const LEEWAY_SECS: u64 = 60;

/// A logout token that passed every check: what it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutToken {
    /// The user, as the ID tokens name them.
    pub sub: Option<String>,
    /// The provider session.
    pub sid: Option<String>,
    pub jti: String,
    /// When it expires (Unix seconds): how long its `jti` must be remembered.
    pub expires_at: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum LogoutTokenError {
    /// Refused (400): why, without the token.
    #[error("the logout token is not valid: {0}")]
    Invalid(String),
    /// The provider's keys could not be loaded (try again later).
    #[error("{0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    events: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    sub: Option<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    nonce: Option<serde_json::Value>,
}

/// The provider's JWKS as `jsonwebtoken` keys; a key it cannot use is left out.
pub(super) fn key_set<K: serde::Serialize>(keys: &K) -> JwkSet {
    let keys = serde_json::to_value(keys)
        .ok()
        .and_then(|set| set["keys"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|key| serde_json::from_value::<LogoutJwk>(key).ok())
        .collect();
    JwkSet { keys }
}

/// The provider's key a JWT with `header` is signed with.
pub(super) enum KeyFor {
    Found(DecodingKey),
    /// No published key has its id: the keys may have rotated (fetch them once more).
    Unknown,
    Invalid(String),
}

/// The published key that checks a JWT with `header`: never a shared secret (HS*), which
/// anyone holding the public key could forge with.
pub(super) fn key_for(jwks: &JwkSet, header: &jsonwebtoken::Header) -> KeyFor {
    if matches!(
        header.alg,
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
    ) {
        return KeyFor::Invalid("it is signed with a shared secret, not the provider's key".into());
    }
    let key = jwks.keys.iter().find(|jwk| match &header.kid {
        Some(kid) => jwk.common.key_id.as_deref() == Some(kid.as_str()),
        None => true,
    });
    let Some(key) = key else {
        return KeyFor::Unknown;
    };
    match DecodingKey::from_jwk(key) {
        Ok(key) => KeyFor::Found(key),
        Err(e) => KeyFor::Invalid(format!("the provider's key cannot check it ({e})")),
    }
}

enum Check {
    Valid(LogoutToken),
    UnknownKey,
    Invalid(String),
}

impl OidcProvider {
    /// Validates a logout token the provider sent to this client, at `now` (Unix seconds).
    pub async fn validate_logout_token(
        &self,
        token: &str,
        now: i64,
    ) -> Result<LogoutToken, LogoutTokenError> {
        let unavailable = |e: AcquireError| LogoutTokenError::Unavailable(e.to_string());
        let loaded = self.metadata().await.map_err(unavailable)?;
        let checked = match self.check_logout_token(&loaded, token, now) {
            // The provider may have rotated its keys: fetch them once more.
            Check::UnknownKey => {
                let reloaded = self.reload(Some(&loaded)).await.map_err(unavailable)?;
                self.check_logout_token(&reloaded, token, now)
            }
            checked => checked,
        };
        match checked {
            Check::Valid(token) => Ok(token),
            Check::UnknownKey => Err(LogoutTokenError::Invalid(
                "it is signed with a key the provider does not publish".into(),
            )),
            Check::Invalid(why) => Err(LogoutTokenError::Invalid(why)),
        }
    }

    fn check_logout_token(&self, loaded: &Loaded, token: &str, now: i64) -> Check {
        let invalid = |why: String| Check::Invalid(crate::text::bound(why, crate::text::REASON));
        let header = match jsonwebtoken::decode_header(token) {
            Ok(header) => header,
            Err(e) => return invalid(format!("not a signed JWT ({e})")),
        };
        if let Some(typ) = &header.typ {
            let typ = typ.to_ascii_lowercase();
            if typ != "logout+jwt" && typ != "application/logout+jwt" && typ != "jwt" {
                return invalid(format!("its type is {typ}, not logout+jwt"));
            }
        }
        let key = match key_for(&loaded.jwks, &header) {
            KeyFor::Found(key) => key,
            KeyFor::Unknown => return Check::UnknownKey,
            KeyFor::Invalid(why) => return invalid(why),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[self.issuer.as_str()]);
        validation.set_audience(&[self.client_id.as_str()]);
        validation.set_required_spec_claims(&["iss", "aud", "iat", "exp"]);
        validation.leeway = LEEWAY_SECS;
        let claims = match jsonwebtoken::decode::<Claims>(token, &key, &validation) {
            Ok(data) => data.claims,
            Err(e) => return invalid(format!("{e}")),
        };
        if (claims.iat - now).abs() > IAT_WINDOW_SECS {
            return invalid("it was issued too far from now (iat)".into());
        }
        let event = claims
            .events
            .as_ref()
            .and_then(|events| events.get(BACKCHANNEL_EVENT));
        if !event.is_some_and(serde_json::Value::is_object) {
            return invalid("its events claim has no back-channel logout event".into());
        }
        if claims.nonce.is_some() {
            return invalid("it carries a nonce (logout tokens must not)".into());
        }
        let present = |v: Option<String>| v.filter(|v| !v.is_empty());
        let (sub, sid) = (present(claims.sub), present(claims.sid));
        if sub.is_none() && sid.is_none() {
            return invalid("it names neither a sub nor a sid".into());
        }
        let Some(jti) = present(claims.jti) else {
            return invalid("it has no jti".into());
        };
        Check::Valid(LogoutToken {
            sub,
            sid,
            jti,
            expires_at: claims.exp,
        })
    }
}
