//! Tombstones: the target's memory of deletions. When the apply path deletes
//! the rows of a source key the source no longer has, it records the key and
//! the version (source clock) the deletion was read at in `_tern_tombstones`;
//! rows it has just upserted that are older than a tombstone are deleted
//! again in the same transaction. Two relays applying the same key (one
//! reading the record just before its deletion and writing just after the
//! other deleted it) therefore cannot bring a deleted record back.
//! Tombstones older than the changelog's retention are pruned: no write read
//! that long ago is still on its way.

use crate::connector::{Connector, Dialect, SOURCE_KEY_COLUMN, Statement, VERSION_COLUMN};
use crate::error::Result;
use crate::value::Value;

/// Where deletions are remembered in the target, with the version they were
/// read at.
pub const TOMBSTONE_TABLE: &str = "_tern_tombstones";

/// Source keys per statement.
const KEYS_PER_STATEMENT: usize = 1000;
/// Keys per statement checking tombstones of rows found by their target key
/// (one condition per key).
const KEYS_PER_CHECK: usize = 250;

/// How the statements find the target rows a source key wrote.
#[derive(Debug, Clone, Copy)]
pub(super) struct RowsOf<'a> {
    pub table: &'a str,
    /// The target key columns, for a table whose key is a plain copy of the
    /// source key and that has no hidden source key column; `None`: by the
    /// `_tern_source_key` column.
    pub key: Option<&'a [String]>,
}

/// A source key as the statements use it: its text (what tombstones and
/// the hidden column hold) and, for a table found by key, its target key.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct KeyRef {
    pub text: String,
    pub target: Option<Vec<Value>>,
}

impl RowsOf<'_> {
    /// `<rows of these keys>` with its parameters appended to `params`.
    fn matching(&self, d: Dialect, keys: &[KeyRef], params: &mut Vec<Value>) -> String {
        match self.key {
            Some(cols) => {
                let cols: Vec<String> = cols.iter().map(|c| d.quote(c)).collect();
                let targets: Vec<Vec<Value>> =
                    keys.iter().filter_map(|k| k.target.clone()).collect();
                d.keys_in(&cols, &targets, params)
            }
            None => {
                let from = params.len() + 1;
                params.extend(keys.iter().map(|k| Value::Text(k.text.clone())));
                format!(
                    "{} IN ({})",
                    d.quote(SOURCE_KEY_COLUMN),
                    marks(d, from, keys.len())
                )
            }
        }
    }
}

/// Creates the tombstone table if it is missing.
pub(crate) async fn ensure(target: &Connector) -> Result<()> {
    let d = target.dialect();
    let (name, key) = if d == Dialect::MySql {
        ("VARCHAR(128)", "VARCHAR(512)")
    } else {
        ("TEXT", "TEXT")
    };
    let sql = format!(
        "CREATE TABLE IF NOT EXISTS {} (table_name {name} NOT NULL, source_key {key} NOT NULL, \
         version BIGINT NOT NULL, PRIMARY KEY (table_name, source_key))",
        d.quote(TOMBSTONE_TABLE)
    );
    // Several workers prepare the same target at once: retried like the
    // other tables' creation.
    target.execute_ddl(&sql, "create the tombstone table").await
}

/// Deletes tombstones read before `version`: no write read that long ago
/// is still on its way.
pub(crate) async fn prune(target: &Connector, version: i64) -> Result<u64> {
    let d = target.dialect();
    target
        .execute(
            &format!(
                "DELETE FROM {} WHERE version < {}",
                d.quote(TOMBSTONE_TABLE),
                d.placeholder(1)
            ),
            &[Value::Int(version)],
            "prune old tombstones",
        )
        .await
}

