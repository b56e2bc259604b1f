//! The dual-write relay as the control plane runs it: one relay job per
//! migration, whose ramp (a sticky share of keys, or whole buckets) engineers
//! raise while it runs. A bucket counts as dual-written from the moment the
//! ramp first covers all of it (the moment stays in its history); it may
//! catch up only while the running relay covers it (changes after its
//! catch-up would otherwise be missed again).

use serde::{Deserialize, Serialize};
use tern_engine::ramp::{Ramp, SCALE};

use crate::audit::{self, AuditEntry};
use crate::clock::now_ms;
use crate::db::Run;
use crate::error::{ControlError, Result};
use crate::jobs::{self, Job, JobKind, NewJob};
use crate::store::Store;
use crate::users::Actor;

/// What the relay writes: nothing, a sticky share of keys, or whole buckets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum RelayRampSpec {
    Off,
    /// Thousandths of a percent (100,000 = every key).
    Percent {
        millipercent: u32,
    },
    /// Control-store bucket ids.
    Buckets {
        ids: Vec<i64>,
    },
}

impl RelayRampSpec {
    /// `off`, `25%` / `0.5%`, or `buckets` with the given ids.
    pub fn parse(text: &str, bucket_ids: &[i64]) -> Result<RelayRampSpec> {
        let t = text.trim();
        if t.eq_ignore_ascii_case("off") || t == "0" || t == "0%" {
            return Ok(RelayRampSpec::Off);
        }
        if t.eq_ignore_ascii_case("buckets") {
            if bucket_ids.is_empty() {
                return Err(ControlError::Invalid(
                    "a bucket ramp needs buckets: select the buckets to dual-write".into(),
                ));
            }
            let mut ids = bucket_ids.to_vec();
            ids.sort_unstable();
            ids.dedup();
            return Ok(RelayRampSpec::Buckets { ids });
        }
        let ramp = Ramp::parse(t).map_err(|e| {
            ControlError::Invalid(format!(
                "relay ramp `{t}`: {}; write a percentage like 10% or 0.5%, `buckets`, or `off`",
                e.0
            ))
        })?;
        Ok(RelayRampSpec::Percent {
            millipercent: ramp.millipercent(),
        })
    }

    /// Whether every key of control-store bucket `bucket_id` is dual-written.
    pub fn covers_bucket(&self, bucket_id: i64) -> bool {
        match self {
            RelayRampSpec::Buckets { ids } => ids.contains(&bucket_id),
            other => other.covers_every_key(),
        }
    }

    pub fn covers_every_key(&self) -> bool {
        matches!(self, RelayRampSpec::Percent { millipercent } if *millipercent >= SCALE)
    }
}

impl std::fmt::Display for RelayRampSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayRampSpec::Off => f.write_str("off"),
            RelayRampSpec::Percent { millipercent } => {
                write!(f, "{}", Ramp::from_millipercent(*millipercent))
            }
            RelayRampSpec::Buckets { ids } => write!(f, "{} bucket(s)", ids.len()),
        }
    }
}

/// The relay job's ramp, read from its parameters.
pub fn ramp_of(job: &Job) -> Result<RelayRampSpec> {
    serde_json::from_value(job.params["ramp"].clone()).map_err(|e| {
        ControlError::Internal(format!("relay job {} has no readable ramp: {e}", job.id))
    })
}

