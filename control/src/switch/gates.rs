//! What must hold before a bucket's source of truth moves, and what to do
//! when it does not. Switching needs the bucket verified at the migration's
//! minimum accuracy, its lag zero, a reverse path (the table's mapping
//! inverts and the reverse relay runs) and no drift on switched buckets;
//! rolling back needs a switched bucket and a running forward relay.

use serde::{Deserialize, Serialize};

use crate::buckets::{Bucket, Phase};
use crate::db::{self, Run};
use crate::error::Result;
use crate::store::Store;
use crate::switch::Direction;

/// Whether a target table's mapping inverts, as last checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ReversePath {
    #[sqlx(rename = "table_name")]
    pub table: String,
    #[sqlx(try_from = "crate::db::Flag")]
    pub reversible: bool,
    /// Why not, when it does not (or what the check found).
    pub reason: String,
    pub checked_at: i64,
}

/// One bucket's answer: empty `refusals` means it may move.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketGate {
    pub idx: i64,
    pub refusals: Vec<String>,
}

impl Store {
    /// Records whether `table` of a migration can be reversed, and why not
    /// (the reverse relay and the planner call this).
    pub async fn record_reverse_path(
        &self,
        migration_id: i64,
        table: &str,
        reversible: bool,
        reason: &str,
    ) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM reverse_paths WHERE migration_id = $1 AND table_name = $2")
            .bind(migration_id)
            .bind(table)
            .run(&mut *tx, "recording a reverse path")
            .await?;
        sqlx::query(
            "INSERT INTO reverse_paths (migration_id, table_name, reversible, reason, checked_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(migration_id)
        .bind(table)
        .bind(i64::from(reversible))
        .bind(reason)
        .bind(crate::clock::now_ms())
        .run(&mut *tx, "recording a reverse path")
        .await?;
        db::commit(tx, "recording a reverse path").await
    }

    /// Every table's reverse path as last checked.
    pub async fn reverse_paths(&self, migration_id: i64) -> Result<Vec<ReversePath>> {
        sqlx::query(
            "SELECT table_name, reversible, reason, checked_at FROM reverse_paths
             WHERE migration_id = $1 ORDER BY table_name",
        )
        .bind(migration_id)
        .all(self.pool(), "reading reverse paths")
        .await
    }

    /// Whether a job of `kind` runs for the migration now.
    async fn job_running(&self, migration_id: i64, kind: &str) -> Result<bool> {
        let n: i64 = sqlx::query(
            "SELECT COUNT(*) AS n FROM jobs WHERE migration_id = $1 AND kind = $2 AND state = 'running'",
        )
        .bind(migration_id)
        .bind(kind)
        .scalar(self.pool(), "looking for a running relay").await?;
        Ok(n > 0)
    }

    /// The gates of `buckets` for a switch or a rollback, one answer each.
    pub async fn switch_gates(
        &self,
        migration_id: i64,
        buckets: &[Bucket],
        direction: Direction,
    ) -> Result<Vec<BucketGate>> {
        let migration = self.migration(migration_id).await?;
        let min = migration.settings.verify_min_accuracy;
        let paths = self.reverse_paths(migration_id).await?;
        let reverse_running = self
            .job_running(migration_id, crate::jobs::JobKind::ReverseRelay.as_str())
            .await?;
        let forward_running = self
            .job_running(migration_id, crate::jobs::JobKind::Relay.as_str())
            .await?;
        let drifted = self.drifted_buckets(migration_id).await?;
        let completed = self.migration_completed_at(migration_id).await?;
        let mut out = Vec::new();
        for b in buckets {
            let mut no = Vec::new();
            let table = b.table_name.clone().unwrap_or_default();
            match direction {
                Direction::Switch => {
                    if b.write_primary == "new" {
                        no.push("it is switched already".to_string());
                    }
                    if !matches!(b.phase, Phase::Verified | Phase::ReadsSwitching) {
                        no.push(format!(
                            "it is {}, not verified: load, catch up and verify it first",
                            b.phase
                        ));
                    }
                    match b.accuracy {
                        Some(a) if a >= min => {}
                        Some(a) => no.push(format!(
                            "its last verification found {a:.3}% accurate, below the migration's minimum {min}%: repair it and verify again"
                        )),
                        None => no.push("it was never verified: run a verification".into()),
                    }
                    match b.lag_changes {
                        Some(0) => {}
                        Some(n) => no.push(format!(
                            "its lag is {n} changes: let the relay catch up (or run a catch-up), then try again"
                        )),
                        None => no.push(
                            "its lag was never measured: run a catch-up or start the relay".into(),
                        ),
                    }
                    match paths.iter().find(|p| p.table == table) {
                        Some(p) if p.reversible => {}
                        Some(p) => no.push(format!(
                            "table {table} cannot be reversed: {}",
                            p.reason
                        )),
                        None => no.push(format!(
                            "table {table}'s reverse path was never checked: start the reverse relay, which checks it"
                        )),
                    }
                    if !reverse_running {
                        no.push(
                            "the reverse relay is not running: start it (the migration page or `tern reverse-relay`) so the old store stays complete".into(),
                        );
                    }
                    if !drifted.is_empty() {
                        no.push(format!(
                            "switched bucket(s) {} drifted from the old store: repair and re-verify them before switching more",
                            drifted.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
                        ));
                    }
                }
                Direction::Rollback => {
                    if b.write_primary != "new" {
                        no.push(
                            "it is not switched: its writes already go to the old store".into(),
                        );
                    }
                    if completed.is_some() {
                        no.push(
                            "the migration is decommissioned: the old store is read-only".into(),
                        );
                    }
                    if !forward_running {
                        no.push(
                            "the forward relay is not running: start it so the new store keeps following the old one".into(),
                        );
                    }
                }
            }
            out.push(BucketGate {
                idx: b.idx,
                refusals: no,
            });
        }
        Ok(out)
    }
}
