//! `tokenbridge serve` end to end: the real app on a loopback port, the development provider on
//! another, a cookie-keeping HTTP client as the browser, and a fresh database per test.

mod browser;
mod flows;
mod logs;
mod metrics;
pub mod private_key_jwt;
mod processes;
pub mod provider_logout;
mod provider_sessions;
mod readiness;
mod redis_outage;
mod refresh;
mod security;
mod sessions;
pub mod web_api;

use crate::dev_idp::{spawn_idp_with, TestIdp, CLIENT_ID, CLIENT_SECRET};
use crate::support::{self, RedisPrefix, TestDb};
use reqwest::header::LOCATION;
use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::Arc;
use tokenbridge::cache::seal::SealKeys;
use tokenbridge::clock::ManualClock;
use tokenbridge::db::Backend;
use tokenbridge::secret::Secret;
use tokenbridge::settings::{DevIdpSettings, ProviderKind, RedisSettings, Settings};
use tokenbridge::web::Application;
use url::Url;

pub struct TestApp {
    pub base: String,
    pub idp: TestIdp,
    pub db: TestDb,
    pub browser: reqwest::Client,
    pub clock: ManualClock,
    pub jar: Arc<reqwest::cookie::Jar>,
    pub settings: Settings,
    /// The app's key prefix in Redis when its token caches are there (see [`in_redis`]).
    pub redis: Option<Arc<RedisPrefix>>,
}

tokio::task_local! {
    static CACHES_IN_REDIS: bool;
}

/// Runs an end-to-end test with the app's token caches in Redis (activities in its database).
pub async fn in_redis<F: std::future::Future>(test: F) -> F::Output {
    CACHES_IN_REDIS.scope(true, test).await
}

