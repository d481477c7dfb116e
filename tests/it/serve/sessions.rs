//! Sessions end on the server: a copy of a session cookie dies with sign-out, signs nobody
//! out, and signing out in one browser ends the user's sessions in every other one. Each
//! sign-in response is acted on once, and every tab's sign-in can finish.

use super::{e2e_tests, location, spawn_app, TestApp};
use reqwest::cookie::CookieStore;
use tokenbridge::db::Backend;
use url::Url;

e2e_tests!(
    a_copied_session_cookie_dies_with_sign_out,
    signing_out_ends_the_users_sessions_in_every_browser,
    a_repeated_callback_signs_in_without_redeeming_again,
    sign_ins_started_in_several_tabs_each_finish,
    a_replayed_sign_in_response_is_not_redeemed_again,
    sign_out_while_the_store_does_not_answer_finishes_later,
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

/// Whether `response` removes the session cookie.
fn clears_session(response: &reqwest::Response) -> bool {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .any(|v| v.to_str().unwrap().starts_with("tb_session="))
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
    let cleared = clears_session(&response);
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
    // Ended in every process: another replica on the same database sees it too.
    let replica = app.replica().await;
    let page = laptop
        .get(format!("{replica}/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!page.contains("Hello"), "{page}");
    // Another user's session is untouched.
    let grace = app.sign_in_elsewhere("grace").await;
    assert!(phone_page(grace).await.contains("Hello"));
}

/// A reload while the first callback is still redeeming sends the same callback again: the
/// code is redeemed once (a provider that revokes on replay would otherwise kill the tokens
/// just stored), and both answers sign the browser in.
async fn a_repeated_callback_signs_in_without_redeeming_again(backend: Backend) {
    let Some(app) = spawn_app("serve::sessions::repeated_callback", backend, |s| {
        s.token_latency = std::time::Duration::from_millis(400);
    })
    .await
    else {
        return;
    };
    let callback = app.callback_url(&app.browser, "/signin", "ada").await;
    // The repeat reaches another replica (its own pool and acquirer on the same database), as
    // behind a load balancer: the claim holds across processes, not by single flight.
    let replica = app.replica().await;
    let repeated = callback.replacen(&app.base, &replica, 1);
    let first = app.browser.get(&callback).send();
    let second = async {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        app.browser.get(&repeated).send().await
    };
    let (first, second) = tokio::join!(first, second);
    let (first, second) = (first.unwrap(), second.unwrap());
    assert_eq!(first.status(), 303, "{}", first.text().await.unwrap());
    assert_eq!(second.status(), 303, "{}", second.text().await.unwrap());
    assert_eq!(location(&second), "/");
    assert_eq!(app.idp.counters().await["codes_redeemed"], 1);
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200);
    assert!(html.contains("Hello"), "{html}");
    // The tokens stored are alive: the next refresh works.
    app.clock.advance(time::Duration::hours(2));
    let (status, html) = app.home_html().await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("Hello"), "{html}");
    assert_eq!(app.idp.counters().await["refreshes"], 1);
}

/// Sign-ins started in several tabs each finish, in any order; a few at most are kept, the
/// oldest dropped first.
async fn sign_ins_started_in_several_tabs_each_finish(backend: Backend) {
    let Some(app) = spawn_app("serve::sessions::tabs", backend, |_| {}).await else {
        return;
    };
    let first = app.callback_url(&app.browser, "/signin", "ada").await;
    let second = app
        .callback_url(&app.browser, "/signin?returnUrl=%2Fa", "ada")
        .await;
    let response = app.browser.get(&second).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/a");
    let response = app.browser.get(&first).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(location(&response), "/");

    // Five started: the oldest is gone, the newest four finish.
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(app.callback_url(&app.browser, "/signin", "ada").await);
    }
    let oldest = app.browser.get(&started[0]).send().await.unwrap();
    assert_eq!(oldest.status(), 400);
    assert!(oldest.text().await.unwrap().contains("another browser"));
    for url in &started[1..] {
        let response = app.browser.get(url).send().await.unwrap();
        assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    }
}

/// A sign-in response replayed later (the same callback, with the same sign-in cookie) is
/// not redeemed again: the provider sees one redemption.
async fn a_replayed_sign_in_response_is_not_redeemed_again(backend: Backend) {
    let Some(app) = spawn_app("serve::sessions::replayed_response", backend, |_| {}).await else {
        return;
    };
    let callback = app.callback_url(&app.browser, "/signin", "ada").await;
    let cookies = app.jar.cookies(&Url::parse(&callback).unwrap()).unwrap();
    assert_eq!(
        app.browser.get(&callback).send().await.unwrap().status(),
        303
    );
    let replay = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(&callback)
        .header("Cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 303);
    assert_eq!(app.idp.counters().await["codes_redeemed"], 1);
    assert_eq!(app.count("token_cache"), 1);
}

/// Sign-out while the token store does not answer: the browser is signed out anyway, the page
/// says plainly that the stored sign-in will be removed later, and it is, once the store
/// answers again.
async fn sign_out_while_the_store_does_not_answer_finishes_later(backend: Backend) {
    let Some(app) = super::spawn_app_with(
        "serve::sessions::sign_out_outage",
        backend,
        |_| {},
        |s| s.database.busy_timeout = std::time::Duration::from_millis(300),
    )
    .await
    else {
        return;
    };
    app.sign_in("ada").await;
    let (_, html) = app.home_html().await;
    let copy = session_cookie(&app);
    let locked = crate::support::lock_token_cache(&app.db, std::time::Duration::from_millis(2500));
    let response = app.sign_out_from(&html).await;
    assert_eq!(response.status(), 200);
    let cleared = clears_session(&response);
    assert!(cleared, "the session cookie is removed at once");
    let page = response.text().await.unwrap();
    assert!(
        page.contains("You have signed out of this browser") && page.contains("not answering"),
        "{page}"
    );
    assert!(!app.home_html().await.1.contains("Hello"));
    assert_eq!(
        app.count("token_cache"),
        1,
        "still there while the store is locked"
    );
    locked.join().unwrap();
    for _ in 0..100 {
        if app.count("token_cache") == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.count("token_cache"),
        0,
        "removed once the store answered"
    );
    let activity =
        tokenbridge::activity::store::find_by_upn(&mut app.db.conn(), "ada@tokenbridge.dev")
            .unwrap();
    assert!(activity[0].signed_out_at.is_some());
    // The copy taken before is dead too.
    let page = home_with(&app, &copy).await.text().await.unwrap();
    assert!(!page.contains("Hello"), "{page}");
}
