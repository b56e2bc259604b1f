//! Verification runs as the control plane keeps them: the counts and accuracy
//! of every run it drove, for the accuracy-over-time chart, the bucket page and
//! the gates. The mismatched rows themselves stay with the engine's run.

use serde::{Deserialize, Serialize};

pub use crate::accuracy::{Histories, TableAccuracy};
use crate::caches::HistoryCache;
use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::Result;
use crate::store::Store;

/// A verification run's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct VerifyRun {
    pub id: i64,
    pub migration_id: i64,
    pub bucket_id: Option<i64>,
    pub job_id: Option<i64>,
    /// The engine's id of the run (to browse its mismatched rows, or repair it).
    pub engine_run: Option<String>,
    /// `full`, `sample`, `incremental` or `repair`.
    pub kind: String,
    pub rows_compared: i64,
    pub matched: i64,
    pub missing: i64,
    pub extra: i64,
    pub different: i64,
    /// Percent of compared rows that match exactly.
    pub accuracy: f64,
    /// The mismatch tree as text, per field path: how many rows differ there, with examples.
    pub tree: Option<String>,
    pub finished_at: i64,
}

/// A run to record.
#[derive(Debug, Clone, Default)]
pub struct NewVerifyRun {
    pub migration_id: i64,
    pub bucket_id: Option<i64>,
    pub job_id: Option<i64>,
    pub engine_run: Option<String>,
    pub kind: String,
    pub rows_compared: i64,
    pub matched: i64,
    pub missing: i64,
    pub extra: i64,
    pub different: i64,
    pub accuracy: f64,
    pub tree: Option<String>,
}

impl NewVerifyRun {
    /// The record of an engine run (`engine_run`) done by a bucket job: its
    /// kind (`full`, `incremental`, `repair`), counts and mismatch tree.
    pub fn of_engine_run(
        job: &crate::jobs::Job,
        engine_run: &str,
        kind: &str,
        counts: &tern_engine::verify::Counts,
        tree: String,
    ) -> NewVerifyRun {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        NewVerifyRun {
            migration_id: job.migration_id.unwrap_or_default(),
            bucket_id: job.bucket_id,
            job_id: Some(job.id),
            engine_run: Some(engine_run.to_string()),
            kind: kind.to_string(),
            rows_compared: n(counts.compared),
            matched: n(counts.matched),
            missing: n(counts.missing),
            extra: n(counts.extra),
            different: n(counts.different),
            accuracy: counts.accuracy(),
            tree: Some(tree),
        }
    }
}

/// What the accuracy history needs of a run.
#[derive(Debug, Clone, Copy)]
pub struct RunPoint {
    pub bucket_id: Option<i64>,
    pub sampled: bool,
    pub compared: i64,
    pub matched: i64,
    pub at: i64,
}

/// One run packed as `bucket:sampled:compared:matched:at`.
fn unpack_run(f: &[&str]) -> Option<RunPoint> {
    Some(RunPoint {
        bucket_id: if f[0].is_empty() {
            None
        } else {
            Some(f[0].parse().ok()?)
        },
        sampled: f[1] == "1",
        compared: f[2].parse().ok()?,
        matched: f[3].parse().ok()?,
        at: f[4].parse().ok()?,
    })
}

/// After each run (oldest first), the row-weighted accuracy over every
/// bucket's latest run so far. Sampled and incremental runs are left out:
/// they cover some keys, not the bucket. A repair run carries the repaired
/// run's whole counts, so a bucket's latest counted run stands for the bucket.
pub fn accuracy_over_time(runs: &[RunPoint]) -> Vec<(i64, f64)> {
    let mut latest: std::collections::HashMap<Option<i64>, (i64, i64)> = Default::default();
    // Running totals over every bucket's latest run: a new run replaces its
    // bucket's counts, so each run costs O(1), not a pass over the buckets.
    let (mut compared, mut matched) = (0i64, 0i64);
    let mut out = Vec::with_capacity(runs.len());
    for run in runs.iter().filter(|r| !r.sampled) {
        if let Some((c, m)) = latest.insert(run.bucket_id, (run.compared, run.matched)) {
            compared -= c;
            matched -= m;
        }
        compared += run.compared;
        matched += run.matched;
        if compared > 0 {
            out.push((run.at, matched as f64 * 100.0 / compared as f64));
        }
    }
    out
}

