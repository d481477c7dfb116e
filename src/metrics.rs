//! Prometheus metrics, in the text format on a listener of their own (`web.metrics_listen`,
//! loopback by default: they are for the operator, not for users). One registry per process:
//! requests by route, method and status with latency histograms, token acquisitions by
//! outcome, provider call latency, and the database pool (connections in use, wait for one).

use actix_web::{web, App, HttpResponse, HttpServer};
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::TcpListener;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LogoutLabels {
    kind: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

/// A request method as a label: the standard methods by name, anything a client made up as
/// `other`, so clients cannot add label sets (or log fields) of their own.
pub fn method_label(method: &str) -> &'static str {
    match method {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

fn seconds() -> Histogram {
    // 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// The process's metrics.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    acquisitions: Family<OutcomeLabels, Counter>,
    worker_accounts: Family<OutcomeLabels, Counter>,
    worker_passes: Family<ResultLabels, Counter>,
    worker_last_pass_end: Gauge,
    logouts: Family<LogoutLabels, Counter>,
    oversized: Family<SourceLabels, Counter>,
    provider_seconds: Histogram,
    pool_wait_seconds: Histogram,
    pool_in_use: Gauge,
    pool_idle: Gauge,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS
}

/// What a token acquisition came to.
#[derive(Debug, Clone, Copy)]
pub enum Acquisition {
    /// A cached access token was good enough.
    CacheHit,
    /// Tokens were refreshed (here or by another process).
    Refreshed,
    /// A caller's token was exchanged for the user's tokens (on-behalf-of).
    Exchanged,
    InteractionRequired,
    Transient,
    Error,
}

impl Metrics {
    fn new() -> Self {
        let mut registry = Registry::with_prefix("tokenbridge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests by route, method and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(seconds);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            request_seconds.clone(),
        );
        let acquisitions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "token_acquisitions",
            "Silent token acquisitions by outcome (cache_hit, refreshed, exchanged, \
             interaction_required, transient, error)",
            acquisitions.clone(),
        );
        let worker_accounts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "worker_accounts",
            "Accounts a worker acted for, by outcome (ok, interaction_required, signed_out, \
             transient, api_error, job_failed)",
            worker_accounts.clone(),
        );
        let worker_passes = Family::<ResultLabels, Counter>::default();
        registry.register(
            "worker_passes",
            "Worker passes ended, by result (ok, failed)",
            worker_passes.clone(),
        );
        let worker_last_pass_end = Gauge::default();
        registry.register(
            "worker_last_pass_end_seconds",
            "When the last worker pass ended, Unix seconds",
            worker_last_pass_end.clone(),
        );
        let logouts = Family::<LogoutLabels, Counter>::default();
        registry.register(
            "logouts",
            "Sign-outs the provider started, by kind (backchannel, frontchannel) and result \
             (signed_out, sessions_ended, \
             no_account, invalid, replayed, unavailable)",
            logouts.clone(),
        );
        let oversized = Family::<SourceLabels, Counter>::default();
        registry.register(
            "oversized_answers",
            "Answers refused for being larger than the configured maximum, by source (provider, \
             api)",
            oversized.clone(),
        );
        let provider_seconds = seconds();
        registry.register(
            "provider_request_duration_seconds",
            "Time the identity provider took to answer a request",
            provider_seconds.clone(),
        );
        let pool_wait_seconds = seconds();
        registry.register(
            "db_pool_wait_seconds",
            "Time spent waiting for a database connection from the pool",
            pool_wait_seconds.clone(),
        );
        let pool_in_use = Gauge::default();
        registry.register(
            "db_pool_connections_in_use",
            "Database connections in use",
            pool_in_use.clone(),
        );
        let pool_idle = Gauge::default();
        registry.register(
            "db_pool_connections_idle",
            "Database connections open and idle",
            pool_idle.clone(),
        );
        Self {
            registry,
            requests,
            request_seconds,
            acquisitions,
            worker_accounts,
            worker_passes,
            worker_last_pass_end,
            logouts,
            oversized,
            provider_seconds,
            pool_wait_seconds,
            pool_in_use,
            pool_idle,
        }
    }

    /// One HTTP request answered. `route` is the route pattern (never the raw path, which
    /// would make a label per URL).
    pub fn request(&self, route: &str, method: &str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_owned(),
                method: method_label(method),
                status: status.to_string(),
            })
            .inc();
        self.request_seconds
            .get_or_create(&RouteLabels {
                route: route.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn acquisition(&self, outcome: Acquisition) {
        let outcome = match outcome {
            Acquisition::CacheHit => "cache_hit",
            Acquisition::Refreshed => "refreshed",
            Acquisition::Exchanged => "exchanged",
            Acquisition::InteractionRequired => "interaction_required",
            Acquisition::Transient => "transient",
            Acquisition::Error => "error",
        };
        self.acquisitions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// An account a worker acted for; `outcome` as the report names it (`job_failed`, ...).
    pub fn worker_account(&self, outcome: &'static str) {
        self.worker_accounts
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }

    /// A worker pass ended (`failed`: it stopped on an error).
    pub fn worker_pass(&self, failed: bool, ended_at_unix: i64) {
        let result = if failed { "failed" } else { "ok" };
        self.worker_passes
            .get_or_create(&ResultLabels { result })
            .inc();
        self.worker_last_pass_end.set(ended_at_unix);
    }

    /// A sign-out the provider started: `kind` and `result` from a fixed set.
    pub fn logout(&self, kind: &'static str, result: &'static str) {
        self.logouts
            .get_or_create(&LogoutLabels { kind, result })
            .inc();
    }

    /// An answer refused for its size; `source` is `provider` or `api`.
    pub fn oversized_answer(&self, source: &'static str) {
        self.oversized.get_or_create(&SourceLabels { source }).inc();
    }

    pub fn provider_request(&self, elapsed: Duration) {
        self.provider_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn pool_wait(&self, elapsed: Duration) {
        self.pool_wait_seconds.observe(elapsed.as_secs_f64());
    }

    /// The text exposition, with the pool's state as it is now.
    pub fn encode(&self, pool: PoolState) -> String {
        self.pool_idle.set(i64::from(pool.idle));
        self.pool_in_use
            .set(i64::from(pool.open.saturating_sub(pool.idle)));
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut text, &self.registry);
        text
    }
}

/// A database pool's connections: open, and idle among them.
#[derive(Debug, Clone, Copy)]
pub struct PoolState {
    pub open: u32,
    pub idle: u32,
}

/// How the metrics listener reads the pool (the database layer knows nothing of metrics
/// listeners).
pub type PoolProbe = Arc<dyn Fn() -> PoolState + Send + Sync>;

/// Serves `GET /metrics` on `listener` until the process stops.
pub fn serve(listener: TcpListener, pool: PoolProbe) -> std::io::Result<actix_web::dev::Server> {
    let pool = web::Data::new(pool);
    Ok(HttpServer::new(move || {
        App::new().app_data(pool.clone()).route(
            "/metrics",
            web::get().to(|pool: web::Data<PoolProbe>| async move {
                HttpResponse::Ok()
                    .content_type("text/plain; version=0.0.4; charset=utf-8")
                    .body(metrics().encode(pool()))
            }),
        )
    })
    .workers(1)
    .listen(listener)?
    .shutdown_timeout(5)
    .run())
}
