//! A process without the key a row was sealed with has a configuration problem; it must say so
//! and touch nothing, and so must one whose key under the right id has another value. Only a
//! row that fails to open under a key that matches the store's check value is corrupt.

use super::{acquire, Rig};
use crate::serve::e2e_tests;
use diesel::prelude::*;
use tokenbridge::cache::seal::SealKeys;
use tokenbridge::db::schema::token_cache::dsl as tc;
use tokenbridge::db::Backend;
use tokenbridge::identity::AcquireError;
use tokenbridge::secret::Secret;

e2e_tests!(
    a_missing_cache_key_is_a_configuration_error_and_overwrites_nothing,
    a_corrupt_row_is_treated_as_absent_and_replaced_at_sign_in,
);

const OTHER_KEY: &str = "k2=ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";

async fn a_missing_cache_key_is_a_configuration_error_and_overwrites_nothing(backend: Backend) {
    let Some(rig) = Rig::new("acquire::missing_key", backend, |_| {}).await else {
        return;
    };
    let sealing = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&sealing, "ada").await;
    let sealed_row = rig.row(&id);
    let plain = rig.acquirer_with(&rig.clock, |s| s.cache.keys = None);
    let plain_id = rig.sign_in(&plain, "grace").await;
    let plain_row = rig.row(&plain_id);
    let misconfigured = [
        (
            "another key",
            rig.acquirer_with(&rig.clock, |s| {
                s.cache.keys = Some(SealKeys::parse(&Secret::new(OTHER_KEY)).unwrap());
            }),
            &id,
        ),
        (
            "the same key id, another value",
            rig.acquirer_with(&rig.clock, |s| {
                s.cache.keys = Some(crate::fixtures::keys(&format!(
                    "k1={}",
                    crate::fixtures::OTHER_KEY
                )));
            }),
            &id,
        ),
        ("no keys", plain, &id),
        ("plain row refused", rig.acquirer(&rig.clock), &plain_id),
    ];
    for (what, acquirer, account) in misconfigured {
        let err = acquire(&acquirer, account).await.unwrap_err();
        assert!(matches!(err, AcquireError::CacheKeys(_)), "{what}: {err:?}");
        assert!(acquirer.key_problem().is_some(), "{what}: /readyz is told");
        let user = if account == &id { "ada" } else { "grace" };
        let err = rig.try_sign_in(&acquirer, user).await.unwrap_err();
        assert!(matches!(err, AcquireError::CacheKeys(_)), "{what}: {err:?}");
    }
    assert_eq!(rig.row(&id), sealed_row, "nothing was overwritten");
    assert_eq!(rig.row(&plain_id), plain_row, "nothing was overwritten");
    assert!(sealing.key_problem().is_none());
    assert!(acquire(&sealing, &id).await.is_ok());
}

async fn a_corrupt_row_is_treated_as_absent_and_replaced_at_sign_in(backend: Backend) {
    let Some(rig) = Rig::new("acquire::corrupt_row", backend, |_| {}).await else {
        return;
    };
    let acquirer = rig.acquirer(&rig.clock);
    let id = rig.sign_in(&acquirer, "ada").await;
    let (mut value, version) = rig.row(&id);
    let last = value.len() - 1;
    value[last] ^= 0x01;
    diesel::update(tc::token_cache.filter(tc::id.eq(&id)))
        .set(tc::value.eq(&value))
        .execute(&mut *rig.db.conn())
        .unwrap();
    let fresh = rig.acquirer(&rig.clock);
    let err = acquire(&fresh, &id).await.unwrap_err();
    assert!(err.is_interaction_required(), "{err:?}");
    assert!(fresh.key_problem().is_none(), "not a configuration problem");
    assert_eq!(rig.sign_in(&fresh, "ada").await, id);
    assert_eq!(rig.row(&id).1, version + 1, "the corrupt row was replaced");
    assert!(acquire(&fresh, &id).await.is_ok());
}
