//! Running batches: start one by hand, or let the progressive schedule start
//! the next planned batch every N hours while the gates hold (seed 003 loaded a
//! fixed amount every two weeks). A batch is done when every bucket in it is
//! verified (or further along).

use crate::audit::{self, AuditEntry};
use crate::batches::Batch;
use crate::buckets::Phase;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// Why the schedule may not start the next batch now, if it may not.
pub async fn gate_closed(store: &Store, migration_id: i64) -> Result<Option<String>> {
    let migration = store.migration(migration_id).await?;
    let buckets = store.list_buckets(migration_id).await?;
    if let Some(b) = buckets.iter().find(|b| b.phase == Phase::Failed) {
        return Ok(Some(format!(
            "bucket {} failed ({}): retry or fix it first",
            b.idx,
            b.last_error.as_deref().unwrap_or("no message")
        )));
    }
    if let Some(b) = buckets.iter().find(|b| {
        b.accuracy
            .is_some_and(|a| a < migration.settings.verify_min_accuracy)
    }) {
        return Ok(Some(format!(
            "bucket {} verified at {:.3}%, under the gate of {}%: repair it first",
            b.idx,
            b.accuracy.unwrap_or(0.0),
            migration.settings.verify_min_accuracy
        )));
    }
    let running = store
        .list_batches(migration_id)
        .await?
        .into_iter()
        .find(|b| b.state == "running");
    if let Some(batch) = running {
        return Ok(Some(format!(
            "batch {} is still running: it must be verified before the next starts",
            batch.seq
        )));
    }
    Ok(None)
}

impl Store {
    /// Starts a planned batch: bulk-loads its planned buckets (audited).
    pub async fn start_batch(&self, actor: &Actor, batch_id: i64, reason: &str) -> Result<Batch> {
        actor.require_operate("starting a batch")?;
        let (migration_id, seq, state): (i64, i64, String) =
            sqlx::query("SELECT migration_id, seq, state FROM batches WHERE id = $1")
                .bind(batch_id)
                .found(self.pool(), format!("batch {batch_id}"))
                .await?;
        if state != "planned" {
            return Err(ControlError::Conflict(format!(
                "batch {seq} is {state}: only a planned batch can start"
            )));
        }
        let buckets: Vec<i64> = self
            .list_buckets(migration_id)
            .await?
            .into_iter()
            .filter(|b| b.batch_id == Some(batch_id) && b.phase == Phase::Planned)
            .map(|b| b.id)
            .collect();
        if !buckets.is_empty() {
            self.start_bulk_load(actor, migration_id, &buckets).await?;
        }
        let now = now_ms();
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE batches SET state = 'running', started_at = $1 WHERE id = $2")
            .bind(now)
            .bind(batch_id)
            .run(&mut *tx, format!("starting batch {seq}"))
            .await?;
        let migration = self.migration(migration_id).await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "batch.start", "migration", &migration.name)
                .from_state("planned")
                .to_state(format!("batch {seq} running"))
                .reason(reason),
            "committing a batch start",
        )
        .await?;
        self.list_batches(migration_id)
            .await?
            .into_iter()
            .find(|b| b.id == batch_id)
            .ok_or_else(|| ControlError::Internal(format!("batch {batch_id} vanished")))
    }

    /// Marks running batches whose buckets are all verified (or further) as
    /// done; returns how many it closed.
    pub async fn close_finished_batches(&self) -> Result<usize> {
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query("SELECT id, migration_id, seq FROM batches WHERE state = 'running'")
                .all(self.pool(), "listing running batches")
                .await?;
        let mut closed = 0;
        for (id, migration_id, seq) in rows {
            let buckets = self.list_buckets(migration_id).await?;
            let members: Vec<_> = buckets.iter().filter(|b| b.batch_id == Some(id)).collect();
            let finished = members.iter().all(|b| {
                matches!(
                    b.phase,
                    Phase::Verified | Phase::ReadsSwitching | Phase::Switched | Phase::Done
                )
            });
            if !finished {
                continue;
            }
            let mut tx = self.begin().await?;
            sqlx::query("UPDATE batches SET state = 'done', finished_at = $1 WHERE id = $2 AND state = 'running'")
                .bind(now_ms())
                .bind(id)
                .run(&mut *tx, format!("closing batch {seq}")).await?;
            let migration = self.migration(migration_id).await?;
            audit::commit(
                tx,
                AuditEntry::new(&Actor::system(), "batch.done", "migration", &migration.name)
                    .from_state(format!("batch {seq} running"))
                    .to_state(format!("batch {seq} done"))
                    .details(serde_json::json!({
                        "buckets": members.len(),
                        "rows": members.iter().map(|b| b.rows_copied).sum::<i64>(),
                        "accuracy": members.iter().filter_map(|b| b.accuracy).fold(100.0, f64::min),
                    })),
                "committing a finished batch",
            )
            .await?;
            closed += 1;
        }
        Ok(closed)
    }

    /// The progressive schedule: for every active migration whose next batch
    /// is due, start its next planned batch if the gates hold, and set the
    /// following due time. Returns the batches it started.
    pub async fn run_schedule(&self) -> Result<Vec<i64>> {
        let now = now_ms();
        let due: Vec<(i64, f64)> = sqlx::query(
            "SELECT id, schedule_every_hours FROM migrations
             WHERE status = 'active' AND schedule_every_hours IS NOT NULL
               AND next_batch_at IS NOT NULL AND next_batch_at <= $1",
        )
        .bind(now)
        .all(self.pool(), "finding due schedules")
        .await?;
        let mut started = Vec::new();
        for (id, every) in due {
            let next_due = now + (every * 3_600_000.0) as i64;
            let next = self
                .list_batches(id)
                .await?
                .into_iter()
                .find(|b| b.state == "planned");
            match (next, gate_closed(self, id).await?) {
                (None, _) => {
                    tracing::info!(
                        migration = id,
                        "schedule: no planned batch left; schedule off"
                    );
                    sqlx::query("UPDATE migrations SET next_batch_at = NULL WHERE id = $1")
                        .bind(id)
                        .run(self.pool(), "ending a schedule")
                        .await?;
                }
                (Some(batch), None) => {
                    self.start_batch(&Actor::system(), batch.id, "progressive schedule")
                        .await?;
                    started.push(batch.id);
                    self.set_next_batch_at(id, next_due).await?;
                }
                (Some(batch), Some(why)) => {
                    tracing::info!(migration = id, batch = batch.seq, %why, "schedule: gate closed; trying again later");
                    // Look again soon rather than a whole period later.
                    self.set_next_batch_at(id, now + 60_000).await?;
                }
            }
        }
        Ok(started)
    }

    async fn set_next_batch_at(&self, migration_id: i64, at: i64) -> Result<()> {
        sqlx::query("UPDATE migrations SET next_batch_at = $1 WHERE id = $2")
            .bind(at)
            .bind(migration_id)
            .run(self.pool(), "setting the next batch time")
            .await?;
        Ok(())
    }
}
