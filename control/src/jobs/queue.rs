//! The queue in the store: enqueuing, reading, leasing, heartbeats and the
//! end of a job (which moves its bucket as the end implies).

use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};

use crate::access::Actor;
use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::jobs::model::*;
use crate::jobs::requests::move_bucket_after_job;
use crate::store::{Dialect, Store};

/// A job's params are JSON text; its request, when unknown, is none.
impl<'r> FromRow<'r, AnyRow> for Job {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Job> {
        let requested: Option<String> = row.try_get("requested")?;
        let params: String = row.try_get("params")?;
        Ok(Job {
            id: row.try_get("id")?,
            migration_id: row.try_get("migration_id")?,
            bucket_id: row.try_get("bucket_id")?,
            kind: row.try_get("kind")?,
            params: serde_json::from_str(&params).map_err(|e| sqlx::Error::ColumnDecode {
                index: "params".into(),
                source: e.into(),
            })?,
            state: row.try_get("state")?,
            requested: requested.as_deref().and_then(Request::parse),
            rate_limit: row.try_get("rate_limit")?,
            worker: row.try_get("worker")?,
            lease_expires_at: row.try_get("lease_expires_at")?,
            attempts: row.try_get("attempts")?,
            lease_token: row.try_get("lease_token")?,
            rows_done: row.try_get("rows_done")?,
            rows_total: row.try_get("rows_total")?,
            rate: row.try_get("rate")?,
            eta_seconds: row.try_get("eta_seconds")?,
            message: row.try_get("message")?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            started_at: row.try_get("started_at")?,
            updated_at: row.try_get("updated_at")?,
            finished_at: row.try_get("finished_at")?,
        })
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
    let fix_id = match job.kind {
        JobKind::DataFix => job.params.get("fix_id").and_then(|v| v.as_i64()),
        _ => None,
    };
    // The store keeps one active relay per migration and one active run per
    // fix (unique partial indexes, migration 0008): of any number of racing
    // requests exactly one gets here without a unique violation.
    let id: i64 = sqlx::query(
        "INSERT INTO jobs (migration_id, bucket_id, kind, params, state, rate_limit,
                           created_by, created_at, updated_at, fix_id)
         VALUES ($1, $2, $3, $4, 'queued', $5, $6, $7, $7, $8) RETURNING id",
    )
    .bind(job.migration_id)
    .bind(job.bucket_id)
    .bind(job.kind.as_str())
    .bind(job.params.to_string())
    .bind(job.rate_limit)
    .bind(&actor.name)
    .bind(now)
    .bind(fix_id)
    .scalar(&mut **tx, format!("enqueuing a {} job", job.kind.as_str()))
    .await
    .map_err(|e| already_active(e, job))?;
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

/// A unique violation on enqueue is the store refusing a second active relay
/// of a migration, or a second active run of a fix: a conflict that says so.
fn already_active(e: ControlError, job: &NewJob) -> ControlError {
    if !e.is_unique_violation() {
        return e;
    }
    match job.kind {
        JobKind::Relay => ControlError::Conflict(format!(
            "migration {} already has an active relay (queued, running or paused): change its ramp, \
             or stop it before starting another",
            job.migration_id.unwrap_or_default()
        )),
        JobKind::DataFix => ControlError::Conflict(format!(
            "fix {} is already running: pause or cancel its run first",
            job.params
                .get("fix_id")
                .and_then(|v| v.as_i64())
                .unwrap_or_default()
        )),
        _ => e,
    }
}

impl Store {
    /// Enqueues one job (audited).
    pub async fn enqueue_job(&self, actor: &Actor, job: NewJob) -> Result<Job> {
        actor.require_operate(&format!("starting a {} job", job.kind.as_str()))?;
        let mut tx = self.begin().await?;
        let id = enqueue(&mut tx, actor, &job).await?;
        db::commit(tx, "committing a new job").await?;
        self.job(id).await
    }

