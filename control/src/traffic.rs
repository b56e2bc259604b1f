//! What clients report: per-interval counts of requests served by the old and
//! the new system (a client that reports but is not registered appears as
//! *discovered*), and shadow pairs (old and new answers for one key), compared
//! by the engine's shadow comparison and kept for the mismatch rate and trees.

use serde::{Deserialize, Serialize};
use tern_engine::shadow::{self, ShadowRules};

use crate::audit::{self, AuditEntry};
use crate::clients::{Client, TokenGrant, insert_client};
use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::store::Store;
use crate::users::Actor;

/// One interval's counts for one client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficReport {
    pub client: String,
    /// Interval start (Unix ms); now when left out.
    #[serde(default)]
    pub at: Option<i64>,
    /// Interval length (ms); a minute when left out.
    #[serde(default)]
    pub interval_ms: Option<i64>,
    pub old: i64,
    pub new: i64,
}

/// Traffic of one client in one time slot (charts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrafficPoint {
    pub at: i64,
    pub old: i64,
    pub new: i64,
}

/// A stored shadow comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, sqlx::FromRow)]
pub struct ShadowRecord {
    pub id: i64,
    pub client_id: i64,
    pub at: i64,
    pub key: String,
    #[sqlx(try_from = "crate::db::Flag")]
    pub matched: bool,
    pub paths: i64,
    pub tree: Option<String>,
}

/// The mismatch rate in one time slot.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MismatchPoint {
    pub at: i64,
    pub samples: i64,
    pub mismatched: i64,
}

/// Slots of `slot_ms` ending now, `slots` of them, for charts.
fn slot_of(at: i64, slot_ms: i64) -> i64 {
    at - at.rem_euclid(slot_ms)
}

impl Store {
    /// Records traffic counts reported under `grant`. Unknown client names
    /// (from a collector token) are registered as *discovered*.
    pub async fn record_traffic(
        &self,
        grant: &TokenGrant,
        reports: &[TrafficReport],
    ) -> Result<usize> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        for r in reports {
            grant.require(&grant.migration_name, &r.client)?;
            if r.old < 0 || r.new < 0 {
                return Err(ControlError::Invalid(format!(
                    "traffic counts for `{}` are negative ({} old, {} new): send requests served per interval",
                    r.client, r.old, r.new
                )));
            }
            let interval = r.interval_ms.unwrap_or(60_000);
            if interval <= 0 {
                return Err(ControlError::Invalid("interval_ms must be positive".into()));
            }
            let id: Option<(i64,)> =
                sqlx::query("SELECT id FROM clients WHERE migration_id = $1 AND name = $2")
                    .bind(grant.migration_id)
                    .bind(&r.client)
                    .optional(&mut *tx, "looking up a reporting client")
                    .await?;
            let id = match id {
                Some((id,)) => id,
                None => {
                    let name = r.client.trim();
                    if name.is_empty() || name.len() > 100 {
                        return Err(ControlError::Invalid(
                            "a traffic report needs a client name of up to 100 characters".into(),
                        ));
                    }
                    let id = insert_client(
                        &mut tx,
                        grant.migration_id,
                        name,
                        "",
                        "",
                        "online",
                        "discovered",
                    )
                    .await?;
                    audit::record(
                        &mut tx,
                        AuditEntry::new(
                            &Actor::system(),
                            "client.discover",
                            "client",
                            format!("{}/{name}", grant.migration_name),
                        )
                        .to_state("discovered")
                        .reason("reported traffic without being registered"),
                    )
                    .await?;
                    tracing::info!(client = name, migration = %grant.migration_name, "discovered a client from its traffic");
                    id
                }
            };
            sqlx::query(
                "INSERT INTO client_traffic (client_id, at, interval_ms, old_count, new_count)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(id)
            .bind(r.at.unwrap_or(now))
            .bind(interval)
            .bind(r.old)
            .bind(r.new)
            .run(&mut *tx, "recording traffic")
            .await?;
        }
        db::commit(tx, "committing traffic").await?;
        Ok(reports.len())
    }

