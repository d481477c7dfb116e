//! `tokenbridge worker`: settings and flags merged, one pass or `--every`, stopped by
//! SIGINT/SIGTERM. Exit status: 0 when the pass ran, 1 when the database failed, 2 on a
//! configuration error.

use crate::cli::WorkerArgs;
use crate::clock::SystemClock;
use crate::settings::{Settings, WorkerSettings};
use crate::worker::{PassError, Reporter, Worker};
use crate::Failure;
use std::io::IsTerminal;
use std::sync::Arc;
use tokio::sync::watch;

/// The `[worker]` settings with the command line's flags applied.
pub fn options(settings: &WorkerSettings, args: &WorkerArgs) -> WorkerSettings {
    let mut options = settings.clone();
    if let Some(older_than) = args.older_than {
        options.older_than = older_than;
    }
    if args.every.is_some() {
        options.every = args.every;
    }
    if let Some(min_interval) = args.min_interval {
        options.min_interval = min_interval;
    }
    if let Some(concurrency) = args.concurrency {
        options.concurrency = usize::from(concurrency);
    }
    if args.limit.is_some() {
        options.limit = args.limit;
    }
    if args.user.is_some() {
        options.user.clone_from(&args.user);
    }
    options.include_failed |= args.include_failed;
    options.dry_run |= args.dry_run;
    if let Some(format) = args.format {
        options.format = format;
    }
    if !args.calls.is_empty() {
        options.calls.clone_from(&args.calls);
        options.exec = None;
    }
    if let Some(command) = &args.exec {
        options.exec = Some(command.0.clone());
        options.calls.clear();
    }
    if !args.exec_apis.is_empty() {
        options.exec_apis.clone_from(&args.exec_apis);
    }
    if let Some(timeout) = args.exec_timeout {
        options.exec_timeout = timeout;
    }
    options
}

pub fn run(settings: &Settings, args: &WorkerArgs) -> anyhow::Result<()> {
    crate::warn_about_settings(settings);
    settings.identity.require_client().map_err(|e| {
        Failure::configuration(format!("cannot act for users: {e}{}", settings.file_hint()))
    })?;
    let options = options(&settings.worker, args);
    // Database work runs on blocking threads, one per pooled connection at a time: more would
    // only wait in the pool, each a parked thread with its own stack and allocator arena.
    let pool = settings.database.pool_size as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(pool + 4)
        .build()?;
    runtime.block_on(async move {
        let (stop, mut stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let worker = Arc::new(
            Worker::build(settings, options.clone(), Arc::new(SystemClock))
                .await
                .map_err(failure)?,
        );
        // A worker that keeps running serves its metrics, as serve does.
        let metrics = match (options.every, settings.worker.metrics_listen) {
            (Some(_), Some(address)) => {
                let listener = std::net::TcpListener::bind(address).map_err(|e| {
                    Failure::configuration(format!("cannot listen for metrics on {address}: {e}"))
                })?;
                let bound = listener.local_addr()?;
                let probed = worker.clone();
                let probe: crate::metrics::PoolProbe = Arc::new(move || probed.pool_state());
                let server = crate::metrics::serve(listener, probe)?;
                tracing::info!(address = %bound, "metrics: http://{bound}/metrics");
                let handle = server.handle();
                tokio::spawn(server);
                Some(handle)
            }
            _ => None,
        };
        // Not `stdout().lock()`: the progress bar draws to stdout from its own thread.
        let stdout = std::io::stdout();
        let progress = stdout.is_terminal();
        let mut reporter = Reporter::new(options.format, stdout, progress);
        let ran = worker.run(&mut reporter, &mut stopped).await;
        if let Some(metrics) = metrics {
            metrics.stop(true).await;
        }
        worker.settle(settings.database.connect_timeout);
        ran.map_err(failure)?;
        Ok(())
    })
}

fn failure(e: PassError) -> anyhow::Error {
    match e {
        PassError::Configuration(_) => Failure::configuration(e.to_string()).into(),
        PassError::Storage(_) => Failure::infrastructure(e.to_string()).into(),
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::ReportFormat;
    use std::time::Duration;

    #[test]
    fn flags_override_the_worker_settings() {
        let settings = Settings::from_sources(
            "[worker]\nolder_than = \"1h\"\nconcurrency = 4\nformat = \"json\"\n",
            "test",
            &std::collections::HashMap::new(),
        )
        .unwrap()
        .worker;
        let unchanged = options(&settings, &WorkerArgs::default());
        assert_eq!(format!("{unchanged:?}"), format!("{settings:?}"));
        let args = WorkerArgs {
            older_than: Some(Duration::from_secs(300)),
            every: Some(Duration::from_secs(60)),
            min_interval: Some(Duration::from_secs(3600)),
            concurrency: Some(32),
            limit: Some(5),
            user: Some("ada".into()),
            include_failed: true,
            dry_run: true,
            format: Some(ReportFormat::Text),
            calls: vec!["tasks:POST:/me/tasks".parse().unwrap()],
            exec: None,
            exec_apis: Vec::new(),
            exec_timeout: Some(Duration::from_secs(7)),
        };
        let merged = options(&settings, &args);
        assert_eq!(merged.older_than, Duration::from_secs(300));
        assert_eq!(merged.every, Some(Duration::from_secs(60)));
        assert_eq!(merged.min_interval, Duration::from_secs(3600));
        assert_eq!(merged.concurrency, 32);
        assert_eq!(merged.limit, Some(5));
        assert_eq!(merged.user.as_deref(), Some("ada"));
        assert!(merged.include_failed && merged.dry_run);
        assert_eq!(merged.format, ReportFormat::Text);
        assert_eq!(merged.calls[0].to_string(), "tasks:POST:/me/tasks");
        assert_eq!(merged.exec_timeout, Duration::from_secs(7));
        // --exec replaces the settings' calls, and --call the settings' command.
        let exec = WorkerArgs {
            exec: Some(crate::cli::CommandLine(vec!["job.sh".into()])),
            exec_apis: vec!["tasks".into()],
            ..WorkerArgs::default()
        };
        let merged = options(&merged, &exec);
        assert!(merged.calls.is_empty());
        assert_eq!(merged.exec_apis, ["tasks"]);
    }
}
