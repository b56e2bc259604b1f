//! What earns a bucket its phase. `loaded`, `caught-up` and `verified` are
//! claims about the data (every row copied; every change replayed; the target
//! checked equal to the source), and the gates and the overview trust them.
//! A job's end moves a bucket there when the job has done the work; a person
//! moving it there by hand must point at the same evidence: the bucket's
//! latest bulk load or catch-up succeeded, or its latest verification run
//! reached the migration's accuracy. Without it the move is refused with what
//! is missing; an admin may override with a reason, and the override is
//! audited with what was missing. The manual moves live here; a job's end
//! moves its bucket through `jobs/requests.rs`.

use crate::audit;
use crate::buckets::{Bucket, move_bucket_in, phase_entry};
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::phases::{self, Phase};
use crate::store::Store;
use crate::users::Actor;

/// `switched` is where the write primary is, not a label: only a switch or a
/// rollback (which hold, drain and flip) moves a bucket into or out of it,
/// and no override changes that.
fn refuse_switch_by_hand(bucket: &Bucket, to: Phase) -> Result<()> {
    if to == Phase::Switched || (bucket.phase == Phase::Switched && to != Phase::Done) {
        return Err(ControlError::Conflict(format!(
            "bucket {} is moved {} switched by a switch of its source of truth, not by hand: \
             use Switch or Roll back on the migration page (or `tern switch` / `tern rollback`)",
            bucket.idx,
            if to == Phase::Switched {
                "to"
            } else {
                "out of"
            }
        )));
    }
    Ok(())
}

impl Store {
    /// Moves a bucket to another phase by hand, if the state machine allows
    /// it (audited). A move to `loaded`, `caught-up` or `verified` needs the
    /// job or verification run that earns it (`evidence.rs`); without, it is
    /// refused with what is missing.
    pub async fn move_bucket(
        &self,
        actor: &Actor,
        bucket_id: i64,
        to: Phase,
        reason: &str,
    ) -> Result<Bucket> {
        actor.require_operate("changing a bucket's phase")?;
        let bucket = self.bucket(bucket_id).await?;
        refuse_switch_by_hand(&bucket, to)?;
        // An illegal move says so first; evidence matters for legal ones.
        let what = format!("bucket {} of migration {}", bucket.idx, bucket.migration_id);
        phases::check_move(&what, bucket.phase, bucket.resume_phase, to)?;
        if let Some(missing) = self.missing_evidence(&bucket, to).await? {
            return Err(refusal(&bucket, to, &missing));
        }
        let mut tx = self.begin().await?;
        move_bucket_in(&mut tx, actor, bucket_id, to, reason).await?;
        db::commit(tx, "committing a phase change").await?;
        self.bucket(bucket_id).await
    }

    /// An admin's move without the evidence it needs, for what Tern cannot
    /// see (a bucket loaded by another tool): the state machine still
    /// applies, the reason is required, and the audit says what was missing.
    pub async fn override_bucket_move(
        &self,
        actor: &Actor,
        bucket_id: i64,
        to: Phase,
        reason: &str,
    ) -> Result<Bucket> {
        actor.require_admin("overriding a bucket's missing evidence")?;
        if reason.trim().is_empty() {
            return Err(ControlError::Invalid(
                "an override needs a reason: say why the bucket may move without the evidence"
                    .into(),
            ));
        }
        let bucket = self.bucket(bucket_id).await?;
        refuse_switch_by_hand(&bucket, to)?;
        let missing = self.missing_evidence(&bucket, to).await?;
        let mut tx = self.begin().await?;
        move_bucket_in(&mut tx, actor, bucket_id, to, reason).await?;
        audit::commit(
            tx,
            phase_entry(actor, "bucket.phase.override", &bucket, to, reason).details(
                serde_json::json!({
                    "missing": missing.as_deref().unwrap_or("nothing: the evidence was there"),
                }),
            ),
            "committing a phase change",
        )
        .await?;
        self.bucket(bucket_id).await
    }

    /// What a manual move of `bucket` to `to` lacks, said for a person
    /// (`None`: nothing is missing, or `to` needs no evidence).
    pub async fn missing_evidence(&self, bucket: &Bucket, to: Phase) -> Result<Option<String>> {
        let kind = match to {
            Phase::Loaded => "bulk-load",
            Phase::CaughtUp => "catch-up",
            Phase::Verified => return self.missing_verification(bucket).await,
            _ => return Ok(None),
        };
        let latest: Option<(i64, String)> = sqlx::query(
            "SELECT id, state FROM jobs WHERE bucket_id = $1 AND kind = $2 ORDER BY id DESC LIMIT 1",
        )
        .bind(bucket.id)
        .bind(kind)
        .optional(self.pool(), format!("reading the {kind} jobs of bucket {}", bucket.id))
        .await?;
        Ok(match latest {
            None => Some(format!("no {kind} job has run on it")),
            Some((id, state)) => (state != "succeeded")
                .then(|| format!("its latest {kind} job (job {id}) is {state}, not succeeded")),
        })
    }

    async fn missing_verification(&self, bucket: &Bucket) -> Result<Option<String>> {
        let min = self
            .migration(bucket.migration_id)
            .await?
            .settings
            .verify_min_accuracy;
        let latest: Option<(i64, f64)> = sqlx::query(
            "SELECT id, accuracy FROM verify_runs WHERE bucket_id = $1
             ORDER BY finished_at DESC, id DESC LIMIT 1",
        )
        .bind(bucket.id)
        .optional(
            self.pool(),
            format!("reading the verification runs of bucket {}", bucket.id),
        )
        .await?;
        Ok(match latest {
            None => Some("no verification run has checked it".to_string()),
            Some((id, accuracy)) => (accuracy < min).then(|| {
                format!(
                    "its latest verification run ({id}) found {accuracy}% of rows equal, \
                     below the migration's {min}%"
                )
            }),
        })
    }
}

/// The refusal of a move without evidence: what is missing and what to do.
pub(crate) fn refusal(bucket: &Bucket, to: Phase, missing: &str) -> ControlError {
    let earn = match to {
        Phase::Loaded => "run a bulk load of it (its success moves the bucket)",
        Phase::CaughtUp => "run a catch-up of it (its success moves the bucket)",
        _ => "run a verification of it (a run at the migration's accuracy moves the bucket)",
    };
    ControlError::Conflict(format!(
        "bucket {} of migration {} cannot be moved to {to} by hand: {missing}. \
         {}{}, or have an admin override the move with a reason (audited)",
        bucket.idx,
        bucket.migration_id,
        earn[..1].to_uppercase(),
        &earn[1..]
    ))
}
