//! Typed job parameters: one struct per job kind, read from the job's JSON
//! `params` with [`Job::params`]. A job whose parameters do not read fails
//! with a message naming the job, its kind and what is wrong, instead of a
//! runner finding a missing field halfway through.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::{ControlError, Result};
use crate::jobs::model::Job;
use crate::runbook::VerifyMode;

/// The engine bucket a bulk-load or catch-up job works on: the target table
/// and the bucket's index among that table's buckets in the engine's plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BucketParams {
    pub table: String,
    pub table_bucket: i64,
}

/// A verification of one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct VerifyParams {
    pub table: String,
    pub table_bucket: i64,
    /// Every row (the default), or only the keys changed since the last run.
    #[serde(default = "full")]
    pub mode: VerifyMode,
}

fn full() -> VerifyMode {
    VerifyMode::Full
}

/// A repair of the mismatches an engine verification run found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RepairParams {
    pub table: String,
    /// The engine's id of the verification run whose mismatches are re-copied.
    pub engine_run: String,
}

/// A run of a data fix.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FixParams {
    pub fix_id: i64,
    pub run_id: i64,
}

impl BucketParams {
    /// The bucket parameters as a bucket job's engine plan lookup needs them.
    pub fn of(table: &str, table_bucket: i64) -> BucketParams {
        BucketParams {
            table: table.to_string(),
            table_bucket,
        }
    }
}

impl VerifyParams {
    pub fn bucket(&self) -> BucketParams {
        BucketParams::of(&self.table, self.table_bucket)
    }
}

impl Job {
    /// The job's parameters as `T`, or an error saying which job cannot be
    /// read and why (a missing or mistyped field).
    pub fn params<T: DeserializeOwned>(&self) -> Result<T> {
        T::deserialize(&self.params).map_err(|e| {
            ControlError::Invalid(format!(
                "{} job {} has parameters Tern cannot read ({e}): cancel it and start the work \
                 again from the migration page",
                self.kind.as_str(),
                self.id
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::model::{JobKind, JobState};

    fn job(kind: JobKind, params: serde_json::Value) -> Job {
        Job {
            id: 7,
            migration_id: Some(1),
            bucket_id: Some(2),
            kind,
            params,
            state: JobState::Running,
            requested: None,
            rate_limit: None,
            worker: None,
            lease_expires_at: None,
            attempts: 1,
            lease_token: 1,
            rows_done: 0,
            rows_total: None,
            rate: None,
            eta_seconds: None,
            message: None,
            created_by: "ada".into(),
            created_at: 0,
            started_at: None,
            updated_at: 0,
            finished_at: None,
        }
    }

    #[test]
    fn parameters_written_by_the_runbook_read_back_typed() {
        let j = job(
            JobKind::Verify,
            serde_json::json!({
                "table": "contacts", "table_bucket": 3, "bucket_idx": 4, "lo": null, "hi": "9",
                "chunk_size": 1000, "mode": "incremental"
            }),
        );
        let p: VerifyParams = j.params().expect("verify params");
        assert_eq!(p.mode, VerifyMode::Incremental);
        assert_eq!(p.bucket(), BucketParams::of("contacts", 3));
        let full: VerifyParams = job(
            JobKind::Verify,
            serde_json::json!({ "table": "contacts", "table_bucket": 0 }),
        )
        .params()
        .expect("verify params without a mode");
        assert_eq!(full.mode, VerifyMode::Full);
        let fix: FixParams = job(
            JobKind::DataFix,
            serde_json::json!({ "fix_id": 5, "run_id": 9 }),
        )
        .params()
        .expect("fix params");
        assert_eq!((fix.fix_id, fix.run_id), (5, 9));
    }

    #[test]
    fn malformed_parameters_name_the_job_and_the_field() {
        let missing = job(JobKind::BulkLoad, serde_json::json!({ "table_bucket": 3 }))
            .params::<BucketParams>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            missing.starts_with("bulk-load job 7 has parameters"),
            "{missing}"
        );
        assert!(missing.contains("missing field `table`"), "{missing}");
        let mistyped = job(
            JobKind::CatchUp,
            serde_json::json!({ "table": null, "table_bucket": 3 }),
        )
        .params::<BucketParams>()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(mistyped.contains("catch-up job 7"), "{mistyped}");
        assert!(mistyped.contains("null"), "{mistyped}");
    }
}
