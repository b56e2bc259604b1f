//! Where each key's writes go: the write primary of every bucket (old or
//! new, or *hold* while a switch holds it), versioned. Clients poll it (a
//! long poll: Tern answers as soon as the version moves), apply it, and say
//! which version they applied on their next poll; a switch waits until every
//! active client has applied its hold before it drains and flips.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tern_ramp::buckets::{KeyKind, bucket_of};

use crate::clock::now_ms;
use crate::db::{self, Run};
use crate::error::{ControlError, Result};
use crate::store::Store;

/// A bucket's write primary: the store that takes its writes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Primary {
    Old,
    New,
    /// A switch or rollback holds this bucket's writes: retry shortly.
    Hold,
}

impl Primary {
    pub fn as_str(self) -> &'static str {
        match self {
            Primary::Old => "old",
            Primary::New => "new",
            Primary::Hold => "hold",
        }
    }
}

/// One bucket as the routing answer carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRoute {
    /// The bucket's index in its table's plan (the engine's index).
    pub index: i64,
    /// The bucket's index in the migration.
    pub idx: i64,
    pub lo: Option<String>,
    pub hi: Option<String>,
    /// `old`, `new` or `hold`.
    pub primary: Primary,
}

/// One table's buckets, in key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableRoute {
    pub table: String,
    /// How the bucket column's keys compare: `integer`, `number` or `text`.
    pub key_kind: String,
    pub buckets: Vec<BucketRoute>,
}

/// A migration's write routing at one version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriteRouting {
    pub migration: String,
    pub version: i64,
    pub tables: Vec<TableRoute>,
}

impl WriteRouting {
    /// Where the writes of `key` (the bucket column's value, as text) go in
    /// `table` (the migration's first table when `None`).
    pub fn primary(&self, table: Option<&str>, key: &str) -> Result<Primary> {
        let t = match table {
            Some(name) => self.tables.iter().find(|t| t.table == name),
            None => self.tables.first(),
        }
        .ok_or_else(|| {
            ControlError::NotFound(format!(
                "migration `{}` has no table `{}`",
                self.migration,
                table.unwrap_or("")
            ))
        })?;
        let kind = KeyKind::parse(&t.key_kind).unwrap_or(KeyKind::Text);
        let uppers: Vec<&str> = t.buckets.iter().filter_map(|b| b.hi.as_deref()).collect();
        let i = bucket_of(kind, &uppers, key);
        Ok(t.buckets.get(i).map_or(Primary::Old, |b| b.primary))
    }
}

/// How many active clients have applied the current routing version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingPickup {
    pub version: i64,
    /// Clients that polled the write routing within the active window.
    pub active: i64,
    /// Of those, the ones that applied `version`.
    pub applied: i64,
}

/// A client counts as active while it polled the write routing this recently.
pub const ACTIVE_WINDOW: Duration = Duration::from_secs(30);

/// A bucket's route as stored: index, table, index in the table, bounds,
/// write primary and the switch holding it.
type RouteRow = (
    i64,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    String,
    Option<i64>,
);

fn window_start(window: Duration) -> i64 {
    now_ms() - i64::try_from(window.as_millis()).unwrap_or(i64::MAX / 2)
}

impl Store {
    /// The write routing of a migration, read in one transaction so the
    /// version and the primaries agree.
    pub async fn write_routing(&self, migration_id: i64) -> Result<WriteRouting> {
        let mut tx = self.begin().await?;
        let (migration, version): (String, i64) =
            sqlx::query("SELECT name, routing_version FROM migrations WHERE id = $1")
                .bind(migration_id)
                .found(&mut *tx, format!("migration {migration_id}"))
                .await?;
        let rows: Vec<RouteRow> = sqlx::query(
            "SELECT idx, table_name, table_bucket, lo, hi, write_primary, held_by FROM buckets
             WHERE migration_id = $1 ORDER BY idx",
        )
        .bind(migration_id)
        .all(&mut *tx, "reading the buckets' write primaries")
        .await?;
        db::commit(tx, "reading the write routing").await?;
        let mut tables: Vec<TableRoute> = Vec::new();
        for (idx, table, index, lo, hi, primary, held) in rows {
            let table = table.unwrap_or_default();
            let route = BucketRoute {
                index: index.unwrap_or(idx),
                idx,
                lo,
                hi,
                primary: match (held, primary.as_str()) {
                    (Some(_), _) => Primary::Hold,
                    (None, "new") => Primary::New,
                    _ => Primary::Old,
                },
            };
            match tables.iter_mut().find(|t| t.table == table) {
                Some(t) => t.buckets.push(route),
                None => tables.push(TableRoute {
                    table,
                    key_kind: String::new(),
                    buckets: vec![route],
                }),
            }
        }
        for t in &mut tables {
            t.buckets.sort_by_key(|b| b.index);
            let bounds: Vec<&str> = t.buckets.iter().filter_map(|b| b.hi.as_deref()).collect();
            t.key_kind = KeyKind::of_bounds(bounds.iter().copied())
                .as_str()
                .to_string();
        }
        Ok(WriteRouting {
            migration,
            version,
            tables,
        })
    }

