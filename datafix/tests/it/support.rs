use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Context;
use sqlx::Connection;
use tern_datafix::{
    Checkpoint, FixFailure, FixJob, FixObserver, FixProgress, FixSpec, PluginRegistry,
};
use tern_testkit::{DbKind, TestDb};

/// Runs statements on the test database.
pub async fn exec(db: &TestDb, sql: &str) -> anyhow::Result<()> {
    match db.kind {
        DbKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .with_context(|| sql.to_string())?;
        }
        DbKind::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .with_context(|| sql.to_string())?;
        }
        DbKind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::raw_sql(sql)
                .execute(&mut c)
                .await
                .with_context(|| sql.to_string())?;
        }
    }
    Ok(())
}

/// Rows of `SELECT id, <text col>` as (id, text).
pub async fn rows(db: &TestDb, sql: &str) -> anyhow::Result<Vec<(i64, String)>> {
    Ok(match db.kind {
        DbKind::Postgres => {
            let mut c = sqlx::PgConnection::connect(&db.url).await?;
            sqlx::query_as::<_, (i64, String)>(sql)
                .fetch_all(&mut c)
                .await?
        }
        DbKind::MariaDb => {
            let mut c = sqlx::MySqlConnection::connect(&db.url).await?;
            sqlx::query_as::<_, (i64, String)>(sql)
                .fetch_all(&mut c)
                .await?
        }
        DbKind::Sqlite => {
            let mut c = sqlx::SqliteConnection::connect(&db.url).await?;
            sqlx::query_as::<_, (i64, String)>(sql)
                .fetch_all(&mut c)
                .await?
        }
    })
}

/// `members (id, first_name, fixed, counter)` with `n` rows; every `long_every`-th
/// row has a first name of 1,500 characters.
pub async fn members(db: &TestDb, n: i64, long_every: i64) -> anyhow::Result<()> {
    let text = match db.kind {
        DbKind::MariaDb => "LONGTEXT",
        _ => "TEXT",
    };
    exec(
        db,
        &format!(
            "CREATE TABLE members (id BIGINT PRIMARY KEY, first_name {text} NOT NULL, \
             fixed INT NOT NULL DEFAULT 0, counter INT NOT NULL DEFAULT 0)"
        ),
    )
    .await?;
    let mut values = Vec::new();
    for id in 1..=n {
        let name = if long_every > 0 && id % long_every == 0 {
            "x".repeat(1500)
        } else {
            format!("name{id}")
        };
        values.push(format!("({id}, '{name}')"));
        if values.len() == 500 || id == n {
            exec(
                db,
                &format!(
                    "INSERT INTO members (id, first_name) VALUES {}",
                    values.join(",")
                ),
            )
            .await?;
            values.clear();
        }
    }
    Ok(())
}

pub fn spec(db: &TestDb, body: &str) -> anyhow::Result<FixSpec> {
    let text = format!("name = \"t\"\nurl = \"{}\"\nkey = [\"id\"]\n{body}", db.url);
    Ok(FixSpec::parse(&text, "test.toml")?)
}

pub async fn job(db: &TestDb, body: &str) -> anyhow::Result<FixJob> {
    Ok(FixJob::connect(spec(db, body)?, &PluginRegistry::default()).await?)
}

/// An observer that keeps everything it is told, with times.
#[derive(Default)]
pub struct Recorder {
    pub progress: Mutex<Vec<(Instant, FixProgress)>>,
    pub failures: Mutex<Vec<FixFailure>>,
    pub checkpoints: Mutex<Vec<Checkpoint>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Records changed per second between `from` and `to` seconds after `start`.
    pub fn measured_rate(&self, start: Instant, from: f64, to: f64) -> f64 {
        let p = self.progress.lock().expect("lock");
        let at = |s: f64| {
            p.iter()
                .rfind(|(t, _)| t.duration_since(start).as_secs_f64() <= s)
                .map(|(t, pr)| (t.duration_since(start).as_secs_f64(), pr.changed))
        };
        match (at(from), at(to)) {
            (Some((t0, c0)), Some((t1, c1))) if t1 > t0 => (c1 - c0) as f64 / (t1 - t0),
            _ => 0.0,
        }
    }
}

#[async_trait::async_trait]
impl FixObserver for Recorder {
    fn progress(&self, p: &FixProgress) {
        self.progress
            .lock()
            .expect("lock")
            .push((Instant::now(), p.clone()));
    }
    async fn failures(&self, f: &[FixFailure]) -> Result<(), String> {
        self.failures.lock().expect("lock").extend_from_slice(f);
        Ok(())
    }
    async fn checkpoint(&self, c: &Checkpoint) -> Result<(), String> {
        self.checkpoints.lock().expect("lock").push(c.clone());
        Ok(())
    }
}
