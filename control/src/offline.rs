//! Offline jobs and the old datasets they read: who owns each job, which old
//! datasets it reads and which new dataset replaces each, bulk import from
//! CSV, the access log ("job J read dataset D at T"), and the dataset
//! lifecycle active → locked → deleted:
//! - locking is refused while a job that is not migrated reads the dataset, or
//!   a read was logged within the migration's quiet period, unless forced with
//!   a written reason (audited);
//! - deletion is refused until the dataset has been locked for the
//!   migration's `lock_days`.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

const DAY_MS: i64 = 86_400_000;

/// A downstream job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct OfflineJob {
    pub id: i64,
    pub migration_id: i64,
    pub name: String,
    pub owner: String,
    pub schedule: String,
    /// `not-started`, `in-progress` or `migrated`.
    pub status: String,
    /// The old datasets it reads (not a column: the store adds them).
    #[sqlx(skip)]
    pub datasets: Vec<String>,
    /// When the access log last saw it read an old dataset (likewise).
    #[sqlx(skip)]
    pub last_old_read: Option<i64>,
}

/// An old dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Dataset {
    pub id: i64,
    pub migration_id: i64,
    pub name: String,
    /// The new dataset that replaces it.
    pub replacement: String,
    /// `active`, `locked` or `deleted`.
    pub status: String,
    pub locked_at: Option<i64>,
    pub deleted_at: Option<i64>,
    /// Jobs not yet migrated that read it (not a column: the store adds them).
    #[sqlx(skip)]
    pub readers: Vec<String>,
    /// The latest logged read: (job, at) (likewise).
    #[sqlx(skip)]
    pub last_access: Option<(String, i64)>,
}

/// A job to register.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NewOfflineJob {
    pub name: String,
    pub owner: String,
    pub schedule: String,
    /// Old datasets it reads, with the new dataset replacing each (may be blank).
    pub reads: Vec<(String, String)>,
    /// Blank means not-started.
    pub status: String,
}

/// What a CSV import did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub jobs: usize,
    pub datasets: usize,
}

fn check_job_status(s: &str) -> Result<&'static str> {
    match s.trim() {
        "" | "not-started" => Ok("not-started"),
        "in-progress" => Ok("in-progress"),
        "migrated" => Ok("migrated"),
        other => Err(ControlError::Invalid(format!(
            "`{other}` is not a job status: use not-started, in-progress or migrated"
        ))),
    }
}

/// Splits CSV text into records (RFC 4180 quoting: `"a, b"`, `""` for a quote).
pub fn parse_csv(text: &str) -> Result<Vec<Vec<String>>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => {
                if c == '\n' {
                    line += 1;
                }
                field.push(c);
            }
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                if row.iter().any(|f| !f.trim().is_empty()) {
                    rows.push(std::mem::take(&mut row));
                } else {
                    row.clear();
                }
                line += 1;
            }
            (false, c) => field.push(c),
        }
    }
    if quoted {
        return Err(ControlError::Invalid(format!(
            "the CSV has a quote opened and never closed (by line {line})"
        )));
    }
    row.push(field);
    if row.iter().any(|f| !f.trim().is_empty()) {
        rows.push(row);
    }
    Ok(rows)
}