/// Declares one `#[tokio::test]` per backend for each async body taking a `Backend`.
macro_rules! e2e_tests {
    // ... and once more with the caches in Redis (see `redis_e2e_tests`).
    (and_redis: $($name:ident),* $(,)?) => {
        $crate::serve::e2e_tests!($($name),*);
        $crate::serve::redis_e2e_tests!($($name),*);
    };
    ($($name:ident),* $(,)?) => {
        mod sqlite { $( #[tokio::test] async fn $name() { super::$name(tokenbridge::db::Backend::Sqlite).await } )* }
        mod postgres { $( #[tokio::test] async fn $name() { super::$name(tokenbridge::db::Backend::Postgres).await } )* }
        mod mysql { $( #[tokio::test] async fn $name() { super::$name(tokenbridge::db::Backend::Mysql).await } )* }
    };
}
pub(crate) use e2e_tests;

/// Declares each async body taking a `Backend` once more, as `redis::name`: the app's token
/// caches in Redis, its activities in PostgreSQL.
macro_rules! redis_e2e_tests {
    ($($name:ident),* $(,)?) => {
        mod redis { $( #[tokio::test] async fn $name() { crate::serve::in_redis(super::$name(tokenbridge::db::Backend::Postgres)).await } )* }
    };
}
pub(crate) use redis_e2e_tests;

/// The development provider as any OpenID provider: found by its issuer, the account by `sub`.
pub fn as_generic_provider(s: &mut Settings) {
    s.identity.provider = ProviderKind::Oidc;
    s.identity.issuer = Some(format!(
        "{}/{}/v2.0",
        s.identity.instance.as_str().trim_end_matches('/'),
        s.identity.tenant_id
    ));
    s.identity.tenant_id = String::new();
}

pub fn app_settings(db: &TestDb, idp: &TestIdp, base: &str) -> Settings {
    let mut s = Settings::from_sources("", "test", &HashMap::new()).unwrap();
    s.database = db.settings.clone();
    s.identity.provider = ProviderKind::Entra;
    s.identity.instance = Url::parse(&idp.base).unwrap();
    s.identity.tenant_id = idp.tenant.clone();
    s.identity.client_id = CLIENT_ID.into();
    s.identity.client_secret = Some(Secret::new(CLIENT_SECRET));
    s.identity.http_timeout = std::time::Duration::from_secs(5);
    s.api.base_url = Url::parse(&format!("{}/v1.0", idp.base)).unwrap();
    s.web.public_url = Url::parse(base).unwrap();
    // Many apps run at once here: no metrics listener unless a test asks for one.
    s.web.metrics_listen = None;
    s.web.session_key = Some(Secret::new(
        "a-test-session-key-that-is-long-enough-for-actix-0123456789abcdefghij",
    ));
    s.cache.keys =
        Some(SealKeys::parse(&Secret::new(format!("k1={}", crate::fixtures::KEY))).unwrap());
    s
}

/// `tokenbridge --config CONFIG serve` as its own process, configured as [`app_settings`] is
/// through the environment alone (metrics off); the caller adds its own variables and stdio.
pub fn serve_process(
    db: &TestDb,
    idp: &TestIdp,
    base: &str,
    config: &std::path::Path,
) -> std::process::Command {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tokenbridge"));
    command
        .arg("--config")
        .arg(config)
        .arg("serve")
        .env_clear()
        .envs(std::env::var("PATH").map(|p| ("PATH".to_owned(), p)))
        .envs([
            ("TOKENBRIDGE_DATABASE__URL", db.settings.url.full_url()),
            ("TOKENBRIDGE_IDENTITY__INSTANCE", idp.base.clone()),
            ("TOKENBRIDGE_IDENTITY__TENANT_ID", idp.tenant.clone()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_ID", CLIENT_ID.into()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", CLIENT_SECRET.into()),
            ("TOKENBRIDGE_API__BASE_URL", format!("{}/v1.0", idp.base)),
            (
                "TOKENBRIDGE_WEB__LISTEN",
                base.trim_start_matches("http://").to_owned(),
            ),
            ("TOKENBRIDGE_WEB__PUBLIC_URL", base.to_owned()),
            ("TOKENBRIDGE_WEB__METRICS_LISTEN", "off".into()),
        ]);
    command
}

/// The app on a fresh `backend` database, signed in to a fresh provider; None when skipped.
pub async fn spawn_app(
    test: &str,
    backend: Backend,
    change_idp: impl FnOnce(&mut DevIdpSettings),
) -> Option<TestApp> {
    spawn_app_with(test, backend, change_idp, |_| {}).await
}

/// Like [`spawn_app`], with the app's settings changed by `change_app`.
pub async fn spawn_app_with(
    test: &str,
    backend: Backend,
    change_idp: impl FnOnce(&mut DevIdpSettings),
    change_app: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    let Some(db) = support::migrated(backend) else {
        support::skipped(test, backend);
        return None;
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let idp = spawn_idp_with(|s| {
        s.clients[0]
            .redirect_uris
            .push(format!("{base}/signin-oidc"));
        s.clients[0]
            .post_logout_redirect_uris
            .push(format!("{base}/signout-callback-oidc"));
        s.clients[0].backchannel_logout_uri = Some(format!("{base}/backchannel-logout"));
        change_idp(s);
    })
    .await;
    let mut settings = app_settings(&db, &idp, &base);
    let redis = match CACHES_IN_REDIS.try_with(|in_redis| *in_redis) {
        Ok(true) => Some(Arc::new(RedisPrefix::new(test)?)),
        _ => None,
    };
    if let Some(redis) = &redis {
        settings.cache.redis = Some(RedisSettings {
            url: redis.url.clone(),
            key_prefix: redis.prefix.clone(),
        });
    }
    change_app(&mut settings);
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = Application::build_on(&settings, listener, Arc::new(clock.clone()))
        .await
        .unwrap();
    tokio::spawn(app.run_until_stopped());
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser = reqwest::Client::builder()
        .cookie_provider(jar.clone())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    Some(TestApp {
        base,
        idp,
        db,
        browser,
        clock,
        jar,
        settings,
        redis,
    })
}

pub fn location(response: &reqwest::Response) -> String {
    response
        .headers()
        .get(LOCATION)
        .unwrap_or_else(|| panic!("no Location in a {} response", response.status()))
        .to_str()
        .unwrap()
        .to_owned()
}

impl TestApp {
    /// Every user's stored cache as (id, sealed value, version), from the database or Redis.
    pub fn cache_rows(&self) -> Vec<(String, Vec<u8>, i64)> {
        let Some(redis) = &self.redis else {
            use diesel::prelude::*;
            use tokenbridge::db::schema::token_cache::dsl as tc;
            return tc::token_cache
                .select((tc::id, tc::value, tc::version))
                .order(tc::id)
                .load(&mut *self.db.conn())
                .unwrap();
        };
        let mut conn = redis.connection();
        let mut rows: Vec<_> = redis
            .keys()
            .into_iter()
            .filter_map(|key| {
                let id = key
                    .strip_prefix(&format!("{}:{{", redis.prefix))?
                    .strip_suffix("}:cache")?
                    .to_owned();
                let (value, version): (Vec<u8>, i64) = ::redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("ver")
                    .query(&mut conn)
                    .unwrap();
                Some((id, value, version))
            })
            .collect();
        rows.sort();
        rows
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// A second `serve` replica on the same database and provider with the same session key
    /// and clock, and its own pool, acquirer and lease owner; returns its base URL.
    pub async fn replica(&self) -> String {
        self.replica_with(&self.settings).await
    }

    /// [`TestApp::replica`] with `settings` (the app's, changed).
    pub async fn replica_with(&self, settings: &Settings) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let app = Application::build_on(settings, listener, Arc::new(self.clock.clone()))
            .await
            .unwrap();
        tokio::spawn(app.run_until_stopped());
        base
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.browser.get(self.url(path)).send().await.unwrap()
    }

    /// `/signin`, then the provider's URL (the sign-in form, unless the provider session
    /// answers at once), then the callback. Returns the callback's response.
    pub async fn sign_in_via(&self, path: &str, user: &str) -> reqwest::Response {
        self.sign_in_with(&self.browser, path, user).await
    }

    /// [`TestApp::sign_in_via`] in `browser`.
    pub async fn sign_in_with(
        &self,
        browser: &reqwest::Client,
        path: &str,
        user: &str,
    ) -> reqwest::Response {
        let callback = self.callback_url(browser, path, user).await;
        browser.get(callback).send().await.unwrap()
    }

    /// A sign-in started at `path` in `browser`, through the provider, up to the callback URL
    /// the provider sends the browser to (not visited).
    pub async fn callback_url(&self, browser: &reqwest::Client, path: &str, user: &str) -> String {
        let start = browser.get(self.url(path)).send().await.unwrap();
        assert_eq!(start.status(), 302, "{path}");
        let provider_url = location(&start);
        let at_provider = browser.get(&provider_url).send().await.unwrap();
        let back = if at_provider.status() == 200 {
            let url = Url::parse(&provider_url).unwrap();
            let mut fields: Vec<(String, String)> = url.query_pairs().into_owned().collect();
            fields.push(("username".into(), user.into()));
            let action = format!("{}://{}{}", url.scheme(), url.authority(), url.path());
            browser.post(action).form(&fields).send().await.unwrap()
        } else {
            at_provider
        };
        assert_eq!(back.status(), 302);
        location(&back)
    }

    /// Signs `user` in from a browser of their own (cookies of their own, at the app and at
    /// the provider), which is returned.
    pub async fn sign_in_elsewhere(&self, user: &str) -> reqwest::Client {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let callback = self.sign_in_with(&browser, "/signin", user).await;
        assert_eq!(callback.status(), 303, "{user}");
        browser
    }

    pub async fn sign_in(&self, user: &str) {
        let callback = self.sign_in_via("/signin", user).await;
        assert_eq!(
            callback.status(),
            303,
            "{}",
            callback.text().await.unwrap_or_default()
        );
        assert_eq!(location(&callback), "/");
    }

    pub async fn home_html(&self) -> (u16, String) {
        let response = self.get("/").await;
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Rows in `table`; for `token_cache` with the caches in Redis, the users' cache keys.
    pub fn count(&self, table: &str) -> i64 {
        use diesel::RunQueryDsl;
        if let (Some(_), "token_cache") = (&self.redis, table) {
            return self.cache_rows().len() as i64;
        }
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> = diesel::sql_query(format!("SELECT COUNT(*) AS n FROM {table}"))
            .load(&mut *self.db.conn())
            .unwrap();
        rows[0].n
    }

    /// Posts the sign-out form found in `html` (a page that offers one).
    pub async fn sign_out_from(&self, html: &str) -> reqwest::Response {
        self.browser
            .post(self.url("/signout"))
            .form(&[("csrf", Self::csrf(html))])
            .send()
            .await
            .unwrap()
    }

    pub fn csrf(html: &str) -> String {
        let start = html.find("name=\"csrf\" value=\"").expect("a CSRF field") + 19;
        html[start..].split('"').next().unwrap().to_owned()
    }
}
