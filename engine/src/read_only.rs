//! The end of a migration on the old store: its tables refuse every write
//! (a trigger per table that raises), so a forgotten writer fails loudly
//! instead of writing where nobody reads; and, on request, Tern's own
//! `_tern_*` columns leave the new store's tables.
//!
//! The triggers are named `tern_read_only_*`, apart from the capture
//! objects (`_tern_capture*`), so removing capture leaves them in place.

use crate::connector::{Connector, Dialect};
use crate::error::Result;
/// The prefix of every column and table Tern adds.
const RESERVED_PREFIX: &str = "_tern_";

fn trigger_name(table: &str, op: &str) -> String {
    let safe: String = table
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("tern_read_only_{safe}_{op}")
}

/// Makes `table` refuse inserts, updates and deletes. Idempotent.
pub async fn protect(conn: &Connector, table: &str) -> Result<()> {
    let d = conn.dialect();
    let t = d.quote(table);
    let message = format!(
        "{table} is read-only: the migration moved its data to the new store (Tern decommission)"
    )
    .replace('\'', "");
    let mut sql = Vec::new();
    match d {
        Dialect::Postgres => {
            sql.push(
                "CREATE OR REPLACE FUNCTION tern_read_only() RETURNS trigger LANGUAGE plpgsql AS $f$ \
                 BEGIN RAISE EXCEPTION '% is read-only: the migration moved its data to the new store (Tern decommission)', TG_TABLE_NAME; END $f$"
                    .to_string(),
            );
            let name = d.quote(&trigger_name(table, "write"));
            sql.push(format!("DROP TRIGGER IF EXISTS {name} ON {t}"));
            sql.push(format!(
                "CREATE TRIGGER {name} BEFORE INSERT OR UPDATE OR DELETE ON {t} \
                 FOR EACH ROW EXECUTE FUNCTION tern_read_only()"
            ));
        }
        Dialect::MySql => {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                let name = d.quote(&trigger_name(table, &op.to_ascii_lowercase()));
                sql.push(format!("DROP TRIGGER IF EXISTS {name}"));
                sql.push(format!(
                    "CREATE TRIGGER {name} BEFORE {op} ON {t} FOR EACH ROW \
                     SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = '{message}'"
                ));
            }
        }
        Dialect::Sqlite => {
            for op in ["INSERT", "UPDATE", "DELETE"] {
                let name = d.quote(&trigger_name(table, &op.to_ascii_lowercase()));
                sql.push(format!("DROP TRIGGER IF EXISTS {name}"));
                sql.push(format!(
                    "CREATE TRIGGER {name} BEFORE {op} ON {t} BEGIN SELECT RAISE(ABORT, '{message}'); END"
                ));
            }
        }
    }
    for s in &sql {
        conn.execute_ddl(s, &format!("make {table} read-only"))
            .await?;
    }
    tracing::info!(table, "table is read-only");
    Ok(())
}

/// Drops the `_tern_*` columns of `table` and answers their names.
pub async fn drop_tern_columns(conn: &Connector, table: &str) -> Result<Vec<String>> {
    let Some(cols) = conn.table_columns(table).await? else {
        return Ok(Vec::new());
    };
    let d = conn.dialect();
    let mut dropped = Vec::new();
    let ours: Vec<String> = cols
        .into_iter()
        .map(|c| c.name)
        .filter(|n| n.starts_with(RESERVED_PREFIX))
        .collect();
    for name in ours {
        let sql = format!(
            "ALTER TABLE {} DROP COLUMN {}",
            d.quote(table),
            d.quote(&name)
        );
        conn.execute_ddl(&sql, &format!("drop Tern's column {name} of {table}"))
            .await?;
        dropped.push(name);
    }
    Ok(dropped)
}
