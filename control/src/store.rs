//! The control store: one connection pool, SQLite by default (a file under the
//! data directory, created on first start) or PostgreSQL when several `tern`
//! processes share the work. Its schema migrations run every time it opens.
//!
//! Queries are written once, in the SQL both dialects accept (`$1` parameters,
//! `RETURNING`, `ON CONFLICT`), through sqlx's `Any` driver; the few places that
//! differ (leasing with `FOR UPDATE SKIP LOCKED`) ask [`Store::dialect`].

use std::path::Path;
use std::sync::Once;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{Any, AnyPool, Executor, Transaction};

use crate::caches::Caches;
use crate::error::{ControlError, Result};

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which database the control store lives in: the engine's [`Dialect`],
/// SQLite or PostgreSQL (the store does not live in MySQL).
pub use tern_engine::Dialect;

/// The dialect of a control store URL, or a message saying which URLs are
/// accepted.
pub fn store_dialect(url: &str) -> Result<Dialect> {
    match Dialect::of_url(url) {
        Some(d @ (Dialect::Sqlite | Dialect::Postgres)) => Ok(d),
        _ => Err(ControlError::Invalid(format!(
            "control store URL `{}` is neither SQLite (`sqlite://path/tern.db`) nor \
             PostgreSQL (`postgres://user@host/db`)",
            redact_url(url)
        ))),
    }
}

/// The control store handle; cheap to clone (it shares one pool).
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    url: String,
    /// What the store keeps in memory, shared by its clones.
    pub(crate) caches: std::sync::Arc<Caches>,
    /// The key connection secrets are encrypted with (none: Tern refuses to
    /// store a secret, and references still work).
    secret_key: Option<std::sync::Arc<crate::connections::secret::SecretKey>>,
}

/// Reads back a column packed by `string_agg(a || ':' || b || …, ',')`: one
/// item per `,`, its fields split on `:` (`fields` of them) and given to
/// `parse`. `what` names the data in the error when an item does not parse.
/// Reading many values as one row this way is much cheaper than one row each.
pub(crate) fn unpack<T>(
    packed: &str,
    fields: usize,
    what: &str,
    parse: impl Fn(&[&str]) -> Option<T>,
) -> Result<Vec<T>> {
    packed
        .split(',')
        .map(|item| {
            let f: Vec<&str> = item.split(':').collect();
            if f.len() == fields { parse(&f) } else { None }.ok_or_else(|| {
                ControlError::Internal(format!("{what} could not be read back: `{item}`"))
            })
        })
        .collect()
}

