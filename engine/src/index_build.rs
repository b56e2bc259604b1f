//! Indexes after the load: what pgloader and `pg_dump` do, for a target
//! table that is empty when its first bucket starts loading.
//!
//! Why: every secondary index costs a random write per row while rows
//! arrive, and builds far faster in one sorted pass once they are all there.
//! So when a PostgreSQL or MariaDB/MySQL target table has no rows at the start of a
//! migration's load, [`before_load`] records its other indexes (all but the
//! primary key and constraint indexes, which the version-guarded upsert and
//! the constraints themselves need; on MariaDB also unique indexes, and every
//! index of a table with foreign keys) in `_tern_index_builds` in the target,
//! then drops them. The buckets load with COPY against the primary key
//! alone. When the last bucket of the table is loaded, [`build_deferred`]
//! builds them again from their recorded definitions, reporting each as a
//! step of its own ([`Task::IndexBuild`]); the catch-up calls it first too,
//! since deletes find rows by the `_tern_source_key` index. A table with
//! rows keeps its indexes and today's path.
//!
//! Every step is idempotent and can be taken by any worker: the record is
//! inserted once (the one whose insert lands drops the indexes), the build
//! runs `CREATE INDEX IF NOT EXISTS` and marks the record built. A crash
//! between the two leaves the record `deferred`, and the next call builds.

use std::time::Instant;

use crate::connector::{Connector, Dialect};
use crate::error::Result;
use crate::link::Link;
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;
use crate::value::Value;

/// The target table recording deferred indexes, one row per target table.
pub const BUILDS_TABLE: &str = "_tern_index_builds";

/// What [`build_deferred`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexReport {
    pub table: String,
    /// The indexes built, by name.
    pub built: Vec<String>,
    pub elapsed: std::time::Duration,
}

/// Whether indexes can wait for the load on this kind of target (SQLite
/// targets keep theirs: one writer, small tables).
fn defers(d: Dialect) -> bool {
    matches!(d, Dialect::Postgres | Dialect::MySql)
}

async fn ensure_table(target: &Connector) -> Result<()> {
    let columns = match target.dialect() {
        Dialect::MySql => {
            "table_name VARCHAR(255) PRIMARY KEY, state VARCHAR(16) NOT NULL, definitions LONGTEXT NOT NULL"
        }
        _ => "table_name TEXT PRIMARY KEY, state TEXT NOT NULL, definitions TEXT NOT NULL",
    };
    let create = format!("CREATE TABLE IF NOT EXISTS {BUILDS_TABLE} ({columns})");
    let what = "create Tern's table of deferred index builds";
    match target.dialect() {
        // A table's buckets start loading at once. PostgreSQL's IF NOT
        // EXISTS races on the table's type name (the loser fails, is retried,
        // and leaves an ERROR in the server's log): a transaction lock lets
        // one create while the others wait and then find it.
        Dialect::Postgres => {
            let lock = format!("SELECT pg_advisory_xact_lock({BUILDS_LOCK})");
            target.run_ddl(&[lock, create], what).await
        }
        _ => target.execute_ddl(&create, what).await,
    }
}

/// The advisory lock key taken while creating [`BUILDS_TABLE`] ("tern_ib").
const BUILDS_LOCK: i64 = 0x0074_6572_6e5f_6962;

/// The state recorded for `table` (`deferred`, `built` or `kept`) and its
/// index definitions (name, `CREATE INDEX …`).
async fn recorded(
    target: &Connector,
    table: &str,
) -> Result<Option<(String, Vec<(String, String)>)>> {
    let key = [("table_name", Value::Text(table.into()))];
    let context = format!("read the deferred indexes of {table}");
    let rows = target
        .select_where("state, definitions", BUILDS_TABLE, &key, "", &context)
        .await?;
    Ok(rows.into_iter().next().map(|r| {
        let mut it = r.into_iter();
        let state = it.next().map(|v| v.canonical_text()).unwrap_or_default();
        let defs = it
            .next()
            .and_then(|v| serde_json::from_str(&v.canonical_text()).ok())
            .unwrap_or_default();
        (state, defs)
    }))
}