    /// The routing version of a migration.
    pub async fn routing_version(&self, migration_id: i64) -> Result<i64> {
        let (version,): (i64,) =
            sqlx::query("SELECT routing_version FROM migrations WHERE id = $1")
                .bind(migration_id)
                .found(self.pool(), format!("migration {migration_id}"))
                .await?;
        Ok(version)
    }

    /// Waits until the routing version passes `after` or `wait` runs out, and
    /// answers the routing then. Changes made through this store wake the
    /// wait at once; changes by another process are seen within 200 ms.
    pub async fn wait_write_routing(
        &self,
        migration_id: i64,
        after: i64,
        wait: Duration,
    ) -> Result<WriteRouting> {
        let deadline = tokio::time::Instant::now() + wait.min(Duration::from_secs(60));
        loop {
            let changed = self.caches.routing_changed.notified();
            if self.routing_version(migration_id).await? > after
                || tokio::time::Instant::now() >= deadline
            {
                return self.write_routing(migration_id).await;
            }
            let nap = Duration::from_millis(200)
                .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            let _ = tokio::time::timeout(nap, changed).await;
        }
    }

    /// Records that `client_id` applied routing `version` (a client says so
    /// on each poll).
    pub async fn ack_write_routing(&self, client_id: i64, version: i64) -> Result<()> {
        sqlx::query("UPDATE clients SET routing_version = $1, routing_seen_at = $2 WHERE id = $3")
            .bind(version)
            .bind(now_ms())
            .bind(client_id)
            .run(
                self.pool(),
                "recording the routing version a client applied",
            )
            .await?;
        Ok(())
    }

    /// How many active clients applied the migration's current routing.
    pub async fn routing_pickup(&self, migration_id: i64) -> Result<RoutingPickup> {
        let version = self.routing_version(migration_id).await?;
        let (active, applied) = self
            .active_clients_at(migration_id, version, ACTIVE_WINDOW)
            .await?;
        Ok(RoutingPickup {
            version,
            active: active.len() as i64,
            applied: (active.len() - applied.len()) as i64,
        })
    }

    /// The active clients of a migration (name, applied version), and those
    /// of them still behind `version`.
    pub(crate) async fn active_clients_at(
        &self,
        migration_id: i64,
        version: i64,
        window: Duration,
    ) -> Result<(Vec<String>, Vec<String>)> {
        let rows: Vec<(String, Option<i64>)> = sqlx::query(
            "SELECT name, routing_version FROM clients
             WHERE migration_id = $1 AND routing_seen_at >= $2 ORDER BY name",
        )
        .bind(migration_id)
        .bind(window_start(window))
        .all(
            self.pool(),
            "reading the clients that poll the write routing",
        )
        .await?;
        let mut active = Vec::new();
        let mut behind = Vec::new();
        for (name, v) in rows {
            if v.unwrap_or(-1) < version {
                behind.push(name.clone());
            }
            active.push(name);
        }
        Ok((active, behind))
    }

    /// Wakes every long poll of this process: the routing changed.
    pub(crate) fn routing_changed(&self) {
        self.caches.clear_routing();
        self.caches.routing_changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing() -> WriteRouting {
        let b = |index, lo: Option<&str>, hi: Option<&str>, primary| BucketRoute {
            index,
            idx: index,
            lo: lo.map(String::from),
            hi: hi.map(String::from),
            primary,
        };
        WriteRouting {
            migration: "m".into(),
            version: 3,
            tables: vec![TableRoute {
                table: "t".into(),
                key_kind: "integer".into(),
                buckets: vec![
                    b(0, None, Some("100"), Primary::Old),
                    b(1, Some("100"), Some("250"), Primary::New),
                    b(2, Some("250"), None, Primary::Hold),
                ],
            }],
        }
    }

    #[test]
    fn a_key_writes_where_its_bucket_says() {
        let r = routing();
        assert_eq!(r.primary(None, "99").ok(), Some(Primary::Old));
        assert_eq!(r.primary(Some("t"), "100").ok(), Some(Primary::New));
        assert_eq!(r.primary(None, "1000").ok(), Some(Primary::Hold));
        assert!(r.primary(Some("other"), "1").is_err());
    }
}
