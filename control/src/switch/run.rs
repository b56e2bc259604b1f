//! One switch or rollback, start to end: gates, hold, wait for every active
//! client to apply the hold, drain the relay that feeds the old primary's
//! writes into the other store, flip, release. Any failure after the hold
//! releases it and leaves the primaries as they were.

use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::audit::{self, AuditEntry};
use crate::buckets::{Bucket, Phase, move_bucket_in};
use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::migrations::Migration;
use crate::store::Store;
use crate::switch::Direction;
use crate::switch::history::SwitchRecord;
use crate::switch::routing::ACTIVE_WINDOW;
use crate::users::Actor;

/// Drains the relay that carries the old primary's writes to the other
/// store: for a switch the forward relay (old → new), for a rollback the
/// reverse relay (new → old), through the source's changelog head as it is
/// when called. Answers what it drained, for the audit log.
#[async_trait]
pub trait Drain: Send + Sync {
    async fn drain(
        &self,
        migration: &Migration,
        direction: Direction,
        tables: &[String],
        timeout: Duration,
    ) -> Result<String>;
}

/// How long a switch may take at each step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SwitchOptions {
    /// How long every active client has to apply the hold (default 5 s).
    pub ack_timeout: Duration,
    /// How long the relay has to drain (default 30 s).
    pub drain_timeout: Duration,
    /// How long the running relays have to take the new switched buckets
    /// after the flip (default 5 s).
    pub observe_timeout: Duration,
    /// A client that polled the write routing this recently must apply the
    /// hold (default [`ACTIVE_WINDOW`]).
    pub active_window: Duration,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            ack_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(30),
            observe_timeout: Duration::from_secs(5),
            active_window: ACTIVE_WINDOW,
        }
    }
}

fn list(v: &[i64]) -> String {
    v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
}

/// Bumps the migration's routing version in `tx` and answers the new one.
async fn bump_version(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    migration_id: i64,
) -> Result<i64> {
    sqlx::query("UPDATE migrations SET routing_version = routing_version + 1 WHERE id = $1")
        .bind(migration_id)
        .run(&mut **tx, "bumping the routing version")
        .await?;
    sqlx::query("SELECT routing_version FROM migrations WHERE id = $1")
        .bind(migration_id)
        .scalar(&mut **tx, "reading the routing version")
        .await
}

impl Store {
    /// Moves the source of truth of buckets `idxs` of a migration (by their
    /// index in the migration) one way, gated, holding their writes for as
    /// short as the clients and the relay allow. Answers the stored record
    /// (with its hold time); refuses with every failed gate, or aborts with
    /// why (the record says so too).
    pub async fn switch_buckets(
        &self,
        actor: &Actor,
        migration_id: i64,
        idxs: &[i64],
        direction: Direction,
        reason: &str,
        drain: &dyn Drain,
        opts: SwitchOptions,
    ) -> Result<SwitchRecord> {
        actor.require_operate(match direction {
            Direction::Switch => "switching the source of truth",
            Direction::Rollback => "rolling back a switch",
        })?;
        let mut idxs = idxs.to_vec();
        idxs.sort_unstable();
        idxs.dedup();
        if idxs.is_empty() {
            return Err(ControlError::Invalid(format!(
                "name the buckets to {}",
                direction.as_str()
            )));
        }
        self.release_stale_holds(migration_id, opts).await?;
        let migration = self.migration(migration_id).await?;
        let mut buckets: Vec<Bucket> = Vec::new();
        for idx in &idxs {
            buckets.push(self.bucket_by_idx(migration_id, *idx).await?);
        }
        let gates = self.switch_gates(migration_id, &buckets, direction).await?;
        let refused: Vec<String> = gates
            .iter()
            .filter(|g| !g.refusals.is_empty())
            .map(|g| format!("bucket {}: {}", g.idx, g.refusals.join("; ")))
            .collect();
        if !refused.is_empty() {
            return Err(ControlError::Conflict(format!(
                "cannot {} {}: {}",
                direction.as_str(),
                if idxs.len() == 1 {
                    "this bucket"
                } else {
                    "these buckets"
                },
                refused.join(". ")
            )));
        }
        let mut tables: Vec<String> = buckets
            .iter()
            .filter_map(|b| b.table_name.clone())
            .collect();
        tables.sort();
        tables.dedup();

        // Hold: from this commit on the routing answers `hold` for these keys.
        let (switch_id, hold_version, expected) = self
            .hold(actor, &migration, &buckets, direction, reason, opts)
            .await?;
        let held = Instant::now();
        self.routing_changed();
        tracing::info!(migration = %migration.name, buckets = %list(&idxs), direction = direction.as_str(), version = hold_version, "holding writes");

        // Every active client applies the hold: no write to these keys is in flight after it.
        if let Err(e) = self
            .wait_for_acks(migration_id, hold_version, &expected, opts)
            .await
        {
            return self
                .abort(actor, switch_id, &migration, held, &e.to_string())
                .await;
        }
        self.set_switch_state(switch_id, "draining", expected.len() as i64)
            .await?;
        let drained = match drain
            .drain(&migration, direction, &tables, opts.drain_timeout)
            .await
        {
            Ok(what) => what,
            Err(e) => {
                let why = format!("the relay did not drain: {e}");
                return self.abort(actor, switch_id, &migration, held, &why).await;
            }
        };
        // Flip while still held, so the relays take the new switched set
        // before any write to these keys reaches the new primary.
        let flipped = self
            .set_held_primary(migration_id, switch_id, direction.primaries().1)
            .await?;
        self.routing_changed();
        if let Err(e) = self
            .wait_relays_observed(migration_id, flipped, opts.observe_timeout)
            .await
        {
            // Put the primary back: the relays did not take the flip.
            self.set_held_primary(migration_id, switch_id, direction.primaries().0)
                .await?;
            return self
                .abort(actor, switch_id, &migration, held, &e.to_string())
                .await;
        }
        self.flip(
            actor, switch_id, &migration, &buckets, direction, held, &drained,
        )
        .await
    }