fn marks(d: Dialect, from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| d.placeholder(i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statements deleting the rows of deleted source keys and leaving tombstones.
pub(super) fn delete_statements(
    d: Dialect,
    rows: RowsOf<'_>,
    keys: &[KeyRef],
    version: i64,
) -> Vec<Statement> {
    let tb = d.quote(TOMBSTONE_TABLE);
    let table = rows.table;
    let mut out = Vec::new();
    for batch in keys.chunks(KEYS_PER_STATEMENT) {
        out.extend(release_statements(d, rows, batch, version));
        let rows: Vec<String> = (0..batch.len())
            .map(|i| format!("({})", marks(d, i * 3 + 1, 3)))
            .collect();
        let conflict = match d {
            Dialect::MySql => "ON DUPLICATE KEY UPDATE version = GREATEST(version, VALUES(version))"
                .to_string(),
            Dialect::Postgres => format!(
                "ON CONFLICT (table_name, source_key) DO UPDATE SET version = GREATEST({tb}.version, EXCLUDED.version)"
            ),
            Dialect::Sqlite => "ON CONFLICT (table_name, source_key) DO UPDATE SET version = MAX(version, excluded.version)"
                .to_string(),
        };
        out.push(Statement {
            sql: format!(
                "INSERT INTO {tb} (table_name, source_key, version) VALUES {} {conflict}",
                rows.join(", ")
            ),
            params: batch
                .iter()
                .flat_map(|k| {
                    [
                        Value::Text(table.to_string()),
                        Value::Text(k.text.clone()),
                        Value::Int(version),
                    ]
                })
                .collect(),
            expect_rows: None,
        });
    }
    out
}

/// Statements deleting the rows that records still in the source owned
/// and were not rewritten by this batch (older than `version`): a record
/// moved to another shared row, or no longer its group's pick, gives its
/// old row up. Rows just written carry `version` and stay.
pub(super) fn release_statements(
    d: Dialect,
    rows: RowsOf<'_>,
    keys: &[KeyRef],
    version: i64,
) -> Vec<Statement> {
    let t = d.quote(rows.table);
    let v = d.quote(VERSION_COLUMN);
    keys.chunks(KEYS_PER_STATEMENT)
        .map(|batch| {
            let mut params = Vec::with_capacity(batch.len() + 1);
            let cond = rows.matching(d, batch, &mut params);
            params.push(Value::Int(version));
            Statement {
                sql: format!(
                    "DELETE FROM {t} WHERE {cond} AND {v} < {}",
                    d.placeholder(params.len())
                ),
                params,
                expect_rows: None,
            }
        })
        .collect()
}

/// Statements deleting rows just written that a newer deletion (another
/// relay's tombstone) has already removed.
pub(super) fn stale_statements(d: Dialect, rows: RowsOf<'_>, keys: &[KeyRef]) -> Vec<Statement> {
    let t = d.quote(rows.table);
    let v = d.quote(VERSION_COLUMN);
    let tb = d.quote(TOMBSTONE_TABLE);
    let Some(cols) = rows.key else {
        let sk = d.quote(SOURCE_KEY_COLUMN);
        return keys
            .chunks(KEYS_PER_STATEMENT)
            .map(|batch| {
                let mut params = Vec::with_capacity(batch.len() + 1);
                let cond = rows.matching(d, batch, &mut params);
                params.push(Value::Text(rows.table.to_string()));
                Statement {
                    sql: format!(
                        "DELETE FROM {t} WHERE {cond} AND EXISTS (SELECT 1 FROM {tb} tb \
                         WHERE tb.table_name = {} AND tb.source_key = {t}.{sk} AND tb.version > {t}.{v})",
                        d.placeholder(params.len())
                    ),
                    params,
                    expect_rows: None,
                }
            })
            .collect();
    };
    // Without the hidden column the row does not say its source key's text:
    // each key's row is matched with its own tombstone.
    let cols: Vec<String> = cols.iter().map(|c| d.quote(c)).collect();
    keys.chunks(KEYS_PER_CHECK)
        .map(|batch| {
            let mut params = Vec::with_capacity(batch.len() * (cols.len() + 2));
            let mut each = Vec::with_capacity(batch.len());
            for k in batch {
                let Some(target) = &k.target else { continue };
                let mut conds: Vec<String> = Vec::with_capacity(cols.len() + 1);
                for (c, val) in cols.iter().zip(target) {
                    params.push(val.clone());
                    conds.push(format!("{t}.{c} = {}", d.placeholder(params.len())));
                }
                params.push(Value::Text(rows.table.to_string()));
                params.push(Value::Text(k.text.clone()));
                conds.push(format!(
                    "EXISTS (SELECT 1 FROM {tb} tb WHERE tb.table_name = {} AND tb.source_key = {} \
                     AND tb.version > {t}.{v})",
                    d.placeholder(params.len() - 1),
                    d.placeholder(params.len())
                ));
                each.push(format!("({})", conds.join(" AND ")));
            }
            if each.is_empty() {
                each.push("1 = 0".into());
            }
            Statement {
                sql: format!("DELETE FROM {t} WHERE {}", each.join(" OR ")),
                params,
                expect_rows: None,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn by_column(keys: &[&str]) -> Vec<KeyRef> {
        keys.iter()
            .map(|k| KeyRef {
                text: (*k).to_string(),
                target: None,
            })
            .collect()
    }

    const ITEMS: RowsOf<'static> = RowsOf {
        table: "items",
        key: None,
    };

    #[test]
    fn deletions_are_version_guarded_and_leave_tombstones() {
        let s = delete_statements(Dialect::Postgres, ITEMS, &by_column(&["1", "2"]), 77);
        assert_eq!(s.len(), 2);
        assert_eq!(
            s[0].sql,
            "DELETE FROM \"items\" WHERE \"_tern_source_key\" IN ($1, $2) AND \"_tern_version\" < $3"
        );
        assert_eq!(s[0].params.last(), Some(&Value::Int(77)));
        assert!(s[1].sql.starts_with(
            "INSERT INTO \"_tern_tombstones\" (table_name, source_key, version) VALUES ($1, $2, $3), ($4, $5, $6) ON CONFLICT"
        ));
    }

    #[test]
    fn rows_older_than_a_tombstone_are_deleted_again() {
        let s = stale_statements(Dialect::MySql, ITEMS, &by_column(&["5"]));
        assert_eq!(
            s[0].sql,
            "DELETE FROM `items` WHERE `_tern_source_key` IN (?) AND EXISTS (SELECT 1 FROM `_tern_tombstones` tb \
             WHERE tb.table_name = ? AND tb.source_key = `items`.`_tern_source_key` AND tb.version > `items`.`_tern_version`)"
        );
    }

    #[test]
    fn rows_of_a_plain_copied_key_are_found_by_it() {
        let cols = ["id".to_string()];
        let rows = RowsOf {
            table: "items",
            key: Some(&cols),
        };
        let keys = vec![
            KeyRef {
                text: "5".into(),
                target: Some(vec![Value::Int(5)]),
            },
            KeyRef {
                text: "6".into(),
                target: Some(vec![Value::Int(6)]),
            },
        ];
        let s = delete_statements(Dialect::Postgres, rows, &keys, 9);
        assert_eq!(
            s[0].sql,
            "DELETE FROM \"items\" WHERE \"id\" IN ($1, $2) AND \"_tern_version\" < $3"
        );
        assert_eq!(s[0].params, [Value::Int(5), Value::Int(6), Value::Int(9)]);
        let s = stale_statements(Dialect::Postgres, rows, &keys[..1]);
        assert_eq!(
            s[0].sql,
            "DELETE FROM \"items\" WHERE (\"items\".\"id\" = $1 AND EXISTS (SELECT 1 FROM \"_tern_tombstones\" tb \
             WHERE tb.table_name = $2 AND tb.source_key = $3 AND tb.version > \"items\".\"_tern_version\"))"
        );
        assert_eq!(
            s[0].params,
            [
                Value::Int(5),
                Value::Text("items".into()),
                Value::Text("5".into())
            ]
        );
    }
}
