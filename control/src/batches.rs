//! Batches: buckets grouped so that each batch holds about the same number of
//! rows. Seed 002's lesson: a pipeline is bound by its largest batch, so equal
//! totals, not equal bucket counts.

use serde::{Deserialize, Serialize};

use crate::audit::{self, AuditEntry};
use crate::buckets::Phase;
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// Splits `items` (id, rows) into `n` groups of about equal total rows, by
/// longest-processing-time-first: biggest item to the lightest group. The
/// heaviest group exceeds the lightest by at most the biggest item.
pub fn balance(items: &[(i64, i64)], n: usize) -> Vec<Vec<i64>> {
    let n = n.clamp(1, items.len().max(1));
    let mut sorted: Vec<(i64, i64)> = items.to_vec();
    sorted.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut groups: Vec<(i64, Vec<i64>)> = vec![(0, Vec::new()); n];
    for (id, rows) in sorted {
        if let Some(lightest) = groups.iter_mut().min_by_key(|(total, g)| (*total, g.len())) {
            lightest.0 += rows.max(0);
            lightest.1.push(id);
        }
    }
    groups
        .into_iter()
        .filter(|(_, g)| !g.is_empty())
        .map(|(_, mut g)| {
            g.sort_unstable();
            g
        })
        .collect()
}

/// A stored batch with its buckets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct Batch {
    pub id: i64,
    pub migration_id: i64,
    pub seq: i64,
    pub planned_rows: i64,
    pub state: String,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// Not a column: the store adds them.
    #[sqlx(skip)]
    pub bucket_ids: Vec<i64>,
}

impl Store {
    /// Groups the given planned buckets (all planned buckets not yet in a
    /// batch when `bucket_ids` is empty) into `count` batches of about equal
    /// total rows, appended after the existing batches (audited).
    pub async fn plan_batches(
        &self,
        actor: &Actor,
        migration_id: i64,
        bucket_ids: &[i64],
        count: usize,
    ) -> Result<Vec<Batch>> {
        actor.require_operate("planning batches")?;
        if count == 0 {
            return Err(ControlError::Invalid(
                "a batch plan needs at least one batch".into(),
            ));
        }
        let buckets = self.list_buckets(migration_id).await?;
        let chosen: Vec<_> = buckets
            .iter()
            .filter(|b| b.batch_id.is_none() && b.phase == Phase::Planned)
            .filter(|b| bucket_ids.is_empty() || bucket_ids.contains(&b.id))
            .collect();
        if let Some(missing) = bucket_ids
            .iter()
            .find(|id| !chosen.iter().any(|b| b.id == **id))
        {
            return Err(ControlError::Conflict(format!(
                "bucket id {missing} cannot join a batch: it is not a planned bucket of migration \
                 {migration_id}, or it is in a batch already"
            )));
        }
        if chosen.is_empty() {
            return Err(ControlError::Conflict(
                "every planned bucket is in a batch already".into(),
            ));
        }
        let groups = balance(
            &chosen
                .iter()
                .map(|b| (b.id, b.planned_rows))
                .collect::<Vec<_>>(),
            count,
        );
        let now = now_ms();
        let mut tx = self.begin().await?;
        let next: i64 = sqlx::query(
            "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) AS s FROM batches WHERE migration_id = $1",
        )
        .bind(migration_id)
        .scalar(&mut *tx, "numbering batches").await?;
        let mut ids = Vec::new();
        for (i, group) in groups.iter().enumerate() {
            let rows: i64 = chosen
                .iter()
                .filter(|b| group.contains(&b.id))
                .map(|b| b.planned_rows)
                .sum();
            let id: i64 = sqlx::query(
                "INSERT INTO batches (migration_id, seq, planned_rows, state, created_at)
                 VALUES ($1, $2, $3, 'planned', $4) RETURNING id",
            )
            .bind(migration_id)
            .bind(next + 1 + i as i64)
            .bind(rows)
            .bind(now)
            .scalar(&mut *tx, "storing a batch")
            .await?;
            for bucket in group {
                sqlx::query("UPDATE buckets SET batch_id = $1 WHERE id = $2")
                    .bind(id)
                    .bind(bucket)
                    .run(&mut *tx, "assigning a bucket to a batch")
                    .await?;
            }
            ids.push(id);
        }
        let migration = self.migration(migration_id).await?;
        audit::commit(
            tx,
            AuditEntry::new(actor, "batch.plan", "migration", &migration.name)
                .details(serde_json::json!({ "batches": ids, "buckets": chosen.len() })),
            "committing a batch plan",
        )
        .await?;
        let all = self.list_batches(migration_id).await?;
        Ok(all.into_iter().filter(|b| ids.contains(&b.id)).collect())
    }

    /// A migration's batches, in order, with their buckets.
    pub async fn list_batches(&self, migration_id: i64) -> Result<Vec<Batch>> {
        let batches: Vec<Batch> =
            sqlx::query("SELECT * FROM batches WHERE migration_id = $1 ORDER BY seq")
                .bind(migration_id)
                .all(self.pool(), "listing batches")
                .await?;
        let members: Vec<(i64, i64)> = sqlx::query(
            "SELECT id, batch_id FROM buckets WHERE migration_id = $1 AND batch_id IS NOT NULL ORDER BY idx",
        )
        .bind(migration_id)
        .all(self.pool(), "listing batch members")
        .await?;
        Ok(batches
            .into_iter()
            .map(|batch| Batch {
                bucket_ids: members
                    .iter()
                    .filter(|(_, b)| *b == batch.id)
                    .map(|(id, _)| *id)
                    .collect(),
                ..batch
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_hot_bucket_gets_a_batch_of_its_own() {
        let items = [(1, 900), (2, 100), (3, 100), (4, 100), (5, 100), (6, 100)];
        let groups = balance(&items, 2);
        assert_eq!(groups, vec![vec![1], vec![2, 3, 4, 5, 6]]);
    }

    #[test]
    fn more_batches_than_buckets_gives_one_bucket_each() {
        assert_eq!(balance(&[(7, 5), (8, 5)], 5), vec![vec![7], vec![8]]);
        assert!(balance(&[], 3).is_empty());
    }

    proptest! {
        /// Every bucket lands in exactly one batch, and the heaviest batch
        /// exceeds the lightest by at most the biggest bucket.
        #[test]
        fn batches_are_about_equal(sizes in proptest::collection::vec(0i64..10_000, 1..60), n in 1usize..10) {
            let items: Vec<(i64, i64)> = sizes.iter().enumerate().map(|(i, s)| (i as i64, *s)).collect();
            let groups = balance(&items, n);
            let mut seen: Vec<i64> = groups.iter().flatten().copied().collect();
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..items.len() as i64).collect::<Vec<_>>());
            let totals: Vec<i64> = groups.iter().map(|g| g.iter().map(|id| sizes[*id as usize]).sum()).collect();
            let biggest = sizes.iter().copied().max().unwrap_or(0);
            if groups.len() == n.min(items.len()) && groups.len() > 1 {
                let (max, min) = (totals.iter().max().copied().unwrap_or(0), totals.iter().min().copied().unwrap_or(0));
                prop_assert!(max - min <= biggest, "totals {:?}", totals);
            }
        }
    }
}
