//! The work that runs beside (or without) the web server: job workers, the
//! throughput sampler behind the ETA, closing verified batches and the
//! progressive schedule.

use std::time::Duration;

use tern_control::Store;
use tern_control::runners::{self, RunnerContext};
use tern_control::worker::{Worker, WorkerTiming};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// How often rows moved are sampled for the pace and the ETA.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// How long samples are kept.
const KEEP_SAMPLES_MS: i64 = 7 * 24 * 3600 * 1000;

/// Worker timing from the settings.
pub fn timing(settings: &Settings) -> WorkerTiming {
    let lease = Duration::from_secs(u64::from(settings.lease_seconds));
    WorkerTiming {
        lease,
        heartbeat: (lease / 10).clamp(Duration::from_millis(500), Duration::from_secs(5)),
        idle_poll: Duration::from_millis(500),
    }
}

/// A process-unique worker name: host, process id, index.
fn worker_name(i: u32) -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{host}:{}:{i}", std::process::id())
}

/// Relays one process runs at once, beside its workers: a migration that
/// switches runs two (forward and reverse), so eight is four migrations
/// switching at once. A relay beyond them waits queued until one stops (with
/// four, a second migration's reverse relay never started while the demo
/// and two other migrations relayed: found by the browser suite).
const RELAY_WORKERS: u32 = 8;

/// Starts `count` workers (plus workers kept for relays) and the sampler; they stop when `shutdown` fires
/// (a running job stops at its next checkpoint and goes back to the queue).
pub fn start(
    store: &Store,
    settings: &Settings,
    ctx: &RunnerContext,
    count: u32,
    shutdown: &CancellationToken,
) -> JoinSet<()> {
    let mut set = JoinSet::new();
    // General workers take work that ends; relays (which run until they are
    // stopped, one per migration) get workers of their own, so they never
    // starve bulk loads, catch-ups and verifications.
    let finite = runners::finite(ctx);
    let relays = runners::relays(ctx);
    for i in 0..count {
        let worker = Worker::new(worker_name(i), store.clone(), &finite, timing(settings));
        set.spawn(worker.run(shutdown.clone()));
    }
    let relay_workers = if count == 0 { 0 } else { RELAY_WORKERS };
    for i in 0..relay_workers {
        let worker = Worker::new(
            worker_name(count + i),
            store.clone(),
            &relays,
            timing(settings),
        );
        set.spawn(worker.run(shutdown.clone()));
    }
    let store = store.clone();
    let stop = shutdown.clone();
    set.spawn(async move {
        let mut tick = tokio::time::interval(SAMPLE_EVERY);
        let mut pruned_at = std::time::Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = store.sample_throughput().await {
                tracing::warn!(error = %e, "cannot sample throughput");
            }
            match store.close_finished_batches().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(batches = n, "batches verified and closed"),
                Err(e) => tracing::warn!(error = %e, "cannot close finished batches"),
            }
            match store.run_schedule().await {
                Ok(started) if !started.is_empty() => {
                    tracing::info!(?started, "schedule started batches")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot run the progressive schedule"),
            }
            match store
                .run_drift_watch(tern_control::switch::DRIFT_EVERY)
                .await
            {
                Ok(queued) if !queued.is_empty() => {
                    tracing::info!(
                        ?queued,
                        "drift watch queued re-verifications of switched buckets"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot run the drift watch"),
            }
            if pruned_at.elapsed() > Duration::from_secs(3600) {
                pruned_at = std::time::Instant::now();
                if let Err(e) = store.prune_throughput(KEEP_SAMPLES_MS).await {
                    tracing::warn!(error = %e, "cannot prune throughput samples");
                }
            }
        }
    });
    set
}
