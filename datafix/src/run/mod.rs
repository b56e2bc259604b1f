//! Running a fix: the filter pass by pass, the mapper over each page under
//! the run control's throttle, failures recorded by policy, progress and
//! checkpoints reported, until a pass selects nothing (seed 004's loop).

mod options;
mod page;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use tern_engine::{Progress, Tally, Task, Unit};

pub use options::{
    Checkpoint, DryRunRecord, FixFailure, FixObserver, FixReport, LiveSettings, NoObserver,
    RunOptions, RunStatus,
};

use crate::db::FixDb;
use crate::error::{DatafixError, Result};
use crate::mapper::{Change, Mapper, PluginRegistry};
use crate::record::{Record, preview};
use crate::spec::FixSpec;
use page::{Page, Totals};

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

    /// A guard that watches the fix's database against the spec's
    /// `[throttle]` limits (hold the run back with
    /// [`tern_engine::RunControl::guarded`]); `None` when it sets none.
    /// Sampling stops when the guard is dropped.
    pub fn load_guard(&self) -> Option<tern_engine::LoadGuard> {
        let side = (
            "database",
            self.db.connector().clone(),
            self.spec.throttle.limits(),
        );
        tern_engine::LoadGuard::watching(vec![side], self.spec.throttle.check_every_ms)
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
    /// The throttle is asked before every page with its number of records.
    pub async fn run(&self, opts: RunOptions) -> Result<FixReport> {
        let key = &self.spec.key;
        let control = &opts.control;
        let cp = opts.resume.clone().unwrap_or_default();
        let mut pass = cp.pass.max(1);
        let mut cursor = cp.after.clone();
        let base = Totals {
            changed: cp.changed,
            failed: cp.failed,
            stale: cp.stale,
        };
        let mut totals = base;
        let mut failed_keys = opts.failed_keys.clone();
        let mut meter = Meter::new();
        tracing::info!(job = %self.spec.name, db = %self.db.url(), pass, resumed = opts.resume.is_some(), "data fix started");
        loop {
            let pass_total = self.count().await.ok();
            let mut pass_done = 0u64;
            let mut selected = 0u64;
            loop {
                if control.is_cancelled() {
                    return Ok(self.report(RunStatus::Cancelled, pass, &totals, &meter));
                }
                let settings = opts.settings.current();
                let page = self
                    .db
                    .filter_page(
                        &self.spec.filter.sql,
                        key,
                        cursor.as_ref(),
                        settings.batch_size.max(1),
                    )
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
                if !recs.is_empty() && !control.admit(recs.len() as u64).await {
                    return Ok(self.report(RunStatus::Cancelled, pass, &totals, &meter));
                }
                selected += recs.len() as u64;
                pass_done += recs.len() as u64;
                let end = Page {
                    db: &self.db,
                    mapper: &self.mapper,
                    key,
                    pass,
                    settings: &settings,
                }
                .run(&recs, &mut totals)
                .await;
                if !end.failures.is_empty() {
                    opts.observer
                        .failures(&end.failures)
                        .await
                        .map_err(DatafixError::Observer)?;
                    for f in &end.failures {
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
                meter.page(recs.len() as u64);
                control.report(&self.progress(pass, pass_total, pass_done, &meter, &totals, &base));
                if let Some(stop) = end.stop {
                    return Err(stop);
                }
            }
            tracing::info!(job = %self.spec.name, pass, selected, changed = totals.changed, "filter pass done");
            if selected == 0 {
                return Ok(self.report(RunStatus::Completed, pass, &totals, &meter));
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

    /// Where the run stands after a page: records of this pass done of those
    /// the filter selected at its start; what this run changed.
    fn progress(
        &self,
        pass: u32,
        pass_total: Option<u64>,
        pass_done: u64,
        meter: &Meter,
        totals: &Totals,
        base: &Totals,
    ) -> Progress {
        let task = Task::Fix {
            name: self.spec.name.clone(),
            pass,
        };
        let mut p = Progress::new(task, Unit::Records);
        p.measure(
            pass_done,
            meter.handled,
            pass_total,
            meter.started.elapsed(),
        );
        // The rate of the last seconds, so a rate change shows at once.
        p.rate = meter.rate();
        p.eta = pass_total
            .filter(|_| p.rate > 0.0)
            .map(|t| Duration::from_secs_f64(t.saturating_sub(pass_done) as f64 / p.rate));
        p.steps = meter.steps;
        p.tally = Tally {
            rows_written: totals.changed - base.changed,
            failed: totals.failed - base.failed,
            stale: totals.stale - base.stale,
            ..Tally::default()
        };
        p
    }

    fn report(&self, status: RunStatus, passes: u32, t: &Totals, meter: &Meter) -> FixReport {
        FixReport {
            status,
            passes,
            changed: t.changed,
            failed: t.failed,
            stale: t.stale,
            elapsed_seconds: meter.started.elapsed().as_secs_f64(),
        }
    }
}

/// Records a run handled, and their rate over the last few seconds.
struct Meter {
    started: Instant,
    /// Records handled by this run.
    handled: u64,
    /// Pages done by this run.
    steps: u64,
    window: VecDeque<(Instant, u64)>,
}

impl Meter {
    fn new() -> Meter {
        let started = Instant::now();
        Meter {
            started,
            handled: 0,
            steps: 0,
            window: VecDeque::from([(started, 0)]),
        }
    }

    fn page(&mut self, records: u64) {
        self.handled += records;
        self.steps += 1;
        let now = Instant::now();
        self.window.push_back((now, self.handled));
        while self.window.len() > 2
            && self
                .window
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(3))
        {
            self.window.pop_front();
        }
    }

    /// Records per second over the window (0 until it spans 200 ms).
    fn rate(&self) -> f64 {
        let now = Instant::now();
        match self.window.front() {
            Some((t, n)) if now.duration_since(*t) > Duration::from_millis(200) => {
                (self.handled - n) as f64 / now.duration_since(*t).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}
