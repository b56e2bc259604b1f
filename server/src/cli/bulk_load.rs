//! `tern bulk-load --spec S [--bucket N] [--rate R]`: copies buckets with a
//! progress bar and prints a summary. Resumes from the target's checkpoints;
//! Ctrl-C stops between chunks (run again to resume). `--parallel` buckets
//! are copied at once (default 2), each with its own reader and writer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tern_engine::{Link, LoadStatus, RateThrottle, RunControl, load_bucket};

#[derive(clap::Args, Debug)]
pub struct BulkLoadArgs {
    #[command(flatten)]
    pub target: super::SpecTables,
    /// Only this bucket (default: all buckets, in order).
    #[arg(long)]
    pub bucket: Option<usize>,
    /// Rows per second at most (default: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Number of buckets when no plan is stored yet (default: the spec's).
    #[arg(long)]
    pub buckets: Option<usize>,
    /// Forget the stored plan and checkpoints and start over.
    #[arg(long)]
    pub replan: bool,
    /// Buckets copied at the same time, each on its own connections.
    #[arg(long, default_value_t = 2)]
    pub parallel: usize,
}

pub async fn run(args: BulkLoadArgs) -> anyhow::Result<()> {
    let link = Link::connect(args.target.load()?, &crate::transformers()).await?;
    let tables = args.target.tables(&link);
    let throttle = RateThrottle::new(args.rate);
    let load = super::load_guard(&link);
    let cancel = super::stop_on_ctrl_c("stopping after the current chunk; run again to resume");

    let started = Instant::now();
    let mut rows = 0u64;
    let mut written = 0u64;
    for table in &tables {
        if args.replan {
            link.forget(table).await?;
        }
        let plan = link
            .plan_or_resume(table, args.buckets)
            .await
            .with_context(|| format!("planning {table}"))?;
        print!("{}", super::plan::render(&plan));
        let buckets: Vec<_> = match args.bucket {
            Some(n) => vec![plan.buckets.get(n).cloned().with_context(|| {
                format!("{table} has buckets 0..{}, not {n}", plan.buckets.len())
            })?],
            None => plan.buckets.clone(),
        };
        let checkpoints = link.checkpoints(table).await?;
        let already: u64 = checkpoints
            .iter()
            .filter(|c| buckets.iter().any(|b| b.index == c.bucket))
            .map(|c| c.rows_written)
            .sum();
        let planned: u64 = buckets.iter().map(|b| b.rows).sum();
        let bar = ProgressBar::new(planned.max(already));
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(table.clone());
        bar.set_position(already);
        bar.enable_steady_tick(Duration::from_millis(250));
        let loads = buckets.iter().map(|b| {
            let seen = Arc::new(AtomicU64::new(0));
            let progress = {
                let bar = bar.clone();
                move |p: &tern_engine::Progress| {
                    // The table's last bucket builds the indexes its load
                    // deferred: a step of its own, shown on the bar's line.
                    if let tern_engine::Task::IndexBuild { table } = &p.task {
                        bar.set_message(format!(
                            "{table}: {} ({} of {} indexes)",
                            p.note.as_deref().unwrap_or("building indexes"),
                            p.done,
                            p.total.unwrap_or(p.done)
                        ));
                        return;
                    }
                    let before = seen.swap(p.done_this_run, Ordering::Relaxed);
                    bar.inc(p.done_this_run.saturating_sub(before));
                }
            };
            let control = RunControl::new()
                .with_throttle(Arc::new(throttle.clone()))
                .with_cancel(cancel.clone())
                .on_progress(progress)
                .guarded(load.as_ref());
            let link = &link;
            let cancel = cancel.clone();
            async move {
                let result = load_bucket(link, b, &control)
                    .await
                    .with_context(|| format!("loading {table} bucket {}", b.index));
                if result.is_err() {
                    // Stop the other buckets between chunks; what they
                    // committed stays, with its checkpoints.
                    cancel.cancel();
                }
                result
            }
        });
        let mut results = futures::stream::iter(loads).buffer_unordered(args.parallel.max(1));
        let mut cancelled = false;
        let mut first_error = None;
        while let Some(result) = results.next().await {
            match result {
                Ok(report) => {
                    rows += report.rows_read;
                    written += report.rows_written;
                    cancelled |= report.status == LoadStatus::Cancelled;
                    tracing::info!(table = %table, bucket = report.bucket, rows = report.rows_read, status = ?report.status, "bucket finished");
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        drop(results);
        if let Some(e) = first_error {
            bar.abandon_with_message(format!("{table}: failed"));
            return Err(e);
        }
        if cancelled {
            bar.abandon_with_message(format!("{table}: cancelled"));
            print_summary(rows, written, started.elapsed(), "cancelled");
            return Ok(());
        }
        bar.finish_with_message(format!("{table}: done"));
    }
    print_summary(rows, written, started.elapsed(), "done");
    Ok(())
}

fn print_summary(rows: u64, written: u64, elapsed: Duration, status: &str) {
    let secs = elapsed.as_secs_f64();
    let rate = if secs > 0.0 { rows as f64 / secs } else { 0.0 };
    println!(
        "bulk-load {status}: rows={rows} target_rows={written} seconds={secs:.3} rows_per_s={rate:.0}"
    );
}
