//! `tern verify --spec S [--table T] [--bucket N] [--sample N --strata COL] [--since-last] [--resume RUN] [--row-by-row]`
//! and `tern repair --spec S --run ID`: run the engine's verification and
//! print counts, accuracy and the mismatch tree. Results stay in the target
//! (`_tern_verify_*` tables); Ctrl-C stops between chunks and a full diff
//! resumes with `--resume RUN`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use tern_engine::verify::{self, Mode, Scope, VerifyOptions, VerifyReport, VerifyStatus};
use tern_engine::{Counts, Link, RunControl};

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub target: super::SpecTables,
    /// Only this bucket of the load's plan (default: all buckets).
    #[arg(long)]
    pub bucket: Option<usize>,
    /// Sample this many keys per stratum instead of every row (needs --strata).
    #[arg(long, requires = "strata", conflicts_with = "since_last")]
    pub sample: Option<usize>,
    /// Source column whose values are the strata of --sample.
    #[arg(long, requires = "sample")]
    pub strata: Option<String>,
    /// Only the keys changed since the last completed run (needs change capture).
    #[arg(long)]
    pub since_last: bool,
    /// Continue this interrupted full-diff run.
    #[arg(long, conflicts_with_all = ["sample", "since_last"])]
    pub resume: Option<String>,
    /// Read every row, even chunks whose checksums on both sides are equal.
    #[arg(long)]
    pub row_by_row: bool,
    /// Rows per second at most (default: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Buckets compared at the same time.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Mismatched rows printed in full after the tree.
    #[arg(long, default_value_t = 10)]
    pub show: u64,
}

#[derive(clap::Args, Debug)]
pub struct RepairArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// The verification run whose mismatches to repair.
    #[arg(long)]
    pub run: String,
    /// Rows per second at most (default: unlimited).
    #[arg(long)]
    pub rate: Option<u64>,
}

pub async fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let link = Link::connect(args.target.load()?, &crate::transformers()).await?;
    let tables = args.target.tables(&link);
    if args.resume.is_some() && tables.len() != 1 {
        anyhow::bail!("--resume continues one table's run: name it with --table");
    }
    let mode = match (args.sample, &args.strata, args.since_last) {
        (Some(n), Some(col), _) => Mode::Sample {
            per_stratum: n,
            strata: col.clone(),
        },
        (_, _, true) => Mode::SinceLast,
        _ => Mode::Full,
    };
    let cancel = super::stop_on_ctrl_c("stopping after the current chunk");
    let load = super::load_guard(&link);
    let started = Instant::now();
    let mut total_rows = 0u64;
    let mut total = Counts::default();
    for table in &tables {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} rows {per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(format!("verify {table}"));
        bar.enable_steady_tick(Duration::from_millis(250));
        let progress = {
            let bar = bar.clone();
            let seen = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
            move |p: &tern_engine::Progress| {
                // Per bucket: its planned rows once, then how far it got.
                if let Ok(mut m) = seen.lock() {
                    let before: u64 = match m.insert(p.task.bucket(), p.done) {
                        Some(b) => b,
                        None => {
                            bar.inc_length(p.total.unwrap_or(p.done));
                            0
                        }
                    };
                    bar.inc(p.done.saturating_sub(before));
                }
            }
        };
        let control = RunControl::new()
            .with_rate(args.rate)
            .with_cancel(cancel.clone())
            .on_progress(progress)
            .guarded(load.as_ref());
        let opts = VerifyOptions {
            table: table.clone(),
            scope: args.bucket.map_or(Scope::All, Scope::Bucket),
            mode: mode.clone(),
            parallelism: args.parallel,
            resume: args.resume.clone(),
            row_by_row: args.row_by_row,
        };
        let report = verify::verify(&link, &opts, &control)
            .await
            .with_context(|| format!("verifying {table}"));
        bar.finish_and_clear();
        let report = report?;
        print_report(&report);
        let shown =
            verify::list_mismatches(link.target(), &report.run_id, 0, args.show, true).await?;
        for m in &shown {
            println!("  {} {}", m.kind.as_str(), m.key_text());
            for d in &m.diffs {
                let note = d
                    .note
                    .as_deref()
                    .map(|n| format!("  ({n})"))
                    .unwrap_or_default();
                println!(
                    "    {}: source {} | target {}{note}",
                    d.path, d.source, d.target
                );
            }
        }
        total_rows += report.keys_read;
        total.add(&report.counts);
        if report.status == VerifyStatus::Cancelled {
            println!(
                "verify cancelled: resume with --table {table} --resume {}",
                report.run_id
            );
            return Ok(());
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 {
        total_rows as f64 / secs
    } else {
        0.0
    };
    println!(
        "verify done: rows={total_rows} compared={} matched={} missing={} extra={} different={} \
         accuracy={}% seconds={secs:.3} rows_per_s={rate:.0}",
        total.compared,
        total.matched,
        total.missing,
        total.extra,
        total.different,
        total.accuracy_text()
    );
    Ok(())
}

fn print_report(r: &VerifyReport) {
    let c = &r.counts;
    println!(
        "{} run {}: compared {}, matched {}, missing {}, extra {}, different {}; accuracy {}% ({} of {}); read {} keys in {:.1}s",
        r.table,
        r.run_id,
        c.compared,
        c.matched,
        c.missing,
        c.extra,
        c.different,
        c.accuracy_text(),
        c.matched,
        c.compared,
        r.keys_read,
        r.elapsed.as_secs_f64()
    );
    if let Some(why) = &r.row_by_row_reason {
        println!("  compared row by row: {why}");
    }
    if r.rows_by_checksum > 0 {
        println!(
            "  {} rows equal by chunk checksums; the other {} compared row by row",
            r.rows_by_checksum,
            c.compared.saturating_sub(r.rows_by_checksum)
        );
    }
    for s in &r.strata {
        println!(
            "  stratum {}: {} of {} equal ({}%)",
            s.value,
            s.counts.matched,
            s.counts.compared,
            s.counts.accuracy_text()
        );
    }
    if !r.tree.is_empty() {
        println!("mismatch tree:");
        for line in r.tree.render().lines() {
            println!("  {line}");
        }
    }
}

pub async fn repair(args: RepairArgs) -> anyhow::Result<()> {
    let spec = crate::cli::load_spec(&args.spec)?;
    let link = Link::connect(spec, &crate::transformers()).await?;
    let cancel = super::stop_on_ctrl_c("stopping after the current chunk");
    let load = super::load_guard(&link);
    let control = RunControl::new()
        .with_rate(args.rate)
        .with_cancel(cancel)
        .guarded(load.as_ref());
    let r = verify::repair(&link, &args.run, &control)
        .await
        .with_context(|| format!("repairing run {}", args.run))?;
    println!(
        "repair of run {}: {} mismatches, {} keys re-copied ({} rows written, {} deleted); \
         {} resolved, {} still open; accuracy now {}% ({} of {})",
        r.run_id,
        r.mismatches,
        r.keys_applied,
        r.rows_written,
        r.keys_deleted,
        r.resolved,
        r.still_open,
        r.counts.accuracy_text(),
        r.counts.matched,
        r.counts.compared
    );
    let tree = verify::mismatch_tree(link.target(), &args.run).await?;
    if !tree.is_empty() {
        println!("still differing:");
        for line in tree.render().lines() {
            println!("  {line}");
        }
    }
    Ok(())
}
