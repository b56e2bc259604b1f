//! The job queue. An engineer's action (bulk-load these buckets, catch up,
//! verify, repair, run a data fix) becomes jobs here; workers lease them, renew
//! the lease with a heartbeat that also reports progress, and finish them. A
//! job whose worker died is leased again by another worker once its lease
//! expires, and resumes from the engine's own checkpoint.
//!
//! On PostgreSQL any number of worker processes lease with
//! `FOR UPDATE SKIP LOCKED`; SQLite serializes writers, so one process (with any
//! number of in-process workers) is the rule there.
//!
//! Pause, resume, cancel and rate changes are *requests* written on the job;
//! the worker running it sees them at its next heartbeat (every few seconds).

use serde::{Deserialize, Serialize};
use sqlx::Row;

use crate::audit::{self, AuditEntry};
use crate::buckets::{Phase, move_bucket_in};
use crate::clock::now_ms;
use crate::error::{ControlError, Result};
use crate::store::{Dialect, Store};
use crate::users::Actor;

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobKind {
    BulkLoad,
    Relay,
    CatchUp,
    Verify,
    Repair,
    DataFix,
}

impl JobKind {
    pub const ALL: [JobKind; 6] = [
        JobKind::BulkLoad,
        JobKind::Relay,
        JobKind::CatchUp,
        JobKind::Verify,
        JobKind::Repair,
        JobKind::DataFix,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BulkLoad => "bulk-load",
            JobKind::Relay => "relay",
            JobKind::CatchUp => "catch-up",
            JobKind::Verify => "verify",
            JobKind::Repair => "repair",
            JobKind::DataFix => "data-fix",
        }
    }

    pub fn parse(s: &str) -> Result<JobKind> {
        JobKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown job kind `{s}`")))
    }
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobState {
    Queued,
    Running,
    Paused,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Queued,
        JobState::Running,
        JobState::Paused,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Paused => "paused",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Result<JobState> {
        JobState::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ControlError::Invalid(format!("unknown job state `{s}`")))
    }

    /// Finished for good.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// What someone asked of a running job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Request {
    Pause,
    Cancel,
}

impl Request {
    fn as_str(self) -> &'static str {
        match self {
            Request::Pause => "pause",
            Request::Cancel => "cancel",
        }
    }

    fn parse(s: &str) -> Option<Request> {
        match s {
            "pause" => Some(Request::Pause),
            "cancel" => Some(Request::Cancel),
            _ => None,
        }
    }
}

/// A job as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: i64,
    pub migration_id: Option<i64>,
    pub bucket_id: Option<i64>,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub state: JobState,
    pub requested: Option<Request>,
    /// Rows (or records) per second; `None` is unthrottled.
    pub rate_limit: Option<f64>,
    pub worker: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub attempts: i64,
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
    pub created_by: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub migration_id: Option<i64>,
    pub bucket_id: Option<i64>,
    pub kind: JobKind,
    pub params: serde_json::Value,
    pub rate_limit: Option<f64>,
}

/// Progress a worker reports with its heartbeat.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    pub rows_done: i64,
    pub rows_total: Option<i64>,
    pub rate: Option<f64>,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
}

/// What the store tells a worker at each heartbeat.
#[derive(Debug, Clone, PartialEq)]
pub enum Heartbeat {
    /// Keep going, at this rate limit; honour `requested` if set.
    Continue {
        requested: Option<Request>,
        rate_limit: Option<f64>,
    },
    /// The lease is gone (expired and taken by another worker, or the job was
    /// finished elsewhere): stop at once and write nothing more.
    LeaseLost,
}

/// How a worker ends a job it holds.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Done; `bucket_phase` is where the job's bucket moves next (loaded after
    /// a bulk load, verified or caught-up after a verification, …).
    Succeeded {
        summary: Option<String>,
        bucket_phase: Option<Phase>,
    },
    Failed(String),
    /// Stopped at a checkpoint on request; resumes from there later.
    Paused,
    Cancelled,
    /// Stopped at a checkpoint because the worker shuts down: back in the
    /// queue at once, for any worker to resume.
    Released,
}

