//! What the development provider counts and the faults it is told to inject: the admin API's
//! side of its state.

use super::State;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A fault injected into the next token requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    #[serde(rename = "500")]
    Status500,
    #[serde(rename = "503")]
    Status503,
    #[serde(rename = "429")]
    Status429,
    Hang,
    Drop,
    InvalidGrant,
    InteractionRequired,
    /// `invalid_client` (401), as for a wrong client secret.
    InvalidClient,
    /// Process the request, then drop the connection before the answer is sent.
    LoseAnswer,
    /// Process the request at once, send the answer only after a delay (by default longer
    /// than any client waits): the provider has acted, the client may have given up.
    LateAnswer,
    /// Answer normally, but with an ID token for another audience (clients must refuse it).
    WrongAudience,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub retry_after: u32,
    /// `late_answer`: how long the answer is held, in milliseconds.
    pub delay_ms: Option<u64>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UserCounters {
    pub codes_redeemed: u64,
    pub refreshes: u64,
    pub rotations: u64,
    pub reuse_detections: u64,
    pub api_calls: u64,
    pub tasks_api_calls: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    pub token_requests: u64,
    /// Requests for the signing keys (JWKS).
    pub key_set_requests: u64,
    pub codes_redeemed: u64,
    pub refreshes: u64,
    /// On-behalf-of exchanges granted (Entra ID's grant and RFC 8693 alike).
    pub on_behalf_of: u64,
    /// Of those, the RFC 8693 token exchanges.
    pub token_exchanges: u64,
    pub rotations: u64,
    pub reuse_detections: u64,
    pub api_calls: u64,
    /// Calls to the second API (`/tasks/v1.0/...`), and tasks it was asked to add.
    pub tasks_api_calls: u64,
    pub tasks_added: u64,
    /// Back-Channel Logout tokens clients accepted (2xx), and those they did not.
    pub backchannel_logouts_sent: u64,
    pub backchannel_logout_failures: u64,
    pub faults_injected: u64,
    /// Client assertions accepted (`private_key_jwt`), by the SHA-256 thumbprint of the
    /// registered certificate whose key signed them (`public key` for a bare key).
    pub client_assertions: BTreeMap<String, u64>,
    pub users: BTreeMap<String, UserCounters>,
}

impl Counters {
    pub(super) fn user(&mut self, username: &str) -> &mut UserCounters {
        self.users.entry(username.to_owned()).or_default()
    }
}

impl State {
    /// Remembers client assertion `jti` of `client` until `exp`: true the first time, false
    /// for a replay. Those past their `exp` are forgotten on the way.
    /// The first time, counts it as signed by the key `thumbprint` names.
    pub fn first_assertion(
        &mut self,
        client: &str,
        jti: &str,
        exp: i64,
        now: i64,
        thumbprint: &str,
    ) -> bool {
        self.assertion_jtis.retain(|_, until| *until >= now);
        let first = self
            .assertion_jtis
            .insert((client.to_owned(), jti.to_owned()), exp)
            .is_none();
        if first {
            *self
                .counters
                .client_assertions
                .entry(thumbprint.to_owned())
                .or_default() += 1;
        }
        first
    }

    pub fn add_fault(&mut self, fault: Fault, count: u32) {
        if count > 0 {
            self.faults.push_back((fault, count));
        }
    }

    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// The fault for this token request, if any are queued.
    pub fn next_fault(&mut self) -> Option<Fault> {
        let (fault, remaining) = self.faults.front_mut()?;
        let fault = *fault;
        *remaining -= 1;
        if *remaining == 0 {
            self.faults.pop_front();
        }
        self.counters.faults_injected += 1;
        Some(fault)
    }

    pub fn refuse_api_calls(&mut self, count: u32) {
        self.api_refusals = count;
    }

    /// Whether this API call is one to refuse (see `refuse_api_calls`).
    pub fn api_refusal(&mut self) -> bool {
        let refuse = self.api_refusals > 0;
        self.api_refusals = self.api_refusals.saturating_sub(1);
        refuse
    }

    /// A call to Graph's `/me`, or (`tasks`) to the second API.
    pub fn count_api_call(&mut self, username: &str, tasks: bool) {
        if tasks {
            self.counters.tasks_api_calls += 1;
            self.counters.user(username).tasks_api_calls += 1;
        } else {
            self.counters.api_calls += 1;
            self.counters.user(username).api_calls += 1;
        }
    }
}