/// Runs (oldest first), each with its bucket's table, as one accuracy
/// history per table, tables by name, at most [`HISTORY_POINTS`] points each.
pub fn accuracy_by_table(runs: &[(String, RunPoint)]) -> Vec<TableAccuracy> {
    let mut per: std::collections::BTreeMap<&str, Vec<RunPoint>> = Default::default();
    for (table, run) in runs {
        per.entry(table.as_str()).or_default().push(*run);
    }
    per.into_iter()
        .map(|(table, runs)| TableAccuracy {
            table: table.to_string(),
            points: downsample(accuracy_over_time(&runs), HISTORY_POINTS),
        })
        .filter(|t| !t.points.is_empty())
        .collect()
}

/// Points of an accuracy history kept for charts and reports.
pub const HISTORY_POINTS: usize = 120;

/// At most `max` points of a history, evenly spread over it, the first and
/// the latest always kept (the latest is what gates read).
pub fn downsample(points: Vec<(i64, f64)>, max: usize) -> Vec<(i64, f64)> {
    let n = points.len();
    if n <= max || max < 2 {
        return points;
    }
    (0..max).map(|i| points[i * (n - 1) / (max - 1)]).collect()
}

/// Records a run inside the caller's transaction and stores its accuracy on
/// the bucket it verified.
pub async fn record(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    run: &NewVerifyRun,
) -> Result<i64> {
    let now = now_ms();
    let id: i64 = sqlx::query(
        "INSERT INTO verify_runs (migration_id, bucket_id, job_id, engine_run, kind, rows_compared,
                                  matched, missing, extra, different, accuracy, tree, finished_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
    )
    .bind(run.migration_id)
    .bind(run.bucket_id)
    .bind(run.job_id)
    .bind(run.engine_run.as_deref())
    .bind(&run.kind)
    .bind(run.rows_compared)
    .bind(run.matched)
    .bind(run.missing)
    .bind(run.extra)
    .bind(run.different)
    .bind(run.accuracy)
    .bind(run.tree.as_deref())
    .bind(now)
    .scalar(&mut **tx, "recording a verification run")
    .await?;
    // An incremental run re-checks only the changed keys: it does not stand
    // for the bucket's accuracy (a sample does not either).
    let whole = !matches!(run.kind.as_str(), "incremental" | "sample");
    if let Some(bucket) = run.bucket_id.filter(|_| whole) {
        sqlx::query("UPDATE buckets SET accuracy = $1, updated_at = $2 WHERE id = $3")
            .bind(run.accuracy)
            .bind(now)
            .bind(bucket)
            .run(&mut **tx, "storing a bucket's accuracy")
            .await?;
    }
    Ok(id)
}

impl Store {
    /// Records a verification run (see [`record`]).
    pub async fn record_verify_run(&self, run: &NewVerifyRun) -> Result<VerifyRun> {
        let mut tx = self.begin().await?;
        let id = record(&mut tx, run).await?;
        db::commit(tx, "committing a verification run").await?;
        self.verify_run(id).await
    }

    /// The run with this id.
    pub async fn verify_run(&self, id: i64) -> Result<VerifyRun> {
        sqlx::query("SELECT * FROM verify_runs WHERE id = $1")
            .bind(id)
            .found(self.pool(), format!("verification run {id}"))
            .await
    }