    /// Sets the held buckets' write primary, keeping them held; answers the
    /// new routing version.
    async fn set_held_primary(
        &self,
        migration_id: i64,
        switch_id: i64,
        primary: &str,
    ) -> Result<i64> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE buckets SET write_primary = $1 WHERE held_by = $2")
            .bind(primary)
            .bind(switch_id)
            .run(&mut *tx, "flipping the held buckets' write primary")
            .await?;
        let v = bump_version(&mut tx, migration_id).await?;
        db::commit(tx, "committing a flip").await?;
        self.routing_changed();
        Ok(v)
    }

    async fn hold(
        &self,
        actor: &Actor,
        migration: &Migration,
        buckets: &[Bucket],
        direction: Direction,
        reason: &str,
        opts: SwitchOptions,
    ) -> Result<(i64, i64, Vec<String>)> {
        let idxs: Vec<i64> = buckets.iter().map(|b| b.idx).collect();
        let (from, _) = direction.primaries();
        let (expected, _) = self
            .active_clients_at(migration.id, i64::MAX, opts.active_window)
            .await?;
        let mut tx = self.begin().await?;
        let switch_id: i64 = sqlx::query(
            "INSERT INTO switches (migration_id, direction, buckets, state, actor, reason,
                                   clients_expected, started_at)
             VALUES ($1, $2, $3, 'holding', $4, $5, $6, $7) RETURNING id",
        )
        .bind(migration.id)
        .bind(direction.as_str())
        .bind(list(&idxs))
        .bind(&actor.name)
        .bind(reason)
        .bind(expected.len() as i64)
        .bind(now_ms())
        .scalar(&mut *tx, "starting a switch")
        .await
        .map_err(|e| {
            e.or_conflict(|| {
                format!(
                    "migration `{}` has a switch or rollback under way: wait for it to finish (its hold is bounded) and try again",
                    migration.name
                )
            })
        })?;
        let version = bump_version(&mut tx, migration.id).await?;
        for b in buckets {
            let done = sqlx::query(
                "UPDATE buckets SET held_by = $1 WHERE id = $2 AND write_primary = $3 AND held_by IS NULL",
            )
            .bind(switch_id)
            .bind(b.id)
            .bind(from)
            .run(&mut *tx, "holding a bucket's writes").await?;
            if done == 0 {
                return Err(ControlError::Conflict(format!(
                    "bucket {} changed meanwhile: reload and try again",
                    b.idx
                )));
            }
        }
        sqlx::query("UPDATE switches SET hold_version = $1 WHERE id = $2")
            .bind(version)
            .bind(switch_id)
            .run(&mut *tx, "recording the hold version")
            .await?;
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                &format!("{}.hold", direction.as_str()),
                "migration",
                migration.name.clone(),
            )
            .reason(reason)
            .details(serde_json::json!({
                "switch": switch_id, "buckets": idxs, "routing_version": version,
                "clients": expected,
            })),
            "committing a hold",
        )
        .await?;
        Ok((switch_id, version, expected))
    }

    /// Waits until every client in `expected` applied `version`.
    async fn wait_for_acks(
        &self,
        migration_id: i64,
        version: i64,
        expected: &[String],
        opts: SwitchOptions,
    ) -> Result<()> {
        let deadline = Instant::now() + opts.ack_timeout;
        loop {
            let (_, behind) = self
                .active_clients_at(migration_id, version, Duration::from_secs(86_400 * 365))
                .await?;
            let waiting: Vec<&String> = expected.iter().filter(|c| behind.contains(c)).collect();
            if waiting.is_empty() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(ControlError::Conflict(format!(
                    "client(s) {} did not apply the hold within {} ms: check that they run tern-client with write routing and reach Tern, then try again",
                    waiting
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    opts.ack_timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn set_switch_state(&self, id: i64, state: &str, acked: i64) -> Result<()> {
        sqlx::query("UPDATE switches SET state = $1, clients_acked = $2 WHERE id = $3")
            .bind(state)
            .bind(acked)
            .bind(id)
            .run(self.pool(), "recording a switch's progress")
            .await?;
        Ok(())
    }

    /// Releases the hold with the primaries unchanged, records why, and
    /// answers the refusal.
    async fn abort(
        &self,
        actor: &Actor,
        switch_id: i64,
        migration: &Migration,
        held: Instant,
        why: &str,
    ) -> Result<SwitchRecord> {
        self.release(actor, switch_id, migration, held.elapsed(), why)
            .await?;
        Err(ControlError::Conflict(format!(
            "the switch was aborted and the writes released, nothing changed: {why}"
        )))
    }

    async fn release(
        &self,
        actor: &Actor,
        switch_id: i64,
        migration: &Migration,
        hold: Duration,
        why: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE buckets SET held_by = NULL WHERE held_by = $1")
            .bind(switch_id)
            .run(&mut *tx, "releasing a hold")
            .await?;
        bump_version(&mut tx, migration.id).await?;
        sqlx::query(
            "UPDATE switches SET state = 'aborted', finished_at = $1, hold_ms = $2, error = $3 WHERE id = $4",
        )
        .bind(now_ms())
        .bind(i64::try_from(hold.as_millis()).unwrap_or(i64::MAX))
        .bind(why)
        .bind(switch_id)
        .run(&mut *tx, "recording an aborted switch").await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "switch.abort", "migration", migration.name.clone())
                .reason(why)
                .details(
                    serde_json::json!({ "switch": switch_id, "hold_ms": hold.as_millis() as i64 }),
                ),
            "committing a release",
        )
        .await?;
        self.routing_changed();
        tracing::warn!(migration = %migration.name, switch = switch_id, why, "switch aborted, writes released");
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn flip(
        &self,
        actor: &Actor,
        switch_id: i64,
        migration: &Migration,
        buckets: &[Bucket],
        direction: Direction,
        held: Instant,
        drained: &str,
    ) -> Result<SwitchRecord> {
        let (_, to) = direction.primaries();
        let mut tx = self.begin().await?;
        for b in buckets {
            sqlx::query(
                "UPDATE buckets SET write_primary = $1, held_by = NULL,
                        drift_rows = NULL, drift_checked_at = NULL WHERE id = $2 AND held_by = $3",
            )
            .bind(to)
            .bind(b.id)
            .bind(switch_id)
            .run(&mut *tx, "flipping a bucket's write primary")
            .await?;
            let why = format!("{} #{switch_id}", direction.as_str());
            match direction {
                Direction::Switch => {
                    if b.phase == Phase::Verified {
                        move_bucket_in(&mut tx, actor, b.id, Phase::ReadsSwitching, &why).await?;
                    }
                    move_bucket_in(&mut tx, actor, b.id, Phase::Switched, &why).await?;
                }
                Direction::Rollback => {
                    if b.phase == Phase::Switched {
                        move_bucket_in(&mut tx, actor, b.id, Phase::ReadsSwitching, &why).await?;
                    }
                }
            }
        }
        bump_version(&mut tx, migration.id).await?;
        let hold_ms = i64::try_from(held.elapsed().as_millis()).unwrap_or(i64::MAX);
        sqlx::query(
            "UPDATE switches SET state = 'done', finished_at = $1, hold_ms = $2 WHERE id = $3",
        )
        .bind(now_ms())
        .bind(hold_ms)
        .bind(switch_id)
        .run(&mut *tx, "recording a finished switch")
        .await?;
        let idxs: Vec<i64> = buckets.iter().map(|b| b.idx).collect();
        audit::commit(
            tx,
            AuditEntry::new(
                actor,
                &format!("{}.done", direction.as_str()),
                "migration",
                migration.name.clone(),
            )
            .from_state(direction.primaries().0)
            .to_state(to)
            .reason(drained)
            .details(
                serde_json::json!({ "switch": switch_id, "buckets": idxs, "hold_ms": hold_ms }),
            ),
            "committing a switch",
        )
        .await?;
        self.routing_changed();
        tracing::info!(migration = %migration.name, buckets = %list(&idxs), direction = direction.as_str(), hold_ms, "switched");
        self.switch_record(switch_id).await
    }

    /// Releases holds left by a switch that stopped midway (its process
    /// died): any switch still holding after both of its timeouts.
    pub async fn release_stale_holds(
        &self,
        migration_id: i64,
        opts: SwitchOptions,
    ) -> Result<usize> {
        let limit = (opts.ack_timeout + opts.drain_timeout + Duration::from_secs(30)).as_millis();
        let rows: Vec<(i64, i64)> = sqlx::query(
            "SELECT id, started_at FROM switches WHERE migration_id = $1 AND state IN ('holding', 'draining') AND started_at < $2",
        )
        .bind(migration_id)
        .bind(now_ms() - i64::try_from(limit).unwrap_or(i64::MAX / 2))
        .all(self.pool(), "looking for stale holds")
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let migration = self.migration(migration_id).await?;
        for &(id, started) in &rows {
            let held = Duration::from_millis(u64::try_from(now_ms() - started).unwrap_or(0));
            self.release(
                &Actor::system(),
                id,
                &migration,
                held,
                "the switch stopped midway (its process ended); released",
            )
            .await?;
        }
        Ok(rows.len())
    }
}
