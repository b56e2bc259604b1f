//! What blocks, read from the store for one migration or for all of them in
//! a fixed number of queries (the overview shows every migration's panel:
//! one query per migration and per client made it ten times too slow).

use std::collections::BTreeMap;

use sqlx::Row;
use tern_ramp::Ramp;

use super::{
    Blocker, BlockerGroup, BlockerKind, STUCK_MS, StuckCandidate, drifted_bucket, failed_bucket,
    failed_job, group, low_accuracy, paused_bucket, stuck,
};
use crate::buckets::Phase;
use crate::clients::{GateInputs, Gates, gate_reasons};
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::jobs::JobState;
use crate::store::Store;
use crate::users::Actor;

/// The kinds whose buckets the store counts in SQL, with the condition
/// (over `buckets b JOIN migrations m`).
const COUNTED: [(BlockerKind, &str); 4] = [
    (BlockerKind::FailedBucket, "b.phase = 'failed'"),
    (BlockerKind::PausedBucket, "b.phase = 'paused'"),
    (
        BlockerKind::LowAccuracy,
        "b.accuracy < m.verify_min_accuracy AND b.phase NOT IN ('failed', 'verifying')",
    ),
    // The same rule as the switch gate's (`Store::drifted_buckets`).
    (
        BlockerKind::DriftedBucket,
        "b.write_primary = 'new' AND b.drift_rows > 0",
    ),
];

const ACTIVE: &str = "b.phase IN ('bulk-loading', 'catching-up', 'verifying')";

/// At most this many failed jobs of a migration are read.
const FAILED_JOBS_READ: i64 = 200;

/// Latest accuracy (percent) of each migration, from its accuracy history.
pub type LatestAccuracy = BTreeMap<i64, f64>;

/// Blockers of each migration, in the order: counted buckets, stuck
/// buckets, failed jobs, gated ramps.
type ByMigration = BTreeMap<i64, Vec<BlockerGroup>>;

/// `AND b.migration_id = N` when one migration is asked for (an integer,
/// formatted, never user text).
fn scope(column: &str, only: Option<i64>) -> String {
    only.map(|id| format!(" AND {column} = {id}"))
        .unwrap_or_default()
}

/// A bucket that blocks: its migration, index, accuracy, last error, drift
/// rows and the migration's accuracy gate.
type BlockingBucket = (i64, i64, Option<f64>, Option<String>, Option<i64>, f64);

/// A bucket long in an active phase: its migration, index, phase and since
/// when, and its newest job's id, state and last update.
type StuckRow = (
    i64,
    i64,
    Phase,
    i64,
    Option<i64>,
    Option<JobState>,
    Option<i64>,
);

fn db(what: &'static str) -> impl Fn(sqlx::Error) -> ControlError {
    move |e| ControlError::db(what)(e)
}

impl Store {
    /// What blocks a migration now, as `actor` may see it, grouped by kind
    /// with the first `keep` of each.
    pub async fn blockers(
        &self,
        actor: &Actor,
        migration_id: i64,
        keep: usize,
    ) -> Result<Vec<BlockerGroup>> {
        self.migration(migration_id).await?;
        let latest: LatestAccuracy = self
            .accuracy_history(migration_id)
            .await?
            .last()
            .map(|(_, a)| (migration_id, *a))
            .into_iter()
            .collect();
        Ok(self
            .blockers_of(actor, Some(migration_id), keep, &latest)
            .await?
            .remove(&migration_id)
            .unwrap_or_default())
    }

    /// What blocks each migration (`only` one, or all), in a fixed number
    /// of queries whatever the number of migrations, buckets and clients.
    /// `latest` is each migration's latest accuracy, which the ramp gates
    /// read (the caller has the histories already).
    pub async fn blockers_of(
        &self,
        actor: &Actor,
        only: Option<i64>,
        keep: usize,
        latest: &LatestAccuracy,
    ) -> Result<ByMigration> {
        let now = crate::clock::now_ms();
        let (mut counted, any_stuck) = self.counted_buckets(only, keep, now).await?;
        let mut more: BTreeMap<i64, Vec<Blocker>> = BTreeMap::new();
        if any_stuck {
            for (id, b) in self.stuck_buckets(only, now).await? {
                more.entry(id).or_default().push(b);
            }
        }
        for (id, b) in self.failed_jobs(only, now).await? {
            more.entry(id).or_default().push(b);
        }
        for (id, b) in self.gated_ramps(actor, only, latest).await? {
            more.entry(id).or_default().push(b);
        }
        for (id, blockers) in more {
            counted.entry(id).or_default().extend(group(blockers, keep));
        }
        Ok(counted)
    }