    /// A migration's runs (or one bucket's), newest first.
    pub async fn list_verify_runs(
        &self,
        migration_id: i64,
        bucket_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<VerifyRun>> {
        sqlx::query(
            "SELECT * FROM verify_runs WHERE migration_id = $1 AND ($2 IS NULL OR bucket_id = $2)
             ORDER BY finished_at DESC, id DESC LIMIT $3",
        )
        .bind(migration_id)
        .bind(bucket_id)
        .bind(limit.clamp(1, 10_000))
        .all(self.pool(), "listing verification runs")
        .await
    }

    /// The migration's accuracy over time (see [`accuracy_over_time`]).
    pub async fn accuracy_history(&self, migration_id: i64) -> Result<Vec<(i64, f64)>> {
        Ok(self
            .accuracy_histories(Some(migration_id))
            .await?
            .remove(&migration_id)
            .unwrap_or_default())
    }

    /// Accuracy over time of one migration (or all), as
    /// [`accuracy_histories`](Self::accuracy_histories) computes it.
    pub async fn accuracy_histories(
        &self,
        only: Option<i64>,
    ) -> Result<std::collections::BTreeMap<i64, Vec<(i64, f64)>>> {
        match only {
            Some(_) => Ok(self.compute_histories(only, false).await?.total),
            None => Ok(self.every_accuracy_history().await?.total),
        }
    }

    /// Accuracy over time of every migration, whole and per table, by
    /// migration id, at most [`HISTORY_POINTS`] points each. Every
    /// migration's histories are kept in memory with a stamp of the runs
    /// they came from (their count and last id): the overview asks on every
    /// request, and recomputing means reading every run of every migration.
    /// Runs are only ever added (nothing deletes migrations or buckets), so a
    /// changed stamp is a changed history. One migration's history (gates
    /// read it) is always computed afresh.
    pub async fn every_accuracy_history(&self) -> Result<Histories> {
        let (n, last_id): (i64, i64) =
            sqlx::query("SELECT COUNT(*) AS n, COALESCE(MAX(id), 0) AS last_id FROM verify_runs")
                .one(self.pool(), "reading the state of verification runs")
                .await?;
        let stamp = [n, last_id];
        if let Ok(cache) = self.caches.histories.lock()
            && let Some(c) = cache.as_ref()
            && c.stamp == stamp
        {
            return Ok(c.histories.clone());
        }
        let histories = self.compute_histories(None, true).await?;
        if let Ok(mut cache) = self.caches.histories.lock() {
            *cache = Some(HistoryCache {
                stamp,
                histories: histories.clone(),
            });
        }
        Ok(histories)
    }

    /// The migration's accuracy over time, one history per table (see
    /// [`accuracy_by_table`]); runs of no bucket count as "(no table)".
    pub async fn table_accuracy(&self, migration_id: i64) -> Result<Vec<TableAccuracy>> {
        let rows: Vec<(String, Option<i64>, i64, i64, i64, i64)> = sqlx::query(
            "SELECT COALESCE(b.table_name, '(no table)') AS table_name, r.bucket_id,
                    CAST(CASE WHEN r.kind IN ('sample', 'incremental') THEN 1 ELSE 0 END AS BIGINT) AS sampled,
                    r.rows_compared, r.matched, r.finished_at
             FROM verify_runs r LEFT JOIN buckets b ON b.id = r.bucket_id
             WHERE r.migration_id = $1 ORDER BY r.finished_at, r.id",
        )
        .bind(migration_id)
        .all(self.pool(), "reading verification runs by table")
        .await?;
        let runs: Vec<(String, RunPoint)> = rows
            .into_iter()
            .map(|(table, bucket_id, sampled, compared, matched, at)| {
                let sampled = sampled == 1;
                let point = RunPoint {
                    bucket_id,
                    sampled,
                    compared,
                    matched,
                    at,
                };
                (table, point)
            })
            .collect();
        Ok(accuracy_by_table(&runs))
    }

    /// The histories of one migration (or all); the per-table ones only
    /// when `by_table` (the gates, which ask per client, need the whole).
    async fn compute_histories(&self, only: Option<i64>, by_table: bool) -> Result<Histories> {
        // One row per migration, its runs packed in order as
        // `bucket:sampled:compared:matched:at,…`: the overview reads every
        // migration's runs, and rows, not bytes, are what a read costs.
        let rows: Vec<(i64, String)> = sqlx::query(
            "SELECT migration_id, string_agg(
                    COALESCE(CAST(bucket_id AS TEXT), '') || ':' ||
                    (CASE WHEN kind IN ('sample', 'incremental') THEN '1' ELSE '0' END) || ':' ||
                    CAST(rows_compared AS TEXT) || ':' || CAST(matched AS TEXT) || ':' ||
                    CAST(finished_at AS TEXT), ',' ORDER BY finished_at, id) AS runs
             FROM verify_runs WHERE ($1 IS NULL OR migration_id = $1) GROUP BY migration_id",
        )
        .bind(only)
        .all(self.pool(), "reading verification runs")
        .await?;
        let mut per: std::collections::BTreeMap<i64, Vec<RunPoint>> = Default::default();
        for (id, packed) in rows {
            let runs = crate::store::unpack(
                &packed,
                5,
                &format!("the verification runs of migration {id}"),
                unpack_run,
            )?;
            per.insert(id, runs);
        }
        // Which table each verified bucket belongs to, for the per-table lines.
        let tables: std::collections::HashMap<i64, String> = if by_table {
            sqlx::query(
                "SELECT id, COALESCE(table_name, '(no table)') AS table_name FROM buckets
             WHERE id IN (SELECT bucket_id FROM verify_runs
                          WHERE ($1 IS NULL OR migration_id = $1) AND bucket_id IS NOT NULL)",
            )
            .bind(only)
            .all::<(i64, String), _>(self.pool(), "reading the tables of buckets")
            .await?
            .into_iter()
            .collect()
        } else {
            Default::default()
        };
        let mut out = Histories::default();
        for (id, runs) in per {
            if by_table {
                let tables_of_runs: Vec<(String, RunPoint)> = runs
                    .iter()
                    .map(|r| {
                        let table = r.bucket_id.and_then(|b| tables.get(&b).cloned());
                        (table.unwrap_or_else(|| "(no table)".into()), *r)
                    })
                    .collect();
                out.by_table.insert(id, accuracy_by_table(&tables_of_runs));
            }
            out.total
                .insert(id, downsample(accuracy_over_time(&runs), HISTORY_POINTS));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_history_keeps_its_first_and_latest_points() {
        let points: Vec<(i64, f64)> = (0..1000).map(|i| (i, i as f64 / 10.0)).collect();
        let kept = downsample(points, 120);
        assert_eq!(kept.len(), 120);
        assert_eq!(kept.first(), Some(&(0, 0.0)));
        assert_eq!(kept.last(), Some(&(999, 99.9)));
        assert!(kept.windows(2).all(|w| w[0].0 < w[1].0));
        let short: Vec<(i64, f64)> = (0..5).map(|i| (i, 1.0)).collect();
        assert_eq!(downsample(short.clone(), 120), short);
    }

    #[test]
    fn each_table_has_its_own_history() {
        let run = |bucket, compared, matched, at| RunPoint {
            bucket_id: Some(bucket),
            sampled: false,
            compared,
            matched,
            at,
        };
        let sampled = RunPoint {
            sampled: true,
            ..run(3, 10, 0, 4)
        };
        let tables = accuracy_by_table(&[
            ("messages".into(), run(1, 100, 50, 1)),
            ("contacts".into(), run(2, 100, 100, 2)),
            ("messages".into(), run(3, 100, 100, 3)),
            ("messages".into(), sampled),
            ("messages".into(), run(1, 100, 100, 5)),
        ]);
        assert_eq!(
            tables,
            vec![
                TableAccuracy {
                    table: "contacts".into(),
                    points: vec![(2, 100.0)]
                },
                TableAccuracy {
                    table: "messages".into(),
                    points: vec![(1, 50.0), (3, 75.0), (5, 100.0)]
                },
            ]
        );
    }

    #[test]
    fn each_buckets_latest_run_replaces_its_earlier_one() {
        let run = |bucket, compared, matched, at| RunPoint {
            bucket_id: Some(bucket),
            sampled: false,
            compared,
            matched,
            at,
        };
        let history =
            accuracy_over_time(&[run(1, 100, 50, 1), run(2, 100, 100, 2), run(1, 100, 100, 3)]);
        assert_eq!(history, vec![(1, 50.0), (2, 75.0), (3, 100.0)]);
    }
}
