//! `tern catch-up --spec S [--bucket N [--table T]]`: replays what bucket N
//! missed since its watermark until its lag is zero, printing progress and
//! lag. Without `--bucket`, every bucket of every table is caught up,
//! `--parallel` at a time, and the buckets that could not be are listed. With `--window-from/--window-to` it re-copies instead the bucket's rows
//! whose `--window-column` (default `updated_at`) falls in the window, for
//! sources without change capture.

use std::path::PathBuf;

use anyhow::Context;
use tern_engine::chunk::Window;
use tern_engine::{
    CatchUpOptions, CatchUpStatus, Link, Progress, RunControl, Value, catch_up_all,
    catch_up_bucket, catch_up_window,
};

#[derive(clap::Args, Debug)]
pub struct CatchUpArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// The bucket to catch up (index in the stored plan); default: every
    /// bucket of every table.
    #[arg(long)]
    pub bucket: Option<usize>,
    /// Without --bucket: how many buckets are caught up at once.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// The table of the bucket (default: the spec's only table with a source).
    #[arg(long)]
    pub table: Option<String>,
    /// Window catch-up: re-copy rows whose window column is at or after this (e.g. `2024-05-01 00:00:00`).
    #[arg(long, requires_all = ["window_to", "bucket"])]
    pub window_from: Option<String>,
    /// Window catch-up: … and before this.
    #[arg(long, requires = "window_from")]
    pub window_to: Option<String>,
    /// The column the window is taken on.
    #[arg(long, default_value = "updated_at")]
    pub window_column: String,
    /// Changes (or rows) per second at most (default: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
}

fn render(p: &Progress) -> String {
    let mut s = format!(
        "{}: {}={} keys={} rows={} deleted={} | {:.0}/s | {}",
        p.task,
        p.unit.as_str(),
        p.done,
        p.tally.keys_applied,
        p.tally.rows_written,
        p.tally.keys_deleted,
        p.rate,
        super::lag_position(p)
    );
    if let Some(e) = &p.last_error {
        s.push_str(&format!(" | retrying: {e}"));
    }
    s
}

pub async fn run(args: CatchUpArgs) -> anyhow::Result<()> {
    let spec = crate::cli::load_spec(&args.spec)?;
    let link = Link::connect(spec, &crate::transformers()).await?;
    let Some(bucket_index) = args.bucket else {
        return catch_up_every_bucket(&link, &args).await;
    };
    let table = match &args.table {
        Some(t) => t.clone(),
        None => match link.tables().as_slice() {
            [one] => one.to_string(),
            many => anyhow::bail!(
                "the spec has several tables with a source ({}); say which with --table",
                many.join(", ")
            ),
        },
    };
    let plan = link
        .stored_plan(&table)
        .await?
        .with_context(|| format!("{table} has no stored plan: bulk-load it first"))?;
    let bucket = plan.buckets.get(bucket_index).cloned().with_context(|| {
        format!(
            "{table} has buckets 0..{}, not {}",
            plan.buckets.len().saturating_sub(1),
            bucket_index
        )
    })?;
    let cancel = super::stop_on_ctrl_c("stopping after the current batch; run again to continue");
    let load = super::load_guard(&link);
    let control = RunControl::new()
        .with_rate(args.rate)
        .with_cancel(cancel)
        .on_progress(|p| eprintln!("{}", render(p)))
        .guarded(load.as_ref());
    let s = match (&args.window_from, &args.window_to) {
        (Some(from), Some(to)) => {
            let window = Window {
                column: args.window_column.clone(),
                from: Value::Text(from.clone()),
                to: Value::Text(to.clone()),
            };
            catch_up_window(&link, &bucket, &window, &control).await?
        }
        _ => catch_up_bucket(&link, &bucket, &CatchUpOptions::default(), &control).await?,
    };
    let status = match s.status {
        CatchUpStatus::CaughtUp => "caught up",
        CatchUpStatus::Cancelled => "cancelled",
    };
    println!(
        "catch-up {status}: table={} bucket={} changes={} keys={} rows={} deleted={} lag_changes={} lag_s={:.3} seconds={:.3} position={}",
        s.table,
        s.bucket,
        s.changes,
        s.keys_applied,
        s.rows_written,
        s.keys_deleted,
        s.lag.changes,
        s.lag.seconds,
        s.elapsed.as_secs_f64(),
        s.to.map_or_else(|| "-".to_string(), |p| p.to_string())
    );
    Ok(())
}

/// Catches up every bucket of every table, `--parallel` at a time, and
/// prints one line per bucket and per bucket skipped.
async fn catch_up_every_bucket(link: &Link, args: &CatchUpArgs) -> anyhow::Result<()> {
    let load = super::load_guard(link);
    let control = RunControl::new()
        .with_rate(args.rate)
        .on_progress(|p| eprintln!("{}", render(p)))
        .guarded(load.as_ref());
    let all = catch_up_all(link, &CatchUpOptions::default(), args.parallel, &control).await?;
    for s in &all.buckets {
        let status = match s.status {
            CatchUpStatus::CaughtUp => "caught up",
            CatchUpStatus::Cancelled => "cancelled",
        };
        println!(
            "catch-up {status}: table={} bucket={} changes={} keys={} rows={} deleted={}",
            s.table, s.bucket, s.changes, s.keys_applied, s.rows_written, s.keys_deleted
        );
    }
    for s in &all.skipped {
        println!(
            "catch-up skipped: table={} bucket={}: {}",
            s.table, s.bucket, s.reason
        );
    }
    let done = all
        .buckets
        .iter()
        .filter(|s| s.status == CatchUpStatus::CaughtUp)
        .count();
    println!(
        "catch-up of every bucket: {done} caught up, {} skipped",
        all.skipped.len()
    );
    Ok(())
}
