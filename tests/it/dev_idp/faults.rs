//! Faults injected into the next token requests, and injected latency.

use super::*;
use std::time::{Duration, Instant};
use tokenbridge::settings::Rotation;

#[tokio::test]
async fn status_faults_answer_once_each_then_service_resumes() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.inject("500", 1).await;
    idp.inject("503", 1).await;
    idp.inject("429", 1).await;
    idp.inject("invalid_grant", 1).await;
    idp.inject("interaction_required", 2).await;
    let expected = [
        (500, "server_error", None),
        (503, "temporarily_unavailable", Some("7")),
        (429, "temporarily_unavailable", Some("7")),
        (400, "invalid_grant", None),
        (400, "interaction_required", None),
        (400, "interaction_required", None),
    ];
    for (status, error, retry_after) in expected {
        let response = idp.refresh(&rt).await;
        let header = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header.as_deref(), retry_after, "{status} {error}");
        assert_eq!(error_of(response).await, (status, error.to_owned()));
    }
    assert_eq!(
        idp.refresh(&rt).await.status(),
        200,
        "the queue is empty again"
    );
    let counters = idp.counters().await;
    assert_eq!(counters["faults_injected"], 6);
    assert_eq!(
        counters["refreshes"], 1,
        "faulted requests were not processed"
    );
}

#[tokio::test]
async fn faults_can_be_cleared() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.inject("500", 5).await;
    idp.admin(reqwest::Method::DELETE, "faults", None).await;
    assert_eq!(idp.refresh(&rt).await.status(), 200);
}

#[tokio::test]
async fn a_hang_outlasts_the_client_timeout() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.inject("hang", 1).await;
    let started = Instant::now();
    let err = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", rt.as_str()),
        ])
        .timeout(Duration::from_millis(500))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(
        idp.refresh(&rt).await.status(),
        200,
        "other requests are not held up"
    );
}

#[tokio::test]
async fn a_dropped_connection_is_a_transport_error() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.inject("drop", 1).await;
    let err = idp.try_refresh(&rt).await.unwrap_err();
    assert!(
        err.is_request() && !err.is_timeout(),
        "no answer at all: {err:?}"
    );
    assert!(err.status().is_none());
    assert_eq!(
        idp.counters().await["refreshes"],
        0,
        "dropped before processing"
    );
}

/// The answer is lost after the provider rotated the token: with strict rotation, the client's
/// retry with the token it still holds looks like theft.
#[tokio::test]
async fn a_lost_answer_still_rotates_the_refresh_token() {
    let idp = spawn_idp_with(|s| s.rotation = Rotation::Strict).await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    idp.inject("lose_answer", 1).await;
    assert!(
        idp.try_refresh(&rt).await.is_err(),
        "the answer never arrives"
    );
    let counters = idp.counters().await;
    assert_eq!(
        (
            counters["refreshes"].as_u64(),
            counters["rotations"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(
        error_of(idp.refresh(&rt).await).await,
        (400, "invalid_grant".into())
    );
    assert_eq!(idp.counters().await["reuse_detections"], 1);
}

#[tokio::test]
async fn latency_is_added_to_token_requests_and_api_calls() {
    let idp = spawn_idp().await;
    let tokens = idp.tokens_for("ada").await;
    idp.behave(serde_json::json!({ "token_latency_ms": 300, "api_latency_ms": 200 }))
        .await;
    let started = Instant::now();
    assert_eq!(
        idp.refresh(tokens["refresh_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(
        idp.me(tokens["access_token"].as_str().unwrap())
            .await
            .status(),
        200
    );
    assert!(
        started.elapsed() >= Duration::from_millis(200),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn malformed_admin_requests_are_refused() {
    let idp = spawn_idp().await;
    let bad = idp
        .http
        .post(format!("{}/admin/faults", idp.base))
        .json(&serde_json::json!({ "kind": "meteor" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let unknown_field = idp
        .http
        .patch(format!("{}/admin/behaviour", idp.base))
        .json(&serde_json::json!({ "rotaton": "strict" }))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 400);
}

/// `late_answer`: the provider acts at once and answers late; a client that gave up meanwhile
/// never hears that its refresh token was rotated.
#[tokio::test]
async fn a_late_answer_is_processed_at_once_and_sent_after_the_delay() {
    let idp = spawn_idp().await;
    let rt = idp.tokens_for("ada").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": 400 });
    idp.admin(reqwest::Method::POST, "faults", Some(late.clone()))
        .await;
    let started = Instant::now();
    assert_eq!(idp.refresh(&rt).await.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(400));

    idp.admin(reqwest::Method::POST, "faults", Some(late)).await;
    let gave_up = idp
        .http
        .post(idp.endpoint("token"))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &rt)])
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .unwrap_err();
    assert!(gave_up.is_timeout());
    let counters = idp.counters().await;
    assert_eq!(counters["refreshes"], 2, "processed although nobody waited");
}

/// A web page the developer visits cannot drive the provider: a host name that is not loopback
/// (DNS rebinding) is refused everywhere; admin writes must be JSON from no Origin or a
/// loopback one (a cross-site form cannot send that); numbers are bounded.
#[tokio::test]
async fn a_web_page_cannot_drive_the_provider() {
    let idp = spawn_idp().await;
    let rebound = idp
        .http
        .get(format!("{}/admin/counters", idp.base))
        .header("Host", "attacker.example:5556")
        .send()
        .await
        .unwrap();
    assert_eq!(rebound.status(), 421);
    let form = idp
        .http
        .post(format!("{}/admin/users/ada/revoke", idp.base))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("x=1")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 403);
    let cross_site = idp
        .http
        .post(format!("{}/admin/users/ada/revoke", idp.base))
        .header("Origin", "http://attacker.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let local = idp
        .http
        .post(format!("{}/admin/users/ada/revoke", idp.base))
        .header("Origin", "http://127.0.0.1:8080")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(local.status(), 204);
    let huge = idp
        .http
        .post(format!("{}/admin/faults", idp.base))
        .json(&serde_json::json!({ "kind": "hang", "count": 1_000_000_000u64 }))
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 400);
    let slow = idp
        .http
        .patch(format!("{}/admin/behaviour", idp.base))
        .json(&serde_json::json!({ "token_latency_ms": 86_400_000u64 }))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 400);
}
