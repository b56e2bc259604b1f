//! Decommissioning: the checklist that ends a migration, computed from the
//! store — every bucket done, every client reading 100% from the new system
//! with zero old traffic for the quiet period, every offline job migrated,
//! every old dataset deleted — and the list of who is still on the old system.

use serde::{Deserialize, Serialize};

use crate::clock::now_ms;
use crate::db::Run;
use crate::error::Result;
use crate::store::Store;

/// One line of the decommission checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecommissionItem {
    pub label: String,
    pub done: bool,
    /// What is missing (or how it was met).
    pub detail: String,
}

impl DecommissionItem {
    /// The item `label`, done when nothing is `left`: its detail names what
    /// is left (`not deleted: a, b`), or says how it was met (`met`).
    fn unless_left(label: String, left: &[String], what: &str, met: String) -> DecommissionItem {
        DecommissionItem {
            label,
            done: left.is_empty(),
            detail: if left.is_empty() {
                met
            } else {
                format!("{what}: {}", names(left))
            },
        }
    }
}

/// The whole checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decommission {
    pub items: Vec<DecommissionItem>,
    /// True when every item is done: the old store can be switched off.
    pub ready: bool,
}

/// A client or offline job still on the old system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OnOldSystem {
    pub migration: String,
    pub migration_id: i64,
    /// `client` or `job`.
    pub kind: String,
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub status: String,
    /// Clients: share of reads on the new system (millipercent).
    pub ramp: Option<i64>,
}

/// A client on the old system as read: id, name, owner team and contact,
/// status, ramp, and its migration's id and name.
type ClientRow = (i64, String, String, String, String, i64, i64, String);

fn names(list: &[String]) -> String {
    const SHOW: usize = 8;
    let mut s = list
        .iter()
        .take(SHOW)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if list.len() > SHOW {
        s.push_str(&format!(" and {} more", list.len() - SHOW));
    }
    s
}

impl Store {
    /// The decommission checklist of a migration.
    pub async fn decommission(&self, migration_id: i64) -> Result<Decommission> {
        let gates = self.gates(migration_id).await?;
        let (total, done): (i64, i64) = sqlx::query(
            "SELECT COUNT(*) AS total, COALESCE(SUM(CASE WHEN phase = 'done' THEN 1 ELSE 0 END), 0) AS done
             FROM buckets WHERE migration_id = $1",
        )
        .bind(migration_id)
        .one(self.pool(), "counting buckets")
        .await?;
        let mut items = vec![DecommissionItem {
            label: "Every bucket is done".into(),
            done: total > 0 && done == total,
            detail: if total == 0 {
                "no buckets are planned yet".into()
            } else {
                format!("{done} of {total} buckets done")
            },
        }];

        let since = now_ms() - gates.quiet_days * 86_400_000;
        let clients = self
            .list_clients(&crate::users::Actor::system(), Some(migration_id))
            .await?;
        let mut behind = Vec::new();
        for c in &clients {
            let old = self.old_traffic_since(c.id, since).await?;
            if c.ramp < 100_000 {
                behind.push(format!("{} at {}", c.name, c.read_ramp()));
            } else if old > 0 {
                behind.push(format!("{} ({old} old requests)", c.name));
            }
        }
        items.push(DecommissionItem::unless_left(
            format!(
                "Every client reads 100% from the new system with zero old traffic for {} days",
                gates.quiet_days
            ),
            &behind,
            "still on the old system",
            format!("{} clients done", clients.len()),
        ));

        let jobs = self.list_offline_jobs(migration_id).await?;
        let open: Vec<String> = jobs
            .iter()
            .filter(|j| j.status != "migrated")
            .map(|j| j.name.clone())
            .collect();
        items.push(DecommissionItem::unless_left(
            "Every offline job is migrated".into(),
            &open,
            "not migrated",
            format!("{} jobs migrated", jobs.len()),
        ));

        let datasets = self.list_datasets(migration_id).await?;
        let left: Vec<String> = datasets
            .iter()
            .filter(|d| d.status != "deleted")
            .map(|d| format!("{} ({})", d.name, d.status))
            .collect();
        items.push(DecommissionItem::unless_left(
            "Every old dataset is deleted".into(),
            &left,
            "not deleted",
            format!("{} datasets deleted", datasets.len()),
        ));
        let ready = items.iter().all(|i| i.done);
        Ok(Decommission { items, ready })
    }

    /// Clients below 100% or not migrated, and offline jobs not migrated,
    /// across active migrations (for the program manager's overview).
    pub async fn still_on_old_system(&self) -> Result<Vec<OnOldSystem>> {
        let clients: Vec<ClientRow> = sqlx::query(
            "SELECT c.id, c.name, c.owner_team, c.owner_contact, c.status, c.ramp, m.id AS mid, m.name AS migration
             FROM clients c JOIN migrations m ON m.id = c.migration_id
             WHERE m.status = 'active' AND (c.ramp < 100000 OR c.status <> 'migrated')
             ORDER BY m.name, c.ramp, c.name",
        )
        .all(self.pool(), "listing clients on the old system")
        .await?;
        let jobs: Vec<(i64, String, String, String, i64, String)> = sqlx::query(
            "SELECT j.id, j.name, j.owner, j.status, m.id AS mid, m.name AS migration
             FROM offline_jobs j JOIN migrations m ON m.id = j.migration_id
             WHERE m.status = 'active' AND j.status <> 'migrated' ORDER BY m.name, j.name",
        )
        .all(self.pool(), "listing offline jobs on the old system")
        .await?;
        let mut out = Vec::new();
        for (id, name, team, contact, status, ramp, migration_id, migration) in clients {
            out.push(OnOldSystem {
                migration,
                migration_id,
                kind: "client".into(),
                id,
                name,
                owner: match (team.is_empty(), contact.is_empty()) {
                    (false, false) => format!("{team} ({contact})"),
                    (false, true) => team,
                    (true, false) => contact,
                    (true, true) => "unknown owner".into(),
                },
                status,
                ramp: Some(ramp),
            });
        }
        for (id, name, owner, status, migration_id, migration) in jobs {
            out.push(OnOldSystem {
                migration,
                migration_id,
                kind: "job".into(),
                id,
                name,
                owner,
                status,
                ramp: None,
            });
        }
        Ok(out)
    }
}
