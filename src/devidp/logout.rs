//! Telling clients that a provider session ended: OpenID Connect Back-Channel Logout 1.0 (a
//! logout token POSTed to each client's `backchannel_logout_uri`) and Front-Channel Logout 1.0
//! (the logout page loads each client's `frontchannel_logout_uri?iss=&sid=` in an iframe).

use super::keys::random_token;
use super::mint::pairwise_sub;
use super::sessions::Session;
use super::users::Profile;
use super::{now, Provider};
use crate::settings::DevClient;
use serde::Serialize;
use std::time::Duration;

/// The event a logout token carries (Back-Channel Logout 1.0, section 2.4).
const BACKCHANNEL_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// How long a logout token stays valid, and how long the provider waits for each client.
const LIFETIME_SECS: i64 = 120;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Serialize)]
struct LogoutTokenClaims<'a> {
    iss: String,
    aud: &'a str,
    iat: i64,
    exp: i64,
    jti: String,
    events: serde_json::Value,
    sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

/// A logout token for `client`: `username` (as `sub`, the client's pairwise subject), and the
/// session `sid` when one ended.
pub fn logout_token(
    p: &Provider,
    client: &DevClient,
    username: &str,
    sid: Option<&str>,
) -> Result<String, super::keys::KeyError> {
    let now = now();
    let claims = LogoutTokenClaims {
        iss: p.issuer(),
        aud: &client.client_id,
        iat: now,
        exp: now + LIFETIME_SECS,
        jti: random_token(),
        events: serde_json::json!({ BACKCHANNEL_EVENT: {} }),
        sub: pairwise_sub(&Profile::of(username).id, &client.client_id),
        sid,
    };
    p.keys.sign_logout_token(&claims)
}

/// The sessions of `username` ended (`sessions`; none: the user's sign-ins everywhere): every
/// client signed in through one is sent a logout token (every client with a back-channel URI
/// when no session is known), and waited for. Returns the front-channel URLs for the logout
/// page to load.
pub async fn ended(p: &Provider, username: &str, sessions: &[Session]) -> Vec<String> {
    let mut deliveries: Vec<(&DevClient, Option<&str>)> = Vec::new();
    for session in sessions {
        for client in p
            .clients
            .iter()
            .filter(|c| session.clients.contains(&c.client_id))
        {
            deliveries.push((client, Some(session.sid.as_str())));
        }
    }
    if sessions.is_empty() {
        deliveries.extend(p.clients.iter().map(|c| (c, None)));
    }
    let mut frames = Vec::new();
    for (client, sid) in deliveries {
        if let (Some(uri), Some(sid)) = (&client.frontchannel_logout_uri, sid) {
            if let Ok(mut url) = url::Url::parse(uri) {
                url.query_pairs_mut()
                    .append_pair("iss", &p.issuer())
                    .append_pair("sid", sid);
                frames.push(url.to_string());
            }
        }
        if let Some(uri) = &client.backchannel_logout_uri {
            deliver(p, client, uri, username, sid).await;
        }
    }
    frames
}

/// POSTs one logout token (form-encoded, as the spec says) and counts the answer.
async fn deliver(p: &Provider, client: &DevClient, uri: &str, username: &str, sid: Option<&str>) {
    let token = match logout_token(p, client, username, sid) {
        Ok(token) => token,
        Err(e) => {
            tracing::warn!(error = %e, "dev-idp: cannot sign a logout token");
            return;
        }
    };
    let sent = p
        .http
        .post(uri)
        .timeout(DELIVERY_TIMEOUT)
        .form(&[("logout_token", token)])
        .send()
        .await;
    let delivered = matches!(&sent, Ok(answer) if answer.status().is_success());
    let mut state = p.state();
    if delivered {
        state.counters.backchannel_logouts_sent += 1;
    } else {
        state.counters.backchannel_logout_failures += 1;
        let why = match sent {
            Ok(answer) => format!("HTTP {}", answer.status()),
            Err(e) => e.without_url().to_string(),
        };
        tracing::warn!(client = %client.client_id, %why, "dev-idp: a back-channel logout was not accepted");
    }
}
