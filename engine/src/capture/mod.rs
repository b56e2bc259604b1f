//! Change capture: triggers on every source table a spec reads, appending
//! each insert, update and delete to the changelog ([`crate::changelog`]) in
//! the source database. PostgreSQL gets one `SECURITY DEFINER` plpgsql
//! function and one `AFTER INSERT OR UPDATE OR DELETE` trigger per table;
//! MySQL/MariaDB and SQLite three `AFTER` triggers per table.
//!
//! Installed and removed by Tern ([`install`], [`remove`]); removal drops
//! every object install created (found by name, whatever spec installed them),
//! so the source schema is exactly as before. For a source where triggers are
//! not allowed, the catch-up can re-copy rows by an `updated_at` window instead
//! ([`crate::catch_up::catch_up_window`]).

mod triggers;

use std::collections::BTreeSet;

use crate::changelog::{self, CHANGELOG_TABLE, Position};
use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::spec::{Relation, Spec, TrackMap};
use crate::transform::SourceColumn;
use crate::value::Value;

/// Capture's own small table in the source: `installed_at` and
/// `pruned_through` (the highest sequence number pruned).
pub const CAPTURE_TABLE: &str = "_tern_capture";

/// How many sequence numbers below the head [`head_position`] searches for
/// changes handed out but not committed yet. At 5,000 changes a second this is
/// 20 seconds of changes: a transaction holding a captured change open for
/// longer while a bucket's watermark is taken is not guaranteed to be caught
/// up from the changelog (verification would find it).
pub const WATERMARK_LOOKBACK: i64 = 100_000;

/// One captured source table and the columns its changelog rows carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapturedTable {
    /// As the spec names it (`table` or `schema.table`); the changelog's
    /// `table_name`.
    pub table: String,
    pub columns: Vec<String>,
}

/// What [`install`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct InstallReport {
    pub tables: Vec<CapturedTable>,
    /// The changelog position at installation: changes after it are captured.
    pub position: Position,
}

/// What [`remove`] dropped, described for people.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoveReport {
    pub dropped: Vec<String>,
}

/// The tables a spec needs captured and the columns of each: for every table
/// source and every `tracks` entry, the columns that find the records a change
/// touches (the key columns, the `:placeholders` of a track query, the
/// bucket column of a table source, for ramps, and a deduplicated table
/// source's group columns).
pub fn captured_tables(spec: &Spec) -> Result<Vec<CapturedTable>> {
    let mut out: Vec<(String, BTreeSet<String>)> = Vec::new();
    let mut add = |table: &str, cols: Vec<String>| match out.iter_mut().find(|(t, _)| t == table) {
        Some((_, set)) => set.extend(cols),
        None => out.push((table.to_string(), cols.into_iter().collect())),
    };
    for t in spec.sourced_tables() {
        let Some(src) = &t.source else { continue };
        if src.tracks.is_empty() {
            return Err(spec.error_at(
                src.line,
                &format!("{}.source", t.field()),
                "the source is a query: list the tables it reads in [[tables.source.tracks]] \
                 so that their changes can be captured (see docs/migration-spec.md)",
            ));
        }
        for track in &src.tracks {
            let mut cols = match &track.map {
                TrackMap::Columns(c) => c.clone(),
                TrackMap::Query(q) => crate::apply::track::placeholders(q),
            };
            if matches!(&src.relation, Relation::Table(name) if *name == track.table) {
                cols.push(src.bucket.clone());
                // A deleted record's shared row is recomputed from its
                // group, read from the old image.
                if let Some(d) = &t.dedupe {
                    cols.extend(d.group.iter().cloned());
                }
            }
            add(&track.table, cols);
        }
    }
    Ok(out
        .into_iter()
        .map(|(table, cols)| CapturedTable {
            table,
            columns: cols.into_iter().collect(),
        })
        .collect())
}

/// Whether the source has change capture installed.
pub async fn is_installed(source: &Connector) -> Result<bool> {
    changelog::exists(source).await
}