impl Store {
    /// The engine's ramp for the control store's: bucket ids become the
    /// (table, bucket index) pairs the engine's plan knows.
    pub(crate) async fn engine_ramp(
        &self,
        migration_id: i64,
        spec: &RelayRampSpec,
    ) -> Result<tern_engine::RelayRamp> {
        use tern_engine::RelayRamp;
        Ok(match spec {
            RelayRampSpec::Off => RelayRamp::Off,
            RelayRampSpec::Percent { millipercent } => {
                RelayRamp::Percent(tern_engine::ramp::Ramp::from_millipercent(*millipercent))
            }
            RelayRampSpec::Buckets { ids } => {
                let all = self.list_buckets(migration_id).await?;
                let mut set = std::collections::BTreeSet::new();
                for b in all.iter().filter(|b| ids.contains(&b.id)) {
                    let (Some(table), Some(index)) = (b.table_name.clone(), b.table_bucket) else {
                        return Err(ControlError::Conflict(format!(
                            "bucket {} has no engine table and bucket: re-plan the migration",
                            b.idx
                        )));
                    };
                    set.insert((table, usize::try_from(index).unwrap_or(usize::MAX)));
                }
                RelayRamp::Buckets(set)
            }
        })
    }

    /// Reads the relay job's ramp and, when it changed, hands the engine its new one.
    pub(crate) async fn follow_relay_ramp(
        &self,
        job_id: i64,
        migration_id: i64,
        current: &std::sync::Mutex<Vec<(tern_engine::RelayRamp, RelayRampSpec)>>,
        ramp_tx: &tokio::sync::watch::Sender<tern_engine::RelayRamp>,
    ) {
        let next = match self.job(job_id).await.and_then(|j| ramp_of(&j)) {
            Ok(r) => r,
            Err(e) => {
                return tracing::warn!(job = job_id, error = %e, "cannot read the relay's ramp");
            }
        };
        let Some(from) = current
            .lock()
            .ok()
            .and_then(|c| c.last().map(|(_, spec)| spec.clone()))
            .filter(|c| *c != next)
        else {
            return;
        };
        match self.engine_ramp(migration_id, &next).await {
            Ok(r) => {
                tracing::info!(job = job_id, from = %from, to = %next, "relay ramp changed");
                // Known before the engine can show it (`relay_ramp_shown`).
                if let Ok(mut c) = current.lock() {
                    c.push((r.clone(), next));
                    let keep = c.len().saturating_sub(8);
                    c.drain(..keep);
                }
                let _ = ramp_tx.send(r);
            }
            Err(e) => tracing::warn!(job = job_id, error = %e, "cannot apply the relay's ramp"),
        }
    }

    /// Records the ramp relay job `job_id` filters by now (as its engine
    /// showed it before a batch).
    pub(crate) async fn record_relay_ramp_shown(
        &self,
        job_id: i64,
        ramp: &RelayRampSpec,
    ) -> Result<()> {
        let json = serde_json::to_string(ramp)
            .map_err(|e| ControlError::Internal(format!("ramp as JSON: {e}")))?;
        sqlx::query("UPDATE relay_observed SET ramp = $1, at = $2 WHERE job_id = $3")
            .bind(json)
            .bind(now_ms())
            .bind(job_id)
            .run(self.pool(), "recording the ramp a relay filters by")
            .await?;
        Ok(())
    }

