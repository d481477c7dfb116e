//! A token answer: the access token (and ID token) a grant earns, signed as Entra ID signs
//! them, with the refresh token, `client_info` and the other fields of the answer.

use super::keys::{at_hash, random_token};
use super::on_behalf_of::ACCESS_TOKEN_TYPE;
use super::resources::{resource_of, ForOne, WEB_API};
use super::state::Grant;
use super::token::oauth_error;
use super::users::Profile;
use super::Provider;
use crate::settings::DevClient;
use actix_web::http::StatusCode;
use actix_web::HttpResponse;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// The answer's `scope`: the token's resource's scopes, with the sign-in's own (openid, ...)
/// for Graph, as Entra ID answers.
fn answered_scope(grant: &Grant, for_one: &ForOne) -> String {
    if for_one.resource.full_scope_names {
        return for_one.scopes.join(" ");
    }
    grant
        .scopes
        .iter()
        .filter(|s| resource_of(s).is_none() || for_one.scopes.contains(s))
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(" ")
}

#[derive(Serialize)]
struct IdTokenClaims<'a> {
    ver: &'static str,
    iss: String,
    sub: String,
    aud: &'a str,
    exp: i64,
    iat: i64,
    nbf: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    nonce: Option<&'a str>,
    oid: &'a str,
    tid: &'a str,
    name: &'a str,
    preferred_username: &'a str,
    at_hash: String,
    /// The provider session (Front- and Back-Channel Logout name it).
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

#[derive(Serialize)]
struct AccessTokenClaims<'a> {
    ver: &'static str,
    iss: String,
    aud: &'static str,
    sub: String,
    exp: i64,
    iat: i64,
    nbf: i64,
    scp: String,
    oid: &'a str,
    tid: &'a str,
    appid: &'a str,
    name: &'a str,
    upn: &'a str,
    uti: String,
    /// The user's revocation generation (see `Grant::generation`); a development-provider
    /// claim only its own API reads.
    gen: u64,
}

/// Entra ID gives each client its own `sub` for a user (pairwise subject).
pub(super) fn pairwise_sub(oid: &str, client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("{oid}:{client_id}").as_bytes()))
}

/// How a token answer is shaped beyond its grant.
pub(super) struct Answer {
    /// Entra ID's `client_info` was asked for.
    pub client_info: bool,
    /// An injected fault: the ID token names another audience.
    pub wrong_audience: bool,
    /// An RFC 8693 exchange: the answer says what it issued (`issued_token_type`).
    pub exchanged: bool,
}

pub(super) fn mint(
    p: &Provider,
    client: &DevClient,
    grant: &Grant,
    for_one: &ForOne,
    answer: Answer,
    now: i64,
) -> HttpResponse {
    let Answer {
        client_info,
        wrong_audience,
        exchanged,
    } = answer;
    let profile = Profile::of(&grant.username);
    let behaviour = p.behaviour();
    let ttl = i64::try_from(behaviour.access_token_ttl_secs).unwrap_or(i64::MAX / 2);
    let sub = pairwise_sub(&profile.id, &client.client_id);
    // A token for the web API names the user as that API's app knows them (its client id is
    // the audience), as Entra ID's access tokens do: the API's own sign-ins see the same `sub`.
    let access_sub = if for_one.resource == &WEB_API {
        pairwise_sub(&profile.id, WEB_API.audience)
    } else {
        sub.clone()
    };
    let access_claims = AccessTokenClaims {
        ver: "2.0",
        iss: p.issuer(),
        aud: for_one.resource.audience,
        sub: access_sub,
        exp: now + ttl,
        iat: now,
        nbf: now,
        scp: for_one.scp(),
        oid: &profile.id,
        tid: &p.tenant_id,
        appid: &client.client_id,
        name: &profile.display_name,
        upn: &profile.user_principal_name,
        uti: random_token(),
        gen: grant.generation,
    };
    // The web API checks its tokens with the published keys, as a resource server does; the
    // other APIs are the provider's own, which check them with theirs.
    let signed = if for_one.resource == &WEB_API {
        p.keys.sign_id_token(&access_claims)
    } else {
        p.keys.sign_access_token(&access_claims)
    };
    let access_token = match signed {
        Ok(token) => token,
        Err(e) => {
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                &e.to_string(),
            )
        }
    };
    let mut body = serde_json::json!({
        "token_type": "Bearer",
        "scope": answered_scope(grant, for_one),
        "expires_in": ttl,
        "ext_expires_in": ttl,
        "access_token": access_token,
    });
    if grant.scopes.iter().any(|s| s == "openid") {
        let id_claims = IdTokenClaims {
            ver: "2.0",
            iss: p.issuer(),
            sub,
            aud: if wrong_audience {
                "someone-else"
            } else {
                &client.client_id
            },
            exp: now + 3600,
            iat: now,
            nbf: now,
            nonce: grant.nonce.as_deref(),
            oid: &profile.id,
            tid: &p.tenant_id,
            name: &profile.display_name,
            preferred_username: &profile.user_principal_name,
            at_hash: at_hash(&access_token),
            sid: grant.sid.as_deref(),
        };
        match p.keys.sign_id_token(&id_claims) {
            Ok(token) => body["id_token"] = token.into(),
            Err(e) => {
                return oauth_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "server_error",
                    &e.to_string(),
                )
            }
        }
    }
    if let Some(refresh_in) = behaviour.refresh_in_secs {
        body["refresh_in"] = refresh_in.into();
    }
    if let Some(refresh_token) = &grant.refresh_token {
        body["refresh_token"] = refresh_token.clone().into();
    }
    if exchanged {
        body["issued_token_type"] = ACCESS_TOKEN_TYPE.into();
    }
    if client_info {
        let info = serde_json::json!({ "uid": profile.id, "utid": p.tenant_id });
        body["client_info"] = URL_SAFE_NO_PAD.encode(info.to_string()).into();
    }
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .insert_header(("Pragma", "no-cache"))
        .json(body)
}