/// Hides a password in a connection URL before it is logged or shown.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end],
                &authority[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl Store {
    /// Connects to the store at `url` and brings its schema up to date.
    pub async fn open(url: &str) -> Result<Store> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);

        let dialect = store_dialect(url)?;
        // PostgreSQL statements are not cached per connection: sqlx 0.8's Any
        // driver declares a NULL `f64` as `float4`, and a statement cached with
        // that type then refuses a real value ("incorrect binary data format
        // in bind parameter 4": a heartbeat without a rate, then one with).
        let connect_url = match dialect {
            Dialect::Postgres if !url.contains("statement-cache-capacity") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                std::borrow::Cow::Owned(format!("{url}{sep}statement-cache-capacity=0"))
            }
            _ => std::borrow::Cow::Borrowed(url),
        };
        let options: AnyConnectOptions = connect_url.parse().map_err(|e: sqlx::Error| {
            ControlError::Invalid(format!(
                "control store URL `{}` cannot be parsed: {e}",
                redact_url(url)
            ))
        })?;
        // `store_dialect` refused MySQL: its arms below are SQLite's.
        let pool = match dialect {
            Dialect::Sqlite | Dialect::MySql => {
                AnyPoolOptions::new()
                    .max_connections(8)
                    .acquire_timeout(Duration::from_secs(10))
                    .after_connect(|conn, _| {
                        Box::pin(async move {
                            // WAL lets pages read while a worker writes; NORMAL is durable
                            // across process crashes, which is what WAL needs.
                            conn.execute("PRAGMA journal_mode = WAL").await?;
                            conn.execute("PRAGMA synchronous = NORMAL").await?;
                            conn.execute("PRAGMA foreign_keys = ON").await?;
                            conn.execute("PRAGMA busy_timeout = 10000").await?;
                            Ok(())
                        })
                    })
                    .connect_with(options)
                    .await
            }
            Dialect::Postgres => {
                AnyPoolOptions::new()
                    .max_connections(16)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
            }
        }
        .map_err(ControlError::db(format!(
            "connecting to {}",
            redact_url(url)
        )))?;

        match dialect {
            Dialect::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
            Dialect::Sqlite | Dialect::MySql => SQLITE_MIGRATIONS.run(&pool).await?,
        }
        tracing::debug!(store = %redact_url(url), ?dialect, "control store open");
        crate::own_store::register(url);
        Ok(Store {
            pool,
            dialect,
            url: url.to_string(),
            caches: Default::default(),
            secret_key: None,
        })
    }

    /// Opens (creating when missing) the SQLite store file at `path`.
    pub async fn open_sqlite_file(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ControlError::Invalid(format!(
                    "cannot create the data directory {}: {e}; choose another with \
                     `data_dir` (TERN_DATA_DIR)",
                    dir.display()
                ))
            })?;
        }
        Store::open(&format!("sqlite://{}?mode=rwc", path.display())).await
    }

    /// The underlying pool, for the modules of this crate.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Which database this store lives in.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The store's URL with any password hidden, for logs and the UI.
    /// The store with the key connection secrets are encrypted with.
    pub fn with_secret_key(mut self, key: Option<crate::connections::secret::SecretKey>) -> Store {
        self.secret_key = key.map(std::sync::Arc::new);
        self
    }

    /// The key connection secrets are encrypted with, if one is set.
    pub fn secret_key(&self) -> Option<&crate::connections::secret::SecretKey> {
        self.secret_key.as_deref()
    }

    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// Starts a transaction; changes and their audit events commit together.
    ///
    /// On SQLite the transaction takes the write lock at once (`BEGIN IMMEDIATE`): a
    /// deferred one that reads and then writes after another writer committed fails at
    /// once with "database is locked" (SQLITE_BUSY_SNAPSHOT), which the busy timeout does
    /// not retry. Taking the lock first makes concurrent writers queue on the busy timeout
    /// instead, as eight buckets moved at once from the board do.
    pub async fn begin(&self) -> Result<Transaction<'static, Any>> {
        let started = match self.dialect {
            Dialect::Sqlite | Dialect::MySql => self.pool.begin_with("BEGIN IMMEDIATE").await,
            Dialect::Postgres => self.pool.begin().await,
        };
        started.map_err(ControlError::db("starting a transaction"))
    }

    /// Succeeds when the store answers a trivial query (for `/readyz`).
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(ControlError::db("checking the control store"))
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_rows_read_back_or_name_the_bad_item() {
        let pair = |f: &[&str]| Some((f[0].parse::<i64>().ok()?, f[1].parse::<i64>().ok()?));
        assert_eq!(
            unpack("1:10,2:20", 2, "samples", pair).ok(),
            Some(vec![(1, 10), (2, 20)])
        );
        let bad = unpack("1:10,2", 2, "the samples of migration 7", pair);
        assert!(
            matches!(&bad, Err(ControlError::Internal(m)) if m == "the samples of migration 7 could not be read back: `2`"),
            "{bad:?}"
        );
    }

    #[test]
    fn hides_passwords_in_urls() {
        assert_eq!(
            redact_url("postgres://tern:s3cret@db.internal:5432/tern"),
            "postgres://tern:***@db.internal:5432/tern"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/tern"),
            "postgres://postgres@127.0.0.1/tern"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    }

    #[test]
    fn knows_the_dialect_of_a_url() {
        assert_eq!(store_dialect("sqlite://a.db").ok(), Some(Dialect::Sqlite));
        assert_eq!(
            store_dialect("postgresql://h/db").ok(),
            Some(Dialect::Postgres)
        );
        let err = store_dialect("mysql://root@h/db")
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|m| m.contains("neither SQLite")));
    }
}
