//! Data fixes in the control store: a fix is a job spec (filter + mapper) on a
//! database; each run of it is a `data-fix` job on the queue, which any worker
//! executes ([`crate::runners::datafix`]), resuming from the run's checkpoint
//! after a takeover. Settings change while a run goes on (the rate through the
//! job's rate limit, concurrency / batch size / failure policy through the
//! fix's row, which the runner polls). Creating, dry-running, running and
//! changing a fix are audited, and so is each run's end with the number of
//! records it changed.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{FromRow, Row};
use tern_datafix::{
    Checkpoint, DryRunRecord, FixFailure, FixJob, FixSpec, OnFailure, PluginRegistry,
};

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::jobs::{self, JobKind, NewJob};
use crate::store::Store;
use crate::users::Actor;

/// A fix as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fix {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub spec: String,
    /// The database, without password.
    pub db_url: String,
    pub mapper_kind: String,
    pub target: String,
    pub settings: FixSettings,
    pub created_by: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Settings changeable while a run goes on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FixSettings {
    /// Records per second; `None` is unthrottled.
    pub rate: Option<f64>,
    pub concurrency: i64,
    pub batch_size: i64,
    /// `retry`, `skip` or `stop`.
    pub on_failure: String,
}

/// One run of a fix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FixRun {
    pub id: i64,
    pub fix_id: i64,
    pub job_id: Option<i64>,
    pub started_by: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub pass: i64,
    pub checkpoint: Option<String>,
    pub changed: i64,
    pub failed: i64,
    pub stale: i64,
    pub summary: Option<String>,
}

/// A recorded failure of one record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct FixFailureRow {
    pub key_text: String,
    pub reason: String,
    pub pass: i64,
    pub attempts: i64,
    pub at: i64,
}

