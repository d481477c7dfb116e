//! `private_key_jwt` at a certified provider: oidc-provider with the client registered by its
//! certificates' keys and no secret. Sign-in, refreshes in the web app and the worker, and the
//! revocation at sign-out each carry an assertion it verifies: RS256 with the first key, ES256
//! once an EC key is written into the key directory while the app serves.

use super::{spawn_with, Refresh};
use crate::serve::private_key_jwt::{with_key, TestKey, FIXTURE_CERT, FIXTURE_KEY};
use time::{Duration, OffsetDateTime};

#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_and_revokes_at_a_certified_provider() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let es256 = TestKey::ec(now - Duration::days(1), now + Duration::days(30));
    let certificates = dir.path().join("certificates.pem");
    std::fs::write(
        &certificates,
        format!(
            "{}{}",
            std::fs::read_to_string(FIXTURE_CERT).unwrap(),
            es256.cert
        ),
    )
    .unwrap();
    let keys = dir.path().join("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::write(
        keys.join("c-current.pem"),
        format!(
            "{}{}",
            std::fs::read_to_string(FIXTURE_KEY).unwrap(),
            std::fs::read_to_string(FIXTURE_CERT).unwrap()
        ),
    )
    .unwrap();
    let Some(app) = spawn_with(
        "oidc_provider::private_key_jwt",
        Refresh::Always,
        Some(&certificates),
        |s| with_key(s, &keys),
    )
    .await
    else {
        return;
    };
    let signed = |counters: &serde_json::Value, alg: &str| {
        counters["client_assertions"][alg].as_u64().unwrap_or(0)
    };

    let callback = app.sign_in("ada").await;
    assert_eq!(callback.status(), 303, "{}", callback.text().await.unwrap());
    assert_eq!(signed(&app.op.counters().await, "RS256"), 1);
    app.clock.advance(Duration::hours(2));
    let (status, html) = app.home().await;
    assert_eq!(status, 200, "{html}");
    assert_eq!(signed(&app.op.counters().await, "RS256"), 2);

    // An EC key, first in name order, written while the app serves.
    es256.write(&keys.join("b-next.pem"));
    app.clock.advance(Duration::hours(2));
    let worker = tokenbridge::worker::Worker::build(
        &app.settings,
        app.settings.worker.clone(),
        std::sync::Arc::new(app.clock.clone()),
    )
    .await
    .unwrap();
    let run = crate::worker::run_pass(&worker, std::future::ready(())).await;
    assert_eq!(run.lines[0]["outcome"], "ok", "{:?}", run.lines);
    let counters = app.op.counters().await;
    assert_eq!(signed(&counters, "ES256"), 1, "{counters}");
    assert_eq!(counters["refreshes"], 2, "{counters}");
    assert_eq!(counters["refresh_errors"], 0, "{counters}");

    // Sign-out revokes the refresh token, authenticated the same way.
    let signed_out = app.sign_out(&app.browser).await;
    assert_eq!(signed_out.status(), 303);
    for _ in 0..100 {
        if app.op.counters().await["revocations"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let counters = app.op.counters().await;
    assert_eq!(counters["revocations"], 1, "{counters}");
    assert_eq!(signed(&counters, "ES256"), 2, "the revocation: {counters}");
    assert_eq!(counters["grants_revoked"], 1, "{counters}");
}
