//! `tokenbridge dev-idp`: a local OpenID provider shaped like Microsoft Entra ID v2.0, and a
//! Graph-like API, for the quick start, the tests and the benchmarks. Loopback only.

mod admin;
mod api;
mod authorize;
mod client_auth;
mod guard;
pub mod keys;
mod logout;
mod mint;
mod on_behalf_of;
mod pages;
mod params;
mod resources;
mod sessions;
mod spa;
pub mod state;
mod token;
pub mod users;

use crate::settings::{is_loopback, DevClient, DevIdpSettings, Rotation, DEV_SPA_CLIENT_ID};
use crate::sync::lock;
use actix_web::dev::Server;
use actix_web::{web, App, HttpResponse, HttpServer};
use keys::Keys;
use serde::{Deserialize, Serialize};
use state::State;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// Scopes that are about the sign-in, not the API.
pub const OIDC_SCOPES: [&str; 4] = ["openid", "profile", "email", "offline_access"];

/// When the provider issues refresh tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineAccess {
    /// For `offline_access`, as Entra ID does.
    #[default]
    Scope,
    /// For `offline_access` only with `prompt=consent` (OpenID Connect Core 11, to the
    /// letter); otherwise the scope is dropped and no refresh token is issued.
    Consent,
    /// With every code grant, but `offline_access` is granted only with `prompt=consent`, so
    /// a refresh that asks for it again is `invalid_scope`.
    Always,
}

/// What the admin API may change while the provider runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Behaviour {
    pub access_token_ttl_secs: u64,
    pub refresh_token_ttl_secs: u64,
    pub rotation: Rotation,
    pub token_latency_ms: u64,
    pub api_latency_ms: u64,
    /// When set, token responses carry `refresh_in` (as Entra ID does for long-lived tokens).
    pub refresh_in_secs: Option<u64>,
    pub offline_access: OfflineAccess,
}

/// The provider shared by every request handler.
pub struct Provider {
    base_url: String,
    tenant_id: String,
    keys: Keys,
    clients: Vec<DevClient>,
    /// Each `private_key_jwt` client's registered keys, by client id.
    client_keys: std::collections::HashMap<String, Vec<client_auth::RegisteredKey>>,
    users: Vec<String>,
    state: Mutex<State>,
    behaviour: Mutex<Behaviour>,
    /// Sends Back-Channel Logout tokens to clients.
    http: reqwest::Client,
}

impl Provider {
    pub fn issuer(&self) -> String {
        format!("{}/{}/v2.0", self.base_url, self.tenant_id)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.base_url, self.tenant_id)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    fn behaviour(&self) -> Behaviour {
        *lock(&self.behaviour)
    }

