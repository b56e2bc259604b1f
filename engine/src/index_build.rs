//! Indexes after the load: what pgloader and `pg_dump` do, for a target
//! table that is empty when its first bucket starts loading.
//!
//! Why: every secondary index costs a random write per row while rows
//! arrive, and builds far faster in one sorted pass once they are all there.
//! So when a PostgreSQL target table has no rows at the start of a
//! migration's load, [`before_load`] records its other indexes (all but the
//! primary key and constraint indexes, which the version-guarded upsert and
//! the constraints themselves need) in `_tern_index_builds` in the target,
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

async fn ensure_table(target: &Connector) -> Result<()> {
    target
        .execute_ddl(
            &format!(
                "CREATE TABLE IF NOT EXISTS {BUILDS_TABLE} (table_name TEXT PRIMARY KEY, \
                 state TEXT NOT NULL, definitions TEXT NOT NULL)"
            ),
            "create Tern's table of deferred index builds",
        )
        .await
}

/// The state recorded for `table` (`deferred`, `built` or `kept`) and its
/// index definitions (name, `CREATE INDEX …`).
async fn recorded(
    target: &Connector,
    table: &str,
) -> Result<Option<(String, Vec<(String, String)>)>> {
    let (_, rows) = target
        .fetch(
            &format!("SELECT state, definitions FROM {BUILDS_TABLE} WHERE table_name = $1"),
            &[Value::Text(table.into())],
            &format!("read the deferred indexes of {table}"),
        )
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
/// PostgreSQL targets; elsewhere the table keeps its indexes.
pub(crate) async fn before_load(link: &Link, table: &str) -> Result<()> {
    let target = link.target();
    if target.dialect() != Dialect::Postgres {
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
    let inserted = target
        .execute(
            &format!(
                "INSERT INTO {BUILDS_TABLE} (table_name, state, definitions) VALUES ($1, $2, $3) \
                 ON CONFLICT (table_name) DO NOTHING"
            ),
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
            target
                .execute_ddl(
                    &format!("DROP INDEX IF EXISTS {name}"),
                    &format!("drop index {name} of {table} until its buckets are loaded"),
                )
                .await?;
        }
    }
    Ok(())
}

/// The indexes of a PostgreSQL table that neither are its primary key nor
/// back a constraint: schema-qualified name and definition.
async fn secondary_indexes(target: &Connector, table: &str) -> Result<Vec<(String, String)>> {
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

/// After a bucket's load: builds the deferred indexes of `table` when every
/// bucket of its plan is loaded.
pub(crate) async fn after_bucket(link: &Link, table: &str, control: &RunControl) -> Result<()> {
    if link.target().dialect() != Dialect::Postgres {
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
    if target.dialect() != Dialect::Postgres {
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
        target
            .execute_ddl(
                &if_not_exists(def),
                &format!("build index {name} of {table} after its load"),
            )
            .await?;
        built.push(name.clone());
        progress.steps += 1;
    }
    // Fresh statistics too: the planner has not seen the loaded rows yet,
    // and would scan the table instead of using the indexes just built.
    target
        .execute_ddl(
            &format!("ANALYZE {}", target.dialect().quote(table)),
            &format!("analyze {table} after its load"),
        )
        .await?;
    target
        .execute(
            &format!("UPDATE {BUILDS_TABLE} SET state = 'built' WHERE table_name = $1"),
            &[Value::Text(table.into())],
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