/// At the start of a bucket's load: when `table` is empty and nothing is
/// recorded for it yet, records and drops its secondary indexes. Only for
/// PostgreSQL and MariaDB/MySQL targets; on SQLite the table keeps its indexes.
pub(crate) async fn before_load(link: &Link, table: &str) -> Result<()> {
    let target = link.target();
    if !defers(target.dialect()) {
        return Ok(());
    }
    ensure_table(target).await?;
    if recorded(target, table).await?.is_some() {
        return Ok(());
    }
    let quoted = target.dialect().quote(table);
    let (_, any) = target
        .fetch(
            &format!("SELECT 1 FROM {quoted} LIMIT 1"),
            &[],
            &format!("see whether target table {table} is empty"),
        )
        .await?;
    let defs = if any.is_empty() {
        match secondary_indexes(target, table).await {
            Ok(defs) => defs,
            // Buckets load in parallel: another bucket's load may be
            // dropping these indexes while this one reads the catalog
            // (PostgreSQL: "cache lookup failed"). It recorded them first.
            Err(e) => {
                if recorded(target, table).await?.is_some() {
                    return Ok(());
                }
                return Err(e);
            }
        }
    } else {
        Vec::new()
    };
    let state = if defs.is_empty() { "kept" } else { "deferred" };
    let json = serde_json::to_string(&defs).unwrap_or_else(|_| "[]".into());
    let insert = match target.dialect() {
        Dialect::MySql => format!(
            "INSERT IGNORE INTO {BUILDS_TABLE} (table_name, state, definitions) VALUES (?, ?, ?)"
        ),
        _ => format!(
            "INSERT INTO {BUILDS_TABLE} (table_name, state, definitions) VALUES ($1, $2, $3) \
             ON CONFLICT (table_name) DO NOTHING"
        ),
    };
    let inserted = target
        .execute(
            &insert,
            &[
                Value::Text(table.into()),
                Value::Text(state.into()),
                Value::Text(json),
            ],
            &format!("record the deferred indexes of {table}"),
        )
        .await?;
    // Only the worker whose record landed drops the indexes.
    if state == "deferred" && inserted == 1 {
        tracing::info!(
            table,
            indexes = defs.len(),
            "target table is empty: its indexes are built after the load"
        );
        for (name, _) in &defs {
            let drop = match target.dialect() {
                Dialect::MySql => format!("DROP INDEX IF EXISTS {name} ON {quoted}"),
                _ => format!("DROP INDEX IF EXISTS {name}"),
            };
            target
                .execute_ddl(
                    &drop,
                    &format!("drop index {name} of {table} until its buckets are loaded"),
                )
                .await?;
        }
    }
    Ok(())
}

/// The indexes of a table that neither are its primary key nor back a
/// constraint: name (as a statement names it) and definition.
async fn secondary_indexes(target: &Connector, table: &str) -> Result<Vec<(String, String)>> {
    if target.dialect() == Dialect::MySql {
        return mysql_secondary_indexes(target, table).await;
    }
    let (_, rows) = target
        .fetch(
            "SELECT quote_ident(n.nspname) || '.' || quote_ident(i.relname), pg_get_indexdef(i.oid) \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace \
             WHERE x.indrelid = to_regclass($1) AND NOT x.indisprimary \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid) \
             ORDER BY i.relname",
            &[Value::Text(target.dialect().quote(table))],
            &format!("read the indexes of target table {table}"),
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter().map(|v| v.canonical_text());
            Some((it.next()?, it.next()?))
        })
        .collect())
}