async fn current_schema(source: &Connector) -> Result<String> {
    let sql = match source.dialect() {
        Dialect::Postgres => "SELECT current_schema()::text",
        Dialect::MySql => "SELECT DATABASE()",
        Dialect::Sqlite => return Ok("main".into()),
    };
    let (_, rows) = source.fetch(sql, &[], "read the current schema").await?;
    match rows.first().and_then(|r| r.first()) {
        Some(Value::Text(s)) => Ok(s.clone()),
        Some(Value::Bytes(b)) => Ok(String::from_utf8_lossy(b).into_owned()),
        _ => Err(EngineError::schema(
            CHANGELOG_TABLE,
            format!(
                "the source database {} has no current schema to create the changelog in; \
                 name a database in the source URL",
                source.url()
            ),
        )),
    }
}

async fn is_mariadb(source: &Connector) -> Result<bool> {
    let (_, rows) = source
        .fetch("SELECT VERSION()", &[], "read the server version")
        .await?;
    Ok(
        matches!(rows.first().and_then(|r| r.first()), Some(Value::Text(v)) if v.contains("MariaDB")),
    )
}

/// Installs (or re-installs, replacing the triggers) change capture for
/// every table the spec reads. Safe to run again; on PostgreSQL and SQLite it
/// happens in one transaction, so no change falls between old and new
/// triggers. Columns the spec names must exist in the source tables.
pub async fn install(source: &Connector, spec: &Spec) -> Result<InstallReport> {
    install_tables(source, captured_tables(spec)?).await
}

/// Installs capture of the given tables of a database, source or target
/// (reverse replication captures the target's tables, [`crate::reverse`]).
pub(crate) async fn install_tables(
    source: &Connector,
    tables: Vec<CapturedTable>,
) -> Result<InstallReport> {
    let role = source.role();
    for t in &tables {
        let Some(cols) = source.table_columns(&t.table).await? else {
            return Err(EngineError::schema(
                &t.table,
                format!(
                    "cannot capture changes of {role} table {}: it does not exist in {}",
                    t.table,
                    source.url()
                ),
            ));
        };
        for c in &t.columns {
            if !cols.iter().any(|s| &s.name == c) {
                return Err(EngineError::schema(
                    &t.table,
                    format!(
                        "cannot capture changes of {role} table {}: the spec needs column {c}, \
                         which it does not have (its columns: {})",
                        t.table,
                        SourceColumn::list(&cols)
                    ),
                ));
            }
        }
    }
    let d = source.dialect();
    let schema = current_schema(source).await?;
    let qualify = d != Dialect::Sqlite;
    let changelog = if qualify {
        format!("{}.{}", d.quote(&schema), d.quote(CHANGELOG_TABLE))
    } else {
        d.quote(CHANGELOG_TABLE)
    };
    let replace = d != Dialect::MySql || is_mariadb(source).await?;
    let mut ddl = triggers::create_tables(d, qualify.then_some(schema.as_str()));
    let installed_at = source.clock_micros().await?;
    let capture = if qualify {
        format!("{}.{}", d.quote(&schema), d.quote(CAPTURE_TABLE))
    } else {
        d.quote(CAPTURE_TABLE)
    };
    ddl.push(match d {
        Dialect::MySql => format!(
            "INSERT IGNORE INTO {capture} (name, value) VALUES ('installed_at', {installed_at})"
        ),
        _ => format!(
            "INSERT INTO {capture} (name, value) VALUES ('installed_at', {installed_at}) ON CONFLICT (name) DO NOTHING"
        ),
    });
    for t in &tables {
        ddl.extend(triggers::install_table(d, t, &changelog, &schema, replace));
    }
    source
        .run_ddl(&ddl, "install change capture")
        .await
        .map_err(|e| match e {
            EngineError::Database { context, source } => EngineError::Database {
                context: format!(
                    "{context}; the {role} user needs the rights to create tables and triggers \
                     (MySQL with binary logging also needs log_bin_trust_function_creators or SUPER)"
                ),
                source,
            },
            other => other,
        })?;
    let position = Position::at(changelog::head(source).await?);
    tracing::info!(
        tables = tables.len(),
        position = %position,
        role,
        database = source.url(),
        "change capture installed"
    );
    Ok(InstallReport { tables, position })
}

