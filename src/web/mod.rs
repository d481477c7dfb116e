//! `tokenbridge serve`: the web app. `Application::build` binds and wires everything, `port()`
//! says where (tests bind port 0), `run_until_stopped()` serves until SIGINT/SIGTERM.

mod auth;
mod error;
mod health;
mod home;
mod limits;
mod pages;
mod pending;
mod provider_logout;
pub mod request_id;
mod session;
mod web_api;

pub use auth::local_path;

use crate::api::ApiClient;
use crate::clock::{Clock, SystemClock};
use crate::db::Database;
use crate::identity::acquire::{AcquirerOptions, TokenAcquirer};
use crate::settings::{Settings, WebSettings};
use actix_session::config::{CookieContentSecurity, PersistentSession, TtlExtensionPolicy};
use actix_session::storage::CookieSessionStore;
use actix_session::SessionMiddleware;
use actix_web::cookie::{Key, SameSite};
use actix_web::dev::Server;
use actix_web::http::StatusCode;
use actix_web::middleware::from_fn;
use actix_web::{guard, web, App, HttpResponse, HttpServer};
use anyhow::Context;
use maud::Markup;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

/// Largest request body accepted (forms are tiny); larger ones get 413.
const MAX_BODY: usize = 16 * 1024;

/// Everything the handlers share.
pub struct AppState {
    pub acquirer: Arc<TokenAcquirer>,
    pub web: WebSettings,
    pub db: Database,
    pub clock: Arc<dyn Clock>,
    /// The scopes of the profile page's API (`web.profile_api`).
    pub profile_scopes: Vec<String>,
    cookie_key: Key,
    readiness: health::Readiness,
}

impl AppState {
    /// The session's user, within the idle and absolute lifetimes.
    fn user(&self, session: &session::TypedSession) -> Option<session::SignedInUser> {
        let secs = |d: Duration| i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
        let now = self.clock.now().unix_timestamp();
        session.user(
            now,
            secs(self.web.session_idle),
            secs(self.web.session_absolute),
        )
    }
}

pub fn html(status: StatusCode, markup: Markup) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .insert_header(("Cache-Control", "no-store"))
        .body(markup.into_string())
}

pub struct Application {
    server: Server,
    port: u16,
    /// `GET /metrics`, on its own listener.
    metrics: Option<(Server, std::net::SocketAddr)>,
}

/// The key that encrypts and signs cookies; a random one (with a warning) when none is set.
fn cookie_key(web: &WebSettings) -> Key {
    match &web.session_key {
        Some(secret) => Key::derive_from(secret.expose().as_bytes()),
        None => {
            tracing::warn!(
                "no web.session_key: using a random one, so sessions end at every restart and are not \
                 shared between replicas; set TOKENBRIDGE_WEB__SESSION_KEY"
            );
            Key::generate()
        }
    }
}