/// MariaDB/MySQL: the plain (non-unique) indexes of `table`, each as a
/// `CREATE … INDEX IF NOT EXISTS` with its columns, prefix lengths and
/// order. A table with foreign keys keeps every index (InnoDB needs one
/// behind each foreign key), and unique indexes are constraints: kept.
async fn mysql_secondary_indexes(target: &Connector, table: &str) -> Result<Vec<(String, String)>> {
    let d = target.dialect();
    let (schema, name) = match table.split_once('.') {
        Some((s, n)) => (Value::Text(s.into()), Value::Text(n.into())),
        None => (Value::Null, Value::Text(table.into())),
    };
    let at = "COALESCE(?, DATABASE())";
    let (_, fks) = target
        .fetch(
            &format!(
                "SELECT 1 FROM information_schema.KEY_COLUMN_USAGE WHERE TABLE_SCHEMA = {at} \
                 AND TABLE_NAME = ? AND REFERENCED_TABLE_NAME IS NOT NULL LIMIT 1"
            ),
            &[schema.clone(), name.clone()],
            &format!("read the foreign keys of target table {table}"),
        )
        .await?;
    if !fks.is_empty() {
        return Ok(Vec::new());
    }
    let (_, rows) = target
        .fetch(
            &format!(
                "SELECT INDEX_NAME, INDEX_TYPE, COLUMN_NAME, SUB_PART, COLLATION \
                 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = {at} AND TABLE_NAME = ? \
                 AND INDEX_NAME <> 'PRIMARY' AND NON_UNIQUE = 1 ORDER BY INDEX_NAME, SEQ_IN_INDEX"
            ),
            &[schema, name],
            &format!("read the indexes of target table {table}"),
        )
        .await?;
    let mut indexes: Vec<(String, String, Vec<String>)> = Vec::new();
    for row in rows {
        let text: Vec<Option<String>> = row
            .into_iter()
            .map(|v| (!matches!(v, Value::Null)).then(|| v.canonical_text()))
            .collect();
        let [Some(index), kind, Some(column), sub_part, order] = text.as_slice() else {
            continue;
        };
        let mut part = d.quote(column);
        if let Some(n) = sub_part {
            part.push_str(&format!("({n})"));
        }
        if order.as_deref() == Some("D") {
            part.push_str(" DESC");
        }
        match indexes.last_mut() {
            Some((last, _, parts)) if last == index => parts.push(part),
            _ => indexes.push((index.clone(), kind.clone().unwrap_or_default(), vec![part])),
        }
    }
    Ok(indexes
        .into_iter()
        .map(|(index, kind, parts)| {
            let head = match kind.as_str() {
                "FULLTEXT" => "CREATE FULLTEXT INDEX",
                "SPATIAL" => "CREATE SPATIAL INDEX",
                _ => "CREATE INDEX",
            };
            let quoted = d.quote(&index);
            let def = format!(
                "{head} IF NOT EXISTS {quoted} ON {} ({})",
                d.quote(table),
                parts.join(", ")
            );
            (quoted, def)
        })
        .collect())
}

/// After a bucket's load: builds the deferred indexes of `table` when every
/// bucket of its plan is loaded.
pub(crate) async fn after_bucket(link: &Link, table: &str, control: &RunControl) -> Result<()> {
    if !defers(link.target().dialect()) {
        return Ok(());
    }
    let Some(plan) = link.stored_plan(table).await? else {
        return Ok(());
    };
    let checkpoints = link.checkpoints(table).await?;
    let all_done = plan
        .buckets
        .iter()
        .all(|b| checkpoints.iter().any(|c| c.bucket == b.index && c.done));
    if all_done {
        build_deferred(link, table, control).await?;
    }
    Ok(())
}