/// Removes the capture of `tables` from a database that other migrations
/// may capture too: their triggers go, and the changelog and Tern's other
/// capture tables go only when no capture trigger is left in the database
/// (another migration reading the same database keeps its changes). The
/// decommission of one migration uses this.
pub async fn remove_tables(db: &Connector, tables: &[String]) -> Result<RemoveReport> {
    let d = db.dialect();
    let default_schema = current_schema(db).await?;
    let mut statements = Vec::new();
    let mut dropped = Vec::new();
    for t in tables {
        statements.extend(triggers::drop_table_capture(d, t, &default_schema));
        dropped.push(format!("capture of {t}"));
    }
    if !statements.is_empty() {
        db.run_ddl(
            &statements,
            "remove the change capture of the migration's tables",
        )
        .await?;
    }
    let (_, rows) = db
        .fetch(
            triggers::list_objects_sql(d),
            &[],
            "list the change capture objects left",
        )
        .await?;
    let others = rows
        .iter()
        .filter(|r| match r.get(1) {
            Some(Value::Text(t)) => t.starts_with("trigger "),
            Some(Value::Bytes(b)) => b.starts_with(b"trigger "),
            _ => false,
        })
        .count();
    if others == 0 {
        let all = remove(db).await?;
        dropped.extend(all.dropped);
    } else {
        tracing::info!(
            triggers = others,
            database = db.url(),
            "the changelog stays: other tables of this database are still captured"
        );
        dropped.push(format!(
            "nothing shared (the changelog stays for the {others} capture trigger(s) of other tables)"
        ));
    }
    Ok(RemoveReport { dropped })
}

/// Removes every capture trigger, trigger function and table from the
/// source, leaving its schema as it was before [`install`]. Safe to run when
/// nothing is installed.
pub async fn remove(source: &Connector) -> Result<RemoveReport> {
    let d = source.dialect();
    let (_, rows) = source
        .fetch(
            triggers::list_objects_sql(d),
            &[],
            "list the change capture objects",
        )
        .await?;
    let text = |v: Option<&Value>| match v {
        Some(Value::Text(s)) => s.clone(),
        Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
        _ => String::new(),
    };
    let mut statements = Vec::new();
    let mut dropped = Vec::new();
    for r in &rows {
        statements.push(text(r.first()));
        dropped.push(text(r.get(1)));
    }
    if !statements.is_empty() {
        source.run_ddl(&statements, "remove change capture").await?;
    }
    tracing::info!(
        objects = dropped.len(),
        source = source.url(),
        "change capture removed"
    );
    Ok(RemoveReport { dropped })
}

/// The changelog position now, with the changes handed out but not yet
/// committed as gaps, or `None` when capture is not installed. This is a
/// bucket's watermark when taken before its first row is read: every change
/// committed after the read is after this position or in one of its gaps.
pub async fn head_position(source: &Connector) -> Result<Option<Position>> {
    if !changelog::exists(source).await? {
        return Ok(None);
    }
    let high = changelog::head(source).await?;
    let low = (high - WATERMARK_LOOKBACK).max(0);
    let d = source.dialect();
    let sql = format!(
        "SELECT seq FROM {} WHERE seq > {} AND seq <= {} ORDER BY seq",
        d.quote(CHANGELOG_TABLE),
        d.placeholder(1),
        d.placeholder(2)
    );
    let (_, rows) = source
        .fetch(
            &sql,
            &[Value::Int(low), Value::Int(high)],
            "look for uncommitted changes below the head of the changelog",
        )
        .await?;
    let mut p = Position::at(high);
    let mut expected = low + 1;
    for r in rows {
        if let Some(Value::Int(s)) = r.first() {
            if *s > expected {
                p.gaps.push((expected, s - 1));
            }
            expected = s + 1;
        }
    }
    if expected <= high {
        p.gaps.push((expected, high));
    }
    p.normalize();
    Ok(Some(p))
}

