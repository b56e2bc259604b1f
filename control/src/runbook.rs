//! The engineer's actions on buckets: each one moves the buckets into their
//! working phase and enqueues the jobs that do the work, in one transaction,
//! checked against the state machine. Workers then run the jobs; a job's end
//! moves its bucket on (see `jobs::Store::finish_job`).

use serde::{Deserialize, Serialize};

use crate::buckets::{Bucket, Phase, move_bucket_in};
use crate::db;
use crate::error::{ControlError, Result};
use crate::jobs::{self, JobKind, NewJob};
use crate::store::Store;
use crate::users::Actor;

/// How a verification checks a bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VerifyMode {
    /// Every row, field by field.
    Full,
    /// Only the keys changed since the bucket's last verification.
    Incremental,
}

impl VerifyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Full => "full",
            VerifyMode::Incremental => "incremental",
        }
    }
}

impl Store {
    pub(crate) async fn chosen_buckets(
        &self,
        migration_id: i64,
        bucket_ids: &[i64],
    ) -> Result<Vec<Bucket>> {
        let migration = self.migration(migration_id).await?;
        if migration.status == "archived" {
            return Err(ControlError::Conflict(format!(
                "migration `{}` is archived: no new work starts for it",
                migration.name
            )));
        }
        if bucket_ids.is_empty() {
            return Err(ControlError::Invalid("choose at least one bucket".into()));
        }
        let all = self.list_buckets(migration_id).await?;
        bucket_ids
            .iter()
            .map(|id| {
                all.iter().find(|b| b.id == *id).cloned().ok_or_else(|| {
                    ControlError::NotFound(format!(
                        "migration `{}` has no bucket with id {id}",
                        migration.name
                    ))
                })
            })
            .collect()
    }

