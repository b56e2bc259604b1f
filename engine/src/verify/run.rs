//! A verification run from start to end: plan the scope, start or resume
//! the run's record in the target (with the changelog position taken before
//! the first read), run the mode, and finish the record with the counts and
//! the mismatch tree. Each mode is a file of its own ([`super::full`],
//! [`super::sample`], [`super::incremental`]).

use std::sync::Arc;
use std::time::Instant;

use super::checksum::Checksums;
use super::context::Ctx;
use super::context::GroupSums;
use super::keyset::Span;
use super::options::{Mode, Scope, VerifyOptions};
use super::results::{Counts, VerifyReport, VerifyStatus, unknown_run};
use super::{full, incremental, orphans, sample, store};
use crate::buckets::{Bucket, Plan};
use crate::capture;
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::run_control::RunControl;
use crate::value::Value;

fn new_run_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn scope_text(s: Scope) -> String {
    match s {
        Scope::All => "all".into(),
        Scope::Bucket(n) => format!("bucket {n}"),
    }
}

fn mode_text(m: &Mode) -> String {
    match m {
        Mode::Full => "full".into(),
        Mode::Sample {
            per_stratum,
            strata,
        } => format!("sample {per_stratum} per {strata}"),
        Mode::SinceLast => "since-last".into(),
    }
}

async fn plan_of(link: &Link, table: &str) -> Result<Plan> {
    match link.stored_plan(table).await? {
        Some(p) => Ok(p),
        None => link.plan(table, None).await,
    }
}

fn pick_buckets(plan: &Plan, scope: Scope) -> Result<Vec<Bucket>> {
    match scope {
        Scope::All => Ok(plan.buckets.clone()),
        Scope::Bucket(n) => plan
            .buckets
            .iter()
            .find(|b| b.index == n)
            .cloned()
            .map(|b| vec![b])
            .ok_or_else(|| {
                EngineError::schema(
                    &plan.table,
                    format!(
                        "no bucket {n}: the plan has buckets 0..{}",
                        plan.buckets.len().saturating_sub(1)
                    ),
                )
            }),
    }
}

