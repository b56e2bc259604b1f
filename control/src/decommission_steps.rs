//! The steps that end a migration (issue 17), each audited and each refused
//! with its reason while a condition does not hold: when every bucket is
//! switched, every client reads 100% from the new store and every offline
//! job is migrated, an admin stops the relays, removes Tern's capture
//! objects from both stores, optionally drops the `_tern_*` columns, puts
//! the old tables in read-only mode, and marks the migration complete.
//!
//! Stopping the relays first waits for the reverse relay to drain: every
//! write the new store took before the step must be in the old store before
//! the relay that carries it is cancelled (the old store is then made
//! read-only, and a write it missed would be lost to it for good).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_engine::{Link, capture, read_only};

use crate::audit::{self, AuditEntry};
use crate::buckets::{Phase, move_bucket_in};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::runners::RunnerContext;
use crate::store::Store;
use crate::switch::{Direction, Drain, RelayDrain, SwitchOptions};
use crate::users::Actor;

/// One step, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Cancel the forward and the reverse relay.
    StopRelays,
    /// Drop the capture triggers and changelogs of both stores.
    RemoveCapture,
    /// Drop the `_tern_*` columns of the new store's tables (optional).
    DropColumns,
    /// Make the old store's tables refuse writes.
    ReadOnly,
    /// Mark the migration complete: every bucket done.
    Complete,
}

impl Step {
    pub const ALL: [Step; 5] = [
        Step::StopRelays,
        Step::RemoveCapture,
        Step::DropColumns,
        Step::ReadOnly,
        Step::Complete,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::StopRelays => "stop-relays",
            Step::RemoveCapture => "remove-capture",
            Step::DropColumns => "drop-columns",
            Step::ReadOnly => "read-only",
            Step::Complete => "complete",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Step::StopRelays => "Stop the forward and the reverse relay",
            Step::RemoveCapture => "Remove Tern's capture objects from both stores",
            Step::DropColumns => "Drop the _tern_* columns of the new tables (optional)",
            Step::ReadOnly => "Put the old tables in read-only mode",
            Step::Complete => "Mark the migration complete",
        }
    }

    pub fn parse(s: &str) -> Result<Step> {
        Step::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "unknown decommission step `{s}`: use one of {}",
                    Step::ALL.map(Step::as_str).join(", ")
                ))
            })
    }

    /// The steps that must be done first.
    fn after(self) -> &'static [Step] {
        match self {
            Step::StopRelays => &[],
            Step::RemoveCapture => &[Step::StopRelays],
            Step::DropColumns | Step::ReadOnly => &[Step::RemoveCapture],
            Step::Complete => &[Step::ReadOnly],
        }
    }
}

/// A step as the decommission page shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepState {
    pub step: Step,
    pub label: String,
    pub done_at: Option<i64>,
    pub actor: Option<String>,
    pub detail: String,
    /// Why it cannot run now (`None`: it may).
    pub refusal: Option<String>,
}