    /// Failed, paused and under-the-gate buckets: counted per migration in
    /// one scan, the first `keep` of each kind read in one query per kind
    /// that has any. Also says whether any bucket may be stuck.
    async fn counted_buckets(
        &self,
        only: Option<i64>,
        keep: usize,
        now: i64,
    ) -> Result<(ByMigration, bool)> {
        let sums: Vec<String> = COUNTED
            .iter()
            .enumerate()
            .map(|(i, (_, cond))| format!("SUM(CASE WHEN {cond} THEN 1 ELSE 0 END) AS c{i}"))
            .collect();
        let rows = sqlx::query(&format!(
            "SELECT b.migration_id, {},
                    SUM(CASE WHEN {ACTIVE} AND COALESCE(b.phase_since, b.updated_at) < $1
                        THEN 1 ELSE 0 END) AS old_active
             FROM buckets b JOIN migrations m ON m.id = b.migration_id
             WHERE 1 = 1{}
             GROUP BY b.migration_id",
            sums.join(", "),
            scope("b.migration_id", only),
        ))
        .bind(now - STUCK_MS)
        .fetch_all(self.pool())
        .await
        .map_err(db("counting the buckets that block"))?;
        let mut counts: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
        let mut any_stuck = false;
        for r in &rows {
            let n = |col: &str| -> usize {
                r.try_get::<Option<i64>, _>(col)
                    .ok()
                    .flatten()
                    .map_or(0, |n| usize::try_from(n).unwrap_or(0))
            };
            let id: i64 = r
                .try_get("migration_id")
                .map_err(db("counting the buckets that block"))?;
            counts.insert(
                id,
                (0..COUNTED.len()).map(|i| n(&format!("c{i}"))).collect(),
            );
            any_stuck |= n("old_active") > 0;
        }
        let mut out: ByMigration = BTreeMap::new();
        for (i, (kind, cond)) in COUNTED.iter().enumerate() {
            if counts.values().all(|c| c[i] == 0) {
                continue;
            }
            let mut first: BTreeMap<i64, Vec<Blocker>> = BTreeMap::new();
            let rows: Vec<BlockingBucket> = sqlx::query(&format!(
                "SELECT migration_id, idx, accuracy, last_error, drift_rows, min_accuracy FROM (
                     SELECT b.migration_id, b.idx, b.accuracy, b.last_error, b.drift_rows,
                            m.verify_min_accuracy AS min_accuracy,
                            ROW_NUMBER() OVER (PARTITION BY b.migration_id ORDER BY b.idx) AS rn
                     FROM buckets b JOIN migrations m ON m.id = b.migration_id
                     WHERE {cond}{}
                 ) t WHERE rn <= $1 ORDER BY migration_id, idx",
                scope("b.migration_id", only),
            ))
            .bind(keep as i64)
            .all(self.pool(), "reading the buckets that block")
            .await?;
            for (id, idx, accuracy, last_error, drift_rows, min_accuracy) in rows {
                let blocker = match kind {
                    BlockerKind::FailedBucket => failed_bucket(idx, last_error.as_deref()),
                    BlockerKind::PausedBucket => paused_bucket(idx),
                    BlockerKind::DriftedBucket => {
                        drifted_bucket(idx, drift_rows.unwrap_or_default())
                    }
                    _ => low_accuracy(idx, accuracy.unwrap_or_default(), min_accuracy),
                };
                first.entry(id).or_default().push(blocker);
            }
            for (id, c) in &counts {
                if c[i] > 0 {
                    out.entry(*id).or_default().push(BlockerGroup {
                        kind: *kind,
                        count: c[i],
                        first: first.remove(id).unwrap_or_default(),
                    });
                }
            }
        }
        Ok((out, any_stuck))
    }

    /// Buckets long in an active phase whose job is gone or silent.
    async fn stuck_buckets(&self, only: Option<i64>, now: i64) -> Result<Vec<(i64, Blocker)>> {
        let rows: Vec<StuckRow> = sqlx::query(&format!(
            "SELECT b.migration_id, b.idx, b.phase, COALESCE(b.phase_since, b.updated_at) AS since,
                    j.id AS job_id, j.state AS job_state, j.updated_at AS job_updated_at
             FROM buckets b
             LEFT JOIN jobs j ON j.id = (SELECT MAX(id) FROM jobs WHERE bucket_id = b.id)
             WHERE {ACTIVE} AND COALESCE(b.phase_since, b.updated_at) < $1{}
             ORDER BY b.migration_id, b.idx",
            scope("b.migration_id", only),
        ))
        .bind(now - STUCK_MS)
        .all(self.pool(), "reading the buckets that may be stuck")
        .await?;
        let mut out = Vec::new();
        for (id, idx, phase, since, job_id, job_state, job_updated) in rows {
            let newest_job = match (job_id, job_state) {
                (Some(job), Some(state)) => Some((job, state, job_updated.unwrap_or(0))),
                _ => None,
            };
            let candidate = StuckCandidate {
                idx,
                phase,
                since,
                newest_job,
            };
            out.extend(stuck(&candidate, now).map(|b| (id, b)));
        }
        Ok(out)
    }

    /// Jobs that failed in the last day, not replaced by a later job of the
    /// same kind for the same bucket, of buckets that have not failed (a
    /// failed bucket says it already); the newest few of each migration.
    async fn failed_jobs(&self, only: Option<i64>, now: i64) -> Result<Vec<(i64, Blocker)>> {
        let rows: Vec<(i64, i64, String, Option<String>, Option<i64>)> = sqlx::query(&format!(
            "SELECT migration_id, id, kind, message, idx FROM (
                 SELECT j.migration_id, j.id, j.kind, j.message, b.idx,
                        ROW_NUMBER() OVER (PARTITION BY j.migration_id ORDER BY j.id DESC) AS rn
                 FROM jobs j
                 LEFT JOIN buckets b ON b.id = j.bucket_id
                 WHERE j.migration_id IS NOT NULL AND j.state = 'failed'
                   AND (j.finished_at IS NULL OR j.finished_at >= $1)
                   AND (b.phase IS NULL OR b.phase <> 'failed')
                   AND NOT EXISTS (SELECT 1 FROM jobs o WHERE o.migration_id = j.migration_id
                       AND o.id > j.id AND o.kind = j.kind
                       AND COALESCE(o.bucket_id, -1) = COALESCE(j.bucket_id, -1)){}
             ) t WHERE rn <= $2 ORDER BY migration_id, id DESC",
            scope("j.migration_id", only),
        ))
        .bind(now - super::FAILED_JOB_MS)
        .bind(FAILED_JOBS_READ)
        .all(self.pool(), "reading the failed jobs")
        .await?;
        Ok(rows
            .into_iter()
            .map(|(migration_id, id, kind, message, idx)| {
                (migration_id, failed_job(&kind, id, idx, message.as_deref()))
            })
            .collect())
    }

    /// Client ramps below 100% that the gates hold back: the clients, the
    /// gates and the shadow mismatch rates read once for all, the rules
    /// applied in memory.
    async fn gated_ramps(
        &self,
        actor: &Actor,
        only: Option<i64>,
        latest: &LatestAccuracy,
    ) -> Result<Vec<(i64, Blocker)>> {
        let full = i64::from(Ramp::FULL.millipercent());
        let clients: Vec<_> = self
            .list_clients(actor, only)
            .await?
            .into_iter()
            .filter(|c| c.ramp < full)
            .collect();
        if clients.is_empty() {
            return Ok(Vec::new());
        }
        let gates = self.every_gates(only).await?;
        let gates_of = |id: i64| gates.get(&id).cloned().unwrap_or(Gates::defaults(id));
        let rates = self.mismatch_rates(only).await?;
        let mut out = Vec::new();
        for client in clients {
            let gates = gates_of(client.migration_id);
            let inputs = GateInputs {
                client: &client.name,
                current: client.ramp,
                accuracy: latest.get(&client.migration_id).copied(),
                mismatch_rate: rates.get(&client.id).copied(),
            };
            let reasons = gate_reasons(&gates, &inputs, Ramp::FULL);
            if reasons.is_empty() {
                continue;
            }
            out.push((
                client.migration_id,
                Blocker {
                    kind: BlockerKind::GatedRamp,
                    text: format!(
                        "{}'s ramp is held at {}: {}",
                        client.name,
                        client.read_ramp(),
                        reasons.join("; ")
                    ),
                    bucket: None,
                    client: Some(client.id),
                },
            ));
        }
        Ok(out)
    }

    /// Every migration's gates that an engineer set (the others have the
    /// defaults).
    async fn every_gates(&self, only: Option<i64>) -> Result<BTreeMap<i64, Gates>> {
        let gates: Vec<Gates> = sqlx::query(&format!(
            "SELECT * FROM client_gates g WHERE 1 = 1{}",
            scope("g.migration_id", only)
        ))
        .all(self.pool(), "reading the migrations' gates")
        .await?;
        Ok(gates.into_iter().map(|g| (g.migration_id, g)).collect())
    }

    /// Each client's shadow mismatch rate (percent) over its migration's
    /// gate window, for the clients that sent any comparison in it.
    async fn mismatch_rates(&self, only: Option<i64>) -> Result<BTreeMap<i64, f64>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query(&format!(
            "SELECT s.client_id, COUNT(*) AS n,
                    COALESCE(SUM(CASE WHEN s.matched = 0 THEN 1 ELSE 0 END), 0) AS bad
             FROM shadow_results s
             JOIN clients c ON c.id = s.client_id
             LEFT JOIN client_gates g ON g.migration_id = c.migration_id
             WHERE s.at >= $1 - COALESCE(g.mismatch_window_ms, $2){}
             GROUP BY s.client_id",
            scope("c.migration_id", only)
        ))
        .bind(crate::clock::now_ms())
        .bind(Gates::defaults(0).mismatch_window_ms)
        .all(self.pool(), "measuring the clients' mismatch rates")
        .await?;
        Ok(rows
            .into_iter()
            .map(|(client, n, bad)| (client, bad as f64 * 100.0 / n.max(1) as f64))
            .collect())
    }
}
