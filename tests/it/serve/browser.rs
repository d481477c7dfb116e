//! A real browser: headless Chromium, driven through WebDriver (chromedriver), signs in through
//! the provider's form, sees the profile, and signs out; a copy of the session cookie from
//! before the sign-out is dead.

use super::spawn_app;
use fantoccini::{ClientBuilder, Locator};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokenbridge::db::Backend;

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// chromedriver on a free loopback port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_driver() -> Option<Driver> {
    let installed =
        std::path::Path::new(CHROMEDRIVER).exists() && std::path::Path::new(CHROMIUM).exists();
    if !installed {
        crate::support::skip(
            "serve::browser",
            "Debian's chromium and chromium-driver (.ci/run installs them)",
        );
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .args([format!("--port={port}"), "--allowed-ips=127.0.0.1".into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(driver);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("chromedriver did not start");
}

/// A headless Chromium session through `driver`, with a profile of its own in `profile`.
async fn open_browser(driver: &Driver, profile: &std::path::Path) -> fantoccini::Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": CHROMIUM,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-quic", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // WebDriver on loopback is plain HTTP: no TLS connector needed.
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session")
}

/// At the app's home page, signs in as `user` through the provider's form.
async fn sign_in(
    browser: &fantoccini::Client,
    app: &super::TestApp,
    user: &str,
) -> Result<(), fantoccini::error::CmdError> {
    browser.goto(&app.url("/")).await?;
    browser
        .find(Locator::LinkText("Sign in"))
        .await?
        .click()
        .await?;
    // The provider's sign-in form.
    let name = browser.wait().for_element(Locator::Id("username")).await?;
    name.send_keys(user).await?;
    browser
        .find(Locator::Css("form button[type=submit]"))
        .await?
        .click()
        .await?;
    browser
        .wait()
        .for_element(Locator::XPath("//h1[starts-with(., 'Hello')]"))
        .await?;
    Ok(())
}

#[tokio::test]
async fn a_person_signs_in_sees_the_profile_and_signs_out() {
    let Some(driver) = start_driver() else { return };
    let app = spawn_app("serve::browser", Backend::Sqlite, |_| {})
        .await
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(&driver, profile.path()).await;

    let result = async {
        sign_in(&browser, &app, "ada").await?;
        // Back at the app, signed in.
        let heading = browser
            .wait()
            .for_element(Locator::XPath("//h1[starts-with(., 'Hello')]"))
            .await?;
        assert_eq!(heading.text().await?, "Hello, Ada");
        let table = browser.find(Locator::Css("table")).await?.text().await?;
        assert!(table.contains("ada@tokenbridge.dev"), "{table}");
        assert_eq!(app.count("token_cache"), 1);
        let before_sign_out = browser.get_named_cookie("tb_session").await?;
        // Sign out: through the provider and back to the app.
        browser
            .find(Locator::Css("form[action='/signout'] button"))
            .await?
            .click()
            .await?;
        let done = browser
            .wait()
            .for_element(Locator::XPath("//h1[. = 'You have signed out']"))
            .await?;
        assert_eq!(done.text().await?, "You have signed out");
        assert!(browser
            .current_url()
            .await?
            .as_str()
            .starts_with(&app.url("/signout-callback-oidc")));
        assert_eq!(app.count("token_cache"), 0);

        // Signed in again, a copy of the cookie from before the sign-out is put back: that
        // session ended on the server, so the page says so and shows nothing of the user.
        sign_in(&browser, &app, "ada").await?;
        browser.delete_cookie("tb_session").await?;
        browser.add_cookie(before_sign_out).await?;
        browser.goto(&app.url("/")).await?;
        let ended = browser
            .wait()
            .for_element(Locator::XPath("//h1[. = 'Your session has ended']"))
            .await?;
        assert_eq!(ended.text().await?, "Your session has ended");
        let page = browser.source().await?;
        assert!(!page.contains("ada@tokenbridge.dev"), "{page}");
        assert_eq!(app.count("token_cache"), 1, "the new sign-in is untouched");
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser flow");
}

/// Signing out at the provider's own page (Entra ID's way: a Front-Channel Logout frame on
/// that page, no back-channel) signs the person out of the app: the browser loads the app's
/// front-channel URI in the provider's page, and the app's next page asks them to sign in.
#[tokio::test]
async fn signing_out_at_the_provider_s_page_signs_the_person_out_here() {
    let Some(driver) = start_driver() else { return };
    let app = spawn_app("serve::browser_frontchannel", Backend::Sqlite, |idp| {
        let client = &mut idp.clients[0];
        client.frontchannel_logout_uri = client
            .backchannel_logout_uri
            .take()
            .map(|uri| uri.replace("/backchannel-logout", "/frontchannel-logout"));
    })
    .await
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(&driver, profile.path()).await;
    let result = async {
        sign_in(&browser, &app, "ada").await?;
        assert_eq!(app.count("token_cache"), 1);
        // The provider's page loads once its frames have.
        browser.goto(&app.idp.endpoint("logout")).await?;
        browser
            .wait()
            .for_element(Locator::XPath("//h1[. = 'You have signed out']"))
            .await?;
        let frame = browser
            .find(Locator::Css("iframe"))
            .await?
            .attr("src")
            .await?
            .unwrap_or_default();
        assert!(
            frame.starts_with(&app.url("/frontchannel-logout?")),
            "{frame}"
        );
        assert_eq!(app.count("token_cache"), 0, "signed out by the frame");
        browser.goto(&app.url("/")).await?;
        let page = browser.source().await?;
        assert!(!page.contains("ada@tokenbridge.dev"), "{page}");
        browser.find(Locator::LinkText("Sign in")).await?;
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the browser flow");
}

/// The web API mode's quick start in a real browser: the sample SPA the provider serves signs
/// ada in (code + PKCE, a public client), calls the app's `/api/me` across origins with her
/// token, and shows her profile; the app exchanged the token once and keeps her tokens, so a
/// worker pass with the tab closed acts for her.
#[tokio::test]
async fn the_sample_spa_signs_in_and_calls_the_web_api() {
    let Some(driver) = start_driver() else { return };
    let app = super::spawn_app_with(
        "serve::browser_spa",
        Backend::Sqlite,
        |_| {},
        |s| {
            super::web_api::with_web_api(s);
            s.web_api.allowed_origins = vec![s.identity.instance.origin().ascii_serialization()];
        },
    )
    .await
    .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(&driver, profile.path()).await;
    let result = async {
        let page = format!("{}/spa/?api={}", app.idp.base, app.base);
        browser.goto(&page).await?;
        browser.find(Locator::Id("signin")).await?.click().await?;
        let name = browser.wait().for_element(Locator::Id("username")).await?;
        name.send_keys("ada").await?;
        browser
            .find(Locator::Css("form button[type=submit]"))
            .await?
            .click()
            .await?;
        let shown = browser
            .wait()
            .for_element(Locator::XPath(
                "//pre[@id='result' and contains(., 'ada@tokenbridge.dev')]",
            ))
            .await?;
        assert!(shown.text().await?.contains("\"displayName\""));
        // The tab's address no longer holds the code.
        let url = browser.current_url().await?;
        assert_eq!(url.query(), None, "{url}");
        // Once more from the page: the token stored for her token, no new exchange.
        browser.find(Locator::Id("call")).await?.click().await?;
        for _ in 0..200 {
            if app.idp.counters().await["api_calls"] == 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        assert_eq!(app.idp.counters().await["api_calls"], 2, "the second call");
        Ok::<_, fantoccini::error::CmdError>(())
    }
    .await;
    let _ = browser.close().await;
    result.expect("the SPA flow");
    assert_eq!(app.idp.counters().await["on_behalf_of"], 1);
    assert_eq!(app.count("token_cache"), 1);
    app.clock.advance(time::Duration::hours(2));
    let done = crate::worker::pass(&app, |_| {}).await;
    assert_eq!(done.outcomes(), crate::worker::outcomes(&[("ada", "ok")]));
}