/// Runs a verification (see [`super::verify`]).
pub(super) async fn run(
    link: &Link,
    opts: &VerifyOptions,
    control: &RunControl,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let target = link.target();
    store::ensure(target).await?;
    let plan = plan_of(link, &opts.table).await?;
    let buckets = pick_buckets(&plan, opts.scope)?;
    let range = match opts.scope {
        Scope::All => None,
        Scope::Bucket(_) => buckets.first().map(|b| b.range.clone()),
    };
    let span = Span {
        plan: Some(&plan),
        range: range.as_ref(),
        bucket: match opts.scope {
            Scope::All => None,
            Scope::Bucket(b) => Some(b),
        },
    };

    // A resumed run keeps its id, position and per-bucket progress.
    let (run_id, position) = match &opts.resume {
        Some(id) => {
            let run = store::load_run(target, id)
                .await?
                .ok_or_else(|| unknown_run(id))?;
            if run.mode != "full" || run.table != opts.table {
                return Err(EngineError::Spec {
                    at: format!("run {id}"),
                    message: format!(
                        "only a full diff can be resumed, of its own table; run {id} is `{}` of {}",
                        run.mode, run.table
                    ),
                });
            }
            (id.clone(), run.position.clone())
        }
        None => {
            let id = new_run_id();
            // Taken before the first read, like the bulk load's watermark:
            // a change committed after it is in the next incremental run.
            let position = match &opts.mode {
                Mode::SinceLast => None,
                _ => capture::head_position(link.source())
                    .await?
                    .map(|p| p.to_string()),
            };
            store::insert_run(
                target,
                &store::RunRow {
                    run_id: id.clone(),
                    table: opts.table.clone(),
                    scope: scope_text(opts.scope),
                    mode: mode_text(&opts.mode),
                    status: "running".into(),
                    started_at: crate::connector::process_clock_micros(),
                    finished_at: None,
                    position: position.clone(),
                    counts: Counts::default(),
                    keys_read: 0,
                },
            )
            .await?;
            (id, position)
        }
    };
    let mut ctx = Ctx::new(link, &opts.table, &run_id).await?;
    ctx.row_by_row = opts.row_by_row;
    // The checksum fast path of a full diff, when the mapping allows it.
    let sums = if opts.row_by_row {
        Err("asked to read every row".to_string())
    } else {
        Checksums::plan(&ctx, link.spec().table(&opts.table)?).map(Arc::new)
    };
    // Transformed keys: group checksums, the target read only where they differ.
    let sums = match sums {
        Err(why) if !opts.row_by_row && !ctx.range_reads => match GroupSums::plan(&ctx) {
            Ok(g) => {
                ctx.grouped = Some(Arc::new(g));
                Err(why)
            }
            Err(also) => Err(format!("{why}; {also}")),
        },
        other => other,
    };
    if let (Mode::Full, Err(why), None) = (&opts.mode, &sums, &ctx.grouped) {
        tracing::info!(table = %opts.table, %why, "a full diff of this table reads every row");
    }
    tracing::info!(run = %run_id, table = %opts.table, mode = %mode_text(&opts.mode),
        scope = %scope_text(opts.scope), aligned = ctx.aligned, range_reads = ctx.range_reads,
        checksums = sums.is_ok(), "verification starts");

    let mut counts = Counts::default();
    let mut strata = Vec::new();
    let mut position = position;
    let mut rows_by_checksum = 0;
    let (keys_read, complete) = match &opts.mode {
        Mode::Full => {
            let sweep = opts.scope == Scope::All && orphans::needed(&ctx);
            // Chunks checked over whole spans of source keys meet every orphan
            // themselves (`grouped.rs`): no pass after them, unless a chunk
            // could not be (a bound that is no integer).
            let in_chunks = GroupSums::finds_orphans(&ctx);
            let early = (sweep && !in_chunks)
                .then(|| orphans::Early::start(&ctx))
                .flatten();
            let sums = sums.as_ref().ok().cloned();
            let diff = full::run(
                &ctx,
                sums,
                buckets.clone(),
                opts.parallelism,
                control,
                &mut counts,
            )
            .await?;
            rows_by_checksum = diff.by_checksum;
            // Rows of deleted records, which the diff by source records
            // cannot meet (see `orphans.rs`); over the whole table only.
            if diff.complete && sweep && (!in_chunks || diff.spanless) {
                let (_, swept) = orphans::run(&ctx, &buckets, control, &mut counts, early).await?;
                (diff.read, swept)
            } else {
                (diff.read, diff.complete)
            }
        }
        Mode::Sample {
            per_stratum,
            strata: column,
        } => {
            let (span, n) = (&span, *per_stratum);
            sample::run(&ctx, span, n, column, control, &mut counts, &mut strata).await?
        }
        Mode::SinceLast => {
            let (n, ok, next) = incremental::run(link, &ctx, &span, control, &mut counts).await?;
            position = Some(next);
            (n, ok)
        }
    };
    let status = if complete {
        VerifyStatus::Completed
    } else {
        VerifyStatus::Cancelled
    };
    if opts.mode == Mode::SinceLast {
        set_position(target, &run_id, position.as_deref()).await?;
    }
    store::finish_run(
        target,
        &run_id,
        status.as_str(),
        &counts,
        keys_read,
        complete.then(crate::connector::process_clock_micros),
    )
    .await?;
    let tree = store::mismatch_tree(target, &run_id).await?;
    tracing::info!(run = %run_id, compared = counts.compared, matched = counts.matched,
        missing = counts.missing, extra = counts.extra, different = counts.different,
        accuracy = %counts.accuracy_text(), "verification ends");
    Ok(VerifyReport {
        run_id,
        table: opts.table.clone(),
        status,
        counts,
        keys_read,
        rows_by_checksum,
        row_by_row_reason: match (&opts.mode, &ctx.grouped) {
            (Mode::Full, None) => sums.err(),
            _ => None,
        },
        position,
        elapsed: started.elapsed(),
        tree,
        strata,
    })
}

async fn set_position(target: &Connector, run_id: &str, position: Option<&str>) -> Result<()> {
    let d = target.dialect();
    target
        .execute(
            &format!(
                "UPDATE {} SET position = {} WHERE run_id = {}",
                d.quote(store::RUNS_TABLE),
                d.placeholder(1),
                d.placeholder(2)
            ),
            &[
                position.map_or(Value::Null, |p| Value::Text(p.to_string())),
                Value::Text(run_id.to_string()),
            ],
            "record the changelog position of a verification run",
        )
        .await
        .map(|_| ())
}
