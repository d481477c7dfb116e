//! One redemption per user across processes and inside one: concurrent acquirers on one
//! database, provider latency so the races really happen, strict rotation so a second
//! redemption of one refresh token would be seen (and punished) by the provider.

use super::{acquire, Rig};
use crate::serve::e2e_tests;
use std::time::Duration as StdDuration;
use time::Duration;
use tokenbridge::clock::{Clock, ManualClock};
use tokenbridge::db::Backend;
use tokenbridge::identity::AcquireError;
use tokenbridge::settings::Rotation;

e2e_tests!(
    twenty_concurrent_acquisitions_on_two_acquirers_redeem_once,
    lease_times_are_the_databases_clock_not_each_hosts,
    a_caller_that_goes_away_does_not_cause_a_second_redemption,
    waiters_share_the_outcome_of_a_failed_refresh,
    a_lease_lost_before_the_redemption_redeems_nothing,
);

fn strict_and_slow(s: &mut tokenbridge::settings::DevIdpSettings) {
    s.rotation = Rotation::Strict;
    s.token_latency = StdDuration::from_millis(300);
}

/// Two processes (independent acquirers, own pools and owners) and ten concurrent requests
/// each, after a 60-second token passed half its life: exactly one refresh.
async fn twenty_concurrent_acquisitions_on_two_acquirers_redeem_once(backend: Backend) {
    let Some(rig) = Rig::new("acquire::twenty_on_two", backend, |s| {
        strict_and_slow(s);
        s.access_token_ttl = StdDuration::from_secs(60);
    })
    .await
    else {
        return;
    };
    let (a, b) = (rig.acquirer(&rig.clock), rig.acquirer(&rig.clock));
    let id = rig.sign_in(&a, "ada").await;
    rig.clock.advance(Duration::seconds(45));
    let calls = (0..20).map(|n| {
        let acquirer = if n % 2 == 0 { &a } else { &b };
        acquire(acquirer, &id)
    });
    for (n, outcome) in futures_util::future::join_all(calls)
        .await
        .into_iter()
        .enumerate()
    {
        assert!(outcome.is_ok(), "call {n}: {outcome:?}");
    }
    let counters = rig.idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
    assert_eq!(rig.row(&id).1, 2);
}

/// Two hosts whose clocks disagree by five minutes: the second must not think the first's
/// lease expired (lease times are compared with the database's clock).
async fn lease_times_are_the_databases_clock_not_each_hosts(backend: Backend) {
    let Some(rig) = Rig::new("acquire::database_clock", backend, strict_and_slow).await else {
        return;
    };
    let a = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&a, "ada").await;
    rig.clock.advance(Duration::hours(2));
    let ahead = ManualClock::new(rig.clock.now() + Duration::minutes(5));
    let b = rig.acquirer(&ahead);
    let first = acquire(&a, &id);
    let second = async {
        // Start once `a` holds the lease and is redeeming.
        while rig.lease(&id).is_none() {
            tokio::time::sleep(StdDuration::from_millis(5)).await;
        }
        acquire(&b, &id).await
    };
    let (first, second) = futures_util::future::join(first, second).await;
    assert!(first.is_ok() && second.is_ok(), "{first:?} {second:?}");
    let counters = rig.idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
}

/// A request dropped mid-refresh (a browser that went away) while the provider has already
/// rotated the refresh token: the refresh finishes and is saved anyway, and the next request
/// uses its result instead of redeeming the old token again.
async fn a_caller_that_goes_away_does_not_cause_a_second_redemption(backend: Backend) {
    let Some(rig) = Rig::new("acquire::caller_goes_away", backend, |s| {
        s.rotation = Rotation::Strict
    })
    .await
    else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    let old = rig.refresh_token(&id);
    rig.clock.advance(Duration::hours(2));
    let late = serde_json::json!({ "kind": "late_answer", "delay_ms": 600 });
    rig.idp
        .admin(reqwest::Method::POST, "faults", Some(late))
        .await;
    let gave_up =
        tokio::time::timeout(StdDuration::from_millis(150), acquire(&acquirer, &id)).await;
    assert!(gave_up.is_err(), "the first caller went away");
    rig.until_refreshes(1).await;
    let token = acquire(&acquirer, &id).await;
    assert!(token.is_ok(), "{token:?}");
    let counters = rig.idp.counters().await;
    assert_eq!(counters["refreshes"], 1, "{counters}");
    assert_eq!(counters["reuse_detections"], 0, "{counters}");
    assert_ne!(rig.refresh_token(&id), old, "the rotated token was saved");
}

/// Twenty callers during an outage wait for one provider call, not twenty in turn.
async fn waiters_share_the_outcome_of_a_failed_refresh(backend: Backend) {
    let Some(rig) = Rig::new("acquire::waiters_share_failure", backend, strict_and_slow).await
    else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    rig.clock.advance(Duration::hours(2));
    rig.idp.inject("503", 20).await;
    let outcomes = futures_util::future::join_all((0..20).map(|_| acquire(&acquirer, &id))).await;
    for outcome in outcomes {
        assert!(
            matches!(outcome, Err(AcquireError::Transient { .. })),
            "{outcome:?}"
        );
    }
    assert_eq!(rig.counter("faults_injected").await, 1, "one provider call");
    // The provider is back: the next call works and nothing was lost.
    rig.idp.admin(reqwest::Method::DELETE, "faults", None).await;
    assert!(acquire(&acquirer, &id).await.is_ok());
    assert_eq!(rig.counter("reuse_detections").await, 0);
}

/// A process that took the refresh lease and then stalled (injected: a pause between taking
/// the lease and redeeming) finds, when it wakes, that the lease expired and another process
/// took it over and refreshed: it confirms the lease before redeeming, so it redeems nothing.
/// Strict rotation would take a second redemption of the same token as theft.
async fn a_lease_lost_before_the_redemption_redeems_nothing(backend: Backend) {
    let Some(rig) = Rig::new("acquire::lease_lost", backend, |s| {
        s.rotation = Rotation::Strict
    })
    .await
    else {
        return;
    };
    let stalled = rig.acquirer_tuned(
        &rig.clock,
        |_| {},
        |o| {
            o.lease_for = StdDuration::from_secs(2);
            o.pause_before_redeem = StdDuration::from_millis(3000);
        },
    );
    let other = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&other, "ada").await;
    rig.clock.advance(Duration::hours(2));
    let first = acquire(&stalled, &id);
    let second = async {
        // After the stalled process took its lease.
        tokio::time::sleep(StdDuration::from_millis(300)).await;
        acquire(&other, &id).await
    };
    let (first, second) = futures_util::future::join(first, second).await;
    assert!(second.is_ok(), "{second:?}");
    assert!(
        matches!(&first, Err(AcquireError::Transient { reason, .. }) if reason.contains("nothing was redeemed")),
        "{first:?}"
    );
    assert_eq!(rig.counter("refreshes").await, 1, "one redemption");
    assert_eq!(rig.counter("reuse_detections").await, 0);
    assert!(acquire(&other, &id).await.is_ok(), "ada is still signed in");
}
