//! Silent acquisition against the development provider on every backend. Each acquirer has its
//! own pool, owner and clock, as separate processes do; several share one database.

pub mod apis;
mod basics;
mod faults;
mod keys;
mod logout_token;
mod on_behalf_of;
mod races;

use crate::dev_idp::{location_params, spawn_idp_with, TestIdp};
use crate::serve::app_settings;
use crate::support::{self, TestDb};
use diesel::prelude::*;
use std::sync::Arc;
use std::time::Duration;
use tokenbridge::cache::document::CacheDocument;
use tokenbridge::cache::seal::Sealer;
use tokenbridge::cache::store::TokenCacheStore;
use tokenbridge::clock::ManualClock;
use tokenbridge::db::schema::token_cache::dsl as tc;
use tokenbridge::db::DbConnection;
use tokenbridge::db::{Backend, Database};
use tokenbridge::identity::acquire::{AccessToken, AcquirerOptions, Caller, TokenAcquirer};
use tokenbridge::identity::AcquireError;
use tokenbridge::settings::{DevIdpSettings, Settings};

pub struct Rig {
    pub db: TestDb,
    pub idp: TestIdp,
    pub settings: Settings,
    /// The clock of the first acquirer; others may be given their own.
    pub clock: ManualClock,
}

impl Rig {
    /// A fresh database and provider; None when the backend is not configured (reported).
    pub async fn new(
        test: &str,
        backend: Backend,
        change_idp: impl FnOnce(&mut DevIdpSettings),
    ) -> Option<Self> {
        let Some(db) = support::migrated(backend) else {
            support::skipped(test, backend);
            return None;
        };
        let idp = spawn_idp_with(change_idp).await;
        let mut settings = app_settings(&db, &idp, "http://127.0.0.1:8080");
        settings.database.busy_timeout = Duration::from_secs(1);
        Some(Self {
            db,
            idp,
            settings,
            clock: ManualClock::new(time::OffsetDateTime::now_utc()),
        })
    }

    /// An independent acquirer (own pool, own owner) on the rig's database.
    pub fn acquirer(&self, clock: &ManualClock) -> TokenAcquirer {
        self.acquirer_with(clock, |_| {})
    }

    pub fn acquirer_with(
        &self,
        clock: &ManualClock,
        change: impl FnOnce(&mut Settings),
    ) -> TokenAcquirer {
        self.acquirer_tuned(clock, change, |_| {})
    }

    /// An acquirer with the rig's settings changed by `change` and its options by `tune`.
    pub fn acquirer_tuned(
        &self,
        clock: &ManualClock,
        change: impl FnOnce(&mut Settings),
        tune: impl FnOnce(&mut AcquirerOptions),
    ) -> TokenAcquirer {
        let mut settings = self.settings.clone();
        change(&mut settings);
        let db = Database::connect(&settings.database).unwrap();
        let mut options = AcquirerOptions::from_settings(
            &settings.identity,
            &settings.cache,
            tokenbridge::process::owner_id(),
        );
        tune(&mut options);
        TokenAcquirer::from_settings(db, &settings, Arc::new(clock.clone()), options).unwrap()
    }

    /// Signs `user` in at the provider through `acquirer`; returns the home account id.
    pub async fn sign_in(&self, acquirer: &TokenAcquirer, user: &str) -> String {
        self.try_sign_in(acquirer, user).await.unwrap()
    }

    pub async fn try_sign_in(
        &self,
        acquirer: &TokenAcquirer,
        user: &str,
    ) -> Result<String, AcquireError> {
        let (url, state) = acquirer.provider().begin_sign_in(None).await.unwrap();
        let mut form: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        form.push(("username".into(), user.into()));
        let response = self
            .idp
            .browser
            .post(self.idp.endpoint("authorize"))
            .form(&form)
            .send()
            .await
            .unwrap();
        let (_, query) = location_params(&response);
        acquirer
            .sign_in(&query["code"], &state, self.settings.web.session_absolute)
            .await
            .map(|s| s.home_account_id)
    }

    /// The row's raw value and version.
    pub fn row(&self, id: &str) -> (Vec<u8>, i64) {
        tc::token_cache
            .filter(tc::id.eq(id))
            .select((tc::value, tc::version))
            .get_result(&mut *self.db.conn())
            .unwrap()
    }

    /// The row's document, opened with the rig's keys.
    pub fn document(&self, id: &str) -> CacheDocument {
        let conn = &mut self.db.conn();
        store(&self.settings, conn)
            .load(conn, id, time::OffsetDateTime::now_utc())
            .unwrap()
            .unwrap()
            .document
    }

    /// The refresh token stored for `id`.
    pub fn refresh_token(&self, id: &str) -> String {
        let document = self.document(id);
        let (_, rt) = document.refresh_tokens().next().expect("a refresh token");
        rt.secret.expose().to_owned()
    }

    /// Who holds the row's refresh lease, if anyone.
    pub fn lease(&self, id: &str) -> Option<String> {
        let conn = &mut self.db.conn();
        store(&self.settings, conn)
            .lease(conn, id)
            .unwrap()
            .map(|(owner, _)| owner)
    }

    pub async fn counter(&self, name: &str) -> u64 {
        self.idp.counters().await[name].as_u64().unwrap()
    }

    /// Waits until the provider has processed `n` refresh grants.
    pub async fn until_refreshes(&self, n: u64) {
        for _ in 0..500 {
            if self.counter("refreshes").await >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the provider never saw refresh {n}");
    }
}

/// A store with the settings' keys, as another program on the database has: its keys compared
/// with the database's check values (written there if it is the first).
pub fn store(settings: &Settings, conn: &mut DbConnection) -> TokenCacheStore {
    let store = TokenCacheStore::new(
        Sealer::new(settings.cache.keys.clone(), settings.cache.read_plaintext),
        settings.cache.sliding_expiration,
    );
    store
        .verify_keys(conn, time::OffsetDateTime::now_utc())
        .expect("the settings' keys match the database's check values");
    store
}

pub async fn acquire(acquirer: &TokenAcquirer, id: &str) -> Result<AccessToken, AcquireError> {
    let scopes = acquirer.provider().first_token_scopes();
    acquirer.acquire_silent(id, &scopes, Caller::Web).await
}
