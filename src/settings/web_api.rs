//! `[web_api]`: tokenbridge as a web API. A single-page or mobile app calls `GET /api/me` with
//! the user's access token for this API; `serve` checks it as a resource server must, exchanges
//! it for the downstream API's tokens for that user (on-behalf-of), keeps them in the user's
//! cache as a sign-in would, and the worker later acts for the user as for any other.

use super::{invalid, parse_url, ProviderKind, SettingsError};
use serde::Deserialize;

/// How a caller's token is exchanged for the user's own tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exchange {
    /// Entra ID's on-behalf-of grant (RFC 7523 jwt-bearer, `requested_token_use=on_behalf_of`).
    OnBehalfOf,
    /// RFC 8693 token exchange, as Keycloak, Okta and others offer it.
    TokenExchange,
}

#[derive(Debug, Clone, Default)]
pub struct WebApiSettings {
    /// `/api/...` is served (off by default: a web app only).
    pub enabled: bool,
    /// The audiences (`aud`) a caller's token may name: this API's client id and its
    /// Application ID URI (`api://{client_id}`) unless set.
    pub audiences: Vec<String>,
    /// A caller's token must carry one of these scopes (`scp` or `scope`).
    pub scopes: Vec<String>,
    /// Browser origins (`https://spa.example.com`) allowed to call the API (CORS); none
    /// unless listed.
    pub allowed_origins: Vec<String>,
    /// The API `/api/me` calls for the user (`default`: `[api]`), with that API's scopes.
    pub api: String,
    /// How the caller's token is exchanged: on-behalf-of at Entra ID, RFC 8693 elsewhere,
    /// unless set.
    pub exchange: Option<Exchange>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawWebApi {
    enabled: bool,
    audiences: Vec<String>,
    scopes: Vec<String>,
    allowed_origins: Vec<String>,
    api: String,
    exchange: String,
}

impl Default for RawWebApi {
    fn default() -> Self {
        Self {
            enabled: false,
            audiences: Vec::new(),
            scopes: vec!["access_as_user".into()],
            allowed_origins: Vec::new(),
            api: super::DEFAULT_API.into(),
            exchange: String::new(),
        }
    }
}

impl RawWebApi {
    /// `client_id`: this API's own (`identity.client_id`), its default audience.
    pub(super) fn validate(self, client_id: &str) -> Result<WebApiSettings, SettingsError> {
        let trimmed = |values: Vec<String>| -> Vec<String> {
            values
                .into_iter()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
                .collect()
        };
        let mut audiences = trimmed(self.audiences);
        if audiences.is_empty() && !client_id.is_empty() {
            audiences = vec![client_id.to_owned(), format!("api://{client_id}")];
        }
        let scopes = trimmed(self.scopes);
        if self.enabled && scopes.is_empty() {
            return Err(invalid(
                "web_api.scopes",
                "name the scope a caller's token must carry, such as \"access_as_user\"",
            ));
        }
        let allowed_origins = trimmed(self.allowed_origins)
            .iter()
            .map(|raw| origin("web_api.allowed_origins", raw))
            .collect::<Result<Vec<_>, _>>()?;
        let exchange = match self.exchange.trim() {
            "" => None,
            "on_behalf_of" => Some(Exchange::OnBehalfOf),
            "token_exchange" => Some(Exchange::TokenExchange),
            other => {
                return Err(invalid(
                    "web_api.exchange",
                    format!("expected \"on_behalf_of\" or \"token_exchange\", not {other:?}"),
                ))
            }
        };
        Ok(WebApiSettings {
            enabled: self.enabled,
            audiences,
            scopes,
            allowed_origins,
            api: self.api.trim().to_owned(),
            exchange,
        })
    }
}

impl WebApiSettings {
    /// How `provider`'s tokens are exchanged: as set, else on-behalf-of at Entra ID and RFC
    /// 8693 token exchange at any other provider.
    pub fn exchange_for(&self, provider: ProviderKind) -> Exchange {
        self.exchange.unwrap_or(match provider {
            ProviderKind::Entra => Exchange::OnBehalfOf,
            ProviderKind::Oidc => Exchange::TokenExchange,
        })
    }
}

/// A browser origin, as the `Origin` header sends it: scheme, host and port only.
fn origin(key: &'static str, raw: &str) -> Result<String, SettingsError> {
    let refused = || {
        invalid(
            key,
            format!(
                "expected an origin such as \"https://spa.example.com\" (scheme, host and port, \
                 no path; \"*\" is not accepted), not {raw:?}"
            ),
        )
    };
    let url = parse_url(key, raw).map_err(|_| refused())?;
    let bare = url.path() == "/" && url.query().is_none() && url.fragment().is_none();
    if !bare || !url.username().is_empty() || url.host().is_none() {
        return Err(refused());
    }
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(origins: &[&str]) -> RawWebApi {
        RawWebApi {
            enabled: true,
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            ..RawWebApi::default()
        }
    }

    #[test]
    fn origins_are_read_as_browsers_send_them() {
        let settings = raw(&["https://SPA.example.com/", "http://127.0.0.1:3000"])
            .validate("app")
            .unwrap();
        assert_eq!(
            settings.allowed_origins,
            ["https://spa.example.com", "http://127.0.0.1:3000"]
        );
        assert_eq!(settings.audiences, ["app", "api://app"]);
        for bad in [
            "*",
            "https://spa.example.com/app",
            "spa.example.com",
            "https://u@x.com",
        ] {
            let refused = raw(&[bad]).validate("app").unwrap_err().to_string();
            assert!(
                refused.contains("web_api.allowed_origins"),
                "{bad}: {refused}"
            );
        }
    }

    #[test]
    fn the_exchange_follows_the_provider_unless_set() {
        let settings = raw(&[]).validate("app").unwrap();
        assert_eq!(
            settings.exchange_for(ProviderKind::Entra),
            Exchange::OnBehalfOf
        );
        assert_eq!(
            settings.exchange_for(ProviderKind::Oidc),
            Exchange::TokenExchange
        );
        let set = RawWebApi {
            exchange: "on_behalf_of".into(),
            ..raw(&[])
        };
        assert_eq!(
            set.validate("app")
                .unwrap()
                .exchange_for(ProviderKind::Oidc),
            Exchange::OnBehalfOf
        );
        let wrong = RawWebApi {
            exchange: "obo".into(),
            ..raw(&[])
        };
        assert!(wrong.validate("app").is_err());
        let no_scope = RawWebApi {
            scopes: vec![" ".into()],
            ..raw(&[])
        };
        assert!(no_scope.validate("app").is_err());
    }
}
