//! The openidconnect crate (what `serve` uses) against the development provider: discovery,
//! code exchange with PKCE, ID token validation (signature, issuer, audience, nonce, at_hash),
//! and a refresh.

use super::*;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AccessTokenHash, AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce,
    OAuth2TokenResponse, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse,
};

#[tokio::test]
async fn openidconnect_discovers_exchanges_and_validates() {
    let idp = spawn_idp().await;
    let http = openidconnect::reqwest::ClientBuilder::new()
        .redirect(openidconnect::reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let metadata =
        CoreProviderMetadata::discover_async(IssuerUrl::new(idp.issuer.clone()).unwrap(), &http)
            .await
            .unwrap();
    let client = CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(CLIENT_ID.into()),
        Some(ClientSecret::new(CLIENT_SECRET.into())),
    )
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).unwrap());
    let (pkce_challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
    let (auth_url, csrf, nonce) = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            CsrfToken::new_random,
            Nonce::new_random,
        )
        .add_scope(Scope::new("profile".into()))
        .add_scope(Scope::new("offline_access".into()))
        .add_scope(Scope::new("User.Read".into()))
        .set_pkce_challenge(pkce_challenge)
        .url();

    // The browser: the provider's form, then the redirect back with code and state.
    let form = idp.browser.get(auth_url.as_str()).send().await.unwrap();
    assert_eq!(form.status(), 200);
    let mut fields: Vec<(String, String)> = auth_url.query_pairs().into_owned().collect();
    fields.push(("username".into(), "grace".into()));
    let back = idp
        .browser
        .post(idp.endpoint("authorize"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    let (_, query) = location_params(&back);
    assert_eq!(&query["state"], csrf.secret());

    let tokens = client
        .exchange_code(AuthorizationCode::new(query["code"].clone()))
        .unwrap()
        .set_pkce_verifier(pkce_verifier)
        .request_async(&http)
        .await
        .unwrap();
    let id_token = tokens.id_token().expect("an ID token");
    let verifier = client.id_token_verifier();
    let claims = id_token
        .claims(&verifier, &nonce)
        .expect("a valid ID token");
    assert_eq!(claims.issuer().as_str(), idp.issuer);
    let expected_hash = AccessTokenHash::from_token(
        tokens.access_token(),
        id_token.signing_alg().unwrap(),
        id_token.signing_key(&verifier).unwrap(),
    )
    .unwrap();
    assert_eq!(claims.access_token_hash(), Some(&expected_hash));
    assert!(
        id_token
            .claims(&verifier, &Nonce::new("another".into()))
            .is_err(),
        "nonce is checked"
    );
    let other_client =
        CoreClient::from_provider_metadata(metadata, ClientId::new("someone-else".into()), None);
    assert!(
        id_token
            .claims(&other_client.id_token_verifier(), &nonce)
            .is_err(),
        "audience is checked"
    );

    let refreshed = client
        .exchange_refresh_token(tokens.refresh_token().unwrap())
        .unwrap()
        .request_async(&http)
        .await
        .unwrap();
    assert_ne!(
        refreshed.access_token().secret(),
        tokens.access_token().secret()
    );
    assert_eq!(
        idp.me(refreshed.access_token().secret()).await.status(),
        200
    );
}
