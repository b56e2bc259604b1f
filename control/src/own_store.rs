//! No path into Tern itself: a spec, connection or data fix whose database is
//! Tern's own control store (users, sessions, audit) is refused, whatever the
//! engine. Every control store this process opens is remembered here, and so
//! is the store the CLI's settings name; a URL is compared by what it reaches,
//! not by its spelling: the same SQLite file through a symlink, a hard link,
//! `./`, or `?mode=` options, or the same PostgreSQL server (by address) and
//! database.

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::RwLock;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::error::{ControlError, Result};

static OWN: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Remembers `url` as one of Tern's own control stores.
pub fn register(url: &str) {
    if let Ok(mut own) = OWN.write() {
        if !own.iter().any(|u| u == url) {
            own.push(url.to_string());
        }
    }
}

/// Refuses `url` (named `what` in the message: `source`, `the fix's url`…)
/// when it reaches one of Tern's own control stores.
pub fn refuse(url: &str, what: &str) -> Result<()> {
    let own = OWN.read().map(|o| o.clone()).unwrap_or_default();
    if own.iter().any(|o| same_database(o, url)) {
        return Err(ControlError::Invalid(format!(
            "{what}: `{}` is Tern's own control store (its users, sessions and audit log); \
             no migration, connection or data fix may read or write it. Name the database \
             you mean to change",
            tern_engine::connector::redact(url)
        )));
    }
    Ok(())
}

/// Whether two database URLs reach the same database.
pub fn same_database(a: &str, b: &str) -> bool {
    match (Target::of(a), Target::of(b)) {
        (Some(Target::Sqlite(x)), Some(Target::Sqlite(y))) => same_file(&x, &y),
        (Some(Target::Postgres(x)), Some(Target::Postgres(y))) => {
            x.port == y.port && x.database == y.database && same_host(&x.host, &y.host)
        }
        _ => false,
    }
}

enum Target {
    Sqlite(PathBuf),
    Postgres(PgTarget),
}

struct PgTarget {
    host: String,
    port: u16,
    database: String,
}

impl Target {
    fn of(url: &str) -> Option<Target> {
        let url = url.trim();
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "sqlite" => {
                let opts = SqliteConnectOptions::from_str(url).ok()?;
                let file = opts.get_filename();
                (file.as_os_str() != ":memory:" && !file.as_os_str().is_empty())
                    .then(|| Target::Sqlite(file.to_path_buf()))
            }
            "postgres" | "postgresql" => {
                let opts = PgConnectOptions::from_str(url).ok()?;
                let database = opts
                    .get_database()
                    .unwrap_or_else(|| opts.get_username())
                    .to_string();
                Some(Target::Postgres(PgTarget {
                    host: opts.get_host().to_string(),
                    port: opts.get_port(),
                    database,
                }))
            }
            _ => None,
        }
    }
}

/// The same file: by device and inode when both exist (symlinks and hard
/// links), else by canonical path.
fn same_file(a: &Path, b: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if let (Ok(x), Ok(y)) = (std::fs::metadata(a), std::fs::metadata(b)) {
            return x.dev() == y.dev() && x.ino() == y.ino();
        }
    }
    canonical(a) == canonical(b)
}

/// A path made absolute, its existing part resolved (a file not created yet
/// is compared by its resolved directory and name).
fn canonical(p: &Path) -> PathBuf {
    if let Ok(c) = p.canonicalize() {
        return c;
    }
    let abs = std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    match (abs.parent(), abs.file_name()) {
        (Some(dir), Some(name)) => dir
            .canonicalize()
            .unwrap_or_else(|_| dir.to_path_buf())
            .join(name),
        _ => abs,
    }
}

/// The same server: same name, or names that resolve to a shared address; a
/// Unix socket directory is this machine.
fn same_host(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case(b) {
        return true;
    }
    let (x, y) = (addresses(a), addresses(b));
    x.iter().any(|ip| y.contains(ip))
}

fn addresses(host: &str) -> Vec<IpAddr> {
    if host.starts_with('/') {
        return vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
    }
    let mut ips: Vec<IpAddr> = (host, 0)
        .to_socket_addrs()
        .map(|a| a.map(|s| s.ip()).collect())
        .unwrap_or_default();
    // localhost, 127.0.0.1 and ::1 are one server.
    if ips.iter().any(IpAddr::is_loopback) {
        ips.push(IpAddr::from([127, 0, 0, 1]));
        ips.push(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]));
    }
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_sqlite_file_is_found_through_symlinks_and_options() {
        let dir = std::env::temp_dir().join(format!("tern-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).ok();
        let db = dir.join("tern.db");
        std::fs::write(&db, b"").ok();
        let link = dir.join("innocent.db");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(&db, &link).ok();
        let own = format!("sqlite://{}", db.display());
        for other in [
            format!("sqlite://{}?mode=ro", db.display()),
            format!("sqlite:{}", db.display()),
            format!("sqlite://{}/./tern.db?mode=rwc", dir.display()),
            format!("sqlite://{}", link.display()),
        ] {
            assert!(same_database(&own, &other), "{other}");
        }
        assert!(!same_database(
            &own,
            &format!("sqlite://{}/other.db", dir.display())
        ));
        assert!(!same_database(&own, "sqlite::memory:"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_same_postgres_database_is_found_by_address() {
        let own = "postgres://tern@127.0.0.1:5432/tern_control";
        assert!(same_database(
            own,
            "postgres://app:pw@localhost/tern_control"
        ));
        assert!(same_database(
            own,
            "postgresql://x@127.0.0.1:5432/tern_control?sslmode=disable"
        ));
        assert!(!same_database(own, "postgres://x@127.0.0.1:5432/inbox"));
        assert!(!same_database(
            own,
            "postgres://x@127.0.0.1:5433/tern_control"
        ));
        assert!(!same_database(own, "mysql://root@127.0.0.1/tern_control"));
    }
}
