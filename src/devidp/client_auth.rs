//! Client authentication at the token endpoint: a client secret (HTTP Basic or form fields), or
//! a client assertion signed with the client's key (`private_key_jwt`, RFC 7523), checked as
//! Entra ID checks it: a registered certificate's key (found by `x5t#S256` or `x5t` when the
//! header names one), `iss` = `sub` = the client id, `aud` = this token endpoint, a lifetime
//! that has begun and not ended (60 s of skew), and a `jti` never seen before.

use super::params::Params;
use super::token::oauth_error;
use super::{now, Provider};
use crate::settings::DevClient;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use std::path::Path;
use subtle::ConstantTimeEq;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Allowed clock skew for an assertion's lifetime.
const LEEWAY: u64 = 60;

/// A client's registered public key: from a certificate (with its thumbprints) or a bare
/// public key.
pub struct RegisteredKey {
    key: DecodingKey,
    family: jsonwebtoken::AlgorithmFamily,
    x5t: Option<String>,
    x5t_s256: Option<String>,
}

/// The certificate of the fixture key pair (`dev/dev-idp-client-key.pem`), which the default
/// client accepts for `private_key_jwt` unless it names certificates of its own.
const FIXTURE_CERTIFICATE: &str = include_str!("../../dev/dev-idp-client-cert.pem");

/// The keys `client` may sign its assertions with: those of its `certificate_file`, or for
/// the default client the fixture's.
pub fn registered_keys(client: &DevClient) -> anyhow::Result<Vec<RegisteredKey>> {
    match &client.certificate_file {
        Some(path) => {
            let text = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            keys_in(&text, path)
        }
        None if client.client_id == crate::settings::DEFAULT_CLIENT_ID => keys_in(
            FIXTURE_CERTIFICATE.as_bytes(),
            Path::new("dev/dev-idp-client-cert.pem"),
        ),
        None => Ok(Vec::new()),
    }
}

/// The public keys in PEM text of certificates or `PUBLIC KEY`s.
fn keys_in(text: &[u8], path: &Path) -> anyhow::Result<Vec<RegisteredKey>> {
    let blocks = pem::parse_many(text)
        .map_err(|_| anyhow::anyhow!("{} is not a PEM file", path.display()))?;
    let mut keys = Vec::new();
    for block in blocks {
        if !matches!(block.tag(), "CERTIFICATE" | "PUBLIC KEY") {
            continue;
        }
        let encoded = pem::encode(&block);
        let (key, family) = if let Ok(key) = DecodingKey::from_rsa_pem(encoded.as_bytes()) {
            (key, jsonwebtoken::AlgorithmFamily::Rsa)
        } else if let Ok(key) = DecodingKey::from_ec_pem(encoded.as_bytes()) {
            (key, jsonwebtoken::AlgorithmFamily::Ec)
        } else {
            anyhow::bail!("{}: a key that is neither RSA nor EC", path.display());
        };
        let certificate = block.tag() == "CERTIFICATE";
        let der = block.contents();
        let sha1 = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, der);
        keys.push(RegisteredKey {
            key,
            family,
            x5t: certificate.then(|| URL_SAFE_NO_PAD.encode(sha1.as_ref())),
            x5t_s256: certificate.then(|| URL_SAFE_NO_PAD.encode(Sha256::digest(der))),
        });
    }
    if keys.is_empty() {
        anyhow::bail!("{}: no certificate or public key in it", path.display());
    }
    Ok(keys)
}

#[derive(serde::Deserialize)]
struct AssertionClaims {
    jti: Option<String>,
    exp: i64,
}