    /// Starts `kind` jobs on buckets: each moves to `phase` (refused, and
    /// nothing changes, if any bucket cannot) and gets one job.
    async fn start_bucket_jobs(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_ids: &[i64],
        kind: JobKind,
        phase: Phase,
        extra: serde_json::Value,
        check: impl Fn(&Bucket) -> Result<()>,
    ) -> Result<Vec<i64>> {
        actor.require_operate(&format!("starting {} jobs", kind.as_str()))?;
        let migration = self.migration(migration_id).await?;
        let buckets = self.chosen_buckets(migration_id, bucket_ids).await?;
        for b in &buckets {
            check(b)?;
        }
        let mut tx = self.begin().await?;
        let mut ids = Vec::with_capacity(buckets.len());
        for b in &buckets {
            move_bucket_in(
                &mut tx,
                actor,
                b.id,
                phase,
                &format!("{} started", kind.as_str()),
            )
            .await?;
            let mut params = serde_json::json!({
                "table": b.table_name,
                "table_bucket": b.table_bucket,
                "bucket_idx": b.idx,
                "lo": b.lo,
                "hi": b.hi,
                "chunk_size": migration.settings.chunk_size,
            });
            if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
                p.extend(e.clone());
            }
            let job = NewJob {
                migration_id: Some(migration_id),
                bucket_id: Some(b.id),
                kind,
                params,
                rate_limit: migration.settings.rate_limit,
            };
            ids.push(jobs::enqueue(&mut tx, actor, &job).await?);
        }
        db::commit(tx, format!("committing {} jobs", kind.as_str())).await?;
        Ok(ids)
    }

    /// Bulk-loads buckets (planned ones, or loaded ones again: a re-bootstrap).
    pub async fn start_bulk_load(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_ids: &[i64],
    ) -> Result<Vec<i64>> {
        self.start_bucket_jobs(
            actor,
            migration_id,
            bucket_ids,
            JobKind::BulkLoad,
            Phase::BulkLoading,
            serde_json::json!({}),
            |_| Ok(()),
        )
        .await
    }

    /// Catches buckets up from their watermark to the head of the changelog.
    /// Refused for a bucket the relay does not dual-write yet: changes after
    /// the catch-up would be missed again.
    pub async fn start_catch_up(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_ids: &[i64],
    ) -> Result<Vec<i64>> {
        let ramp = self.relay_ramp(migration_id).await?;
        self.start_bucket_jobs(
            actor,
            migration_id,
            bucket_ids,
            JobKind::CatchUp,
            Phase::CatchingUp,
            serde_json::json!({}),
            |b| {
                if b.dual_write_at.is_none() || !ramp.covers_bucket(b.id) {
                    return Err(ControlError::Conflict(format!(
                        "bucket {} is not dual-written yet: ramp the relay on for it first, \
                         or changes after the catch-up would be missed",
                        b.idx
                    )));
                }
                if b.watermark.is_none() {
                    return Err(ControlError::Conflict(format!(
                        "bucket {} has no watermark: bulk-load it (with change capture installed) first",
                        b.idx
                    )));
                }
                Ok(())
            },
        )
        .await
    }

    /// Verifies buckets, fully or only the keys changed since their last run.
    pub async fn start_verify(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_ids: &[i64],
        mode: VerifyMode,
    ) -> Result<Vec<i64>> {
        self.start_bucket_jobs(
            actor,
            migration_id,
            bucket_ids,
            JobKind::Verify,
            Phase::Verifying,
            serde_json::json!({ "mode": mode.as_str() }),
            |_| Ok(()),
        )
        .await
    }

    /// Re-copies exactly the mismatched keys of an engine verification run of
    /// a bucket, then re-verifies them.
    pub async fn start_repair(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_id: i64,
        engine_run: &str,
    ) -> Result<i64> {
        let ids = self
            .start_bucket_jobs(
                actor,
                migration_id,
                &[bucket_id],
                JobKind::Repair,
                Phase::Verifying,
                serde_json::json!({ "engine_run": engine_run }),
                |_| Ok(()),
            )
            .await?;
        ids.into_iter()
            .next()
            .ok_or_else(|| ControlError::Internal("a repair enqueued no job".into()))
    }

    /// Repairs a bucket: re-copies the mismatched keys of the given engine
    /// run, or of the bucket's latest verification run that found any.
    /// Returns the repair job's id.
    pub async fn repair_bucket(
        &self,
        actor: &Actor,
        bucket_id: i64,
        engine_run: Option<&str>,
    ) -> Result<i64> {
        actor.require_operate("repairing a bucket")?;
        let bucket = self.bucket(bucket_id).await?;
        let runs = self
            .list_verify_runs(bucket.migration_id, Some(bucket_id), 100)
            .await?;
        let run = match engine_run {
            Some(id) => runs
                .iter()
                .find(|r| r.engine_run.as_deref() == Some(id))
                .ok_or_else(|| {
                    ControlError::NotFound(format!(
                        "bucket {} has no verification run {id}: repair one of its own runs",
                        bucket.idx
                    ))
                })?,
            None => runs
                .iter()
                .find(|r| r.engine_run.is_some())
                .ok_or_else(|| {
                    ControlError::Conflict(format!(
                        "bucket {} has not been verified yet: verify it, then repair what the run found",
                        bucket.idx
                    ))
                })?,
        };
        if run.missing + run.extra + run.different == 0 {
            return Err(ControlError::Conflict(format!(
                "verification run {} of bucket {} found no mismatches: there is nothing to repair",
                run.id, bucket.idx
            )));
        }
        let engine_run = run.engine_run.clone().unwrap_or_default();
        self.start_repair(actor, bucket.migration_id, bucket_id, &engine_run)
            .await
    }

    /// The jobs of a bucket that are queued, running or paused.
    pub async fn active_bucket_jobs(&self, bucket_id: i64) -> Result<Vec<jobs::Job>> {
        let bucket = self.bucket(bucket_id).await?;
        Ok(self
            .list_jobs(Some(bucket.migration_id), Some(bucket_id), 50)
            .await?
            .into_iter()
            .filter(|j| !j.state.is_final())
            .collect())
    }
}

/// An action on buckets, as the migration page and the API name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BucketAction {
    BulkLoad,
    CatchUp,
    VerifyFull,
    VerifyIncremental,
    Pause,
    Resume,
    Cancel,
}

impl BucketAction {
    pub const ALL: [BucketAction; 7] = [
        BucketAction::BulkLoad,
        BucketAction::CatchUp,
        BucketAction::VerifyFull,
        BucketAction::VerifyIncremental,
        BucketAction::Pause,
        BucketAction::Resume,
        BucketAction::Cancel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BucketAction::BulkLoad => "bulk-load",
            BucketAction::CatchUp => "catch-up",
            BucketAction::VerifyFull => "verify-full",
            BucketAction::VerifyIncremental => "verify-incremental",
            BucketAction::Pause => "pause",
            BucketAction::Resume => "resume",
            BucketAction::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Result<BucketAction> {
        BucketAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                ControlError::Invalid(format!(
                    "unknown bucket action `{s}`: use one of {}",
                    BucketAction::ALL.map(|a| a.as_str()).join(", ")
                ))
            })
    }
}