impl Application {
    /// Binds `web.listen` and prepares the app.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.web.listen)
            .with_context(|| format!("cannot listen on {}", settings.web.listen))?;
        Self::build_on(settings, listener, Arc::new(SystemClock)).await
    }

    /// Prepares the app on a listener already bound (tests bind port 0 first, so the provider
    /// can be told the redirect URI), with the given clock.
    pub async fn build_on(
        settings: &Settings,
        listener: TcpListener,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let db = Database::open_migrated(settings.database.clone()).await?;
        let web_settings = settings.web.clone();
        let backchannel_path = settings.web.backchannel_logout_path.clone();
        let frontchannel_path = settings.web.frontchannel_logout_path.clone();
        let acquirer = Arc::new(TokenAcquirer::from_settings(
            db.clone(),
            settings,
            clock.clone(),
            AcquirerOptions::from_settings(
                &settings.identity,
                &settings.cache,
                crate::process::owner_id(),
            ),
        )?);
        // A wrong Redis URL or password, or a Redis that is down, fails the start with the reason.
        acquirer.caches().check_at_start().await?;
        // A key that differs from the store's check value for its id: not fatal, so the
        // process says why on /readyz (503, naming the key); it opens and writes nothing with
        // it. A store that does not answer yet is asked again before the first row is used.
        match acquirer.caches().verify_keys(clock.now()).await {
            Ok(()) => {}
            Err(e) => match e.key_problem() {
                Some(problem) => tracing::error!(%problem, "not ready: cache.keys"),
                None => tracing::warn!(error = %e, "cache keys not compared with the store yet"),
            },
        }
        if let Err(e) = acquirer.provider().metadata().await {
            // Not fatal: /readyz reports it, and sign-in pages say the provider is unavailable.
            tracing::warn!(error = %e, "the identity provider's metadata could not be loaded yet");
        }
        // One API client per server thread: a connection's I/O runs on the runtime that
        // opened it, so a client shared by the threads would hand calls from one thread to
        // another and back (two wake-ups per page).
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let api_clients = (0..workers)
            .map(|_| ApiClient::new(settings.profile_api()))
            .collect::<Result<Vec<_>, _>>()?;
        let next_client = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        // The web API mode: its own API client per thread (its API may not be the profile's).
        let web_api = settings.web_api.enabled.then(|| {
            let downstream = (0..workers)
                .map(|_| web_api::DownstreamApis::from_settings(settings))
                .collect::<Result<Vec<_>, _>>();
            downstream.map(|clients| {
                let api = web::Data::new(web_api::WebApi::from_settings(settings));
                (api, clients, settings.web_api.allowed_origins.clone())
            })
        });
        let web_api = web_api.transpose()?;
        let key = cookie_key(&web_settings);
        if let Some(warning) = web_settings.cookie_warning() {
            tracing::warn!("{warning}");
        }
        let state = web::Data::new(AppState {
            acquirer,
            web: web_settings.clone(),
            db,
            clock,
            profile_scopes: settings.scopes_of(settings.profile_api()),
            cookie_key: key.clone(),
            readiness: health::Readiness::default(),
        });
        let port = listener.local_addr()?.port();
        let idle = actix_web::cookie::time::Duration::seconds(
            i64::try_from(web_settings.session_idle.as_secs()).unwrap_or(i64::MAX),
        );
        let limits = web::Data::new(limits::Limits::new(
            web_settings.body_timeout,
            web_settings.max_requests_per_client,
        ));
        let metrics_db = state.db.clone();
        let server = HttpServer::new(move || {
            let sessions = SessionMiddleware::builder(CookieSessionStore::default(), key.clone())
                .cookie_name(web_settings.session_cookie_name().into())
                .cookie_secure(web_settings.secure_cookies)
                .cookie_http_only(true)
                .cookie_same_site(SameSite::Lax)
                .cookie_content_security(CookieContentSecurity::Private)
                .session_lifecycle(
                    PersistentSession::default()
                        .session_ttl(idle)
                        // The cookie's lifetime slides when the session records a visit,
                        // at most once a minute (see `session.rs`), not on every response:
                        // re-sealing it for every page was most of the session's cost.
                        .session_ttl_extension_policy(TtlExtensionPolicy::OnStateChanges),
                )
                .build();
            let turn = next_client.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let api = web::Data::new(api_clients[turn % api_clients.len()].clone());
            let web_api = web_api.clone();
            App::new()
                .app_data(state.clone())
                .app_data(api)
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .app_data(
                    web::FormConfig::default()
                        .limit(MAX_BODY)
                        .error_handler(limits::form_error),
                )
                .app_data(limits.clone())
                .wrap(sessions)
                .wrap(from_fn(no_store_with_cookies))
                .wrap(from_fn(deny_framing))
                .wrap(security_headers(web_settings.is_https()))
                .wrap(from_fn(limits::body_deadline))
                .wrap(from_fn(request_id::middleware))
                .wrap(from_fn(limits::per_client))
                // Every path answers HEAD like GET and OPTIONS with what it allows; another
                // method is 405 (a form_post callback included).
                .service(readable!("/", home::home))
                .service(readable!("/signin", auth::sign_in))
                .service(readable!("/signin-oidc", auth::callback_get))
                .service(
                    web::resource("/signout")
                        .route(web::post().to(auth::sign_out))
                        .route(web::route().guard(guard::Options()).to(|| allow("POST"))),
                )
                .service(readable!("/signout-callback-oidc", auth::signed_out))
                .service(
                    web::resource(backchannel_path.as_str())
                        .route(web::post().to(provider_logout::backchannel))
                        .route(web::route().guard(guard::Options()).to(|| allow("POST"))),
                )
                .service(readable!(
                    frontchannel_path.as_str(),
                    provider_logout::frontchannel
                ))
                .configure(|config| {
                    let Some((api, clients, origins)) = web_api else {
                        return;
                    };
                    let downstream = web::Data::new(clients[turn % clients.len()].clone());
                    config.service(
                        web::scope("/api")
                            .app_data(api)
                            .app_data(downstream)
                            .wrap(web_api::cors(&origins))
                            .service(readable!("/me", web_api::me))
                            .service(readable!("/{api}/me", web_api::me_at)),
                    );
                })
                .service(readable!("/healthz", health::healthz))
                .service(readable!("/readyz", health::readyz))
                .default_service(web::to(not_found))
        })
        .workers(workers)
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
        let metrics = match settings.web.metrics_listen {
            Some(address) => {
                let listener = TcpListener::bind(address)
                    .with_context(|| format!("cannot listen for metrics on {address}"))?;
                let bound = listener.local_addr()?;
                let pool = metrics_db;
                let probe: crate::metrics::PoolProbe = Arc::new(move || pool.pool_state());
                Some((crate::metrics::serve(listener, probe)?, bound))
            }
            None => None,
        };
        Ok(Self {
            server,
            port,
            metrics,
        })
    }

    /// Where `GET /metrics` is served, if anywhere.
    pub fn metrics_address(&self) -> Option<std::net::SocketAddr> {
        self.metrics.as_ref().map(|(_, address)| *address)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        match self.metrics {
            Some((metrics, _)) => {
                // The metrics listener stops when the app does.
                let handle = metrics.handle();
                let app = async {
                    let served = self.server.await;
                    handle.stop(true).await;
                    served
                };
                let (served, _) = futures_util::future::join(app, metrics).await;
                served
            }
            None => self.server.await,
        }
    }
}