impl Store {
    async fn dataset_id(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        migration_id: i64,
        name: &str,
        replacement: &str,
    ) -> Result<(i64, bool)> {
        let found: Option<(i64,)> =
            sqlx::query("SELECT id FROM datasets WHERE migration_id = $1 AND name = $2")
                .bind(migration_id)
                .bind(name)
                .optional(&mut **tx, "looking up a dataset")
                .await?;
        if let Some((id,)) = found {
            if !replacement.is_empty() {
                sqlx::query("UPDATE datasets SET replacement = $1 WHERE id = $2")
                    .bind(replacement)
                    .bind(id)
                    .run(&mut **tx, "updating a dataset")
                    .await?;
            }
            return Ok((id, false));
        }
        let id = sqlx::query(
            "INSERT INTO datasets (migration_id, name, replacement, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(migration_id)
        .bind(name)
        .bind(replacement)
        .bind(now_ms())
        .scalar(&mut **tx, "registering a dataset").await?;
        Ok((id, true))
    }

    async fn upsert_job(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        migration_id: i64,
        job: &NewOfflineJob,
    ) -> Result<(i64, usize)> {
        let name = job.name.trim();
        if name.is_empty() {
            return Err(ControlError::Invalid("an offline job needs a name".into()));
        }
        let status = check_job_status(&job.status)?;
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO offline_jobs (migration_id, name, owner, schedule, status, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (migration_id, name) DO UPDATE SET owner = excluded.owner,
                schedule = excluded.schedule, status = excluded.status, updated_at = excluded.updated_at
             RETURNING id",
        )
        .bind(migration_id)
        .bind(name)
        .bind(job.owner.trim())
        .bind(job.schedule.trim())
        .bind(status)
        .bind(now)
        .scalar(&mut **tx, "registering an offline job").await?;
        let mut new_datasets = 0;
        for (old, new) in &job.reads {
            if old.trim().is_empty() {
                continue;
            }
            let (ds, created) = Store::dataset_id(tx, migration_id, old.trim(), new.trim()).await?;
            new_datasets += usize::from(created);
            sqlx::query(
                "INSERT INTO job_datasets (job_id, dataset_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(ds)
            .run(&mut **tx, "linking a job to a dataset").await?;
        }
        Ok((id, new_datasets))
    }

    /// Registers (or updates, by name) an offline job and the datasets it reads.
    pub async fn create_offline_job(
        &self,
        actor: &Actor,
        migration_id: i64,
        job: NewOfflineJob,
    ) -> Result<OfflineJob> {
        actor.require_operate("registering an offline job")?;
        let migration = self.migration(migration_id).await?;
        let mut tx = self.begin().await?;
        let (id, _) = Store::upsert_job(&mut tx, migration_id, &job).await?;
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                "job.create",
                "offline-job",
                format!("{}/{}", migration.name, job.name.trim()),
            )
            .details(serde_json::json!({ "owner": job.owner, "reads": job.reads })),
            "committing an offline job",
        )
        .await?;
        self.list_offline_jobs(migration_id)
            .await?
            .into_iter()
            .find(|j| j.id == id)
            .ok_or_else(|| ControlError::Internal("a new offline job vanished".into()))
    }

    /// Imports jobs and datasets from CSV with the header
    /// `job,owner,schedule,old_dataset,new_dataset[,status]`, one row per
    /// (job, old dataset); a job's rows are merged. All or nothing.
    pub async fn import_offline_csv(
        &self,
        actor: &Actor,
        migration_id: i64,
        csv: &str,
    ) -> Result<ImportReport> {
        actor.require_operate("importing offline jobs")?;
        let migration = self.migration(migration_id).await?;
        let rows = parse_csv(csv)?;
        let Some((header, body)) = rows.split_first() else {
            return Err(ControlError::Invalid(
                "the CSV is empty: start with the header job,owner,schedule,old_dataset,new_dataset,status".into(),
            ));
        };
        let header: Vec<String> = header.iter().map(|h| h.trim().to_lowercase()).collect();
        let col = |name: &str| header.iter().position(|h| h == name);
        let (Some(job_c), Some(old_c)) = (col("job"), col("old_dataset")) else {
            return Err(ControlError::Invalid(format!(
                "the CSV header `{}` needs at least the columns job and old_dataset \
                 (job,owner,schedule,old_dataset,new_dataset,status)",
                header.join(",")
            )));
        };
        let (owner_c, sched_c, new_c, status_c) = (
            col("owner"),
            col("schedule"),
            col("new_dataset"),
            col("status"),
        );
        let mut jobs: Vec<NewOfflineJob> = Vec::new();
        for (i, row) in body.iter().enumerate() {
            let cell = |c: Option<usize>| {
                c.and_then(|c| row.get(c))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default()
            };
            let name = cell(Some(job_c));
            if name.is_empty() {
                return Err(ControlError::Invalid(format!(
                    "CSV line {}: the job column is empty",
                    i + 2
                )));
            }
            check_job_status(&cell(status_c))
                .map_err(|e| ControlError::Invalid(format!("CSV line {}: {e}", i + 2)))?;
            let read = (cell(Some(old_c)), cell(new_c));
            match jobs.iter_mut().find(|j| j.name == name) {
                Some(j) => j.reads.push(read),
                None => jobs.push(NewOfflineJob {
                    name,
                    owner: cell(owner_c),
                    schedule: cell(sched_c),
                    reads: vec![read],
                    status: cell(status_c),
                }),
            }
        }
        let mut tx = self.begin().await?;
        let mut report = ImportReport::default();
        for job in &jobs {
            let (_, created) = Store::upsert_job(&mut tx, migration_id, job).await?;
            report.jobs += 1;
            report.datasets += created;
        }
        audit::commit(
            tx,
            AuditEntry::new(actor, "job.import", "migration", &migration.name).details(
                serde_json::json!({ "jobs": report.jobs, "new_datasets": report.datasets }),
            ),
            "committing a CSV import",
        )
        .await?;
        Ok(report)
    }

