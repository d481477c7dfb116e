//! Sessions end on the server: a copy of a session cookie dies with sign-out, signs nobody
//! out, and signing out in one browser ends the user's sessions in every other one.

use super::{e2e_tests, spawn_app, TestApp};
use reqwest::cookie::CookieStore;
use tokenbridge::db::Backend;
use url::Url;

e2e_tests!(
    a_copied_session_cookie_dies_with_sign_out,
    signing_out_ends_the_users_sessions_in_every_browser,
);

/// The `tb_session=...` pair the app's browser holds now.
fn session_cookie(app: &TestApp) -> String {
    let cookies = app.jar.cookies(&Url::parse(&app.base).unwrap()).unwrap();
    cookies
        .to_str()
        .unwrap()
        .split("; ")
        .find(|c| c.starts_with("tb_session="))
        .expect("a session cookie")
        .to_owned()
}

/// `GET /` with exactly `cookie`, from a client that keeps nothing.
async fn home_with(app: &TestApp, cookie: &str) -> reqwest::Response {
    reqwest::Client::new()
        .get(app.url("/"))
        .header("Cookie", cookie)
        .send()
        .await
        .unwrap()
}

async fn a_copied_session_cookie_dies_with_sign_out(backend: Backend) {
    let Some(app) = spawn_app("serve::sessions::copied_cookie", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let copy = session_cookie(&app);
    let (_, html) = app.home_html().await;
    assert!(html.contains("Hello"), "{html}");
    let old_csrf = TestApp::csrf(&html);
    assert_eq!(app.sign_out_from(&html).await.status(), 303);

    // Dead at once, and dropped by the answer.
    let response = home_with(&app, &copy).await;
    assert_eq!(response.status(), 200);
    let cleared = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("tb_session="));
    assert!(cleared, "the ended session's cookie is removed");
    let page = response.text().await.unwrap();
    assert!(!page.contains("Hello"), "{page}");

    // Still dead after the user signs in again (same account, a new sign-in).
    app.sign_in("ada").await;
    let page = home_with(&app, &copy).await.text().await.unwrap();
    assert!(
        !page.contains("Hello") && page.contains("session has ended"),
        "{page}"
    );

    // The copy cannot sign the user out of the new session.
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(app.url("/signout"))
        .header("Cookie", &copy)
        .form(&[("csrf", old_csrf)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(app.count("token_cache"), 1);
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200);
    assert!(html.contains("Hello"), "{html}");
}

async fn signing_out_ends_the_users_sessions_in_every_browser(backend: Backend) {
    let Some(app) = spawn_app("serve::sessions::everywhere", backend, |_| {}).await else {
        return;
    };
    app.sign_in("ada").await;
    let laptop = app.sign_in_elsewhere("ada").await;
    let phone_page = |browser: reqwest::Client| {
        let url = app.url("/");
        async move { browser.get(url).send().await.unwrap().text().await.unwrap() }
    };
    assert!(phone_page(laptop.clone()).await.contains("Hello"));
    assert!(app.home_html().await.1.contains("Hello"));

    let (_, html) = app.home_html().await;
    assert_eq!(app.sign_out_from(&html).await.status(), 303);
    let page = phone_page(laptop.clone()).await;
    assert!(!page.contains("Hello"), "{page}");
    // Another user's session is untouched.
    let grace = app.sign_in_elsewhere("grace").await;
    assert!(phone_page(grace).await.contains("Hello"));
}
