//! Running a fix: the filter pass by pass, the mapper over each page under
//! the throttle, failures recorded by policy, progress and checkpoints
//! reported, until a pass selects nothing (seed 004's loop).

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::db::{FixDb, Write, WriteOutcome};
use crate::error::{DatafixError, Result};
use crate::mapper::{Change, Mapper, PluginRegistry};
use crate::record::{Record, preview};
use crate::spec::{FixSpec, OnFailure, Settings};

/// Settings a running job follows as they change: rate, concurrency, batch
/// size and pause. Clone it to keep a handle while the job runs.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    settings: Arc<watch::Sender<Settings>>,
    throttle: Pacer,
}

/// Spaces records at the configured rate. Each record is due `1/rate` after
/// the previous one; time lost between pages (the filter query, the write's
/// commit) may be made up for, but never more than [`CATCH_UP`] of it, so the
/// measured rate follows the configured one without bursts.
#[derive(Debug, Clone)]
pub struct Pacer {
    settings: watch::Receiver<Settings>,
    next_due: Arc<tokio::sync::Mutex<Option<tokio::time::Instant>>>,
}

/// How much lost time the pacer may make up for.
const CATCH_UP: Duration = Duration::from_millis(500);
/// Longest single sleep, so rate changes and pauses take effect promptly.
const SLICE: Duration = Duration::from_millis(100);

impl Pacer {
    /// Waits until one more record may go (holds while paused).
    pub async fn admit(&self) {
        let mut settings = self.settings.clone();
        let mut next = self.next_due.lock().await;
        loop {
            let (rate, paused) = {
                let s = settings.borrow_and_update();
                (s.rate, s.paused)
            };
            if paused {
                // The sender lives as long as the job's settings.
                if settings.changed().await.is_err() {
                    return;
                }
                *next = None;
                continue;
            }
            if rate == 0 {
                *next = None;
                return;
            }
            let now = tokio::time::Instant::now();
            let floor = now.checked_sub(CATCH_UP).unwrap_or(now);
            let due = next.map_or(now, |d| d.max(floor));
            if due <= now {
                *next = Some(due + Duration::from_secs_f64(1.0 / rate as f64));
                return;
            }
            tokio::select! {
                () = tokio::time::sleep((due - now).min(SLICE)) => {}
                _ = settings.changed() => {}
            }
        }
    }
}

impl LiveSettings {
    pub fn new(s: Settings) -> LiveSettings {
        let (tx, rx) = watch::channel(s);
        LiveSettings {
            settings: Arc::new(tx),
            throttle: Pacer {
                settings: rx,
                next_due: Arc::new(tokio::sync::Mutex::new(None)),
            },
        }
    }

    pub fn current(&self) -> Settings {
        self.settings.borrow().clone()
    }

    /// Records per second; `None` or 0 is unthrottled. Applies to the next record.
    pub fn set_rate(&self, rate: Option<u64>) {
        let r = rate.unwrap_or(0);
        self.settings.send_modify(|s| s.rate = r);
    }

    pub fn set_concurrency(&self, n: usize) {
        self.settings
            .send_modify(|s| s.concurrency = n.clamp(1, 256));
    }

    pub fn set_batch_size(&self, n: usize) {
        self.settings
            .send_modify(|s| s.batch_size = n.clamp(1, 100_000));
    }

    pub fn set_on_failure(&self, p: OnFailure) {
        self.settings.send_modify(|s| s.on_failure = p);
    }

    /// Holds the job before its next record.
    pub fn pause(&self) {
        self.settings.send_modify(|s| s.paused = true);
    }

    pub fn resume(&self) {
        self.settings.send_modify(|s| s.paused = false);
    }

    /// Applies every field of `s` (the control plane's stored settings).
    pub fn apply(&self, s: &Settings) {
        self.set_rate(Some(s.rate));
        self.set_concurrency(s.concurrency);
        self.set_batch_size(s.batch_size);
        self.set_on_failure(s.on_failure);
        if s.paused {
            self.pause()
        } else {
            self.resume()
        }
    }
}

/// A record that could not be changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixFailure {
    /// The key as text, `(5)`.
    pub key_text: String,
    /// The key as a JSON object, `{"id": 5}`.
    pub key: Json,
    pub reason: String,
    pub pass: u32,
    pub attempts: u32,
}

