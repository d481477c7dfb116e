//! Races between processes, played by threads with their own pooled connections. (The
//! compare-and-swap race between two stores runs on every store in `cache_backends`.)

use crate::backend_tests;
use crate::fixtures::activity;
use crate::support::{TestDb, T0};
use diesel::Connection;
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use time::Duration;
use tokenbridge::activity::store::{self as activities, DueFilter};

backend_tests!(with_migrated:
    eight_workers_claim_a_thousand_accounts_exactly_once,
);

fn eight_workers_claim_a_thousand_accounts_exactly_once(db: &TestDb) {
    let total = 1000;
    db.conn()
        .transaction::<_, diesel::result::Error, _>(|c| {
            for i in 0..total {
                let key = format!("account-{i:04}");
                activities::upsert(c, &activity(&key, "u@contoso.com"), T0)?;
            }
            Ok(())
        })
        .unwrap();
    let now = T0 + Duration::hours(1);
    let filter = DueFilter::idle_since(now - Duration::minutes(5), now, false);
    let barrier = Arc::new(Barrier::new(8));
    let claims: Vec<Vec<String>> = (0..8)
        .map(|w| {
            let (barrier, database) = (barrier.clone(), db.db.clone());
            std::thread::spawn(move || {
                let owner = format!("worker-{w}");
                let mut mine = Vec::new();
                let mut conn = database.get().unwrap();
                barrier.wait();
                // Broken claims (the same rows handed out again) must fail this test, not
                // loop for ever: a deadline, and never more rows than there are.
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                loop {
                    assert!(
                        std::time::Instant::now() < deadline && mine.len() <= total,
                        "{owner} is still claiming after {} rows",
                        mine.len()
                    );
                    let page = activities::claim_due(
                        &mut conn,
                        filter,
                        None,
                        25,
                        &owner,
                        now + Duration::minutes(5),
                    )
                    .unwrap();
                    if page.is_empty() {
                        return mine;
                    }
                    assert!(page
                        .iter()
                        .all(|a| a.lease_owner.as_deref() == Some(owner.as_str())));
                    mine.extend(page.into_iter().map(|a| a.account_cache_key));
                }
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().unwrap())
        .collect();
    let claimed: usize = claims.iter().map(Vec::len).sum();
    let unique: HashSet<&String> = claims.iter().flatten().collect();
    assert_eq!(
        claimed,
        total,
        "every account claimed once: {:?}",
        claims.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(unique.len(), total);
}
