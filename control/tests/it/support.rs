//! Shared arrangements: migrations made by hand, plain SQL on a test database,
//! and the real engine driven by workers (a MariaDB source of contacts, a
//! PostgreSQL target) with the waits and checks those tests share.

use std::sync::Arc;
use std::time::Duration;

use sqlx::{Connection, Row};
use tern_control::audit::{AuditEvent, AuditFilter};
use tern_control::buckets::{Bucket, BucketPlan, Phase};
use tern_control::jobs::{Job, JobState};
use tern_control::migrations::{MigrationSettings, NewMigration};
use tern_control::relay::RelayRampSpec;
use tern_control::runners::{self, RunnerContext};
use tern_control::worker::{Worker, WorkerTiming};
use tern_control::{ControlError, Store};
use tern_engine::TransformerRegistry;
use tern_testkit::{DbKind, TestDb};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::admin;

/// The message of a conflict the store answered; panics on anything else.
pub fn refusal<T: std::fmt::Debug>(r: tern_control::error::Result<T>) -> String {
    match r {
        Err(ControlError::Conflict(why)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Bucket `idx` of `planned_rows`, with no range and no table.
pub fn bucket(idx: i64, planned_rows: i64) -> BucketPlan {
    BucketPlan {
        idx,
        lo: None,
        hi: None,
        planned_rows,
        table_name: None,
        table_bucket: None,
    }
}

/// Bucket `idx` of `table` over `lo..hi` (`None`: open), its table's bucket `idx`.
pub fn table_bucket(
    idx: i64,
    table: &str,
    lo: Option<String>,
    hi: Option<String>,
    planned_rows: i64,
) -> BucketPlan {
    BucketPlan {
        lo,
        hi,
        table_name: Some(table.into()),
        table_bucket: Some(idx),
        ..bucket(idx, planned_rows)
    }
}

/// Creates migration `name` (spec `x = 1`) of `buckets` as an admin; its id.
pub async fn create_migration(
    store: &Store,
    name: &str,
    buckets: Vec<BucketPlan>,
) -> anyhow::Result<i64> {
    let m = store
        .create_migration(
            &admin(),
            NewMigration {
                name: name.into(),
                description: String::new(),
                spec: "x = 1".into(),
                buckets,
            },
        )
        .await?;
    Ok(m.id)
}

/// The audit events whose action starts with `action`, newest first, as an admin reads them.
pub async fn audit_of(store: &Store, action: &str) -> anyhow::Result<Vec<AuditEvent>> {
    let filter = AuditFilter {
        action: Some(action.into()),
        ..Default::default()
    };
    Ok(store.list_audit(&admin(), &filter).await?)
}

/// Moves bucket `id` through `phases`. No job ran: the phases that need a
/// job's evidence (loaded, caught up, verified) are an admin's override.
pub async fn walk_bucket(
    store: &Store,
    id: i64,
    phases: &[Phase],
    reason: &str,
) -> anyhow::Result<()> {
    for &to in phases {
        if matches!(to, Phase::Loaded | Phase::CaughtUp | Phase::Verified) {
            store.override_bucket_move(&admin(), id, to, reason).await?;
        } else {
            store.move_bucket(&admin(), id, to, reason).await?;
        }
    }
    Ok(())
}

/// Runs a script on a test database with a plain connection.
pub async fn exec(db: &TestDb, sql: &str) -> anyhow::Result<()> {
    match db.kind {
        DbKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql).execute(&mut c).await?;
        }
        DbKind::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql).execute(&mut c).await?;
        }
        DbKind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql).execute(&mut c).await?;
        }
    }
    Ok(())
}

/// `contacts (id, member_id, email, name)` of `rows` rows on a MariaDB source,
/// emails padded and mixed-case for the spec to trim and lower.
pub async fn seed_mariadb_source(db: &TestDb, rows: i64) -> anyhow::Result<()> {
    let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
    sqlx::query(
        "CREATE TABLE contacts (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL, email VARCHAR(200) NOT NULL,
         name VARCHAR(200), KEY by_member (member_id, id))",
    )
    .execute(&mut c)
    .await?;
    for start in (0..rows).step_by(500) {
        let values: Vec<String> = (start..(start + 500).min(rows))
            .map(|i| {
                format!(
                    "({i}, {}, ' Person{i}@Example.COM ', 'Person {i}')",
                    (i * 7919) % 300
                )
            })
            .collect();
        sqlx::query(&format!("INSERT INTO contacts VALUES {}", values.join(",")))
            .execute(&mut c)
            .await?;
    }
    Ok(())
}

