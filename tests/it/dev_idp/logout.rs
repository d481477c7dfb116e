//! The development provider tells clients when a user's session ends: Back-Channel Logout
//! tokens POSTed to a registered URI (at sign-out on its page, or by an administrator), and
//! Front-Channel Logout iframes on its logout page.

use super::{spawn_idp_with, TestIdp};
use actix_web::{web, App, HttpResponse, HttpServer};
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A client's back-channel endpoint: keeps each `logout_token` it is sent; answers `status`.
struct Receiver {
    base: String,
    tokens: Arc<Mutex<Vec<String>>>,
}

fn receiving(status: u16) -> Receiver {
    let tokens = Arc::new(Mutex::new(Vec::new()));
    let kept = tokens.clone();
    let server = HttpServer::new(move || {
        let kept = kept.clone();
        App::new().route(
            "/backchannel-logout",
            web::post().to(move |form: web::Form<Vec<(String, String)>>| {
                let kept = kept.clone();
                async move {
                    for (name, value) in form.into_inner() {
                        if name == "logout_token" {
                            kept.lock().unwrap().push(value);
                        }
                    }
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap())
                        .finish()
                }
            }),
        )
    })
    .workers(1)
    .bind("127.0.0.1:0")
    .unwrap();
    let base = format!("http://{}", server.addrs()[0]);
    tokio::spawn(server.run());
    Receiver { base, tokens }
}

async fn idp_telling(receiver: &Receiver) -> TestIdp {
    let uri = format!("{}/backchannel-logout", receiver.base);
    spawn_idp_with(|s| {
        s.clients[0].backchannel_logout_uri = Some(uri);
        s.clients[0].frontchannel_logout_uri =
            Some("http://127.0.0.1:8080/frontchannel-logout".into());
    })
    .await
}

/// The claims of a logout token, its signature checked against the provider's JWKS.
async fn verified(idp: &TestIdp, token: &str) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("logout+jwt"));
    let jwks: jsonwebtoken::jwk::JwkSet =
        reqwest::get(format!("{}/{}/discovery/v2.0/keys", idp.base, idp.tenant))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&idp.issuer]);
    validation.set_audience(&[super::CLIENT_ID]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud"]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
        .unwrap()
        .claims
}

fn id_token_claims(tokens: &Value) -> Value {
    let payload = tokens["id_token"]
        .as_str()
        .unwrap()
        .split('.')
        .nth(1)
        .unwrap();
    serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn signing_out_at_the_provider_sends_a_logout_token_and_renders_front_channel_frames() {
    let receiver = receiving(200);
    let idp = idp_telling(&receiver).await;
    let tokens = idp.tokens_for("ada").await;
    let id_token = id_token_claims(&tokens);
    let sid = id_token["sid"]
        .as_str()
        .expect("ID tokens name the session");
    // A refresh's ID token names the same session.
    let refreshed: Value = idp
        .refresh(tokens["refresh_token"].as_str().unwrap())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(id_token_claims(&refreshed)["sid"], sid);

    let page = idp
        .browser
        .get(idp.endpoint("logout"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let frame = format!(
        "http://127.0.0.1:8080/frontchannel-logout?iss={}&amp;sid={sid}",
        url::form_urlencoded::byte_serialize(idp.issuer.as_bytes()).collect::<String>()
    );
    assert!(page.contains(&frame), "{page}");

    let sent = receiver.tokens.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "delivered before the page answered");
    let claims = verified(&idp, &sent[0]).await;
    assert_eq!(claims["sub"], id_token["sub"]);
    assert_eq!(claims["sid"], sid);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(claims.get("nonce").is_none());
    assert_eq!(
        claims["events"],
        serde_json::json!({ "http://schemas.openid.net/event/backchannel-logout": {} })
    );
    assert_eq!(idp.counters().await["backchannel_logouts_sent"], 1);
    let discovery: Value = reqwest::get(format!("{}/.well-known/openid-configuration", idp.issuer))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["backchannel_logout_supported"], true);
    assert_eq!(discovery["frontchannel_logout_session_supported"], true);
}

#[tokio::test]
async fn an_administrator_s_logout_tells_the_clients_and_counts_refusals() {
    let receiver = receiving(200);
    let idp = idp_telling(&receiver).await;
    let tokens = idp.tokens_for("grace").await;
    let ended: Value = idp
        .admin(reqwest::Method::POST, "users/grace/logout", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(ended["sessions_ended"], 1);
    let sent = receiver.tokens.lock().unwrap().clone();
    assert_eq!(sent.len(), 1);
    let claims = verified(&idp, &sent[0]).await;
    assert_eq!(claims["sid"], id_token_claims(&tokens)["sid"]);
    // No session left: every client with a back-channel URI hears of the user, by sub alone.
    idp.admin(reqwest::Method::POST, "users/grace/logout", None)
        .await;
    let sent = receiver.tokens.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    let claims = verified(&idp, &sent[1]).await;
    assert!(
        claims.get("sid").is_none() && claims["sub"].is_string(),
        "{claims}"
    );

    // A client that refuses the token is counted, not retried for ever.
    let refusing = receiving(400);
    let idp = idp_telling(&refusing).await;
    idp.tokens_for("ada").await;
    idp.admin(reqwest::Method::POST, "users/ada/logout", None)
        .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let counters = idp.counters().await;
    assert_eq!(counters["backchannel_logout_failures"], 1, "{counters}");
    assert_eq!(counters["backchannel_logouts_sent"], 0, "{counters}");
}
