//! Shared helpers: plain connections to test databases, and running a spec.

use std::str::FromStr;

use anyhow::Context;
use sqlx::{MySqlPool, PgPool, SqlitePool};
use tern_engine::capture::{self, InstallReport};
use tern_engine::{BucketReport, Link, Plan, RunControl, Spec, TransformerRegistry, load_bucket};
use tern_testkit::{DbKind, TestDb};

/// A plain connection to a test database, for arranging and checking.
pub enum Side {
    Pg(PgPool),
    My(MySqlPool),
    Lite(SqlitePool),
}

impl Side {
    pub async fn open(db: &TestDb) -> anyhow::Result<Side> {
        Ok(match db.kind {
            DbKind::Postgres => Side::Pg(PgPool::connect(&db.url).await?),
            DbKind::MariaDb => Side::My(MySqlPool::connect(&db.url).await?),
            DbKind::Sqlite => Side::Lite(
                sqlx::sqlite::SqlitePoolOptions::new()
                    .connect_with(
                        sqlx::sqlite::SqliteConnectOptions::from_str(&db.url)?
                            .busy_timeout(std::time::Duration::from_secs(30)),
                    )
                    .await?,
            ),
        })
    }

    /// Runs a script of `;`-separated statements.
    pub async fn exec(&self, script: &str) -> anyhow::Result<()> {
        for stmt in script.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            match self {
                Side::Pg(p) => sqlx::query(stmt).execute(p).await.map(|_| ()),
                Side::My(p) => sqlx::query(stmt).execute(p).await.map(|_| ()),
                Side::Lite(p) => sqlx::query(stmt).execute(p).await.map(|_| ()),
            }
            .with_context(|| format!("running `{stmt}`"))?;
        }
        Ok(())
    }

    pub async fn count(&self, table: &str) -> anyhow::Result<i64> {
        let sql = format!("SELECT COUNT(*) FROM {table}");
        Ok(match self {
            Side::Pg(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
            Side::My(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
            Side::Lite(p) => sqlx::query_scalar(&sql).fetch_one(p).await?,
        })
    }

    /// Runs one statement as it is (it may contain `;`).
    pub async fn run(&self, stmt: &str) -> anyhow::Result<()> {
        match self {
            Side::Pg(p) => sqlx::raw_sql(stmt).execute(p).await.map(|_| ()),
            Side::My(p) => sqlx::raw_sql(stmt).execute(p).await.map(|_| ()),
            Side::Lite(p) => sqlx::raw_sql(stmt).execute(p).await.map(|_| ()),
        }
        .with_context(|| format!("running `{stmt}`"))
    }

    /// The first column of every row, as text.
    pub async fn strings(&self, sql: &str) -> anyhow::Result<Vec<String>> {
        Ok(match self {
            Side::Pg(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
            Side::My(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
            Side::Lite(p) => sqlx::query_scalar(sql).fetch_all(p).await?,
        })
    }

    pub fn pg(&self) -> anyhow::Result<&PgPool> {
        match self {
            Side::Pg(p) => Ok(p),
            _ => anyhow::bail!("not PostgreSQL"),
        }
    }
}

/// A spec: the body (top-level keys and tables) first, then source and target.
pub fn spec_text(source: &TestDb, target: &TestDb, body: &str) -> String {
    format!(
        "{body}\n[source]\nurl = \"{}\"\n\n[target]\nurl = \"{}\"\n",
        source.url, target.url
    )
}

/// Prepares the spec and loads every bucket of every table.
pub async fn load_all(
    text: &str,
    registry: &TransformerRegistry,
) -> anyhow::Result<(Link, Vec<BucketReport>)> {
    let spec = Spec::parse(text, "test.toml")?;
    let link = Link::connect(spec, registry).await?;
    let mut reports = Vec::new();
    let tables: Vec<String> = link.tables().iter().map(|s| s.to_string()).collect();
    for t in tables {
        reports.extend(load_table_reports(&link, &t).await?.1);
    }
    Ok((link, reports))
}

/// Connects the spec `text` (no custom transformers) and installs change
/// capture on its source: the link, the spec, and what was installed.
pub async fn connect_captured(text: &str) -> anyhow::Result<(Link, Spec, InstallReport)> {
    let spec = Spec::parse(text, "test.toml")?;
    let link = Link::connect(spec.clone(), &TransformerRegistry::new()).await?;
    let installed = capture::install(link.source(), &spec).await?;
    Ok((link, spec, installed))
}

/// Plans (or resumes the plan of) `table` and bulk-loads each of its buckets.
pub async fn load_table(link: &Link, table: &str) -> anyhow::Result<Plan> {
    Ok(load_table_reports(link, table).await?.0)
}

/// [`load_table`], and each bucket's report.
async fn load_table_reports(link: &Link, table: &str) -> anyhow::Result<(Plan, Vec<BucketReport>)> {
    let plan = link.plan_or_resume(table, None).await?;
    let mut reports = Vec::new();
    for b in &plan.buckets {
        reports.push(load_bucket(link, b, &RunControl::new()).await?);
    }
    Ok((plan, reports))
}
