//! End to end against panva/oidc-provider, an OpenID Certified provider that is not ours, as a
//! generic `provider = "oidc"`: sign-in with PKCE, the profile from an API that validates the
//! provider's access tokens, refresh with rotation, offline access as OpenID Connect Core 11
//! grants it, RP-initiated logout, RFC 9207 `iss` and RFC 7009 revocation. The provider runs
//! under Node.js (`tests/oidc-provider`, installed with `npm ci`); without Node or the package a
//! developer's run skips these tests and says so, CI's run fails.

mod flows;
mod private_key_jwt;

use crate::serve::location;
use crate::support::{self, TestDb};
use serde_json::Value;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use tokenbridge::cache::seal::SealKeys;
use tokenbridge::clock::ManualClock;
use tokenbridge::db::Backend;
use tokenbridge::secret::Secret;
use tokenbridge::settings::{ClientAuth, ProviderKind, Settings};
use tokenbridge::web::Application;
use url::Url;

const CLIENT_ID: &str = "tokenbridge-certified-test";
const CLIENT_SECRET: &str = "tokenbridge-certified-test-secret-0123456789";

fn provider_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc-provider")
}

/// Whether Node.js and the installed provider are here; outside CI a missing one skips.
fn available(test: &str) -> bool {
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let installed = provider_dir()
        .join("node_modules/oidc-provider/package.json")
        .exists();
    if node && installed {
        return true;
    }
    let needs = if node {
        "panva/oidc-provider installed (npm ci --prefix tests/oidc-provider)"
    } else {
        "Node.js 20 or later (Debian: apt install nodejs npm)"
    };
    crate::support::skip(test, needs);
    false
}

/// How the provider issues refresh tokens.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    /// For a granted `offline_access` (which needs `prompt=consent`), the provider's default.
    Offline,
    /// For every code grant, without `offline_access`.
    Always,
}

/// The provider process; killed when dropped.
pub struct Op {
    pub issuer: String,
    child: Child,
    http: reqwest::Client,
}

impl Drop for Op {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Op {
    /// `certificates`: the client authenticates with private_key_jwt, by these certificates'
    /// keys (a PEM file), and has no secret.
    fn start(app_base: &str, refresh: Refresh, certificates: Option<&std::path::Path>) -> Op {
        let mut command = Command::new("node");
        if let Some(path) = certificates {
            command.env("CLIENT_CERTIFICATES", path);
        }
        let mut child = command
            .arg("server.mjs")
            .current_dir(provider_dir())
            .env("CLIENT_ID", CLIENT_ID)
            .env("CLIENT_SECRET", CLIENT_SECRET)
            .env("REDIRECT_URI", format!("{app_base}/signin-oidc"))
            .env(
                "POST_LOGOUT_REDIRECT_URI",
                format!("{app_base}/signout-callback-oidc"),
            )
            .env(
                "BACKCHANNEL_LOGOUT_URI",
                format!("{app_base}/backchannel-logout"),
            )
            .env(
                "REFRESH",
                if refresh == Refresh::Always {
                    "always"
                } else {
                    "offline"
                },
            )
            .stdout(Stdio::piped())
            // TOKENBRIDGE_TEST_OP_LOG=1 shows the provider's own messages.
            .stderr(if std::env::var_os("TOKENBRIDGE_TEST_OP_LOG").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("node starts");
        let mut first = String::new();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        stdout.read_line(&mut first).unwrap();
        // Keep reading: a closed pipe would kill the provider at its next line of output.
        std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
        let issuer = first
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("oidc-provider did not start: {first:?}"))
            .to_owned();
        Op {
            issuer,
            child,
            http: reqwest::Client::new(),
        }
    }