/// The contacts spec: 4 buckets by member, 300 rows a chunk.
pub fn spec(source: &TestDb, target: &TestDb) -> String {
    format!(
        r#"chunk_rows = 300
[source]
url = "{}"
[target]
url = "{}"

[[tables]]
name = "contacts"
key = ["id"]
buckets = 4
[tables.source]
table = "contacts"
key = ["member_id", "id"]
bucket = "member_id"
[tables.columns]
id = "id"
member_id = "member_id"
email = {{ from = "email", trim = true, lower = true }}
name = "name"
"#,
        source.url, target.url
    )
}

/// [`spec`] edited to one bucket read 100 rows a chunk.
pub fn one_bucket(spec: String) -> String {
    spec.replace("buckets = 4", "buckets = 1")
        .replace("chunk_rows = 300", "chunk_rows = 100")
}

/// A contact as both sides hold it: id, member, email, name.
pub type Row4 = (i64, i64, String, Option<String>);

/// The source's contacts as the spec transforms them, in key order.
pub async fn source_rows(source: &TestDb) -> anyhow::Result<Vec<Row4>> {
    let mut c = sqlx::MySqlConnection::connect(&source.url).await?;
    let sql = "SELECT id, member_id, LOWER(TRIM(email)) AS email, name FROM contacts ORDER BY id";
    Ok(sqlx::query_as(sql).fetch_all(&mut c).await?)
}

/// The target's contacts, in key order.
pub async fn target_rows(target: &TestDb) -> anyhow::Result<Vec<Row4>> {
    let mut c = sqlx::PgConnection::connect(&target.url).await?;
    let sql = "SELECT id, member_id, email, name FROM contacts ORDER BY id";
    Ok(sqlx::query_as(sql).fetch_all(&mut c).await?)
}

/// How many contacts the (PostgreSQL) target holds.
pub async fn target_count(target: &TestDb) -> anyhow::Result<i64> {
    let mut c = sqlx::PgConnection::connect(&target.url).await?;
    Ok(sqlx::query("SELECT COUNT(*) AS n FROM contacts")
        .fetch_one(&mut c)
        .await?
        .get("n"))
}