impl Store {
    /// What keeps the migration from being decommissioned (empty: nothing).
    pub async fn decommission_blockers(&self, migration_id: i64) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let buckets = self.list_buckets(migration_id).await?;
        let old: Vec<String> = buckets
            .iter()
            .filter(|b| b.write_primary != "new" || b.held_by.is_some())
            .map(|b| b.idx.to_string())
            .collect();
        if buckets.is_empty() {
            out.push("the migration has no buckets".into());
        } else if !old.is_empty() {
            out.push(format!(
                "bucket(s) {} are not switched to the new store: switch them first",
                old.join(", ")
            ));
        }
        let clients = self
            .list_clients(&Actor::system(), Some(migration_id))
            .await?;
        let behind: Vec<String> = clients
            .iter()
            .filter(|c| c.ramp < 100_000)
            .map(|c| format!("{} at {}", c.name, c.read_ramp()))
            .collect();
        if !behind.is_empty() {
            out.push(format!(
                "client(s) still read from the old store: {}; ramp them to 100%",
                behind.join(", ")
            ));
        }
        let jobs: Vec<String> = self
            .list_offline_jobs(migration_id)
            .await?
            .into_iter()
            .filter(|j| j.status != "migrated")
            .map(|j| j.name)
            .collect();
        if !jobs.is_empty() {
            out.push(format!(
                "offline job(s) not migrated: {}; migrate them to the new datasets",
                jobs.join(", ")
            ));
        }
        Ok(out)
    }

    /// Every step with whether it ran and why it may not run now.
    pub async fn decommission_steps(&self, migration_id: i64) -> Result<Vec<StepState>> {
        let done: Vec<(String, String, i64, String)> = sqlx::query(
            "SELECT step, actor, done_at, detail FROM decommission_steps WHERE migration_id = $1",
        )
        .bind(migration_id)
        .all(self.pool(), "reading decommission steps")
        .await?;
        let blockers = self.decommission_blockers(migration_id).await?;
        let is_done = |s: Step| done.iter().any(|d| d.0 == s.as_str());
        // Stopping a relay only asks it to stop: it ends at its next
        // heartbeat. Its capture objects stay until it has, or it would fail
        // reading a changelog dropped under it.
        let stopping = if is_done(Step::StopRelays) {
            self.relays_not_stopped(migration_id).await?
        } else {
            Vec::new()
        };
        Ok(Step::ALL
            .into_iter()
            .map(|step| {
                let d = done.iter().find(|d| d.0 == step.as_str());
                let missing: Vec<&str> = step
                    .after()
                    .iter()
                    .filter(|s| !is_done(**s))
                    .map(|s| s.label())
                    .collect();
                let refusal = if d.is_some() {
                    Some("done already".to_string())
                } else if !blockers.is_empty() {
                    Some(blockers.join("; "))
                } else if !missing.is_empty() {
                    Some(format!("first: {}", missing.join(", ")))
                } else if step == Step::RemoveCapture && !stopping.is_empty() {
                    Some(format!(
                        "the relays are still stopping ({}): wait a few seconds until they have stopped, then try again",
                        stopping.join(", ")
                    ))
                } else {
                    None
                };
                StepState {
                    step,
                    label: step.label().into(),
                    done_at: d.map(|d| d.2),
                    actor: d.map(|d| d.1.clone()),
                    detail: d.map(|d| d.3.clone()).unwrap_or_default(),
                    refusal,
                }
            })
            .collect())
    }

    /// The migration's relay and reverse relay jobs that have not ended yet.
    async fn relays_not_stopped(&self, migration_id: i64) -> Result<Vec<String>> {
        Ok(self
            .list_jobs(Some(migration_id), None, 1000)
            .await?
            .into_iter()
            .filter(|j| {
                matches!(
                    j.kind,
                    crate::jobs::JobKind::Relay | crate::jobs::JobKind::ReverseRelay
                ) && !j.state.is_final()
            })
            .map(|j| format!("{} job {}", j.kind.as_str(), j.id))
            .collect())
    }

    /// [`run_decommission_step`](Self::run_decommission_step) on a blocking
    /// thread of its own, for callers whose futures must be `Send` (server
    /// functions, HTTP handlers): the step's future is not provably `Send`
    /// for every lifetime (a compiler limit, not a data race), and a step is
    /// a rare, slow, admin action.
    pub async fn run_decommission_step_detached(
        &self,
        actor: Actor,
        migration_id: i64,
        step: Step,
        ctx: RunnerContext,
    ) -> Result<String> {
        let store = self.clone();
        let handle = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            handle.block_on(store.run_decommission_step(&actor, migration_id, step, &ctx))
        })
        .await
        .map_err(|e| ControlError::Internal(format!("the decommission step stopped: {e}")))?
    }

    /// Runs one step (admins only), audited; refused with its reason while
    /// a condition does not hold. Answers what it did. Stopping the relays
    /// waits up to the switch's drain timeout for the reverse relay to drain.
    pub async fn run_decommission_step(
        &self,
        actor: &Actor,
        migration_id: i64,
        step: Step,
        ctx: &RunnerContext,
    ) -> Result<String> {
        let drain = RelayDrain {
            store: self.clone(),
            ctx: ctx.clone(),
        };
        let timeout = SwitchOptions::default().drain_timeout;
        self.run_decommission_step_draining(actor, migration_id, step, ctx, &drain, timeout)
            .await
    }

    /// [`run_decommission_step`](Self::run_decommission_step) with the
    /// drain that stopping the relays waits for (a test's own, or the
    /// running relays' [`RelayDrain`]) and how long it may wait.
    pub async fn run_decommission_step_draining(
        &self,
        actor: &Actor,
        migration_id: i64,
        step: Step,
        ctx: &RunnerContext,
        drain: &dyn Drain,
        drain_timeout: Duration,
    ) -> Result<String> {
        actor.require_admin("decommissioning a migration")?;
        let state = self
            .decommission_steps(migration_id)
            .await?
            .into_iter()
            .find(|s| s.step == step)
            .ok_or_else(|| ControlError::Internal(format!("no step {}", step.as_str())))?;
        if let Some(why) = state.refusal {
            return Err(ControlError::Conflict(format!(
                "cannot {}: {why}",
                step.label().to_lowercase()
            )));
        }
        let migration = self.migration(migration_id).await?;
        let detail = match step {
            Step::StopRelays => {
                let jobs = self.list_jobs(Some(migration_id), None, 1000).await?;
                let reverse_running = jobs.iter().any(|j| {
                    j.kind == crate::jobs::JobKind::ReverseRelay
                        && j.state == crate::jobs::JobState::Running
                });
                if !reverse_running {
                    return Err(ControlError::Conflict(
                        "cannot stop the relays: the reverse relay is not running, so the new store's last writes may not have reached the old store; start it (it resumes where it stopped) and stop the relays once it has caught up".into(),
                    ));
                }
                // The same drain as a rollback's: the reverse relay through
                // the new store's changelog head as it is now.
                let drained = drain
                    .drain(&migration, Direction::Rollback, &[], drain_timeout)
                    .await
                    .map_err(|e| match e {
                        ControlError::Conflict(why) => ControlError::Conflict(format!(
                            "cannot stop the relays: the reverse relay has not drained, so the old store lacks some of the new store's writes ({why}); nothing was stopped, try again"
                        )),
                        other => other,
                    })?;
                let mut stopped = Vec::new();
                for job in jobs {
                    let relay = matches!(
                        job.kind,
                        crate::jobs::JobKind::Relay | crate::jobs::JobKind::ReverseRelay
                    );
                    if relay && !job.state.is_final() {
                        self.cancel_job(actor, job.id, "decommission").await?;
                        stopped.push(format!("{} job {}", job.kind.as_str(), job.id));
                    }
                }
                format!("{drained}; cancelled {}", stopped.join(", "))
            }
            Step::RemoveCapture | Step::DropColumns | Step::ReadOnly => {
                let spec = self.spec_for(&migration.spec, &migration.name).await?;
                let sources: Vec<String> = capture::captured_tables(&spec)?
                    .into_iter()
                    .map(|t| t.table)
                    .collect();
                // Inspected, not prepared: preparing checks (and would
                // re-create) the Tern columns that `drop-columns` removed.
                let link = Link::inspect(spec, &ctx.registry).await?;
                match step {
                    Step::RemoveCapture => {
                        // Only this migration's tables: another migration
                        // reading the same database keeps its capture.
                        let targets: Vec<String> =
                            link.tables().into_iter().map(String::from).collect();
                        let a = capture::remove_tables(link.source(), &sources).await?;
                        let b = capture::remove_tables(link.target(), &targets).await?;
                        format!(
                            "old store: dropped {}; new store: dropped {}",
                            if a.dropped.is_empty() {
                                "nothing".into()
                            } else {
                                a.dropped.join(", ")
                            },
                            if b.dropped.is_empty() {
                                "nothing".into()
                            } else {
                                b.dropped.join(", ")
                            }
                        )
                    }
                    Step::DropColumns => {
                        let mut dropped = Vec::new();
                        let tables: Vec<String> =
                            link.tables().into_iter().map(String::from).collect();
                        for t in &tables {
                            for c in read_only::drop_tern_columns(link.target(), t).await? {
                                dropped.push(format!("{t}.{c}"));
                            }
                        }
                        format!(
                            "dropped {}",
                            if dropped.is_empty() {
                                "no column".into()
                            } else {
                                dropped.join(", ")
                            }
                        )
                    }
                    _ => {
                        for t in &sources {
                            read_only::protect(link.source(), t).await?;
                        }
                        format!("read-only: {}", sources.join(", "))
                    }
                }
            }
            Step::Complete => "every bucket done; the migration is complete".to_string(),
        };
        let mut tx = self.begin().await?;
        if step == Step::Complete {
            for b in self.list_buckets(migration_id).await? {
                if b.phase == Phase::Switched {
                    move_bucket_in(&mut tx, actor, b.id, Phase::Done, "decommission").await?;
                }
            }
            sqlx::query("UPDATE migrations SET completed_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(migration_id)
                .run(&mut *tx, "marking a migration complete")
                .await?;
        }
        sqlx::query(
            "INSERT INTO decommission_steps (migration_id, step, actor, done_at, detail)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(migration_id)
        .bind(step.as_str().to_string())
        .bind(actor.name.clone())
        .bind(now_ms())
        .bind(detail.clone())
        .run(&mut *tx, "recording a decommission step")
        .await?;
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                &format!("decommission.{}", step.as_str()),
                "migration",
                migration.name.clone(),
            )
            .reason(&detail),
            "committing a decommission step",
        )
        .await?;
        tracing::info!(migration = %migration.name, step = step.as_str(), %detail, "decommission step done");
        Ok(detail)
    }
}