/// Where a run stands; the control plane stores it to resume after a crash.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The filter pass (1-based).
    pub pass: u32,
    /// The last key of the last page finished in this pass (the cursor).
    pub after: Option<Record>,
    pub changed: u64,
    pub failed: u64,
    pub stale: u64,
}

/// Progress, reported after every page.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FixProgress {
    pub pass: u32,
    /// Records the filter selected at the start of this pass.
    pub pass_total: Option<u64>,
    /// Records handled in this pass so far.
    pub pass_done: u64,
    /// Records changed in all passes (earlier runs of the job included).
    pub changed: u64,
    pub failed: u64,
    /// Records skipped because they changed since the filter read them.
    pub stale: u64,
    /// Records changed per second over the last few seconds.
    pub rate: f64,
    /// Time to finish this pass at that rate.
    pub eta_seconds: Option<f64>,
    pub elapsed_seconds: f64,
}

/// Told what a run does. The control plane stores it; the CLI prints it.
#[async_trait::async_trait]
pub trait FixObserver: Send + Sync {
    /// After every page; keep it quick.
    fn progress(&self, _p: &FixProgress) {}
    /// Records that failed, before the checkpoint that passes them is stored.
    async fn failures(&self, _f: &[FixFailure]) -> std::result::Result<(), String> {
        Ok(())
    }
    /// After every page's writes committed.
    async fn checkpoint(&self, _c: &Checkpoint) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl FixObserver for NoObserver {}

/// How a run is started.
pub struct RunOptions {
    pub settings: LiveSettings,
    pub observer: Arc<dyn FixObserver>,
    pub cancel: CancellationToken,
    /// Resume from here (an earlier run's last checkpoint).
    pub resume: Option<Checkpoint>,
    /// Keys (as [`Record::key_text`]) already recorded as failed: not tried again.
    pub failed_keys: HashSet<String>,
}

impl RunOptions {
    pub fn new(settings: LiveSettings) -> RunOptions {
        RunOptions {
            settings,
            observer: Arc::new(NoObserver),
            cancel: CancellationToken::new(),
            resume: None,
            failed_keys: HashSet::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The filter selects nothing (but the failed records).
    Completed,
    /// Stopped at a checkpoint because the run was cancelled.
    Cancelled,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixReport {
    pub status: RunStatus,
    pub passes: u32,
    pub changed: u64,
    pub failed: u64,
    pub stale: u64,
    pub elapsed_seconds: f64,
}

/// One record of a dry run: what it is and what it would become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRunRecord {
    pub key_text: String,
    pub record: Json,
    /// `set`, `delete`, `applied_by_service`, `no_change` or `failure`.
    pub action: String,
    /// For `set`: column, value before (previewed), value after (previewed).
    pub changes: Vec<(String, String, String)>,
    /// For `failure`: why.
    pub reason: Option<String>,
}

/// A fix job connected to its database, ready to dry-run or run.
#[derive(Debug)]
pub struct FixJob {
    spec: FixSpec,
    db: FixDb,
    mapper: Arc<Mapper>,
}

impl FixJob {
    /// Connects to the spec's database and checks the mapper against its table.
    pub async fn connect(spec: FixSpec, plugins: &PluginRegistry) -> Result<FixJob> {
        if spec.url.trim().is_empty() {
            return Err(DatafixError::spec(
                "url",
                "the job names no database: set `url` in the job file or pass --url",
            ));
        }
        let mapper = Mapper::from_spec(&spec.mapper, &spec.name, plugins)?;
        let db = FixDb::connect(
            &spec.url,
            Duration::from_secs(spec.filter.timeout_s),
            spec.mapper.table(),
        )
        .await?;
        for k in &spec.key {
            if !db.has_column(k) {
                return Err(DatafixError::spec(
                    "key",
                    format!("table `{}` has no column `{k}`", spec.mapper.table()),
                ));
            }
        }
        if let crate::spec::MapperSpec::Update { set, .. } = &spec.mapper {
            for c in set.keys() {
                if !db.has_column(c) {
                    return Err(DatafixError::spec(
                        format!("mapper.set.{c}"),
                        format!("table `{}` has no column `{c}`", spec.mapper.table()),
                    ));
                }
            }
        }
        Ok(FixJob {
            spec,
            db,
            mapper: Arc::new(mapper),
        })
    }

    pub fn spec(&self) -> &FixSpec {
        &self.spec
    }

    pub fn db(&self) -> &FixDb {
        &self.db
    }

    /// How many records the filter selects now.
    pub async fn count(&self) -> Result<u64> {
        self.db.filter_count(&self.spec.filter.sql).await
    }

    /// The first `limit` records the filter selects and the change each would
    /// get. Nothing is written (an HTTP service is told `dry_run: true`).
    pub async fn dry_run(&self, limit: usize) -> Result<Vec<DryRunRecord>> {
        let recs = self
            .db
            .filter_page(&self.spec.filter.sql, &self.spec.key, None, limit.max(1))
            .await?;
        let mut out = Vec::with_capacity(recs.len());
        for rec in recs {
            let key_text = rec.key_text(&self.spec.key);
            let mapped = self.mapper.map(&rec, &self.spec.key, true).await;
            let (action, changes, reason) = match mapped {
                Ok(Change::Set(cols)) => {
                    let changes: Vec<(String, String, String)> = cols
                        .iter()
                        .filter(|(c, v)| rec.get(c) != Some(v))
                        .map(|(c, v)| {
                            let before = rec
                                .get(c)
                                .map_or_else(|| "(not selected)".to_string(), preview);
                            (c.clone(), before, preview(v))
                        })
                        .collect();
                    if changes.is_empty() {
                        ("no_change", changes, None)
                    } else {
                        ("set", changes, None)
                    }
                }
                Ok(Change::Delete) => ("delete", Vec::new(), None),
                Ok(Change::AppliedByService) => ("applied_by_service", Vec::new(), None),
                Err(r) => ("failure", Vec::new(), Some(r)),
            };
            out.push(DryRunRecord {
                key_text,
                record: rec.to_json(),
                action: action.to_string(),
                changes,
                reason,
            });
        }
        Ok(out)
    }

    /// Runs the fix until the filter selects nothing but failed records, or
    /// until cancelled (then it stops after the page in hand, checkpointed).
    pub async fn run(&self, opts: RunOptions) -> Result<FixReport> {
        let started = Instant::now();
        let key = &self.spec.key;
        let cp = opts.resume.clone().unwrap_or_default();
        let mut pass = cp.pass.max(1);
        let mut cursor = cp.after.clone();
        let mut totals = Totals {
            changed: cp.changed,
            failed: cp.failed,
            stale: cp.stale,
        };
        let mut failed_keys = opts.failed_keys.clone();
        let mut window: VecDeque<(Instant, u64)> = VecDeque::new();
        window.push_back((started, totals.changed));
        tracing::info!(job = %self.spec.name, db = %self.db.url(), pass, resumed = opts.resume.is_some(), "data fix started");
        loop {
            let pass_total = self.count().await.ok();
            let mut pass_done = 0u64;
            let mut selected = 0u64;
            loop {
                if opts.cancel.is_cancelled() {
                    return Ok(self.report(RunStatus::Cancelled, pass, &totals, started));
                }
                let batch = opts.settings.current().batch_size.max(1);
                let page = self
                    .db
                    .filter_page(&self.spec.filter.sql, key, cursor.as_ref(), batch)
                    .await?;
                let Some(last) = page.last() else { break };
                let next_cursor = Record::from_pairs(
                    key.iter()
                        .map(|k| (k.clone(), last.get(k).cloned().unwrap_or(Json::Null)))
                        .collect(),
                );
                let recs: Vec<Record> = page
                    .into_iter()
                    .filter(|r| !failed_keys.contains(&r.key_text(key)))
                    .collect();
                selected += recs.len() as u64;
                pass_done += recs.len() as u64;
                let fails = self.page(&recs, pass, &opts, &mut totals).await?;
                if !fails.failures.is_empty() {
                    opts.observer
                        .failures(&fails.failures)
                        .await
                        .map_err(DatafixError::Observer)?;
                    for f in &fails.failures {
                        failed_keys.insert(f.key_text.clone());
                    }
                }
                cursor = Some(next_cursor);
                opts.observer
                    .checkpoint(&Checkpoint {
                        pass,
                        after: cursor.clone(),
                        changed: totals.changed,
                        failed: totals.failed,
                        stale: totals.stale,
                    })
                    .await
                    .map_err(DatafixError::Observer)?;
                let now = Instant::now();
                window.push_back((now, totals.changed));
                while window.len() > 2
                    && window
                        .front()
                        .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(3))
                {
                    window.pop_front();
                }
                let rate = match window.front() {
                    Some((t, n)) if now.duration_since(*t) > Duration::from_millis(200) => {
                        (totals.changed - n) as f64 / now.duration_since(*t).as_secs_f64()
                    }
                    _ => 0.0,
                };
                let eta = pass_total
                    .filter(|_| rate > 0.0)
                    .map(|t| t.saturating_sub(pass_done) as f64 / rate);
                opts.observer.progress(&FixProgress {
                    pass,
                    pass_total,
                    pass_done,
                    changed: totals.changed,
                    failed: totals.failed,
                    stale: totals.stale,
                    rate,
                    eta_seconds: eta,
                    elapsed_seconds: started.elapsed().as_secs_f64(),
                });
                if let Some(stop) = fails.stop {
                    return Err(stop);
                }
            }
            tracing::info!(job = %self.spec.name, pass, selected, changed = totals.changed, "filter pass done");
            if selected == 0 {
                return Ok(self.report(RunStatus::Completed, pass, &totals, started));
            }
            if pass >= opts.settings.current().max_passes {
                let remaining = self.count().await.unwrap_or(selected);
                return Err(DatafixError::NotConverging {
                    passes: pass,
                    remaining,
                });
            }
            pass += 1;
            cursor = None;
        }
    }

    fn report(&self, status: RunStatus, passes: u32, t: &Totals, started: Instant) -> FixReport {
        FixReport {
            status,
            passes,
            changed: t.changed,
            failed: t.failed,
            stale: t.stale,
            elapsed_seconds: started.elapsed().as_secs_f64(),
        }
    }

    /// Maps one page under the throttle and writes its changes in one transaction.
    async fn page(
        &self,
        recs: &[Record],
        pass: u32,
        opts: &RunOptions,
        totals: &mut Totals,
    ) -> Result<PageEnd> {
        let settings = opts.settings.current();
        let key = &self.spec.key;
        let throttle = &opts.settings.throttle;
        let retries = if settings.on_failure == OnFailure::Retry {
            settings.retries.max(1)
        } else {
            1
        };
        let mut futs = Vec::with_capacity(recs.len());
        let key_arc = Arc::new(key.clone());
        for (i, rec) in recs.iter().enumerate() {
            futs.push(map_one(
                Arc::clone(&self.mapper),
                Arc::clone(&key_arc),
                i,
                rec.clone(),
                throttle.clone(),
                retries,
            ));
        }
        let mapped: Vec<(usize, std::result::Result<Change, String>, u32)> =
            futures::stream::iter(futs)
                .buffer_unordered(settings.concurrency.max(1))
                .collect()
                .await;
        let mut end = PageEnd::default();
        let mut writes: Vec<(Record, Write)> = Vec::new();
        let policy = settings.on_failure;
        let mut sorted = mapped;
        sorted.sort_by_key(|(i, _, _)| *i);
        for (i, res, attempts) in sorted {
            let rec = &recs[i];
            match res {
                Ok(Change::Set(cols)) => {
                    if cols.iter().all(|(c, v)| rec.get(c) == Some(v)) {
                        push_failure(&mut end, policy, key, pass, rec, "the mapper makes no change, yet the filter selects the record: fix the filter or the mapper".into(), attempts);
                    } else {
                        writes.push((rec.clone(), Write::Set(cols)));
                    }
                }
                Ok(Change::Delete) => writes.push((rec.clone(), Write::Delete)),
                Ok(Change::AppliedByService) => totals.changed += 1,
                Err(reason) => push_failure(&mut end, policy, key, pass, rec, reason, attempts),
            }
        }
        if !writes.is_empty() {
            let outcomes = self.db.write_batch(key, &writes).await;
            for ((rec, w), out) in writes.iter().zip(outcomes) {
                match out {
                    WriteOutcome::Applied => totals.changed += 1,
                    WriteOutcome::Stale => totals.stale += 1,
                    WriteOutcome::Failed(reason) => {
                        // A retried write is another guarded attempt: harmless if it already landed.
                        let mut reason = reason;
                        let mut attempts = 1;
                        let mut applied = false;
                        while attempts < retries {
                            tokio::time::sleep(Duration::from_millis(100 << attempts.min(6))).await;
                            attempts += 1;
                            match self
                                .db
                                .write_batch(key, &[(rec.clone(), w.clone())])
                                .await
                                .pop()
                            {
                                Some(WriteOutcome::Applied) => {
                                    totals.changed += 1;
                                    applied = true;
                                    break;
                                }
                                Some(WriteOutcome::Stale) => {
                                    totals.stale += 1;
                                    applied = true;
                                    break;
                                }
                                Some(WriteOutcome::Failed(r)) => reason = r,
                                None => break,
                            }
                        }
                        if !applied {
                            push_failure(&mut end, policy, key, pass, rec, reason, attempts);
                        }
                    }
                }
            }
        }
        totals.failed += end.failures.len() as u64;
        Ok(end)
    }
}

/// Maps one record under the throttle, retrying as the policy says.
async fn map_one(
    mapper: Arc<Mapper>,
    key: Arc<Vec<String>>,
    i: usize,
    rec: Record,
    throttle: Pacer,
    retries: u32,
) -> (usize, std::result::Result<Change, String>, u32) {
    let key = key.as_slice();
    let rec = &rec;
    throttle.admit().await;
    let mut attempt = 1;
    loop {
        match mapper.map(rec, key, false).await {
            Ok(c) => return (i, Ok(c), attempt),
            Err(e) if attempt < retries => {
                tokio::time::sleep(Duration::from_millis(100 << attempt.min(6))).await;
                attempt += 1;
                tracing::debug!(key = %rec.key_text(key), error = %e, attempt, "retrying a record");
            }
            Err(e) => return (i, Err(e), attempt),
        }
    }
}

/// Records a failed record; under the `stop` policy the page ends the run.
fn push_failure(
    end: &mut PageEnd,
    policy: OnFailure,
    key: &[String],
    pass: u32,
    rec: &Record,
    reason: String,
    attempts: u32,
) {
    end.failures.push(FixFailure {
        key_text: rec.key_text(key),
        key: rec.key_json(key),
        reason: reason.clone(),
        pass,
        attempts,
    });
    if policy == OnFailure::Stop && end.stop.is_none() {
        end.stop = Some(DatafixError::Stopped {
            key: rec.key_text(key),
            reason,
        });
    }
}

#[derive(Debug, Default)]
struct Totals {
    changed: u64,
    failed: u64,
    stale: u64,
}

#[derive(Debug, Default)]
struct PageEnd {
    failures: Vec<FixFailure>,
    stop: Option<DatafixError>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(rate: u64) -> LiveSettings {
        LiveSettings::new(Settings {
            rate,
            ..Settings::default()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn records_are_spaced_at_the_rate_and_a_change_applies_at_once() {
        let s = at(100);
        let start = tokio::time::Instant::now();
        for _ in 0..51 {
            s.throttle.admit().await;
        }
        assert_eq!(start.elapsed().as_millis(), 500);
        s.set_rate(Some(1000));
        let start = tokio::time::Instant::now();
        for _ in 0..100 {
            s.throttle.admit().await;
        }
        // The first waits out the old spacing (10 ms), then 1 ms apart.
        assert!(start.elapsed().as_millis() <= 110, "{:?}", start.elapsed());
    }

    #[tokio::test(start_paused = true)]
    async fn lost_time_is_made_up_for_only_briefly_and_a_pause_holds() {
        let s = at(10);
        s.throttle.admit().await;
        // A long stall (a slow page): at most CATCH_UP of it is made up for.
        tokio::time::sleep(Duration::from_secs(10)).await;
        let start = tokio::time::Instant::now();
        for _ in 0..10 {
            s.throttle.admit().await;
        }
        // 6 records at once (due at -500, -400, … 0 ms), the other 4 spaced at 100 ms.
        assert_eq!(start.elapsed().as_millis(), 400);

        s.pause();
        let pacer = s.throttle.clone();
        let waiter = tokio::spawn(async move { pacer.admit().await });
        tokio::time::sleep(Duration::from_secs(5)).await;
        assert!(!waiter.is_finished());
        s.resume();
        tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("admitted")
            .expect("task");
    }
}