/// Builds the indexes of `table` deferred by its load, one step each with
/// its own progress; `None` when none are deferred. Whatever needs them
/// (the catch-up's deletes) calls this first.
pub async fn build_deferred(
    link: &Link,
    table: &str,
    control: &RunControl,
) -> Result<Option<IndexReport>> {
    let target = link.target();
    if !defers(target.dialect()) {
        return Ok(None);
    }
    ensure_table(target).await?;
    let Some((state, defs)) = recorded(target, table).await? else {
        return Ok(None);
    };
    if state != "deferred" {
        return Ok(None);
    }
    let started = Instant::now();
    let mut progress = Progress::new(
        Task::IndexBuild {
            table: table.to_string(),
        },
        Unit::Indexes,
    );
    let total = defs.len() as u64;
    let mut built = Vec::new();
    for (i, (name, def)) in defs.iter().enumerate() {
        progress.note = Some(format!("building {name}"));
        progress.measure(i as u64, i as u64, Some(total), started.elapsed());
        control.report(&progress);
        let what = format!("build index {name} of {table} after its load");
        match target.dialect() {
            // The table's last two buckets may finish at once and both get
            // here. PostgreSQL would build the index twice side by side (the
            // second then fails on the catalog's unique name): a transaction
            // lock per table lets one build while the other waits and then
            // finds it. (MariaDB queues two ALTERs of a table by itself.)
            Dialect::Postgres => {
                let lock = format!("SELECT pg_advisory_xact_lock({})", build_lock(table));
                target.run_ddl(&[lock, if_not_exists(def)], &what).await?
            }
            _ => target.execute_ddl(&if_not_exists(def), &what).await?,
        }
        built.push(name.clone());
        progress.steps += 1;
    }
    // Fresh statistics too: the planner has not seen the loaded rows yet,
    // and would scan the table instead of using the indexes just built.
    let quoted = target.dialect().quote(table);
    let why = format!("analyze {table} after its load");
    match target.dialect() {
        // MariaDB answers ANALYZE TABLE with a status row: read, not executed.
        Dialect::MySql => {
            target
                .fetch(&format!("ANALYZE TABLE {quoted}"), &[], &why)
                .await?;
        }
        _ => {
            target
                .execute_ddl(&format!("ANALYZE {quoted}"), &why)
                .await?
        }
    }
    target
        .update_where(
            BUILDS_TABLE,
            &[("state", Value::Text("built".into()))],
            &[("table_name", Value::Text(table.into()))],
            "",
            &format!("record the indexes of {table} built"),
        )
        .await?;
    progress.note = Some(format!("{} indexes built", built.len()));
    progress.measure(total, total, Some(total), started.elapsed());
    control.report(&progress);
    tracing::info!(
        table,
        indexes = built.len(),
        seconds = started.elapsed().as_secs_f64(),
        "indexes built after the load"
    );
    Ok(Some(IndexReport {
        table: table.to_string(),
        built,
        elapsed: started.elapsed(),
    }))
}

/// The advisory lock key under which `table`'s deferred indexes are built:
/// [`BUILDS_LOCK`] mixed with the table name (FNV-1a), the same in every
/// process.
fn build_lock(table: &str) -> i64 {
    let hash = table.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    BUILDS_LOCK ^ (hash as i64)
}

/// `CREATE [UNIQUE] INDEX name …` as `CREATE [UNIQUE] INDEX IF NOT EXISTS name …`.
fn if_not_exists(def: &str) -> String {
    for head in ["CREATE UNIQUE INDEX ", "CREATE INDEX "] {
        if let Some(rest) = def.strip_prefix(head)
            && !rest.starts_with("IF NOT EXISTS")
        {
            return format!("{head}IF NOT EXISTS {rest}");
        }
    }
    def.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_table_builds_under_a_lock_of_its_own() {
        assert_eq!(build_lock("messages"), build_lock("messages"));
        assert_ne!(build_lock("messages"), build_lock("members"));
        assert_ne!(build_lock("messages"), BUILDS_LOCK);
    }

    #[test]
    fn definitions_become_idempotent() {
        assert_eq!(
            if_not_exists("CREATE INDEX m_member ON public.m USING btree (member_id)"),
            "CREATE INDEX IF NOT EXISTS m_member ON public.m USING btree (member_id)"
        );
        assert_eq!(
            if_not_exists("CREATE UNIQUE INDEX u ON public.m USING btree (a)"),
            "CREATE UNIQUE INDEX IF NOT EXISTS u ON public.m USING btree (a)"
        );
    }
}
