//! What people ask of a job: pause, cancel, resume, a new rate. A running
//! job sees the request at its next heartbeat; a queued or paused one changes
//! at once, and its bucket with it.

use crate::access::Actor;
use crate::audit::{self, AuditEntry};
use crate::buckets::move_bucket_in;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::jobs::model::*;
use crate::phases::Phase;
use crate::store::Store;

impl Store {
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
        let to_state = state_after_request(job_id, job.state, request)?;
        let sql = match to_state {
            JobState::Paused => {
                "UPDATE jobs SET state = 'paused', requested = NULL, updated_at = $2
                 WHERE id = $3 AND state = 'queued' AND $1 IS NOT NULL"
            }
            JobState::Cancelled => {
                "UPDATE jobs SET state = 'cancelled', requested = NULL, updated_at = $2, finished_at = $2
                 WHERE id = $3 AND state IN ('queued', 'paused') AND $1 IS NOT NULL"
            }
            _ => "UPDATE jobs SET requested = $1, updated_at = $2 WHERE id = $3 AND state = 'running'",
        };
        let changed = sqlx::query(sql)
            .bind(request.as_str())
            .bind(now_ms())
            .bind(job_id)
            .run(
                &mut *tx,
                format!("asking job {job_id} to {}", request.as_str()),
            )
            .await?;
        if changed == 0 {
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
        let entry = AuditEntry::new(actor, format!("job.{}", request.as_str()), "job", job_id)
            .from_state(job.state.as_str())
            .to_state(if to_state == job.state {
                format!("{} ({} requested)", job.state.as_str(), request.as_str())
            } else {
                to_state.as_str().to_string()
            })
            .reason(reason);
        audit::commit(tx, entry, "committing a job request").await?;
        self.job(job_id).await
    }

    /// Puts a paused job back in the queue; a worker resumes it from its checkpoint.
    pub async fn resume_job(&self, actor: &Actor, job_id: i64, reason: &str) -> Result<Job> {
        actor.require_operate("resuming a job")?;
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            // The message said "paused at a checkpoint": no longer true.
            "UPDATE jobs SET state = 'queued', requested = NULL, updated_at = $1,
                    message = 'resumed: waits for a worker, then continues from its checkpoint'
             WHERE id = $2 AND state = 'paused'",
        )
        .bind(now_ms())
        .bind(job_id)
        .run(&mut *tx, format!("resuming job {job_id}"))
        .await?;
        if changed == 0 {
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
        let entry = AuditEntry::new(actor, "job.resume", "job", job_id)
            .from_state("paused")
            .to_state("queued")
            .reason(reason);
        audit::commit(tx, entry, "committing a job resume").await?;
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
            .run(&mut *tx, format!("changing the rate of job {job_id}"))
            .await?;
        let entry = AuditEntry::new(actor, "job.rate", "job", job_id)
            .from_state(fmt(job.rate_limit))
            .to_state(fmt(rate))
            .reason(reason);
        audit::commit(tx, entry, "committing a rate change").await?;
        self.job(job_id).await
    }
}

/// Moves a job's bucket as the job's end implies, when the state machine
/// allows it. A bucket someone already moved elsewhere is left alone (logged):
/// a job's end never undoes a person's decision.
pub(crate) async fn move_bucket_after_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    actor: &Actor,
    bucket_id: i64,
    next: Phase,
    reason: &str,
) -> Result<()> {
    let from: Phase = sqlx::query("SELECT phase FROM buckets WHERE id = $1")
        .bind(bucket_id)
        .scalar(&mut **tx, format!("reading bucket {bucket_id}"))
        .await?;
    if crate::phases::job_may_move(from, next) {
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