/// Waits until the buckets of `migration` satisfy `done`; fails at once when
/// a bucket fails, and after a minute.
pub async fn wait_for_buckets(
    store: &Store,
    migration: i64,
    what: &str,
    done: impl Fn(&[Bucket]) -> bool,
) -> anyhow::Result<()> {
    for _ in 0..600 {
        let buckets = store.list_buckets(migration).await?;
        if let Some(b) = buckets.iter().find(|b| b.phase == Phase::Failed) {
            anyhow::bail!("bucket {} failed: {:?}", b.idx, b.last_error);
        }
        if done(buckets.as_slice()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!(
        "buckets never {what}: {:?}",
        store.list_buckets(migration).await?
    )
}

/// Waits until every bucket of `migration` is in `phase`.
pub async fn wait_for_phase(store: &Store, migration: i64, phase: Phase) -> anyhow::Result<()> {
    let what = format!("all reached {phase}");
    wait_for_buckets(store, migration, &what, |bs| {
        bs.iter().all(|b| b.phase == phase)
    })
    .await
}

/// Waits (15 s at most) until job `id` satisfies `ok`; the job then.
pub async fn wait_job(
    store: &Store,
    id: i64,
    what: &str,
    ok: impl Fn(&Job) -> bool,
) -> anyhow::Result<Job> {
    for _ in 0..300 {
        let job = store.job(id).await?;
        if ok(&job) {
            return Ok(job);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("job {id} never {what}: {:?}", store.job(id).await?)
}

/// Waits until job `id` has succeeded; the job then.
pub async fn wait_succeeded(store: &Store, id: i64) -> anyhow::Result<Job> {
    wait_job(store, id, "finished", |j| j.state == JobState::Succeeded).await
}

/// Workers `w0`, `w1`, … running every runner with a 200 ms heartbeat.
pub struct Workers {
    shutdown: CancellationToken,
    handles: Vec<JoinHandle<()>>,
}

impl Workers {
    pub fn start(store: &Store, registry: Arc<TransformerRegistry>, n: usize) -> Workers {
        let shutdown = CancellationToken::new();
        let ctx = RunnerContext { registry };
        let timing = WorkerTiming {
            heartbeat: Duration::from_millis(200),
            ..WorkerTiming::default()
        };
        let handles = (0..n)
            .map(|i| {
                tokio::spawn(
                    Worker::new(format!("w{i}"), store.clone(), &runners::all(&ctx), timing)
                        .run(shutdown.clone()),
                )
            })
            .collect();
        Workers { shutdown, handles }
    }

    /// Stops every worker and waits for it to end.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        for h in self.handles {
            h.await?;
        }
        Ok(())
    }
}

/// A MariaDB source of contacts, a PostgreSQL target, and a control store
/// holding migration `contacts` made from [`spec`].
pub struct Drive {
    pub source: TestDb,
    pub target: TestDb,
    _control_db: TestDb,
    pub store: Store,
    pub registry: Arc<TransformerRegistry>,
    /// The spec the migration was made from.
    pub spec: String,
    pub migration: i64,
}

impl Drive {
    /// Seeds `rows` contacts and creates the migration from [`spec`] as
    /// `edit` changes it, in a store on `store_kind`.
    pub async fn new(
        store_kind: DbKind,
        rows: i64,
        edit: impl FnOnce(String) -> String,
    ) -> anyhow::Result<Drive> {
        let source = TestDb::mariadb().await?;
        let target = TestDb::postgres().await?;
        let (control_db, store) = crate::fresh_store(store_kind).await?;
        seed_mariadb_source(&source, rows).await?;
        let registry = Arc::new(TransformerRegistry::new());
        let spec = edit(spec(&source, &target));
        let m = store
            .create_migration_from_spec(&admin(), "contacts", "", &spec, &registry)
            .await?;
        Ok(Drive {
            source,
            target,
            _control_db: control_db,
            store,
            registry,
            spec,
            migration: m.id,
        })
    }

    /// Limits the migration's copy to `rows_per_second` (`None`: no limit).
    pub async fn set_rate(&self, rows_per_second: Option<f64>) -> anyhow::Result<()> {
        let settings = MigrationSettings {
            rate_limit: rows_per_second,
            ..Default::default()
        };
        self.store
            .update_migration_settings(&admin(), self.migration, &settings, "")
            .await?;
        Ok(())
    }

    pub async fn buckets(&self) -> anyhow::Result<Vec<Bucket>> {
        Ok(self.store.list_buckets(self.migration).await?)
    }

    /// Limits the copy to `rows_per_second`; the first bucket's id.
    pub async fn throttled_bucket(&self, rows_per_second: f64) -> anyhow::Result<i64> {
        self.set_rate(Some(rows_per_second)).await?;
        Ok(self.buckets().await?[0].id)
    }

    /// Starts the bulk load of buckets `ids`; their jobs.
    pub async fn bulk_load(&self, ids: &[i64]) -> anyhow::Result<Vec<i64>> {
        Ok(self
            .store
            .start_bulk_load(&admin(), self.migration, ids)
            .await?)
    }

    /// Whether every bucket satisfies `ok`.
    pub async fn all_buckets(&self, ok: impl Fn(&Bucket) -> bool) -> anyhow::Result<bool> {
        Ok(self.buckets().await?.iter().all(ok))
    }

    /// Sets the relay's ramp (`10%`, `100%`, `off`, …); its job.
    pub async fn set_relay(&self, ramp: &str, reason: &str) -> anyhow::Result<Job> {
        let spec = RelayRampSpec::parse(ramp, &[])?;
        Ok(self
            .store
            .set_relay_ramp(&admin(), self.migration, spec, reason)
            .await?)
    }

    pub fn workers(&self, n: usize) -> Workers {
        Workers::start(&self.store, self.registry.clone(), n)
    }

    /// Stops `workers`, then checks that the target holds `rows` contacts.
    pub async fn stop_and_count(&self, workers: Workers, rows: i64) -> anyhow::Result<()> {
        workers.stop().await?;
        assert_eq!(target_count(&self.target).await?, rows);
        Ok(())
    }
}