/// A resource answering GET and HEAD with `handler`, and OPTIONS with `Allow: GET, HEAD`.
macro_rules! readable {
    ($path:expr, $handler:expr) => {
        web::resource($path)
            .route(
                web::route()
                    .guard(guard::Any(guard::Get()).or(guard::Head()))
                    .to($handler),
            )
            .route(
                web::route()
                    .guard(guard::Options())
                    .to(|| allow("GET, HEAD")),
            )
    };
}
use readable;

/// The answer to OPTIONS: no content, the methods allowed.
async fn allow(methods: &'static str) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header(("Allow", methods))
        .finish()
}

/// Headers on every response: pages carry only inline CSS, are never framed (but where a
/// handler's own policy says, see [`deny_framing`]), and send no referrer (the callback URL
/// holds a one-time code).
fn security_headers(https: bool) -> actix_web::middleware::DefaultHeaders {
    let headers = actix_web::middleware::DefaultHeaders::new()
        .add((
            "Content-Security-Policy",
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
        ))
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Referrer-Policy", "no-referrer"));
    if https {
        // A year, this host only: whether subdomains are https too is not ours to say.
        headers.add(("Strict-Transport-Security", "max-age=31536000"))
    } else {
        headers
    }
}

/// `X-Frame-Options: DENY` for browsers without CSP's `frame-ancestors`, on every response
/// but one whose handler set a Content-Security-Policy of its own (the Front-Channel Logout
/// page, which the provider's origins may frame): there the policy says who may frame it.
async fn deny_framing(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{HeaderValue, CONTENT_SECURITY_POLICY, X_FRAME_OPTIONS};
    let mut response = next.call(req).await?;
    if !response.headers().contains_key(CONTENT_SECURITY_POLICY) {
        response
            .headers_mut()
            .insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    Ok(response)
}

/// A response that sets or clears a cookie is never stored by a cache: a shared cache must
/// not hand one user's session cookie to another.
async fn no_store_with_cookies(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    use actix_web::http::header::{HeaderValue, CACHE_CONTROL, SET_COOKIE};
    let mut response = next.call(req).await?;
    if response.headers().contains_key(SET_COOKIE) {
        response
            .headers_mut()
            .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    Ok(response)
}

async fn not_found(rid: request_id::RequestId) -> HttpResponse {
    html(
        StatusCode::NOT_FOUND,
        pages::error(
            "Not found",
            "There is no page at this address.",
            rid.as_str(),
            None,
        ),
    )
}