    /// A client's traffic summed into slots of `slot_ms` since `since`, oldest first.
    pub async fn traffic_series(
        &self,
        client_id: i64,
        since: i64,
        slot_ms: i64,
    ) -> Result<Vec<TrafficPoint>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query(
            "SELECT at, old_count, new_count FROM client_traffic
             WHERE client_id = $1 AND at >= $2 ORDER BY at",
        )
        .bind(client_id)
        .bind(since)
        .all(self.pool(), "reading traffic")
        .await?;
        Ok(in_slots(&rows, slot_ms))
    }

    /// A migration's traffic (all clients) in slots, oldest first.
    pub async fn migration_traffic_series(
        &self,
        migration_id: i64,
        since: i64,
        slot_ms: i64,
    ) -> Result<Vec<TrafficPoint>> {
        let rows: Vec<(i64, i64, i64)> = sqlx::query(
            "SELECT t.at, t.old_count, t.new_count FROM client_traffic t
             JOIN clients c ON c.id = t.client_id
             WHERE c.migration_id = $1 AND t.at >= $2 ORDER BY t.at",
        )
        .bind(migration_id)
        .bind(since)
        .all(self.pool(), "reading a migration's traffic")
        .await?;
        Ok(in_slots(&rows, slot_ms))
    }

    /// Old-system requests a client served since `since`.
    pub async fn old_traffic_since(&self, client_id: i64, since: i64) -> Result<i64> {
        sqlx::query(
            "SELECT CAST(COALESCE(SUM(old_count), 0) AS BIGINT) AS n FROM client_traffic WHERE client_id = $1 AND at >= $2",
        )
        .bind(client_id)
        .bind(since)
        .scalar(self.pool(), "summing old traffic")
        .await
    }

    /// Compares a shadow pair with the client's rules and keeps the result.
    pub async fn record_shadow(
        &self,
        client: &Client,
        key: &str,
        old: &serde_json::Value,
        new: &serde_json::Value,
    ) -> Result<ShadowRecord> {
        let rules: ShadowRules = serde_json::from_str(&client.shadow_rules).unwrap_or_default();
        let result = shadow::compare(old, new, &rules);
        let tree = (!result.matched()).then(|| result.render());
        let now = now_ms();
        let id: i64 = sqlx::query(
            "INSERT INTO shadow_results (client_id, at, key, matched, paths, tree)
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(client.id)
        .bind(now)
        .bind(key)
        .bind(i64::from(result.matched()))
        .bind(result.differences.len() as i64)
        .bind(tree.as_deref())
        .scalar(self.pool(), "recording a shadow comparison")
        .await?;
        Ok(ShadowRecord {
            id,
            client_id: client.id,
            at: now,
            key: key.to_string(),
            matched: result.matched(),
            paths: result.differences.len() as i64,
            tree,
        })
    }

    /// The latest mismatches of a client, newest first.
    pub async fn latest_mismatches(&self, client_id: i64, limit: i64) -> Result<Vec<ShadowRecord>> {
        sqlx::query(
            "SELECT * FROM shadow_results WHERE client_id = $1 AND matched = 0
             ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(client_id)
        .bind(limit.clamp(1, 1000))
        .all(self.pool(), "reading mismatches")
        .await
    }

    /// A client's mismatch counts in slots since `since`, oldest first.
    pub async fn mismatch_series(
        &self,
        client_id: i64,
        since: i64,
        slot_ms: i64,
    ) -> Result<Vec<MismatchPoint>> {
        let rows: Vec<(i64, i64)> = sqlx::query(
            "SELECT at, matched FROM shadow_results WHERE client_id = $1 AND at >= $2 ORDER BY at",
        )
        .bind(client_id)
        .bind(since)
        .all(self.pool(), "reading shadow results")
        .await?;
        let mut out: Vec<MismatchPoint> = Vec::new();
        for (at, matched) in rows {
            let at = slot_of(at, slot_ms.max(1));
            let bad = i64::from(matched == 0);
            match out.last_mut() {
                Some(p) if p.at == at => {
                    p.samples += 1;
                    p.mismatched += bad;
                }
                _ => out.push(MismatchPoint {
                    at,
                    samples: 1,
                    mismatched: bad,
                }),
            }
        }
        Ok(out)
    }
}

/// Rows of `at, old_count, new_count` (ordered by `at`) summed per slot of
/// `slot_ms`.
fn in_slots(rows: &[(i64, i64, i64)], slot_ms: i64) -> Vec<TrafficPoint> {
    let mut out: Vec<TrafficPoint> = Vec::new();
    for &(at, old, new) in rows {
        let at = slot_of(at, slot_ms.max(1));
        match out.last_mut() {
            Some(p) if p.at == at => {
                p.old += old;
                p.new += new;
            }
            _ => out.push(TrafficPoint { at, old, new }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_start_on_their_boundary() {
        assert_eq!(slot_of(125_000, 60_000), 120_000);
        assert_eq!(slot_of(120_000, 60_000), 120_000);
    }
}