    /// A migration's offline jobs with the datasets they read.
    pub async fn list_offline_jobs(&self, migration_id: i64) -> Result<Vec<OfflineJob>> {
        let jobs: Vec<OfflineJob> =
            sqlx::query("SELECT * FROM offline_jobs WHERE migration_id = $1 ORDER BY name")
                .bind(migration_id)
                .all(self.pool(), "listing offline jobs")
                .await?;
        let links: Vec<(i64, String)> = sqlx::query(
            "SELECT jd.job_id, d.name FROM job_datasets jd JOIN datasets d ON d.id = jd.dataset_id
             WHERE d.migration_id = $1 ORDER BY d.name",
        )
        .bind(migration_id)
        .all(self.pool(), "listing job datasets")
        .await?;
        let reads: Vec<(String, i64)> = sqlx::query(
            "SELECT a.job_name, MAX(a.at) AS at FROM dataset_access a JOIN datasets d ON d.id = a.dataset_id
             WHERE d.migration_id = $1 GROUP BY a.job_name",
        )
        .bind(migration_id)
        .all(self.pool(), "reading the access log")
        .await?;
        Ok(jobs
            .into_iter()
            .map(|job| OfflineJob {
                datasets: links
                    .iter()
                    .filter(|(id, _)| *id == job.id)
                    .map(|(_, name)| name.clone())
                    .collect(),
                last_old_read: reads
                    .iter()
                    .find(|(name, _)| *name == job.name)
                    .map(|(_, at)| *at),
                ..job
            })
            .collect())
    }

    /// Moves an offline job to `status`.
    pub async fn set_job_status(
        &self,
        actor: &Actor,
        job_id: i64,
        status: &str,
        reason: &str,
    ) -> Result<()> {
        actor.require_operate("changing an offline job's status")?;
        let status = check_job_status(status)?;
        let (name, from, migration): (String, String, String) = sqlx::query(
            "SELECT j.name, j.status, m.name AS migration FROM offline_jobs j JOIN migrations m ON m.id = j.migration_id WHERE j.id = $1",
        )
        .bind(job_id)
        .found(self.pool(), format!("offline job {job_id}"))
        .await?;
        self.audited(
            sqlx::query("UPDATE offline_jobs SET status = $1, updated_at = $2 WHERE id = $3")
                .bind(status)
                .bind(now_ms())
                .bind(job_id),
            "changing an offline job's status",
            AuditEntry::new(
                actor,
                "job.status",
                "offline-job",
                format!("{migration}/{name}"),
            )
            .from_state(from)
            .to_state(status)
            .reason(reason),
        )
        .await?;
        Ok(())
    }

    /// A migration's datasets with who still reads them.
    pub async fn list_datasets(&self, migration_id: i64) -> Result<Vec<Dataset>> {
        let datasets: Vec<Dataset> =
            sqlx::query("SELECT * FROM datasets WHERE migration_id = $1 ORDER BY name")
                .bind(migration_id)
                .all(self.pool(), "listing datasets")
                .await?;
        let mut out = Vec::with_capacity(datasets.len());
        for dataset in datasets {
            out.push(Dataset {
                readers: self.unmigrated_readers(dataset.id).await?,
                last_access: self.last_access(dataset.id).await?,
                ..dataset
            });
        }
        Ok(out)
    }

    async fn unmigrated_readers(&self, dataset_id: i64) -> Result<Vec<String>> {
        sqlx::query(
            "SELECT j.name FROM job_datasets jd JOIN offline_jobs j ON j.id = jd.job_id
             WHERE jd.dataset_id = $1 AND j.status <> 'migrated' ORDER BY j.name",
        )
        .bind(dataset_id)
        .column(self.pool(), "listing a dataset's readers")
        .await
    }

    async fn last_access(&self, dataset_id: i64) -> Result<Option<(String, i64)>> {
        sqlx::query(
            "SELECT job_name, at FROM dataset_access WHERE dataset_id = $1 ORDER BY at DESC, id DESC LIMIT 1",
        )
        .bind(dataset_id)
        .optional(self.pool(), "reading the access log")
        .await
    }