/// `private_key_jwt`: the client named by `client_id`, when its assertion checks out.
fn assertion<'a>(params: &Params, p: &'a Provider) -> Result<&'a DevClient, AuthFailure> {
    let refused = |text: &str| AuthFailure::invalid_client(false, text.to_owned());
    if params.get("client_assertion_type") != Some(ASSERTION_TYPE) {
        return Err(AuthFailure::invalid_request(format!(
            "AADSTS50027: client_assertion_type must be {ASSERTION_TYPE}"
        )));
    }
    let jwt = params.get("client_assertion").unwrap_or_default();
    let id = params.get("client_id").ok_or_else(|| {
        AuthFailure::invalid_request(
            "AADSTS900144: The request body must contain the following parameter: 'client_id'.",
        )
    })?;
    let client = p
        .client(id)
        .ok_or_else(|| refused("AADSTS700016: unknown client"))?;
    let keys = p.client_keys(id);
    if keys.is_empty() {
        return Err(refused(
            "AADSTS700027: no certificate is registered for this client",
        ));
    }
    let header = jsonwebtoken::decode_header(jwt)
        .map_err(|_| refused("AADSTS50027: the client assertion is not a JWT"))?;
    if !matches!(
        header.alg,
        Algorithm::RS256 | Algorithm::PS256 | Algorithm::ES256
    ) {
        return Err(refused(
            "AADSTS700027: the client assertion's algorithm is not accepted",
        ));
    }
    let named = header.x5t_s256.is_some() || header.x5t.is_some();
    let candidates: Vec<&RegisteredKey> = keys
        .iter()
        .filter(|k| k.family == header.alg.family())
        .filter(|k| {
            !named
                || (header.x5t_s256.is_some() && k.x5t_s256 == header.x5t_s256)
                || (header.x5t_s256.is_none() && k.x5t == header.x5t)
        })
        .collect();
    if candidates.is_empty() {
        return Err(refused(
            "AADSTS700027: Client assertion contains an invalid signature. [Reason - The key was \
             not found.]",
        ));
    }
    let mut validation = Validation::new(header.alg);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    validation.set_audience(&[p.endpoint("oauth2/v2.0/token")]);
    validation.set_issuer(&[id]);
    validation.sub = Some(id.to_owned());
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    let mut last = None;
    for key in candidates {
        match jsonwebtoken::decode::<AssertionClaims>(jwt, &key.key, &validation) {
            Ok(checked) => {
                let claims = checked.claims;
                let Some(jti) = claims.jti.filter(|j| !j.is_empty()) else {
                    return Err(refused("AADSTS50027: the client assertion has no jti"));
                };
                let thumbprint = key.x5t_s256.as_deref().unwrap_or("public key");
                if !p
                    .state()
                    .first_assertion(id, &jti, claims.exp, now(), thumbprint)
                {
                    return Err(refused(
                        "AADSTS50027: this client assertion was used already (its jti is replayed)",
                    ));
                }
                return Ok(client);
            }
            Err(e) => last = Some(e),
        }
    }
    use jsonwebtoken::errors::ErrorKind;
    let why = match last.as_ref().map(jsonwebtoken::errors::Error::kind) {
        Some(ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature) => {
            "AADSTS700024: Client assertion is not within its valid time range."
        }
        Some(ErrorKind::InvalidAudience) => {
            "AADSTS700023: the client assertion's audience is not this token endpoint"
        }
        Some(ErrorKind::InvalidIssuer | ErrorKind::InvalidSubject) => {
            "AADSTS700021: Client assertion application identifier doesn't match 'client_id' parameter."
        }
        Some(ErrorKind::MissingRequiredClaim(_)) => {
            "AADSTS50027: the client assertion lacks a required claim (exp, iss, sub, aud)"
        }
        _ => "AADSTS700027: Client assertion contains an invalid signature.",
    };
    Err(refused(why))
}

/// Why client authentication failed; becomes an RFC 6749 error response.
pub(super) struct AuthFailure {
    status: StatusCode,
    error: &'static str,
    description: String,
    basic_used: bool,
}

impl AuthFailure {
    fn invalid_client(basic_used: bool, description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: "invalid_client",
            description: description.into(),
            basic_used,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: "invalid_request",
            description: description.into(),
            basic_used: false,
        }
    }

    pub(super) fn response(&self) -> HttpResponse {
        let mut response = oauth_error(self.status, self.error, &self.description);
        if self.basic_used {
            response.headers_mut().insert(
                actix_web::http::header::WWW_AUTHENTICATE,
                actix_web::http::header::HeaderValue::from_static(
                    "Basic realm=\"tokenbridge dev-idp\"",
                ),
            );
        }
        response
    }
}

/// Client authentication: HTTP Basic or form fields, never both (RFC 6749 section 2.3), or a
/// client assertion (`private_key_jwt`).
pub(super) fn authenticate<'a>(
    req: &HttpRequest,
    params: &Params,
    p: &'a Provider,
) -> Result<&'a DevClient, AuthFailure> {
    if params.get("client_assertion_type").is_some() || params.get("client_assertion").is_some() {
        if req.headers().contains_key("Authorization") || params.get("client_secret").is_some() {
            return Err(AuthFailure::invalid_request(
                "use one client authentication method, not two",
            ));
        }
        return assertion(params, p);
    }
    let basic = req
        .headers()
        .get("Authorization")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.strip_prefix("Basic "));
    let (id, secret, basic_used) = match (basic, params.get("client_secret")) {
        (Some(_), Some(_)) => {
            return Err(AuthFailure::invalid_request(
                "use one client authentication method, not two",
            ))
        }
        (Some(encoded), None) => {
            let malformed = || AuthFailure::invalid_client(true, "malformed Basic credentials");
            let decoded = STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(malformed)?;
            let (id, secret) = decoded.split_once(':').ok_or_else(malformed)?;
            // Basic credentials are form-urlencoded first (RFC 6749 section 2.3.1).
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (decode(id), decode(secret), true)
        }
        (None, Some(secret)) => (
            params.get("client_id").unwrap_or_default().to_owned(),
            secret.to_owned(),
            false,
        ),
        (None, None) => {
            // A public client (an SPA) proves nothing but its id; PKCE binds its code.
            return match params.get("client_id").and_then(|id| p.client(id)) {
                Some(client) if client.public => Ok(client),
                _ => Err(AuthFailure::invalid_client(
                    false,
                    "client authentication is required",
                )),
            };
        }
    };
    if basic_used && params.get("client_id").is_some_and(|form_id| form_id != id) {
        return Err(AuthFailure::invalid_request(
            "client_id does not match the credentials",
        ));
    }
    match p.client(&id) {
        Some(client)
            if !client.public
                && bool::from(
                    client
                        .client_secret
                        .expose()
                        .as_bytes()
                        .ct_eq(secret.as_bytes()),
                ) =>
        {
            Ok(client)
        }
        _ => Err(AuthFailure::invalid_client(
            basic_used,
            "unknown client or wrong client secret",
        )),
    }
}
