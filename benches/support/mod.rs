//! What the benchmarks share: the development provider as its own (release) process, as a
//! user runs it, and the figures they print.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The development provider's own client (its default settings).
pub use tokenbridge::settings::{
    DEFAULT_CLIENT_ID as CLIENT_ID, DEFAULT_CLIENT_SECRET as CLIENT_SECRET,
};

/// The cache keys the benchmarks seal with (`cache.keys`).
pub const CACHE_KEYS: &str = "k1=MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";

/// `tokenbridge dev-idp` on a free loopback port; killed when dropped.
pub struct DevIdpProcess {
    child: Child,
    /// `http://127.0.0.1:<port>`
    pub base: String,
    pub tenant: String,
    http: reqwest::Client,
    _settings: tempfile::NamedTempFile,
}

impl DevIdpProcess {
    /// The settings (as `TOKENBRIDGE_` variables) that point `serve` or `worker` at this
    /// provider and its API as the development client, with [`CACHE_KEYS`].
    pub fn client_env(&self) -> [(&'static str, String); 6] {
        [
            ("TOKENBRIDGE_IDENTITY__INSTANCE", self.base.clone()),
            ("TOKENBRIDGE_IDENTITY__TENANT_ID", self.tenant.clone()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_ID", CLIENT_ID.into()),
            ("TOKENBRIDGE_IDENTITY__CLIENT_SECRET", CLIENT_SECRET.into()),
            ("TOKENBRIDGE_API__BASE_URL", format!("{}/v1.0", self.base)),
            ("TOKENBRIDGE_CACHE__KEYS", CACHE_KEYS.into()),
        ]
    }

    /// CPU time the provider has used so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid().to_string()).unwrap_or(0.0)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the provider with a settings file holding `settings` (e.g. `[[dev_idp.clients]]`
    /// with the app's redirect URI) and waits for its banner.
    pub fn start(settings: &str) -> Self {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), settings).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tokenbridge"))
            .arg("--config")
            .arg(file.path())
            .args(["dev-idp", "--listen", "127.0.0.1:0"])
            .env_clear()
            .env("TOKENBRIDGE_LOG__LEVEL", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("tokenbridge dev-idp starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut base, mut tenant) = (None, None);
        while base.is_none() || tenant.is_none() {
            let line = lines.next().expect("the dev-idp banner").unwrap();
            let line = line.trim();
            if let Some(url) = line.strip_prefix("listening") {
                base = Some(url.trim().to_owned());
            }
            if let Some(issuer) = line.strip_prefix("issuer") {
                let path = issuer.trim().split('/').nth(3).unwrap_or_default();
                tenant = Some(path.to_owned());
            }
        }
        // Keep reading so the provider never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            base: base.unwrap(),
            tenant: tenant.unwrap(),
            http: reqwest::Client::new(),
            _settings: file,
        }
    }

    /// `PATCH /admin/behaviour`.
    pub async fn behave(&self, patch: serde_json::Value) {
        let response = self
            .http
            .patch(format!("{}/admin/behaviour", self.base))
            .json(&patch)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// The token endpoint.
    pub fn token_url(&self) -> String {
        format!("{}/{}/oauth2/v2.0/token", self.base, self.tenant)
    }

    /// `count` users `{prefix}0000000`..., each with a refresh token: (username, oid, token).
    pub async fn mint(&self, prefix: &str, count: u64) -> Vec<(String, String, String)> {
        let response = json_answer(
            self.http
                .post(format!("{}/admin/refresh-tokens", self.base))
                .json(&serde_json::json!({
                    "client_id": CLIENT_ID, "prefix": prefix, "count": count
                })),
        )
        .await;
        response["users"]
            .as_array()
            .unwrap()
            .iter()
            .map(|u| {
                let field = |name: &str| u[name].as_str().unwrap().to_owned();
                (field("username"), field("oid"), field("refresh_token"))
            })
            .collect()
    }
}

impl Drop for DevIdpProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redeems `refresh_token` at `token_url` as the development client, with `http` (the
/// caller's, for its keep-alive connections); returns the access token.
pub async fn refresh(
    http: &reqwest::Client,
    token_url: &str,
    refresh_token: &str,
    scope: &str,
) -> String {
    let answer = json_answer(
        http.post(token_url)
            .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
                ("scope", scope),
            ]),
    )
    .await;
    answer["access_token"].as_str().unwrap().to_owned()
}

/// Sends `request` and returns its JSON answer; any other answer stops the benchmark.
async fn json_answer(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Latencies, sorted once, read by percentile.
pub struct Latencies(Vec<Duration>);

impl Latencies {
    pub fn new(mut all: Vec<Duration>) -> Self {
        all.sort_unstable();
        Self(all)
    }

    pub fn percentile(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let at = ((self.0.len() as f64 * p).ceil() as usize).clamp(1, self.0.len()) - 1;
        self.0[at]
    }

    pub fn ms(&self, p: f64) -> f64 {
        self.percentile(p).as_secs_f64() * 1e3
    }
}

/// Peak resident memory (VmHWM) of a running process, in KiB.
pub fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) a process has used so far, in seconds; `None` once it is gone.
/// `pid` may be `"self"`.
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces: utime and
    // stime are fields 14 and 15 of the line, in USER_HZ (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// CPU time of process `pid` and of the children it has waited for (cutime and cstime,
/// fields 16 and 17): what a worker's `--exec` jobs cost besides the worker.
pub fn cpu_seconds_with_children(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields[11..15]
        .iter()
        .map(|f| f.parse::<u64>().ok())
        .sum::<Option<u64>>()?;
    Some(ticks as f64 / 100.0)
}

/// A comma-separated list of numbers from the environment, or `default`.
pub fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}
