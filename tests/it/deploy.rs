//! The deployment files in `deploy/`: the systemd units pass `systemd-analyze verify` (where the
//! machine has it), and every metric the Prometheus rules and the Grafana dashboard query is one
//! `/metrics` exposes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn deploy(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("deploy")
        .join(path)
}

/// The `tokenbridge_…` metric names in `text`.
fn metrics_in(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("tokenbridge_") {
        let name: String = rest[at..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[at + name.len()..];
        found.insert(name);
    }
    found
}

/// Every sample name `/metrics` can show: `_total` for counters, `_bucket`, `_sum` and
/// `_count` for histograms, the name for gauges.
fn exposed() -> BTreeSet<String> {
    // A labelled family shows once it has a sample: one each, with labels no other test
    // counts on.
    let metrics = tokenbridge::metrics::metrics();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    metrics.request("unmatched", "GET", 404, std::time::Duration::from_millis(1));
    metrics.acquisition(tokenbridge::metrics::Acquisition::CacheHit);
    metrics.worker_account("ok");
    metrics.worker_pass(false, now);
    metrics.logout("backchannel", "no_account");
    metrics.oversized_answer("api");
    let text = metrics.encode(tokenbridge::metrics::PoolState { open: 0, idle: 0 });
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => {
                    names.insert(format!("{name}_total"));
                }
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                }
                _ => {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn every_metric_the_alerts_and_the_dashboard_query_is_exposed() {
    let exposed = exposed();
    assert!(
        exposed.contains("tokenbridge_http_requests_total"),
        "{exposed:?}"
    );
    let rules = std::fs::read_to_string(deploy("prometheus/tokenbridge.rules.yml")).unwrap();
    let expressions: String = rules
        .lines()
        .skip_while(|l| !l.contains("groups:"))
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let alerts = rules.matches("- alert: ").count();
    assert!(
        alerts >= 5,
        "readyz, acquisitions, pool, worker passes, worker not run"
    );
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(deploy("grafana/tokenbridge.json")).unwrap())
            .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(!panels.is_empty());
    let queries: String = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap())
        .map(|t| t["expr"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n");
    for (file, text) in [("rules", &expressions), ("dashboard", &queries)] {
        let used = metrics_in(text);
        assert!(!used.is_empty(), "{file} queries nothing");
        let unknown: Vec<&String> = used.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} queries metrics /metrics does not expose: {unknown:?}"
        );
    }
}

#[test]
fn the_systemd_units_verify() {
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if !analyze.exists() {
        eprintln!("deploy: systemd-analyze is not on this machine; units not verified");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut units = Vec::new();
    for name in [
        "tokenbridge.service",
        "tokenbridge-worker.service",
        "tokenbridge-worker.timer",
    ] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{name}"))).unwrap();
        assert!(text.contains("/usr/local/bin/tokenbridge") || name.ends_with(".timer"));
        // The binary the units name must exist for verify: this build's.
        let text = text.replace(
            "/usr/local/bin/tokenbridge",
            env!("CARGO_BIN_EXE_tokenbridge"),
        );
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    let out = std::process::Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&units)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