pub(crate) fn job_from_row(row: &sqlx::any::AnyRow) -> Result<Job> {
    let get = |e| ControlError::db("reading a job")(e);
    let kind: String = row.try_get("kind").map_err(get)?;
    let state: String = row.try_get("state").map_err(get)?;
    let requested: Option<String> = row.try_get("requested").map_err(get)?;
    let params: String = row.try_get("params").map_err(get)?;
    Ok(Job {
        id: row.try_get("id").map_err(get)?,
        migration_id: row.try_get("migration_id").map_err(get)?,
        bucket_id: row.try_get("bucket_id").map_err(get)?,
        kind: JobKind::parse(&kind)?,
        params: serde_json::from_str(&params)
            .map_err(|e| ControlError::Internal(format!("job params are not JSON: {e}")))?,
        state: JobState::parse(&state)?,
        requested: requested.as_deref().and_then(Request::parse),
        rate_limit: row.try_get("rate_limit").map_err(get)?,
        worker: row.try_get("worker").map_err(get)?,
        lease_expires_at: row.try_get("lease_expires_at").map_err(get)?,
        attempts: row.try_get("attempts").map_err(get)?,
        rows_done: row.try_get("rows_done").map_err(get)?,
        rows_total: row.try_get("rows_total").map_err(get)?,
        rate: row.try_get("rate").map_err(get)?,
        eta_seconds: row.try_get("eta_seconds").map_err(get)?,
        message: row.try_get("message").map_err(get)?,
        created_by: row.try_get("created_by").map_err(get)?,
        created_at: row.try_get("created_at").map_err(get)?,
        started_at: row.try_get("started_at").map_err(get)?,
        updated_at: row.try_get("updated_at").map_err(get)?,
        finished_at: row.try_get("finished_at").map_err(get)?,
    })
}

fn check_rate(rate: Option<f64>) -> Result<()> {
    match rate {
        Some(r) if !(r.is_finite() && r > 0.0) => Err(ControlError::Invalid(format!(
            "a rate limit of {r} is not valid: give rows per second above 0, or none for unthrottled"
        ))),
        _ => Ok(()),
    }
}

/// Enqueues a job inside the caller's transaction (so the job and the change
/// that asked for it commit together), returning its id.
pub async fn enqueue(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actor: &Actor,
    job: &NewJob,
) -> Result<i64> {
    check_rate(job.rate_limit)?;
    let now = now_ms();
    let row = sqlx::query(
        "INSERT INTO jobs (migration_id, bucket_id, kind, params, state, rate_limit,
                           created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7) RETURNING id",
    )
    .bind(job.migration_id)
    .bind(job.bucket_id)
    .bind(job.kind.as_str())
    .bind(job.params.to_string())
    .bind(job.rate_limit)
    .bind(&actor.name)
    .bind(now)
    .fetch_one(&mut **tx)
    .await
    .map_err(ControlError::db(format!(
        "enqueuing a {} job",
        job.kind.as_str()
    )))?;
    let id: i64 = row
        .try_get("id")
        .map_err(ControlError::db("reading a job id"))?;
    audit::record(
        tx,
        AuditEntry::new(actor, "job.create", "job", id)
            .to_state("queued")
            .details(serde_json::json!({
                "kind": job.kind.as_str(),
                "migration_id": job.migration_id,
                "bucket_id": job.bucket_id,
                "params": job.params,
            })),
    )
    .await?;
    Ok(id)
}

impl Store {
    /// Enqueues one job (audited).
    pub async fn enqueue_job(&self, actor: &Actor, job: NewJob) -> Result<Job> {
        actor.require_operate(&format!("starting a {} job", job.kind.as_str()))?;
        let mut tx = self.begin().await?;
        let id = enqueue(&mut tx, actor, &job).await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a new job"))?;
        self.job(id).await
    }

