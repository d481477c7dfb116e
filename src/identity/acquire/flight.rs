//! Single flight per user inside a process, detached from whoever asked. The first caller
//! starts the refresh as a spawned task; everyone who asks for the same user meanwhile awaits
//! the same outcome, success or failure. A caller that goes away (a browser that closes the
//! page, so actix drops the handler) cancels nothing: the refresh and its save run to the end,
//! so a redeemed refresh token is always written and never redeemed a second time.

use super::AccessToken;
use crate::identity::AcquireError;
use crate::sync::lock;
use futures_util::future::{BoxFuture, FutureExt, Shared};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub(super) type Outcome = Result<AccessToken, AcquireError>;
type Flight = Shared<BoxFuture<'static, Outcome>>;

#[derive(Default)]
pub(super) struct Flights {
    running: Arc<Mutex<HashMap<String, (u64, Flight)>>>,
    started: AtomicU64,
}

impl Flights {
    /// The outcome of the flight for `key`: the one running, or a new one made by `start`.
    pub fn join<F>(&self, key: &str, start: impl FnOnce() -> F) -> impl Future<Output = Outcome>
    where
        F: Future<Output = Outcome> + Send + 'static,
    {
        let mut running = lock(&self.running);
        if let Some((_, flight)) = running.get(key) {
            return flight.clone();
        }
        let number = self.started.fetch_add(1, Ordering::Relaxed);
        let (map, owned_key, work) = (self.running.clone(), key.to_owned(), start());
        // The map is locked until this flight is in it, so the task cannot remove it first.
        let task = tokio::spawn(async move {
            let outcome = work.await;
            let mut running = lock(&map);
            if running.get(&owned_key).is_some_and(|(n, _)| *n == number) {
                running.remove(&owned_key);
            }
            outcome
        });
        let flight = async move {
            task.await.unwrap_or_else(|e| {
                Err(AcquireError::Storage(format!(
                    "the token refresh stopped unexpectedly: {e}"
                )))
            })
        }
        .boxed()
        .shared();
        running.insert(key.to_owned(), (number, flight.clone()));
        flight
    }

    /// Flights running now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        lock(&self.running).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    fn token(n: usize) -> AccessToken {
        AccessToken {
            secret: Secret::new(format!("at-{n}")),
            expires_on: 0,
        }
    }

    #[tokio::test]
    async fn concurrent_callers_share_one_run_and_its_outcome() {
        let flights = Flights::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let joins: Vec<_> = (0..20)
            .map(|_| {
                let runs = runs.clone();
                flights.join("ada", move || async move {
                    let n = runs.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Err(AcquireError::Transient {
                        reason: format!("run {n} failed"),
                        retry_after: None,
                    })
                })
            })
            .collect();
        let outcomes = futures_util::future::join_all(joins).await;
        assert_eq!(runs.load(Ordering::SeqCst), 1, "one run for twenty callers");
        for outcome in outcomes {
            assert!(
                matches!(outcome, Err(AcquireError::Transient { ref reason, .. }) if reason == "run 0 failed"),
                "{outcome:?}"
            );
        }
        assert_eq!(flights.len(), 0, "finished flights are gone");
    }

    #[tokio::test]
    async fn a_caller_that_goes_away_cancels_nothing() {
        let flights = Flights::default();
        let runs = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let start = |runs: Arc<AtomicUsize>, finished: Arc<AtomicUsize>| {
            move || async move {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
                finished.fetch_add(1, Ordering::SeqCst);
                Ok(token(n))
            }
        };
        let first = flights.join("ada", start(runs.clone(), finished.clone()));
        // The first caller gives up long before the work is done.
        assert!(tokio::time::timeout(Duration::from_millis(20), first)
            .await
            .is_err());
        // A second caller joins the same run instead of starting another.
        let second = flights
            .join("ada", start(runs.clone(), finished.clone()))
            .await;
        assert_eq!(second.unwrap().secret.expose(), "at-0");
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(finished.load(Ordering::SeqCst), 1);
        // Once it is over, a new caller starts a new run.
        let third = flights.join("ada", start(runs.clone(), finished)).await;
        assert_eq!(third.unwrap().secret.expose(), "at-1");
    }

    #[tokio::test]
    async fn different_users_fly_separately() {
        let flights = Flights::default();
        let a = flights.join("ada", || async { Ok(token(1)) });
        let b = flights.join("grace", || async { Ok(token(2)) });
        assert_eq!(a.await.unwrap().secret.expose(), "at-1");
        assert_eq!(b.await.unwrap().secret.expose(), "at-2");
    }
}
