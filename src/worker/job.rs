//! The worker's job for each account: the calls it makes (`--call NAME:METHOD:/path`, or
//! `[worker] calls`; by default `GET {api.path}` on the default API), each on a named API with
//! that API's own access token; or a command it runs (`--exec`) with the tokens of the APIs
//! it names (`--api`).

use super::command::Command;
use super::PassError;
use crate::api::ApiClient;
use crate::settings::{CallSpec, Settings, WorkerSettings, DEFAULT_API};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A named API as the worker uses it: its client and the scopes of its token.
pub(super) struct Api {
    pub client: ApiClient,
    pub scopes: Vec<String>,
    pub timeout: Duration,
}

impl Api {
    pub fn scopes(&self) -> Vec<&str> {
        self.scopes.iter().map(String::as_str).collect()
    }

    pub fn name(&self) -> &str {
        self.client.name()
    }
}

/// One call of the job.
pub(super) struct Call {
    pub spec: CallSpec,
    pub api: Arc<Api>,
}

/// What the worker does for each account.
pub(super) enum Job {
    Calls(Vec<Call>),
    Exec(Exec),
}

/// A command run for each account, and the APIs whose tokens it gets.
pub(super) struct Exec {
    pub command: Command,
    pub apis: Vec<Arc<Api>>,
}

/// The job `options` describe: `exec`, else `calls`.
pub(super) fn job(settings: &Settings, options: &WorkerSettings) -> Result<Job, PassError> {
    let Some(argv) = &options.exec else {
        return Ok(Job::Calls(calls(settings, &options.calls)?));
    };
    let apis = options
        .exec_apis
        .iter()
        .map(|name| api(settings, name))
        .collect::<Result<_, _>>()?;
    Ok(Job::Exec(Exec {
        command: Command::new(argv.clone(), options.exec_timeout, options.exec_grace),
        apis,
    }))
}

impl Job {
    /// The longest one try of the job may take: for each call, a redemption (and a metadata
    /// fetch) and the call, and when the API refuses the token as invalid one more
    /// redemption and call; for a command, a redemption per API, twice, and two runs.
    pub fn one_try(&self, http_timeout: Duration) -> Duration {
        match self {
            Job::Calls(calls) => calls
                .iter()
                .map(|call| http_timeout * 3 + call.api.timeout * 2)
                .sum(),
            Job::Exec(exec) => {
                let redemptions = http_timeout * 3 * 2 * exec.apis.len() as u32;
                redemptions + (exec.command.timeout + exec.command.grace) * 2
            }
        }
    }
}

/// The job's calls from `specs` (none: the default call), each with its API's client; an API
/// name that no section configures is a configuration error.
pub(super) fn calls(settings: &Settings, specs: &[CallSpec]) -> Result<Vec<Call>, PassError> {
    let default = [CallSpec {
        api: DEFAULT_API.to_owned(),
        method: reqwest::Method::GET,
        path: settings.api.path.clone(),
    }];
    let specs = if specs.is_empty() {
        &default[..]
    } else {
        specs
    };
    let mut apis: BTreeMap<&str, Arc<Api>> = BTreeMap::new();
    let mut calls = Vec::new();
    for spec in specs {
        let api = match apis.get(spec.api.as_str()) {
            Some(api) => api.clone(),
            None => {
                let api = api(settings, &spec.api)?;
                apis.insert(&spec.api, api.clone());
                api
            }
        };
        calls.push(Call {
            spec: spec.clone(),
            api,
        });
    }
    Ok(calls)
}

/// The API called `name`, ready to call.
pub(super) fn api(settings: &Settings, name: &str) -> Result<Arc<Api>, PassError> {
    let Some(found) = settings.api_named(name) else {
        let known: Vec<&str> = settings.apis().map(|a| a.name.as_str()).collect();
        return Err(PassError::Configuration(format!(
            "the worker's job names the API {name}, which is not configured ({}; [api] is \
             the API named default, [apis.NAME] the others)",
            known.join(", ")
        )));
    };
    let client = ApiClient::new(found).map_err(|e| PassError::Configuration(e.to_string()))?;
    Ok(Arc::new(Api {
        client,
        scopes: settings.scopes_of(found),
        timeout: found.timeout,
    }))
}
