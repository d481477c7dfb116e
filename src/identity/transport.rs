//! Where the provider's metadata may send secrets: the token and revocation endpoints (the
//! client secret, codes, refresh tokens), the JWKS (the keys every ID token is trusted by) and
//! the end-session endpoint (a `Location` the browser follows) must be https, or http to this
//! machine's loopback, unless `identity.allow_insecure_http` says otherwise. Metadata that
//! names anything else is refused whole, as a configuration error.

use super::error::AcquireError;
use crate::settings::insecure_transport;
use url::Url;

/// Each `(what, url)` an endpoint the metadata names: `Err` naming the first that may not
/// carry secrets.
pub(super) fn check_endpoints<'a>(
    endpoints: impl IntoIterator<Item = (&'static str, &'a str)>,
    allow_insecure_http: bool,
) -> Result<(), AcquireError> {
    for (what, endpoint) in endpoints {
        let problem = match Url::parse(endpoint) {
            Ok(url) => insecure_transport(&url, allow_insecure_http),
            Err(e) => Some(format!("it is not a URL ({e})")),
        };
        if let Some(problem) = problem {
            return Err(AcquireError::Configuration(format!(
                "the provider's metadata names a {what} endpoint that is refused: {problem}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_must_be_https_or_loopback() {
        let ok = [
            ("token", "https://login.example.com/token"),
            ("jwks", "http://127.0.0.1:5556/keys"),
            ("end-session", "http://localhost:9400/logout"),
            ("revocation", "http://[::1]:9400/revoke"),
        ];
        assert!(check_endpoints(ok, false).is_ok());
        for (what, url) in [
            ("token", "http://login.example.com/token"),
            ("end-session", "javascript:alert(1)"),
            ("jwks", "ftp://keys.example.com/"),
            ("revocation", "not a url"),
        ] {
            let err = check_endpoints([(what, url)], false).unwrap_err();
            assert!(
                matches!(&err, AcquireError::Configuration(m) if m.contains(what)),
                "{err:?}"
            );
        }
        assert!(check_endpoints([("token", "http://idp.internal/token")], true).is_ok());
        assert!(check_endpoints([("end-session", "javascript:x")], true).is_err());
    }
}