/// A fix's description is its spec's, read from the spec text.
impl<'r> FromRow<'r, AnyRow> for Fix {
    fn from_row(row: &'r AnyRow) -> sqlx::Result<Fix> {
        let spec: String = row.try_get("spec")?;
        let description = toml::from_str::<toml::Table>(&spec)
            .ok()
            .and_then(|t| {
                t.get("description")
                    .and_then(|d| d.as_str().map(str::to_string))
            })
            .unwrap_or_default();
        Ok(Fix {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            description,
            spec,
            db_url: row.try_get("db_url")?,
            mapper_kind: row.try_get("mapper_kind")?,
            target: row.try_get("target")?,
            settings: FixSettings::from_row(row)?,
            created_by: row.try_get("created_by")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Parses a fix spec, as the control plane stores it; a fix of Tern's own
/// control store is refused.
pub fn parse_fix_spec(text: &str, origin: &str) -> Result<FixSpec> {
    let spec = FixSpec::parse(text, origin).map_err(ControlError::from)?;
    crate::own_store::refuse(&spec.url, &format!("{origin}: url"))?;
    Ok(spec)
}

impl Store {
    /// Stores a new fix from its spec text (validated; the database is not contacted).
    pub async fn create_fix(&self, actor: &Actor, spec_text: &str) -> Result<Fix> {
        actor.require_operate("creating a data fix")?;
        Store::refuse_fix_password(spec_text, "job.toml")?;
        let spec = self.fix_spec_for(spec_text, "job.toml").await?;
        if spec.url.trim().is_empty() {
            return Err(ControlError::Invalid(
                "job.toml: name the database to fix: connection = \"NAME\" (a registered connection), or url = \"postgres://user@host/db\""
                    .into(),
            ));
        }
        let db_url = tern_engine::connector::redact(&spec.url);
        let now = now_ms();
        let mut tx = self.begin().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO fixes (name, spec, db_url, mapper_kind, target, rate, concurrency, batch_size,
                                on_failure, created_by, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
        )
        .bind(&spec.name)
        .bind(spec_text)
        .bind(&db_url)
        .bind(spec.mapper.kind())
        .bind(spec.mapper.table())
        .bind((spec.settings.rate > 0).then_some(spec.settings.rate as f64))
        .bind(spec.settings.concurrency as i64)
        .bind(spec.settings.batch_size as i64)
        .bind(spec.settings.on_failure.as_str())
        .bind(&actor.name)
        .bind(now)
        .scalar(&mut *tx, format!("creating fix `{}`", spec.name))
        .await
        .map_err(|e| {
            e.or_conflict(|| {
                format!(
                    "a fix named `{}` exists already: choose another name",
                    spec.name
                )
            })
        })?;
        let entry = AuditEntry::new(actor, "fix.create", "fix", id).details(serde_json::json!({
            "name": spec.name, "database": db_url, "table": spec.mapper.table(),
            "mapper": spec.mapper.kind(), "filter": spec.filter.sql,
        }));
        audit::commit(tx, entry, "committing a new fix").await?;
        self.fix(id).await
    }

    pub async fn fix(&self, id: i64) -> Result<Fix> {
        sqlx::query("SELECT * FROM fixes WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("fix {id}"))
            .await
    }

    /// Every fix, newest first.
    pub async fn list_fixes(&self) -> Result<Vec<Fix>> {
        sqlx::query("SELECT * FROM fixes ORDER BY id DESC")
            .all(self.pool(), "listing fixes")
            .await
    }

    /// The first `limit` records the fix's filter selects and the change each
    /// would get; nothing is written. Audited (it reads the database).
    pub async fn dry_run_fix(
        &self,
        actor: &Actor,
        id: i64,
        limit: usize,
        plugins: &PluginRegistry,
    ) -> Result<Vec<DryRunRecord>> {
        actor.require_operate("dry-running a data fix")?;
        let fix = self.fix(id).await?;
        let spec = self.fix_spec_for(&fix.spec, &fix.name).await?;
        let job = FixJob::connect(spec, plugins).await?;
        let records = job.dry_run(limit.clamp(1, 1000)).await;
        job.db().close().await;
        let records = records?;
        let entry = AuditEntry::new(actor, "fix.dry-run", "fix", id).details(serde_json::json!({
            "database": fix.db_url, "table": fix.target, "records_shown": records.len(),
        }));
        audit::commit(self.begin().await?, entry, "committing a dry-run audit").await?;
        Ok(records)
    }

    /// Starts a run: a `data-fix` job on the queue at the fix's rate. One run at a time.
    pub async fn start_fix_run(&self, actor: &Actor, fix_id: i64) -> Result<FixRun> {
        actor.require_operate("running a data fix")?;
        let fix = self.fix(fix_id).await?;
        if let Some(run) = self.active_fix_run(fix_id).await? {
            return Err(ControlError::Conflict(format!(
                "fix `{}` is already running (run {}): pause or cancel it first",
                fix.name, run.id
            )));
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        let run_id: i64 = sqlx::query(
            "INSERT INTO fix_runs (fix_id, started_by, started_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(fix_id)
        .bind(&actor.name)
        .bind(now)
        .scalar(&mut *tx, format!("starting a run of fix {fix_id}"))
        .await?;
        let job_id = jobs::enqueue(
            &mut tx,
            actor,
            &NewJob {
                migration_id: None,
                bucket_id: None,
                kind: JobKind::DataFix,
                params: serde_json::json!({ "fix_id": fix_id, "run_id": run_id }),
                rate_limit: fix.settings.rate,
            },
        )
        .await?;
        sqlx::query("UPDATE fix_runs SET job_id = $1 WHERE id = $2")
            .bind(job_id)
            .bind(run_id)
            .run(&mut *tx, "linking a run to its job")
            .await?;
        let entry = AuditEntry::new(actor, "fix.run", "fix", fix_id)
            .to_state("running")
            .details(serde_json::json!({
                "run_id": run_id, "job_id": job_id, "name": fix.name,
                "database": fix.db_url, "table": fix.target, "rate": fix.settings.rate,
            }));
        audit::commit(tx, entry, "committing a fix run").await?;
        self.fix_run(run_id).await
    }

    pub async fn fix_run(&self, run_id: i64) -> Result<FixRun> {
        sqlx::query("SELECT * FROM fix_runs WHERE id = $1")
            .bind(run_id)
            .found(self.pool(), format!("fix run {run_id}"))
            .await
    }

    /// A fix's runs, newest first.
    pub async fn fix_runs(&self, fix_id: i64) -> Result<Vec<FixRun>> {
        sqlx::query("SELECT * FROM fix_runs WHERE fix_id = $1 ORDER BY id DESC")
            .bind(fix_id)
            .all(self.pool(), format!("listing the runs of fix {fix_id}"))
            .await
    }

    /// The run whose job is not finished, if any.
    pub async fn active_fix_run(&self, fix_id: i64) -> Result<Option<FixRun>> {
        for run in self.fix_runs(fix_id).await? {
            if let Some(job) = run.job_id
                && !self.job(job).await?.state.is_final()
            {
                return Ok(Some(run));
            }
        }
        Ok(None)
    }

    /// A run's failures, oldest first (at most `limit`).
    pub async fn fix_failures(&self, run_id: i64, limit: i64) -> Result<Vec<FixFailureRow>> {
        sqlx::query(
            "SELECT key_text, reason, pass, attempts, at FROM fix_failures WHERE run_id = $1 ORDER BY id LIMIT $2",
        )
        .bind(run_id)
        .bind(limit)
        .all(self.pool(), format!("listing the failures of run {run_id}"))
        .await
    }

    /// Changes a fix's settings; a running run follows them within a second or
    /// two (the rate through its job, the rest through this row). Audited.
    pub async fn set_fix_settings(
        &self,
        actor: &Actor,
        fix_id: i64,
        s: &FixSettings,
        reason: &str,
    ) -> Result<Fix> {
        actor.require_operate("changing a data fix's settings")?;
        if OnFailure::parse(&s.on_failure).is_none() {
            return Err(ControlError::Invalid(format!(
                "on_failure `{}` is not one of retry, skip, stop",
                s.on_failure
            )));
        }
        if !(1..=256).contains(&s.concurrency) {
            return Err(ControlError::Invalid(format!(
                "concurrency {} is out of range: use 1 to 256",
                s.concurrency
            )));
        }
        if !(1..=100_000).contains(&s.batch_size) {
            return Err(ControlError::Invalid(format!(
                "batch size {} is out of range: use 1 to 100000",
                s.batch_size
            )));
        }
        let rate = s.rate.filter(|r| *r > 0.0);
        let before = self.fix(fix_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE fixes SET rate = $1, concurrency = $2, batch_size = $3, on_failure = $4, updated_at = $5 WHERE id = $6",
        )
        .bind(rate)
        .bind(s.concurrency)
        .bind(s.batch_size)
        .bind(&s.on_failure)
        .bind(now_ms())
        .bind(fix_id)
        .run(&mut *tx, format!("changing the settings of fix {fix_id}"))
        .await?;
        let entry = AuditEntry::new(actor, "fix.settings", "fix", fix_id)
            .from_state(serde_json::to_string(&before.settings).unwrap_or_default())
            .to_state(serde_json::to_string(&FixSettings { rate, ..s.clone() }).unwrap_or_default())
            .reason(reason);
        audit::commit(tx, entry, "committing fix settings").await?;
        if let Some(job) = self.active_fix_run(fix_id).await?.and_then(|r| r.job_id) {
            self.set_job_rate(actor, job, rate, reason).await?;
        }
        self.fix(fix_id).await
    }

    /// Stores a run's checkpoint, fenced by the job's lease: a worker that lost
    /// the job (its lease taken over: `lease_token` moved on) writes nothing and
    /// is told so.
    pub async fn record_fix_checkpoint(
        &self,
        run_id: i64,
        lease_token: i64,
        cp: &Checkpoint,
    ) -> Result<()> {
        let json = serde_json::to_string(cp)
            .map_err(|e| ControlError::Internal(format!("checkpoint is not JSON: {e}")))?;
        let changed = sqlx::query(
            "UPDATE fix_runs SET checkpoint = $1, pass = $2, changed = $3, failed = $4, stale = $5
             WHERE id = $6 AND EXISTS (SELECT 1 FROM jobs j WHERE j.id = fix_runs.job_id AND j.lease_token = $7)",
        )
        .bind(json)
        .bind(i64::from(cp.pass))
        .bind(cp.changed as i64)
        .bind(cp.failed as i64)
        .bind(cp.stale as i64)
        .bind(run_id)
        .bind(lease_token)
        .run(self.pool(), format!("storing the checkpoint of run {run_id}"))
        .await?;
        if changed == 0 {
            return Err(ControlError::Conflict(format!(
                "run {run_id}: another worker took the job over; this one stops"
            )));
        }
        Ok(())
    }

    /// Records failed records of a run (a key already recorded keeps its first reason).
    pub async fn record_fix_failures(&self, run_id: i64, failures: &[FixFailure]) -> Result<()> {
        let now = now_ms();
        let mut tx = self.begin().await?;
        for f in failures {
            let exists: Option<(i64,)> = sqlx::query(
                "SELECT 1 AS one FROM fix_failures WHERE run_id = $1 AND key_text = $2",
            )
            .bind(run_id)
            .bind(&f.key_text)
            .optional(&mut *tx, "reading a failure")
            .await?;
            if exists.is_some() {
                continue;
            }
            sqlx::query(
                "INSERT INTO fix_failures (run_id, key_text, key_json, reason, pass, attempts, at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(run_id)
            .bind(&f.key_text)
            .bind(f.key.to_string())
            .bind(&f.reason)
            .bind(i64::from(f.pass))
            .bind(i64::from(f.attempts))
            .bind(now)
            .run(&mut *tx, format!("recording a failure of run {run_id}"))
            .await?;
        }
        db::commit(tx, "committing failures").await
    }

    /// Keys a run recorded as failed (a resumed run does not try them again).
    pub async fn fix_failed_keys(&self, run_id: i64) -> Result<Vec<String>> {
        sqlx::query("SELECT key_text FROM fix_failures WHERE run_id = $1")
            .bind(run_id)
            .column(self.pool(), "reading failed keys")
            .await
    }

    /// Ends a run with its summary; audited as the starter's fix, with the records changed.
    pub async fn finish_fix_run(
        &self,
        run_id: i64,
        outcome: &str,
        summary: &str,
    ) -> Result<FixRun> {
        let run = self.fix_run(run_id).await?;
        let fix = self.fix(run.fix_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE fix_runs SET finished_at = $1, summary = $2 WHERE id = $3")
            .bind(now_ms())
            .bind(summary)
            .bind(run_id)
            .run(&mut *tx, format!("finishing run {run_id}"))
            .await?;
        let actor = Actor {
            name: run.started_by.clone(),
            ..Actor::system()
        };
        let entry = AuditEntry::new(&actor, "fix.finished", "fix", fix.id)
            .from_state("running")
            .to_state(outcome)
            .details(serde_json::json!({
                "run_id": run_id, "name": fix.name, "database": fix.db_url, "table": fix.target,
                "records_changed": run.changed, "records_failed": run.failed, "passes": run.pass,
                "summary": summary,
            }));
        audit::commit(tx, entry, "committing a run's end").await?;
        self.fix_run(run_id).await
    }
}