    pub async fn counters(&self) -> Value {
        self.http
            .get(format!("{}/test/counters", self.issuer))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn behave(&self, behaviour: Value) {
        let response = self
            .http
            .post(format!("{}/test/behaviour", self.issuer))
            .json(&behaviour)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
}

/// `serve` on a fresh SQLite database, signed in to its own oidc-provider.
pub struct CertifiedApp {
    pub base: String,
    pub op: Op,
    pub db: TestDb,
    pub browser: reqwest::Client,
    pub clock: ManualClock,
    pub settings: Settings,
}

/// The app with `provider = "oidc"` and the provider's issuer exactly as it publishes it (a bare
/// origin); `change` adjusts the settings. None when skipped.
pub async fn spawn(
    test: &str,
    refresh: Refresh,
    change: impl FnOnce(&mut Settings),
) -> Option<CertifiedApp> {
    spawn_with(test, refresh, None, change).await
}

/// [`spawn`], the provider's client registered with `certificates` (see [`Op::start`]).
pub async fn spawn_with(
    test: &str,
    refresh: Refresh,
    certificates: Option<&std::path::Path>,
    change: impl FnOnce(&mut Settings),
) -> Option<CertifiedApp> {
    if !available(test) {
        return None;
    }
    let db = support::migrated(Backend::Sqlite).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let op = Op::start(&base, refresh, certificates);
    let mut s = Settings::from_sources("", "test", &HashMap::new()).unwrap();
    s.database = db.settings.clone();
    s.identity.provider = ProviderKind::Oidc;
    s.identity.issuer = Some(op.issuer.clone());
    s.identity.tenant_id = String::new();
    s.identity.client_id = CLIENT_ID.into();
    s.identity.client_secret = Some(Secret::new(CLIENT_SECRET));
    s.identity.client_auth = ClientAuth::ClientSecretBasic;
    s.identity.scopes = vec!["api.read".into()];
    s.identity.http_timeout = std::time::Duration::from_secs(5);
    s.api.base_url = Url::parse(&format!("{}/api/v1.0", op.issuer)).unwrap();
    s.web.public_url = Url::parse(&base).unwrap();
    s.web.metrics_listen = None;
    s.web.session_key = Some(Secret::new(
        "a-test-session-key-that-is-long-enough-for-actix-0123456789abcdefghij",
    ));
    s.cache.keys =
        Some(SealKeys::parse(&Secret::new(format!("k1={}", crate::fixtures::KEY))).unwrap());
    change(&mut s);
    let clock = ManualClock::new(time::OffsetDateTime::now_utc());
    let app = Application::build_on(&s, listener, Arc::new(clock.clone()))
        .await
        .unwrap();
    tokio::spawn(app.run_until_stopped());
    Some(CertifiedApp {
        base,
        op,
        db,
        browser: browser(),
        clock,
        settings: s,
    })
}

/// A browser of its own: cookies kept, redirects not followed.
pub fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

impl CertifiedApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Follows a sign-in started at `/signin` through the provider (signing in as `user` and
    /// consenting when asked) up to the app's callback URL, which is returned unvisited.
    pub async fn callback_url(&self, browser: &reqwest::Client, user: &str) -> Url {
        let mut url = Url::parse(&self.url("/signin")).unwrap();
        for _ in 0..12 {
            let response = browser.get(url.clone()).send().await.unwrap();
            let status = response.status();
            assert!(
                status.is_redirection(),
                "{status} at {url}: {}",
                response.text().await.unwrap_or_default()
            );
            let mut next = url.join(&location(&response)).unwrap();
            if next.as_str().starts_with(&self.url("/signin-oidc")) {
                return next;
            }
            if next.path().starts_with("/interaction/") {
                next.query_pairs_mut().append_pair("user", user);
            }
            url = next;
        }
        panic!("the sign-in never came back to the app");
    }

    /// Signs `user` in with the app's browser; returns the callback's response.
    pub async fn sign_in(&self, user: &str) -> reqwest::Response {
        let callback = self.callback_url(&self.browser, user).await;
        self.browser.get(callback).send().await.unwrap()
    }

    /// Signs out from `browser` with the CSRF token of its home page.
    /// Opens the provider's end-session page at `url` in the app's browser and confirms it
    /// ("Sign out"): the confirmation's response.
    pub async fn confirm_end_session(&self, url: &str) -> reqwest::Response {
        let form = self.browser.get(url).send().await.unwrap();
        assert_eq!(form.status(), 200);
        let page = form.text().await.unwrap();
        let xsrf = page
            .split("name=\"xsrf\" value=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("no xsrf field: {page}"));
        self.browser
            .post(format!("{}/session/end/confirm", self.op.issuer))
            .form(&[("xsrf", xsrf), ("logout", "yes")])
            .send()
            .await
            .unwrap()
    }

    pub async fn sign_out(&self, browser: &reqwest::Client) -> reqwest::Response {
        let html = browser
            .get(self.url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        browser
            .post(self.url("/signout"))
            .form(&[("csrf", crate::serve::TestApp::csrf(&html))])
            .send()
            .await
            .unwrap()
    }

    pub async fn home(&self) -> (u16, String) {
        let response = self.browser.get(self.url("/")).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The activity row of the only account.
    pub fn activity(&self) -> tokenbridge::activity::store::Activity {
        let rows =
            tokenbridge::activity::store::find_by_upn(&mut self.db.conn(), "ada@example.test")
                .unwrap();
        rows.into_iter().next().expect("ada's activity row")
    }
}