    /// Waits until the migration's relay covers `bucket_id` with the ramp it
    /// filters by, when the ramp engineers set covers it: a catch-up that
    /// ended before the relay took the bucket over would leave the changes
    /// in between to neither. Returns at once when no relay runs or its
    /// ramp does not cover the bucket; after `timeout` returns what still
    /// waits (the relay may be paused or have no worker), for the job to say.
    pub async fn wait_relay_covers(
        &self,
        migration_id: i64,
        bucket_id: i64,
        timeout: std::time::Duration,
        stop: &tokio_util::sync::CancellationToken,
    ) -> Result<Option<String>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let Some(job) = self.active_relay(migration_id).await? else {
                return Ok(None);
            };
            if !ramp_of(&job)?.covers_bucket(bucket_id) {
                return Ok(None);
            }
            let shown: Option<(Option<String>,)> =
                sqlx::query("SELECT ramp FROM relay_observed WHERE job_id = $1")
                    .bind(job.id)
                    .optional(self.pool(), "reading the ramp a relay filters by")
                    .await?;
            let shown = shown.and_then(|(ramp,)| ramp);
            let covered = shown
                .and_then(|j| serde_json::from_str::<RelayRampSpec>(&j).ok())
                .is_some_and(|r| r.covers_bucket(bucket_id));
            if covered {
                return Ok(None);
            }
            if std::time::Instant::now() >= deadline || stop.is_cancelled() {
                return Ok(Some(format!(
                    "relay job {} ({}) has not taken over this bucket yet",
                    job.id,
                    job.state.as_str()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    /// The ramp of the migration's active relay (off when none runs).
    pub async fn relay_ramp(&self, migration_id: i64) -> Result<RelayRampSpec> {
        match self.active_relay(migration_id).await? {
            Some(job) => ramp_of(&job),
            None => Ok(RelayRampSpec::Off),
        }
    }

    /// The migration's relay job that is queued, running or paused, if any.
    pub async fn active_relay(&self, migration_id: i64) -> Result<Option<Job>> {
        sqlx::query(
            "SELECT * FROM jobs WHERE migration_id = $1 AND kind = 'relay'
               AND state IN ('queued', 'running', 'paused')
             ORDER BY id DESC LIMIT 1",
        )
        .bind(migration_id)
        .optional(self.pool(), "reading the relay job")
        .await
    }

    /// Sets the relay's ramp: starts the migration's relay job when none is
    /// active, or changes the running one's ramp (it follows within seconds).
    /// Buckets the ramp now covers entirely are stamped dual-written.
    /// Returns the relay job.
    pub async fn set_relay_ramp(
        &self,
        actor: &Actor,
        migration_id: i64,
        ramp: RelayRampSpec,
        reason: &str,
    ) -> Result<Job> {
        actor.require_operate("changing the relay ramp")?;
        let migration = self.migration(migration_id).await?;
        if migration.status == "archived" && ramp != RelayRampSpec::Off {
            return Err(ControlError::Conflict(format!(
                "migration `{}` is archived: its relay stays off",
                migration.name
            )));
        }
        if let RelayRampSpec::Buckets { ids } = &ramp {
            // Refuses unknown buckets and archived migrations.
            self.chosen_buckets(migration_id, ids).await?;
        }
        let active = self.active_relay(migration_id).await?;
        let from = match &active {
            Some(job) => ramp_of(job)?.to_string(),
            None => "off".to_string(),
        };
        let mut tx = self.begin().await?;
        let job_id = match &active {
            Some(job) => {
                let mut params = job.params.clone();
                params["ramp"] = serde_json::to_value(&ramp)
                    .map_err(|e| ControlError::Internal(format!("ramp as JSON: {e}")))?;
                sqlx::query("UPDATE jobs SET params = $1, updated_at = $2 WHERE id = $3")
                    .bind(params.to_string())
                    .bind(now_ms())
                    .bind(job.id)
                    .run(&mut *tx, "changing the relay ramp")
                    .await?;
                job.id
            }
            None => {
                if ramp == RelayRampSpec::Off {
                    return Err(ControlError::Conflict(
                        "the relay is not running: there is nothing to turn off".into(),
                    ));
                }
                let params = serde_json::json!({ "ramp": ramp });
                let job = NewJob {
                    migration_id: Some(migration_id),
                    bucket_id: None,
                    kind: JobKind::Relay,
                    params,
                    rate_limit: None,
                };
                jobs::enqueue(&mut tx, actor, &job).await?
            }
        };
        // Buckets fully covered from now on are dual-written from now on.
        let now = now_ms();
        match &ramp {
            r if r.covers_every_key() => {
                sqlx::query(
                    "UPDATE buckets SET dual_write_at = $1, updated_at = $1
                     WHERE migration_id = $2 AND dual_write_at IS NULL",
                )
                .bind(now)
                .bind(migration_id)
                .run(&mut *tx, "stamping dual-written buckets")
                .await?;
            }
            RelayRampSpec::Buckets { ids } => {
                for id in ids {
                    sqlx::query(
                        "UPDATE buckets SET dual_write_at = $1, updated_at = $1
                         WHERE id = $2 AND migration_id = $3 AND dual_write_at IS NULL",
                    )
                    .bind(now)
                    .bind(*id)
                    .bind(migration_id)
                    .run(&mut *tx, "stamping dual-written buckets")
                    .await?;
                }
            }
            _ => {}
        }
        audit::commit(
            tx,
            AuditEntry::new(actor, "relay.ramp", "migration", &migration.name)
                .from_state(from)
                .to_state(ramp.to_string())
                .reason(reason)
                .details(serde_json::json!({ "job": job_id, "ramp": ramp })),
            "committing the relay ramp",
        )
        .await?;
        self.job(job_id).await
    }

    /// Installs change capture (triggers and the changelog) on every source
    /// table of the migration's spec, audited. Buckets bulk-loaded from now on
    /// get a watermark, so they can catch up. Safe to run again.
    pub async fn install_capture(
        &self,
        actor: &Actor,
        migration_id: i64,
        reason: &str,
    ) -> Result<String> {
        actor.require_operate("installing change capture")?;
        let migration = self.migration(migration_id).await?;
        let spec = self.spec_for(&migration.spec, &migration.name).await?;
        let report =
            crate::own_runtime::on_own_runtime("installing change capture", move || async move {
                let source = tern_engine::Connector::connect(&spec.source.url, "source").await?;
                Ok(tern_engine::capture::install(&source, &spec).await?)
            })
            .await?;
        let tables: Vec<String> = report.tables.iter().map(|t| t.table.clone()).collect();
        let tx = self.begin().await?;
        audit::commit(
            tx, AuditEntry::new(actor, "capture.install", "migration", &migration.name)
                .reason(reason)
                .details(serde_json::json!({ "tables": tables, "position": report.position.to_string() })), "committing the capture audit").await?;
        Ok(format!(
            "change capture installed on {} (changes from position {} on are recorded)",
            tables.join(", "),
            report.position
        ))
    }

    /// Records a bucket's lag behind the changelog head, as catch-up measured it.
    pub async fn record_bucket_lag(
        &self,
        bucket_id: i64,
        changes: i64,
        seconds: f64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE buckets SET lag_changes = $1, lag_seconds = $2, updated_at = $3 WHERE id = $4",
        )
        .bind(changes)
        .bind(seconds)
        .bind(now_ms())
        .bind(bucket_id)
        .run(self.pool(), "recording a bucket's lag")
        .await?;
        Ok(())
    }

    /// Records a bucket's catch-up window (changelog positions) and when it
    /// was found caught up.
    pub async fn record_catch_up(
        &self,
        bucket_id: i64,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE buckets SET catch_up_from = COALESCE(catch_up_from, $1), catch_up_to = $2,
                    lag_changes = 0, lag_seconds = 0, updated_at = $3
             WHERE id = $4",
        )
        .bind(from)
        .bind(to)
        .bind(now_ms())
        .bind(bucket_id)
        .run(self.pool(), "recording a bucket's catch-up")
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_parse_with_clear_refusals() {
        assert_eq!(
            RelayRampSpec::parse("off", &[]).ok(),
            Some(RelayRampSpec::Off)
        );
        assert_eq!(
            RelayRampSpec::parse(" 25% ", &[]).ok(),
            Some(RelayRampSpec::Percent {
                millipercent: 25_000
            })
        );
        assert!(RelayRampSpec::parse("100%", &[]).is_ok_and(|r| r.covers_every_key()));
        assert_eq!(
            RelayRampSpec::parse("buckets", &[3, 1, 3]).ok(),
            Some(RelayRampSpec::Buckets { ids: vec![1, 3] })
        );
        let refused = RelayRampSpec::parse("250%", &[]);
        assert!(matches!(refused, Err(ControlError::Invalid(ref m)) if m.contains("250%")));
        assert!(RelayRampSpec::parse("buckets", &[]).is_err());
    }
}
