//! Test support shared by every crate's integration tests: each test gets its
//! own freshly created database on the local PostgreSQL or MariaDB server (or a
//! fresh SQLite file), and the database is dropped when the [`TestDb`] goes
//! out of scope, also when the test fails.
//!
//! The servers are the ones every developer machine and CI run on loopback.
//! Override their addresses with `TERN_TEST_PG_URL` (an admin URL, default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and `TERN_TEST_MYSQL_URL`
//! (default `mysql://root@127.0.0.1:3306/test`).

use std::path::PathBuf;

use anyhow::Context;
use sqlx::Connection;

/// Which server a test database lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Postgres,
    MariaDb,
    Sqlite,
}

/// A database created for one test and dropped afterwards.
#[derive(Debug)]
pub struct TestDb {
    /// Connection URL of the fresh database.
    pub url: String,
    /// Its name (for SQLite: the file path).
    pub name: String,
    pub kind: DbKind,
    admin_url: String,
    sqlite_dir: Option<PathBuf>,
}

/// Admin URL of the local PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("TERN_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Admin URL of the local MariaDB server.
pub fn mysql_admin_url() -> String {
    std::env::var("TERN_TEST_MYSQL_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".to_string())
}

fn fresh_name() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("tern_t_{}", &id[..16])
}

/// Replaces the database part (the last path segment) of a URL.
fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl TestDb {
    /// A fresh, empty PostgreSQL database.
    pub async fn postgres() -> anyhow::Result<TestDb> {
        TestDb::create_on_server(DbKind::Postgres, pg_admin_url()).await
    }

    /// A fresh, empty MariaDB/MySQL database.
    pub async fn mariadb() -> anyhow::Result<TestDb> {
        TestDb::create_on_server(DbKind::MariaDb, mysql_admin_url()).await
    }

    async fn create_on_server(kind: DbKind, admin_url: String) -> anyhow::Result<TestDb> {
        let name = fresh_name();
        let create = format!("CREATE DATABASE {name}");
        let result = match kind {
            DbKind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("test PostgreSQL at {admin_url} is unreachable"))?;
                sqlx::query(&create)
                    .execute(&mut conn)
                    .await
                    .map(|_| conn.close())
            }
            _ => {
                let mut conn = sqlx::MySqlConnection::connect(&admin_url)
                    .await
                    .with_context(|| format!("test MariaDB at {admin_url} is unreachable"))?;
                sqlx::query(&create)
                    .execute(&mut conn)
                    .await
                    .map(|_| conn.close())
            }
        };
        result
            .with_context(|| format!("creating test database {name}"))?
            .await
            .ok();
        Ok(TestDb {
            url: with_database(&admin_url, &name),
            name,
            kind,
            admin_url,
            sqlite_dir: None,
        })
    }

    /// A fresh SQLite database file in its own temporary directory.
    pub fn sqlite() -> anyhow::Result<TestDb> {
        let dir = std::env::temp_dir().join(fresh_name());
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("test.db");
        Ok(TestDb {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            name: path.display().to_string(),
            kind: DbKind::Sqlite,
            admin_url: String::new(),
            sqlite_dir: Some(dir),
        })
    }

    /// A fresh database of the given kind.
    pub async fn new(kind: DbKind) -> anyhow::Result<TestDb> {
        match kind {
            DbKind::Postgres => TestDb::postgres().await,
            DbKind::MariaDb => TestDb::mariadb().await,
            DbKind::Sqlite => TestDb::sqlite(),
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = self.sqlite_dir.take() {
            let _ = std::fs::remove_dir_all(dir);
            return;
        }
        let kind = self.kind;
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        // Drop may run inside a Tokio runtime; dropping the database needs one of
        // its own, so it runs on a plain thread that the test waits for.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                match kind {
                    DbKind::Postgres => {
                        if let Ok(mut c) = sqlx::PgConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .execute(&mut c)
                            .await;
                        }
                    }
                    DbKind::MariaDb => {
                        if let Ok(mut c) = sqlx::MySqlConnection::connect(&admin_url).await {
                            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name}"))
                                .execute(&mut c)
                                .await;
                        }
                    }
                    DbKind::Sqlite => {}
                }
            });
        });
        let _ = handle.join();
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn replaces_the_database_of_a_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("mysql://root@127.0.0.1:3306/test?ssl-mode=disabled", "y"),
            "mysql://root@127.0.0.1:3306/y?ssl-mode=disabled"
        );
        assert_eq!(with_database("mysql://root@h", "z"), "mysql://root@h/z");
    }
}