    /// Records "job `job` read dataset `dataset` at `at`" (the access-log endpoint).
    pub async fn record_access(
        &self,
        migration_id: i64,
        job: &str,
        dataset: &str,
        at: Option<i64>,
    ) -> Result<()> {
        if job.trim().is_empty() {
            return Err(ControlError::Invalid(
                "an access-log entry needs the job's name".into(),
            ));
        }
        let (id, status): (i64, String) = sqlx::query("SELECT id, status FROM datasets WHERE migration_id = $1 AND name = $2")
            .bind(migration_id)
            .bind(dataset)
            .optional(self.pool(), "looking up a dataset")
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "there is no dataset `{dataset}` in this migration: register it (or import the jobs CSV) first"
                ))
            })?;
        if status != "active" {
            tracing::warn!(job, dataset, status = %status, "a job read a dataset that is no longer active");
        }
        sqlx::query("INSERT INTO dataset_access (dataset_id, job_name, at) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(job.trim())
            .bind(at.unwrap_or_else(now_ms))
            .run(self.pool(), "recording a dataset access")
            .await?;
        Ok(())
    }

    async fn dataset(&self, id: i64) -> Result<Dataset> {
        let (migration_id,): (i64,) =
            sqlx::query("SELECT migration_id FROM datasets WHERE id = $1")
                .bind(id)
                .found(self.pool(), format!("dataset {id}"))
                .await?;
        self.list_datasets(migration_id)
            .await?
            .into_iter()
            .find(|d| d.id == id)
            .ok_or_else(|| ControlError::NotFound(format!("there is no dataset {id}")))
    }

    /// Locks an active dataset. Refused while an unmigrated job reads it or a
    /// read was logged within the quiet period, unless `force` gives a reason.
    pub async fn lock_dataset(
        &self,
        actor: &Actor,
        id: i64,
        force: Option<&str>,
    ) -> Result<Dataset> {
        actor.require_operate("locking a dataset")?;
        let d = self.dataset(id).await?;
        if d.status != "active" {
            return Err(ControlError::Conflict(format!(
                "dataset `{}` is already {}",
                d.name, d.status
            )));
        }
        let gates = self.gates(d.migration_id).await?;
        let mut blockers = Vec::new();
        if !d.readers.is_empty() {
            blockers.push(format!(
                "jobs not yet migrated still read it: {}",
                d.readers.join(", ")
            ));
        }
        if let Some((job, at)) = &d.last_access
            && *at >= now_ms() - gates.quiet_days * DAY_MS
        {
            blockers.push(format!(
                "`{job}` read it at {} (within the last {} days)",
                crate::clock::format_ms(*at),
                gates.quiet_days
            ));
        }
        let force = force.map(str::trim).filter(|f| !f.is_empty());
        if !blockers.is_empty() && force.is_none() {
            return Err(ControlError::Conflict(format!(
                "locking `{}` is refused: {}. Migrate those jobs first, or force the lock with a written reason",
                d.name,
                blockers.join("; ")
            )));
        }
        let migration = self.migration(d.migration_id).await?;
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE datasets SET status = 'locked', locked_at = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .run(&mut *tx, "locking a dataset")
            .await?;
        let mut entry = AuditEntry::new(
            actor,
            if blockers.is_empty() {
                "dataset.lock"
            } else {
                "dataset.force-lock"
            },
            "dataset",
            format!("{}/{}", migration.name, d.name),
        )
        .from_state("active")
        .to_state("locked");
        if let Some(why) = force {
            entry = entry
                .reason(why)
                .details(serde_json::json!({ "refused_because": blockers }));
        }
        audit::commit(tx, entry, "committing a dataset lock").await?;
        self.dataset(id).await
    }

    /// Deletes a locked dataset once it has been locked for `lock_days`.
    pub async fn delete_dataset(&self, actor: &Actor, id: i64) -> Result<Dataset> {
        actor.require_operate("deleting a dataset")?;
        let d = self.dataset(id).await?;
        let gates = self.gates(d.migration_id).await?;
        let Some(locked_at) = d.locked_at.filter(|_| d.status == "locked") else {
            return Err(ControlError::Conflict(format!(
                "dataset `{}` is {}: only a locked dataset can be deleted; lock it first",
                d.name, d.status
            )));
        };
        let ready_at = locked_at + gates.lock_days * DAY_MS;
        if now_ms() < ready_at {
            return Err(ControlError::Conflict(format!(
                "dataset `{}` was locked at {}; it may be deleted after {} days locked, from {}",
                d.name,
                crate::clock::format_ms(locked_at),
                gates.lock_days,
                crate::clock::format_ms(ready_at)
            )));
        }
        let migration = self.migration(d.migration_id).await?;
        self.audited(
            sqlx::query("UPDATE datasets SET status = 'deleted', deleted_at = $1 WHERE id = $2")
                .bind(now_ms())
                .bind(id),
            "deleting a dataset",
            AuditEntry::new(
                actor,
                "dataset.delete",
                "dataset",
                format!("{}/{}", migration.name, d.name),
            )
            .from_state("locked")
            .to_state("deleted"),
        )
        .await?;
        self.dataset(id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_handles_quotes_commas_and_blank_lines() {
        let rows =
            parse_csv("job,owner\n\"nightly, big\",\"a \"\"b\"\"\"\r\n\n x , y\n").expect("parses");
        assert_eq!(
            rows,
            vec![
                vec!["job".to_string(), "owner".to_string()],
                vec!["nightly, big".to_string(), "a \"b\"".to_string()],
                vec![" x ".to_string(), " y".to_string()],
            ]
        );
        assert!(parse_csv("a,\"b\n").is_err());
    }
}
