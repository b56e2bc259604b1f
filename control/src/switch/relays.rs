//! What the relays filter by: the switched buckets (write primary `new`) at
//! a routing version. The relay runners follow it and record the version
//! their relay shows it filters by; a switch flips the primary while writes
//! are still held and releases them only once every running relay shows the
//! new set, so no relay passes over the first writes after the release.

use std::time::Duration;

use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::store::Store;

impl Store {
    /// The routing version and the switched buckets, as (table, index in
    /// the table's plan), read together.
    pub async fn switched_set(&self, migration_id: i64) -> Result<(i64, Vec<(String, i64)>)> {
        let r = self.write_routing(migration_id).await?;
        let rows: Vec<(Option<String>, Option<i64>)> = sqlx::query(
            "SELECT table_name, table_bucket FROM buckets
             WHERE migration_id = $1 AND write_primary = 'new' ORDER BY idx",
        )
        .bind(migration_id)
        .all(self.pool(), "reading the switched buckets")
        .await?;
        let set = rows
            .into_iter()
            .filter_map(|(t, i)| Some((t?, i?)))
            .collect();
        Ok((r.version, set))
    }

    /// Records that relay job `job_id` filters by the switched set of
    /// routing `version`.
    pub async fn record_relay_observed(&self, job_id: i64, version: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO relay_observed (job_id, routing_version, at) VALUES ($1, $2, $3)
             ON CONFLICT (job_id) DO UPDATE SET routing_version = excluded.routing_version, at = excluded.at",
        )
        .bind(job_id)
        .bind(version)
        .bind(now_ms())
        .run(self.pool(), "recording the set a relay filters by").await?;
        Ok(())
    }

    /// Waits until every running relay and reverse relay of the migration
    /// shows routing `version` (or later).
    pub(crate) async fn wait_relays_observed(
        &self,
        migration_id: i64,
        version: i64,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let rows: Vec<(i64, String)> = sqlx::query(
                "SELECT j.id, j.kind FROM jobs j LEFT JOIN relay_observed o ON o.job_id = j.id
                 WHERE j.migration_id = $1 AND j.kind IN ('relay', 'reverse-relay') AND j.state = 'running'
                   AND (o.routing_version IS NULL OR o.routing_version < $2)",
            )
            .bind(migration_id)
            .bind(version)
            .all(self.pool(), "reading which relays show the switched set")
            .await?;
            if rows.is_empty() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                let behind: Vec<String> = rows
                    .iter()
                    .map(|(id, kind)| format!("{kind} job {id}"))
                    .collect();
                return Err(ControlError::Conflict(format!(
                    "{} did not take the new switched buckets within {} ms: check that the relays run",
                    behind.join(", "),
                    timeout.as_millis()
                )));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Store {
    /// The migration's newest reverse relay job, in the state it is in now
    /// (`None`: it was never started), for the page that started it.
    pub async fn reverse_relay_job(&self, migration_id: i64) -> Result<Option<crate::jobs::Job>> {
        let newest = sqlx::query(
            "SELECT MAX(id) AS id FROM jobs WHERE migration_id = $1 AND kind = 'reverse-relay'",
        )
        .bind(migration_id)
        .scalar::<Option<i64>, _>(self.pool(), "looking for the reverse relay")
        .await?;
        match newest {
            Some(id) => Ok(Some(self.job(id).await?)),
            None => Ok(None),
        }
    }

    /// Starts the migration's reverse relay (new → old for switched
    /// buckets), unless one is queued, running or paused; answers its job.
    pub async fn start_reverse_relay(
        &self,
        actor: &crate::users::Actor,
        migration_id: i64,
    ) -> Result<crate::jobs::Job> {
        actor.require_operate("starting the reverse relay")?;
        // An unknown migration is a 404, not a foreign-key failure.
        self.migration(migration_id).await?;
        let active: Option<crate::jobs::Job> = sqlx::query(
            "SELECT * FROM jobs WHERE migration_id = $1 AND kind = 'reverse-relay'
               AND state IN ('queued', 'running', 'paused') ORDER BY id DESC LIMIT 1",
        )
        .bind(migration_id)
        .optional(self.pool(), "looking for the reverse relay")
        .await?;
        if let Some(job) = active {
            return Ok(job);
        }
        self.enqueue_job(
            actor,
            crate::jobs::NewJob {
                migration_id: Some(migration_id),
                bucket_id: None,
                kind: crate::jobs::JobKind::ReverseRelay,
                params: serde_json::json!({}),
                rate_limit: None,
            },
        )
        .await
    }
}