    /// The job with this id.
    pub async fn job(&self, id: i64) -> Result<Job> {
        let row = sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db(format!("reading job {id}")))?;
        match row {
            Some(row) => job_from_row(&row),
            None => Err(ControlError::NotFound(format!("there is no job {id}"))),
        }
    }

    /// Jobs of a migration (or of one bucket), newest first.
    pub async fn list_jobs(
        &self,
        migration_id: Option<i64>,
        bucket_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let rows = sqlx::query(
            "SELECT * FROM jobs
             WHERE ($1 IS NULL OR migration_id = $1) AND ($2 IS NULL OR bucket_id = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(migration_id)
        .bind(bucket_id)
        .bind(limit.clamp(1, 10_000))
        .fetch_all(self.pool())
        .await
        .map_err(ControlError::db("listing jobs"))?;
        rows.iter().map(job_from_row).collect()
    }

    /// Leases the oldest job of one of `kinds` that is queued, or running with
    /// an expired lease (its worker died), for `lease_ms`. `None` when there is
    /// nothing to do.
    pub async fn lease_job(
        &self,
        worker: &str,
        kinds: &[JobKind],
        lease_ms: i64,
    ) -> Result<Option<Job>> {
        if kinds.is_empty() {
            return Ok(None);
        }
        let now = now_ms();
        let kind_list = (0..kinds.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let lock = match self.dialect() {
            Dialect::Postgres => "FOR UPDATE SKIP LOCKED",
            Dialect::Sqlite => "",
        };
        let sql = format!(
            "UPDATE jobs
             SET state = 'running', worker = $1, lease_expires_at = $2, attempts = attempts + 1,
                 started_at = COALESCE(started_at, $3), updated_at = $3
             WHERE id = (
                 SELECT id FROM jobs
                 WHERE (state = 'queued' OR (state = 'running' AND lease_expires_at < $3))
                   AND kind IN ({kind_list})
                 ORDER BY id
                 LIMIT 1 {lock})
             RETURNING *"
        );
        let mut query = sqlx::query(&sql)
            .bind(worker)
            .bind(now + lease_ms)
            .bind(now);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let row = query
            .fetch_optional(self.pool())
            .await
            .map_err(ControlError::db("leasing a job"))?;
        let Some(row) = row else { return Ok(None) };
        let job = job_from_row(&row)?;
        if job.attempts > 1 {
            tracing::info!(job = job.id, kind = job.kind.as_str(), %worker, attempt = job.attempts,
                "took over a job whose lease expired");
        }
        Ok(Some(job))
    }

    /// Renews a lease and records progress. Answers what the worker must do next.
    pub async fn heartbeat(
        &self,
        job_id: i64,
        worker: &str,
        lease_ms: i64,
        progress: &Progress,
    ) -> Result<Heartbeat> {
        let now = now_ms();
        let row = sqlx::query(
            "UPDATE jobs
             SET lease_expires_at = $1, rows_done = $2, rows_total = $3, rate = $4,
                 eta_seconds = $5, message = COALESCE($6, message), updated_at = $7
             WHERE id = $8 AND worker = $9 AND state = 'running'
             RETURNING requested, rate_limit",
        )
        .bind(now + lease_ms)
        .bind(progress.rows_done)
        .bind(progress.rows_total)
        .bind(progress.rate)
        .bind(progress.eta_seconds)
        .bind(progress.message.as_deref())
        .bind(now)
        .bind(job_id)
        .bind(worker)
        .fetch_optional(self.pool())
        .await
        .map_err(ControlError::db(format!(
            "renewing the lease of job {job_id}"
        )))?;
        let Some(row) = row else {
            return Ok(Heartbeat::LeaseLost);
        };
        let requested: Option<String> = row
            .try_get("requested")
            .map_err(ControlError::db("reading a job request"))?;
        Ok(Heartbeat::Continue {
            requested: requested.as_deref().and_then(Request::parse),
            rate_limit: row
                .try_get("rate_limit")
                .map_err(ControlError::db("reading a job rate"))?,
        })
    }

    /// Ends a job the worker holds. `false` when the lease was lost meanwhile
    /// (the job belongs to another worker now and nothing was written).
    pub async fn finish_job(&self, job_id: i64, worker: &str, outcome: &Outcome) -> Result<bool> {
        let (state, message) = match outcome {
            Outcome::Succeeded { summary, .. } => (JobState::Succeeded, summary.clone()),
            Outcome::Failed(m) => (JobState::Failed, Some(m.clone())),
            Outcome::Paused => (JobState::Paused, Some("paused at a checkpoint".into())),
            Outcome::Cancelled => (JobState::Cancelled, Some("cancelled".into())),
            Outcome::Released => (
                JobState::Queued,
                Some(format!(
                    "released by {worker} (shutting down); resumes from its checkpoint"
                )),
            ),
        };
        let now = now_ms();
        let finished = state.is_final().then_some(now);
        let bucket_id = self.job(job_id).await?.bucket_id;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            "UPDATE jobs
             SET state = $1, message = COALESCE($2, message), requested = NULL, worker = NULL,
                 lease_expires_at = NULL, updated_at = $3, finished_at = $4,
                 eta_seconds = CASE WHEN $1 = 'succeeded' THEN 0 ELSE eta_seconds END
             WHERE id = $5 AND worker = $6 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(message.as_deref())
        .bind(now)
        .bind(finished)
        .bind(job_id)
        .bind(worker)
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db(format!("finishing job {job_id}")))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let actor = Actor {
            name: format!("worker:{worker}"),
            role: crate::Role::Admin,
            clients: Vec::new(),
        };
        let mut entry = AuditEntry::new(&actor, "job.finish", "job", job_id)
            .from_state("running")
            .to_state(state.as_str());
        if let Some(m) = &message {
            entry = entry.reason(m.clone());
        }
        audit::record(&mut tx, entry).await?;
        if let Some(bucket_id) = bucket_id {
            let next = match outcome {
                Outcome::Succeeded { bucket_phase, .. } => *bucket_phase,
                Outcome::Failed(_) | Outcome::Cancelled => Some(Phase::Failed),
                Outcome::Paused => Some(Phase::Paused),
                Outcome::Released => None,
            };
            if let Some(next) = next {
                let why = message.clone().unwrap_or_default();
                move_bucket_after_job(&mut tx, &actor, bucket_id, next, &why).await?;
            }
        }
        tx.commit()
            .await
            .map_err(ControlError::db("committing a finished job"))?;
        Ok(true)
    }

    /// Asks a job to pause (running: at its next checkpoint; queued: at once).
    pub async fn pause_job(&self, actor: &Actor, job_id: i64, reason: &str) -> Result<Job> {
        self.request_job(actor, job_id, Request::Pause, reason)
            .await
    }

    /// Asks a job to stop for good (running: at its next checkpoint; queued or
    /// paused: at once).
    pub async fn cancel_job(&self, actor: &Actor, job_id: i64, reason: &str) -> Result<Job> {
        self.request_job(actor, job_id, Request::Cancel, reason)
            .await
    }

    async fn request_job(
        &self,
        actor: &Actor,
        job_id: i64,
        request: Request,
        reason: &str,
    ) -> Result<Job> {
        actor.require_operate(&format!("asking a job to {}", request.as_str()))?;
        let job = self.job(job_id).await?;
        let mut tx = self.begin().await?;
        let (to_state, sql) = match (job.state, request) {
            (JobState::Running, _) => (
                job.state,
                "UPDATE jobs SET requested = $1, updated_at = $2 WHERE id = $3 AND state = 'running'",
            ),
            (JobState::Queued, Request::Pause) => (
                JobState::Paused,
                "UPDATE jobs SET state = 'paused', requested = NULL, updated_at = $2
                 WHERE id = $3 AND state = 'queued' AND $1 IS NOT NULL",
            ),
            (JobState::Queued | JobState::Paused, Request::Cancel) => (
                JobState::Cancelled,
                "UPDATE jobs SET state = 'cancelled', requested = NULL, updated_at = $2, finished_at = $2
                 WHERE id = $3 AND state IN ('queued', 'paused') AND $1 IS NOT NULL",
            ),
            (state, request) => {
                return Err(ControlError::Conflict(format!(
                    "job {job_id} is {}: it cannot be asked to {}{}",
                    state.as_str(),
                    request.as_str(),
                    if state == JobState::Paused {
                        " (resume it, or cancel it)"
                    } else {
                        ""
                    }
                )));
            }
        };
        let done = sqlx::query(sql)
            .bind(request.as_str())
            .bind(now_ms())
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(ControlError::db(format!(
                "asking job {job_id} to {}",
                request.as_str()
            )))?;
        if done.rows_affected() == 0 {
            return Err(ControlError::Conflict(format!(
                "job {job_id} changed state meanwhile: reload and try again"
            )));
        }
        if let (Some(bucket_id), true) = (job.bucket_id, to_state != job.state) {
            let next = if to_state == JobState::Paused {
                Phase::Paused
            } else {
                Phase::Failed
            };
            let why = format!("job {job_id} {} by {}", to_state.as_str(), actor.name);
            move_bucket_after_job(&mut tx, actor, bucket_id, next, &why).await?;
        }
        audit::record(
            &mut tx,
            AuditEntry::new(actor, format!("job.{}", request.as_str()), "job", job_id)
                .from_state(job.state.as_str())
                .to_state(if to_state == job.state {
                    format!("{} ({} requested)", job.state.as_str(), request.as_str())
                } else {
                    to_state.as_str().to_string()
                })
                .reason(reason),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a job request"))?;
        self.job(job_id).await
    }

    /// Puts a paused job back in the queue; a worker resumes it from its checkpoint.
    pub async fn resume_job(&self, actor: &Actor, job_id: i64, reason: &str) -> Result<Job> {
        actor.require_operate("resuming a job")?;
        let mut tx = self.begin().await?;
        let done = sqlx::query(
            // The message said "paused at a checkpoint": no longer true.
            "UPDATE jobs SET state = 'queued', requested = NULL, updated_at = $1,
                    message = 'resumed: waits for a worker, then continues from its checkpoint'
             WHERE id = $2 AND state = 'paused'",
        )
        .bind(now_ms())
        .bind(job_id)
        .execute(&mut *tx)
        .await
        .map_err(ControlError::db(format!("resuming job {job_id}")))?;
        if done.rows_affected() == 0 {
            let job = self.job(job_id).await?;
            return Err(ControlError::Conflict(format!(
                "job {job_id} is {}: only a paused job can be resumed",
                job.state.as_str()
            )));
        }
        if let Some(bucket_id) = self.job(job_id).await?.bucket_id {
            if let Some(resume) = self.bucket(bucket_id).await?.resume_phase {
                move_bucket_after_job(&mut tx, actor, bucket_id, resume, reason).await?;
            }
        }
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "job.resume", "job", job_id)
                .from_state("paused")
                .to_state("queued")
                .reason(reason),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a job resume"))?;
        self.job(job_id).await
    }

    /// Changes a job's rate limit (rows per second; `None` = unthrottled). A
    /// running job picks it up at its next heartbeat.
    pub async fn set_job_rate(
        &self,
        actor: &Actor,
        job_id: i64,
        rate: Option<f64>,
        reason: &str,
    ) -> Result<Job> {
        actor.require_operate("changing a job's rate")?;
        check_rate(rate)?;
        let job = self.job(job_id).await?;
        if job.state.is_final() {
            return Err(ControlError::Conflict(format!(
                "job {job_id} is {}: its rate can no longer change",
                job.state.as_str()
            )));
        }
        let fmt =
            |r: Option<f64>| r.map_or_else(|| "unthrottled".to_string(), |r| format!("{r}/s"));
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE jobs SET rate_limit = $1, updated_at = $2 WHERE id = $3")
            .bind(rate)
            .bind(now_ms())
            .bind(job_id)
            .execute(&mut *tx)
            .await
            .map_err(ControlError::db(format!(
                "changing the rate of job {job_id}"
            )))?;
        audit::record(
            &mut tx,
            AuditEntry::new(actor, "job.rate", "job", job_id)
                .from_state(fmt(job.rate_limit))
                .to_state(fmt(rate))
                .reason(reason),
        )
        .await?;
        tx.commit()
            .await
            .map_err(ControlError::db("committing a rate change"))?;
        self.job(job_id).await
    }
}

/// Moves a job's bucket as the job's end implies, when the state machine
/// allows it. A bucket someone already moved elsewhere is left alone (logged):
/// a job's end never undoes a person's decision.
async fn move_bucket_after_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actor: &Actor,
    bucket_id: i64,
    next: Phase,
    reason: &str,
) -> Result<()> {
    let phase: String = sqlx::query("SELECT phase, resume_phase FROM buckets WHERE id = $1")
        .bind(bucket_id)
        .fetch_one(&mut **tx)
        .await
        .and_then(|r| r.try_get("phase"))
        .map_err(ControlError::db(format!("reading bucket {bucket_id}")))?;
    let from = Phase::parse(&phase)?;
    if crate::phases::legal_moves(from, None).contains(&next) || from == Phase::Paused {
        match move_bucket_in(tx, actor, bucket_id, next, reason).await {
            Ok(_) => {}
            Err(ControlError::Conflict(m)) => {
                tracing::warn!(bucket = bucket_id, %m, "bucket not moved after its job ended");
            }
            Err(e) => return Err(e),
        }
    } else {
        tracing::warn!(bucket = bucket_id, from = %from, to = %next, "bucket not moved after its job ended: it was moved meanwhile");
    }
    Ok(())
}