    fn client(&self, client_id: &str) -> Option<&DevClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    fn client_keys(&self, client_id: &str) -> &[client_auth::RegisteredKey] {
        self.client_keys.get(client_id).map_or(&[], Vec::as_slice)
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A bound, not yet running, development provider.
pub struct DevIdp {
    server: Server,
    addr: SocketAddr,
    base_url: String,
    issuer: String,
}

impl DevIdp {
    /// Binds to `settings.listen` (loopback only) and prepares the server.
    pub fn build(settings: &DevIdpSettings) -> anyhow::Result<Self> {
        if !is_loopback(settings.listen.ip()) {
            anyhow::bail!(
                "dev-idp binds to loopback addresses only (127.0.0.0/8 or [::1]), not {}",
                settings.listen.ip()
            );
        }
        let listener = TcpListener::bind(settings.listen)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.listen))?;
        let addr = listener.local_addr()?;
        let base_url = format!("http://{addr}");
        let keys = Keys::generate()?;
        let mut clients = settings.clients.clone();
        if !clients.iter().any(|c| c.client_id == DEV_SPA_CLIENT_ID) {
            clients.push(spa::client(&base_url));
        }
        let provider = web::Data::new(Provider {
            base_url: base_url.clone(),
            tenant_id: settings.tenant_id.clone(),
            keys,
            clients,
            client_keys: settings
                .clients
                .iter()
                .map(|c| Ok((c.client_id.clone(), client_auth::registered_keys(c)?)))
                .collect::<anyhow::Result<_>>()?,
            users: settings.users.clone(),
            state: Mutex::new(State::default()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()?,
            behaviour: Mutex::new(Behaviour {
                access_token_ttl_secs: settings.access_token_ttl.as_secs(),
                refresh_token_ttl_secs: settings.refresh_token_ttl.as_secs(),
                rotation: settings.rotation,
                token_latency_ms: millis(settings.token_latency),
                api_latency_ms: millis(settings.api_latency),
                refresh_in_secs: None,
                offline_access: OfflineAccess::Scope,
            }),
        });
        let issuer = provider.issuer();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(provider.clone())
                .app_data(web::PayloadConfig::new(64 * 1024))
                .app_data(web::JsonConfig::default().limit(16 * 1024))
                .configure(routes)
                .default_service(web::to(not_found))
                .wrap(actix_web::middleware::from_fn(guard::loopback_only))
        })
        .listen(listener)?
        .shutdown_timeout(5)
        .run();
        Ok(Self {
            server,
            addr,
            base_url,
            issuer,
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// What the command prints at start: what this is, where it listens, how to use it.
    pub fn banner(&self, settings: &DevIdpSettings) -> String {
        let clients: Vec<&str> = settings
            .clients
            .iter()
            .map(|c| c.client_id.as_str())
            .collect();
        format!(
            "tokenbridge dev-idp: a DEVELOPMENT identity provider. It signs in anyone by name; \
             never expose it.\n  listening  {}\n  issuer     {}\n  API        {}/v1.0/me\n  \
             clients    {}\n  sample SPA {}/spa/ (client {DEV_SPA_CLIENT_ID}, for serve's web API)\n  \
             admin      {}/admin/counters (faults, revocation, behaviour)\n  \
             rotation   {:?}, access tokens {}s",
            self.base_url,
            self.issuer,
            self.base_url,
            clients.join(", "),
            self.base_url,
            self.base_url,
            settings.rotation,
            settings.access_token_ttl.as_secs(),
        )
    }

    /// Serves until SIGINT/SIGTERM (or until the future is dropped).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(pages::index))
        .route(
            "/{tenant}/v2.0/.well-known/openid-configuration",
            web::get().to(discovery),
        )
        .route("/{tenant}/discovery/v2.0/keys", web::get().to(jwks))
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            web::get().to(authorize::authorize),
        )
        .route(
            "/{tenant}/oauth2/v2.0/authorize",
            web::post().to(authorize::authorize),
        )
        .route("/{tenant}/oauth2/v2.0/token", web::post().to(token::token))
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            web::get().to(authorize::logout),
        )
        .route(
            "/{tenant}/oauth2/v2.0/logout",
            web::post().to(authorize::logout),
        )
        .route("/v1.0/me", web::get().to(api::me))
        .route("/tasks/v1.0/me/tasks", web::get().to(api::tasks))
        .route("/tasks/v1.0/me/tasks", web::post().to(api::add_task))
        .configure(spa::routes)
        .configure(admin::routes);
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound().json(serde_json::json!({
        "error": "not_found",
        "error_description": "no such endpoint on the development provider",
    }))
}

fn unknown_tenant(tenant: &str) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "error": "invalid_tenant",
        "error_description": format!("tenant {tenant:?} is not served here"),
    }))
}

async fn discovery(tenant: web::Path<String>, p: web::Data<Provider>) -> HttpResponse {
    if *tenant != p.tenant_id {
        return unknown_tenant(&tenant);
    }
    HttpResponse::Ok().json(serde_json::json!({
        "issuer": p.issuer(),
        "authorization_endpoint": p.endpoint("oauth2/v2.0/authorize"),
        "token_endpoint": p.endpoint("oauth2/v2.0/token"),
        "end_session_endpoint": p.endpoint("oauth2/v2.0/logout"),
        "backchannel_logout_supported": true,
        "backchannel_logout_session_supported": true,
        "frontchannel_logout_supported": true,
        "frontchannel_logout_session_supported": true,
        "jwks_uri": p.endpoint("discovery/v2.0/keys"),
        "userinfo_endpoint": format!("{}/v1.0/me", p.base_url),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post"],
        "grant_types_supported": [
            "authorization_code",
            "refresh_token",
            on_behalf_of::JWT_BEARER,
            on_behalf_of::TOKEN_EXCHANGE
        ],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "PS256", "ES256"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": [
            "openid",
            "profile",
            "email",
            "offline_access",
            resources::GRAPH.scope,
            format!("{}{}", resources::TASKS.prefix, resources::TASKS.scope),
        ],
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "at_hash",
            "oid", "tid", "name", "preferred_username", "ver"],
        "tenant_region_scope": "NA",
    }))
}

async fn jwks(tenant: web::Path<String>, p: web::Data<Provider>) -> HttpResponse {
    if *tenant != p.tenant_id {
        return unknown_tenant(&tenant);
    }
    p.state().counters.key_set_requests += 1;
    HttpResponse::Ok().json(p.keys.jwks())
}