    /// The job with this id.
    pub async fn job(&self, id: i64) -> Result<Job> {
        sqlx::query("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("job {id}"))
            .await
    }

    /// Jobs of a migration (or of one bucket), newest first.
    pub async fn list_jobs(
        &self,
        migration_id: Option<i64>,
        bucket_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Job>> {
        sqlx::query(
            "SELECT * FROM jobs
             WHERE ($1 IS NULL OR migration_id = $1) AND ($2 IS NULL OR bucket_id = $2)
             ORDER BY id DESC LIMIT $3",
        )
        .bind(migration_id)
        .bind(bucket_id)
        .bind(limit.clamp(1, 10_000))
        .all(self.pool(), "listing jobs")
        .await
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
        let lock = if self.dialect() == Dialect::Postgres {
            "FOR UPDATE SKIP LOCKED"
        } else {
            ""
        };
        // A fresh fence token for this lease, from the store-wide counter, in
        // the lease's transaction: a rolled-back lease gives its token back.
        let mut tx = self.begin().await?;
        let token: i64 =
            sqlx::query("UPDATE lease_counter SET value = value + 1 WHERE id = 1 RETURNING value")
                .scalar(&mut *tx, "taking a lease token")
                .await?;
        let kind_list = (0..kinds.len())
            .map(|i| format!("${}", i + 5))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE jobs
             SET state = 'running', worker = $1, lease_expires_at = $2, attempts = attempts + 1,
                 started_at = COALESCE(started_at, $3), updated_at = $3, lease_token = $4
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
            .bind(now)
            .bind(token);
        for kind in kinds {
            query = query.bind(kind.as_str());
        }
        let Some(job): Option<Job> = query.optional(&mut *tx, "leasing a job").await? else {
            let _ = tx.rollback().await;
            return Ok(None);
        };
        db::commit(tx, "committing a lease").await?;
        if job.attempts > 1 {
            tracing::info!(job = job.id, kind = job.kind.as_str(), %worker, attempt = job.attempts,
                "took over a job whose lease expired");
        }
        Ok(Some(job))
    }

    /// Renews a lease and records progress. Answers what the worker must do
    /// next: [`Heartbeat::LeaseLost`] when `worker` no longer holds the lease
    /// with `token` (another worker took it over), and nothing is written.
    pub async fn heartbeat(
        &self,
        job_id: i64,
        worker: &str,
        token: i64,
        lease_ms: i64,
        progress: &Progress,
    ) -> Result<Heartbeat> {
        let now = now_ms();
        let lease: Option<(Option<String>, Option<f64>)> = sqlx::query(
            "UPDATE jobs
             SET lease_expires_at = $1, rows_done = $2, rows_total = $3, rate = $4,
                 eta_seconds = $5, message = COALESCE($6, message), updated_at = $7
             WHERE id = $8 AND worker = $9 AND lease_token = $10 AND state = 'running'
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
        .bind(token)
        .optional(self.pool(), format!("renewing the lease of job {job_id}"))
        .await?;
        let Some((requested, rate_limit)) = lease else {
            return Ok(Heartbeat::LeaseLost);
        };
        Ok(Heartbeat::Continue {
            requested: requested.as_deref().and_then(Request::parse),
            rate_limit,
        })
    }

    /// Ends a job the worker holds with the lease of `token`. `false` when the
    /// lease was lost meanwhile (the job belongs to another worker now and
    /// nothing was written).
    pub async fn finish_job(
        &self,
        job_id: i64,
        worker: &str,
        token: i64,
        outcome: &Outcome,
    ) -> Result<bool> {
        let (state, message) = outcome.ends_in(worker);
        let now = now_ms();
        let finished = state.is_final().then_some(now);
        let bucket_id = self.job(job_id).await?.bucket_id;
        let mut tx = self.begin().await?;
        let changed = sqlx::query(
            "UPDATE jobs
             SET state = $1, message = COALESCE($2, message), requested = NULL, worker = NULL,
                 lease_expires_at = NULL, updated_at = $3, finished_at = $4,
                 eta_seconds = CASE WHEN $1 = 'succeeded' THEN 0 ELSE eta_seconds END
             WHERE id = $5 AND worker = $6 AND lease_token = $7 AND state = 'running'",
        )
        .bind(state.as_str())
        .bind(message.as_deref())
        .bind(now)
        .bind(finished)
        .bind(job_id)
        .bind(worker)
        .bind(token)
        .run(&mut *tx, format!("finishing job {job_id}"))
        .await?;
        if changed == 0 {
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
            let next = outcome.bucket_phase();
            if let Some(next) = next {
                let why = message.clone().unwrap_or_default();
                move_bucket_after_job(&mut tx, &actor, bucket_id, next, &why).await?;
            }
        }
        db::commit(tx, "committing a finished job").await?;
        Ok(true)
    }
}