impl Store {
    /// Runs an action on buckets and says what it did, e.g. "2 bulk-load jobs queued".
    pub async fn bucket_action(
        &self,
        actor: &Actor,
        migration_id: i64,
        action: BucketAction,
        bucket_ids: &[i64],
        reason: &str,
    ) -> Result<String> {
        // A selection may mix buckets: each eligible one gets its job, and
        // the answer says which were skipped and why (nothing is refused
        // whole because one bucket is elsewhere in the playbook).
        let (what, mode) = match action {
            BucketAction::BulkLoad => ("bulk-load", None),
            BucketAction::CatchUp => ("catch-up", None),
            BucketAction::VerifyFull => ("verification", Some(VerifyMode::Full)),
            BucketAction::VerifyIncremental => {
                ("incremental verification", Some(VerifyMode::Incremental))
            }
            BucketAction::Pause | BucketAction::Resume | BucketAction::Cancel => ("", None),
        };
        if !what.is_empty() {
            actor.require_operate(&format!("starting {what} jobs"))?;
            // Refuses an archived migration, an empty selection or an
            // unknown bucket once, for the whole selection.
            self.chosen_buckets(migration_id, bucket_ids).await?;
            let mut queued = 0usize;
            let mut skipped = Vec::new();
            for &id in bucket_ids {
                let one = [id];
                let started = match (action, mode) {
                    (BucketAction::BulkLoad, _) => {
                        self.start_bulk_load(actor, migration_id, &one).await
                    }
                    (BucketAction::CatchUp, _) => {
                        self.start_catch_up(actor, migration_id, &one).await
                    }
                    (_, Some(mode)) => self.start_verify(actor, migration_id, &one, mode).await,
                    _ => Ok(Vec::new()),
                };
                match started {
                    Ok(ids) => queued += ids.len(),
                    Err(ControlError::Conflict(why) | ControlError::Invalid(why)) => {
                        skipped.push(why)
                    }
                    Err(e) => return Err(e),
                }
            }
            return match (queued, skipped.is_empty()) {
                (0, false) => Err(ControlError::Conflict(format!(
                    "no {what} job queued: {}",
                    skipped.join("; ")
                ))),
                (n, true) => Ok(format!(
                    "{n} {what} job{} queued",
                    if n == 1 { "" } else { "s" }
                )),
                (n, false) => Ok(format!(
                    "{n} {what} job{} queued; skipped {}: {}",
                    if n == 1 { "" } else { "s" },
                    skipped.len(),
                    skipped.join("; ")
                )),
            };
        }
        match action {
            BucketAction::BulkLoad
            | BucketAction::CatchUp
            | BucketAction::VerifyFull
            | BucketAction::VerifyIncremental => Ok(String::new()),
            BucketAction::Pause | BucketAction::Resume | BucketAction::Cancel => {
                actor.require_operate(&format!("{} bucket jobs", action.as_str()))?;
                let buckets = self.chosen_buckets(migration_id, bucket_ids).await?;
                let mut touched = 0;
                for b in &buckets {
                    for job in self.active_bucket_jobs(b.id).await? {
                        match (action, job.state) {
                            (BucketAction::Resume, crate::jobs::JobState::Paused) => {
                                self.resume_job(actor, job.id, reason).await?;
                            }
                            (
                                BucketAction::Pause,
                                crate::jobs::JobState::Queued | crate::jobs::JobState::Running,
                            ) => {
                                self.pause_job(actor, job.id, reason).await?;
                            }
                            (BucketAction::Cancel, _) => {
                                self.cancel_job(actor, job.id, reason).await?;
                            }
                            _ => continue,
                        }
                        touched += 1;
                    }
                }
                if touched == 0 {
                    return Err(ControlError::Conflict(format!(
                        "none of the chosen buckets has a job to {}",
                        action.as_str()
                    )));
                }
                Ok(format!(
                    "{} requested for {touched} job{}",
                    action.as_str(),
                    if touched == 1 { "" } else { "s" }
                ))
            }
        }
    }
}