/// Deletes changelog rows with sequence numbers up to `through` (never the
/// newest row, which keeps numbering going up on every database) and records
/// how far pruning went. Returns the number of rows deleted.
pub async fn prune(source: &Connector, through: i64) -> Result<u64> {
    let d = source.dialect();
    let head = changelog::head(source).await?;
    let through = through.min(head - 1);
    if through <= 0 {
        return Ok(0);
    }
    let t = d.quote(CHANGELOG_TABLE);
    let mut deleted = 0;
    loop {
        // In slices, so that no statement holds many locks for long.
        let sql = match d {
            Dialect::MySql => format!("DELETE FROM {t} WHERE seq <= ? ORDER BY seq LIMIT 10000"),
            _ => format!(
                "DELETE FROM {t} WHERE seq IN (SELECT seq FROM {t} WHERE seq <= {} ORDER BY seq LIMIT 10000)",
                d.placeholder(1)
            ),
        };
        let n = source
            .execute(&sql, &[Value::Int(through)], "prune the changelog")
            .await?;
        deleted += n;
        if n < 10_000 {
            break;
        }
    }
    let capture = d.quote(CAPTURE_TABLE);
    let ph1 = d.placeholder(1);
    let sql = match d {
        Dialect::MySql => format!(
            "INSERT INTO {capture} (name, value) VALUES ('pruned_through', ?) \
             ON DUPLICATE KEY UPDATE value = GREATEST(value, VALUES(value))"
        ),
        Dialect::Postgres => format!(
            "INSERT INTO {capture} (name, value) VALUES ('pruned_through', {ph1}) \
             ON CONFLICT (name) DO UPDATE SET value = GREATEST({capture}.value, EXCLUDED.value)"
        ),
        Dialect::Sqlite => format!(
            "INSERT INTO {capture} (name, value) VALUES ('pruned_through', {ph1}) \
             ON CONFLICT (name) DO UPDATE SET value = MAX(value, excluded.value)"
        ),
    };
    source
        .execute(
            &sql,
            &[Value::Int(through)],
            "record how far the changelog was pruned",
        )
        .await?;
    if deleted > 0 {
        tracing::info!(deleted, through, "changelog pruned");
    }
    Ok(deleted)
}

/// The highest sequence number pruned so far (0 if none).
pub async fn pruned_through(source: &Connector) -> Result<i64> {
    let d = source.dialect();
    if source.table_columns(CAPTURE_TABLE).await?.is_none() {
        return Ok(0);
    }
    let sql = format!(
        "SELECT value FROM {} WHERE name = 'pruned_through'",
        d.quote(CAPTURE_TABLE)
    );
    let (_, rows) = source
        .fetch(&sql, &[], "read how far the changelog was pruned")
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    })
}

/// The highest sequence number of a change older than `micros` (source
/// clock), found by bisecting the sequence numbers (the changelog has no index
/// on time; times rise with sequence numbers up to the length of a
/// transaction, which is close enough for retention).
pub async fn position_before(source: &Connector, micros: i64) -> Result<i64> {
    let d = source.dialect();
    let t = d.quote(CHANGELOG_TABLE);
    let sql = format!(
        "SELECT seq, changed_at FROM {t} WHERE seq >= {} ORDER BY seq LIMIT 1",
        d.placeholder(1)
    );
    let at = |seq: i64| {
        let sql = sql.clone();
        async move {
            let (_, rows) = source
                .fetch(
                    &sql,
                    &[Value::Int(seq)],
                    "find a changelog position by time",
                )
                .await?;
            Ok::<_, EngineError>(rows.first().and_then(|r| match (r.first(), r.get(1)) {
                (Some(Value::Int(s)), Some(Value::Int(c))) => Some((*s, *c)),
                _ => None,
            }))
        }
    };
    let older = |found: Option<(i64, i64)>| found.is_some_and(|(_, c)| c < micros);
    let head = changelog::head(source).await?;
    if !older(at(0).await?) {
        return Ok(0);
    }
    // The first change at or after `lo` is older than `micros`; none at or
    // after `hi` is (taken as so beyond the head).
    let (mut lo, mut hi) = (0i64, head + 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if older(at(mid).await?) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Ok(at(lo).await?.map_or(0, |(s, _)| s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_captures_keys_buckets_and_track_placeholders() -> Result<()> {
        let spec = Spec::parse(
            include_str!("../../../examples/messages.toml"),
            "messages.toml",
        )?;
        let t = captured_tables(&spec)?;
        assert_eq!(
            t,
            vec![
                CapturedTable {
                    table: "messages".into(),
                    columns: vec!["id".into(), "member_id".into()],
                },
                CapturedTable {
                    table: "conversations".into(),
                    columns: vec!["id".into()],
                },
            ]
        );
        Ok(())
    }
}
