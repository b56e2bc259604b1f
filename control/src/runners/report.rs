//! How a job tells what the engine did: its progress while the engine runs
//! (from the engine's [`tern_engine::Progress`]) and its summary at the end.

use tern_engine::{BucketReport, CatchUpSummary, RepairReport, Task, VerifyReport};

use crate::jobs::Progress;
use crate::jobs::harness::Latest;
use crate::phases::Phase;
use crate::runners::count;

/// A bulk load's progress: the bucket's rows copied (kept in `copied`, new
/// when they grew, for the bucket) of its planned rows. While the table's last bucket builds the
/// indexes its load deferred, the job keeps counting the bucket's rows (the
/// board and the forecast read them) and the message says which index is
/// being built.
pub(crate) fn load(p: &tern_engine::Progress, table: &str, copied: &Latest<i64>) -> Progress {
    if let Task::IndexBuild { table } = &p.task {
        let rows = copied.get().unwrap_or(0);
        return Progress {
            rows_done: rows,
            rows_total: Some(rows),
            rate: None,
            eta_seconds: None,
            message: Some(format!(
                "{table}: {} ({} of {} indexes)",
                p.note.as_deref().unwrap_or("building indexes"),
                p.done,
                p.total.unwrap_or(p.done)
            )),
        };
    }
    let done = count(p.done);
    if copied.get().is_none_or(|rows| done > rows) {
        copied.set(done);
    }
    let bucket = p.task.bucket().unwrap_or_default();
    done_of_total(
        p,
        format!("{table} bucket {bucket}: {} chunks this run", p.steps),
    )
}

/// A catch-up's progress: changes read of those read and still behind, the
/// time left from the lag at the rate; the lag (changes, seconds) kept in
/// `lag_now` for the bucket.
pub(crate) fn catch_up(p: &tern_engine::Progress, lag_now: &Latest<(i64, f64)>) -> Progress {
    let lag = p.lag.unwrap_or_default();
    let (behind, done) = (count(lag.changes), count(p.done));
    lag_now.set((behind, lag.seconds));
    Progress {
        rows_done: done,
        rows_total: Some(done.saturating_add(behind)),
        rate: Some(p.rate),
        eta_seconds: (p.rate > 0.0).then(|| behind as f64 / p.rate),
        message: Some(match &p.task {
            Task::CatchUp { table, bucket } => format!(
                "{table} bucket {bucket}: {} changes read, {} keys applied, {} deleted; lag {} changes, {:.1}s",
                p.done, p.tally.keys_applied, p.tally.keys_deleted, lag.changes, lag.seconds
            ),
            other => other.to_string(),
        }),
    }
}

/// The relay's progress: keys applied, and the ramp, lag, retry and warnings.
pub(crate) fn relay(p: &tern_engine::Progress) -> Progress {
    let lag = p.lag.unwrap_or_default();
    let mut message = format!(
        "ramp {}: {} changes, {} keys applied, {} deleted, {} skipped; lag {} changes, {:.1}s",
        p.note.as_deref().unwrap_or("off"),
        p.done,
        p.tally.keys_applied,
        p.tally.keys_deleted,
        p.tally.keys_skipped,
        lag.changes,
        lag.seconds
    );
    if let Some(e) = &p.last_error {
        message.push_str(&format!("; retrying after: {e}"));
    }
    for w in &p.warnings {
        message.push_str(&format!("; {w}"));
    }
    Progress {
        rows_done: count(p.tally.keys_applied),
        rate: Some(p.rate),
        message: Some(message),
        ..Progress::default()
    }
}

/// The reverse relay's progress: keys applied to the old store, and the lag.
pub(crate) fn reverse_relay(p: &tern_engine::Progress) -> Progress {
    Progress {
        rows_done: count(p.tally.keys_applied),
        rate: Some(p.rate),
        message: Some(format!(
            "reverse: {} changes, {} keys applied, {} deleted; lag {} changes",
            p.done,
            p.tally.keys_applied,
            p.tally.keys_deleted,
            p.lag.unwrap_or_default().changes
        )),
        ..Progress::default()
    }
}

/// A verification's progress: the bucket's rows compared.
pub(crate) fn compare(p: &tern_engine::Progress) -> Progress {
    let (table, bucket) = (p.task.table(), p.task.bucket());
    let (table, bucket) = (table.unwrap_or_default(), bucket.unwrap_or_default());
    done_of_total(p, format!("{table} bucket {bucket}: comparing"))
}

/// A bulk load's summary.
pub(crate) fn loaded(r: &BucketReport) -> String {
    format!(
        "{} bucket {}: {} rows read, {} written in {:.1}s",
        r.table,
        r.bucket,
        r.rows_read,
        r.rows_written,
        r.elapsed.as_secs_f64()
    )
}

/// A catch-up's summary; `waiting` says why the relay did not take the
/// bucket over, when it did not.
pub(crate) fn caught_up(s: &CatchUpSummary, waiting: Option<String>) -> String {
    format!(
        "{} bucket {}: caught up, {} changes read, {} keys applied, {} deleted in {:.1}s{}",
        s.table,
        s.bucket,
        s.changes,
        s.keys_applied,
        s.keys_deleted,
        s.elapsed.as_secs_f64(),
        waiting
            .map(|w| format!(" ({w}: catch up again once it has)"))
            .unwrap_or_default()
    )
}

/// A verification's summary of a bucket of `table`.
pub(crate) fn verified(table: &str, bucket: usize, r: &VerifyReport) -> String {
    let c = &r.counts;
    format!(
        "{table} bucket {bucket}: {} of {} rows equal ({}%), {} missing, {} extra, {} different; {} keys read; run {}",
        c.matched,
        c.compared,
        c.accuracy_text(),
        c.missing,
        c.extra,
        c.different,
        r.keys_read,
        r.run_id
    )
}

/// A repair's summary of the engine run `run_id`.
pub(crate) fn repaired(run_id: &str, r: &RepairReport) -> String {
    format!(
        "run {run_id}: {} mismatches re-copied, {} resolved, {} still open; accuracy {}%",
        r.mismatches,
        r.resolved,
        r.still_open,
        r.counts.accuracy_text()
    )
}

/// The phase a bucket reaches by a comparison: verified when `good`, else it
/// stays caught up.
pub(crate) fn verified_phase(good: bool) -> Phase {
    if good {
        Phase::Verified
    } else {
        Phase::CaughtUp
    }
}

/// A job's progress from an engine's that counts done of a total (a bucket's
/// rows copied or compared): the time left from what remains at the rate.
pub(crate) fn done_of_total(p: &tern_engine::Progress, message: String) -> Progress {
    let (done, total) = (count(p.done), count(p.total.unwrap_or(p.done)));
    Progress {
        rows_done: done,
        rows_total: Some(total),
        rate: Some(p.rate),
        eta_seconds: (p.rate > 0.0).then(|| (total - done).max(0) as f64 / p.rate),
        message: Some(message),
    }
}
