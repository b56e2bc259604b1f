//! The unique keys of a table, read from the database's catalog: its
//! primary key and every unique index on plain columns (no expression, no
//! partial index), each as its columns. The reverse relay upserts the old
//! table by the reverse key, which only works when one of these is exactly
//! that key: without it an upsert inserts a second row where it should
//! replace one.

use crate::connector::{Connector, Dialect};
use crate::error::Result;
use crate::value::Value;

impl Connector {
    /// The table's unique keys (primary key and unique indexes on plain
    /// columns), each as its column names in index order; empty when there
    /// is none (or no such table).
    pub async fn unique_keys(&self, table: &str) -> Result<Vec<Vec<String>>> {
        let d = self.dialect();
        let (sql, params) = match d {
            // Expression indexes (an attnum of 0) and partial ones do not
            // make the columns unique.
            Dialect::Postgres => (
                "SELECT i.indexrelid::text, a.attname::text
                 FROM pg_index i
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n)
                 JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = to_regclass($1) AND i.indisunique AND i.indpred IS NULL
                   AND NOT (0 = ANY(i.indkey::int2[]))
                 ORDER BY i.indexrelid, k.n"
                    .to_string(),
                vec![Value::Text(d.quote(table))],
            ),
            Dialect::MySql => (
                "SELECT CAST(index_name AS CHAR), CAST(column_name AS CHAR)
                 FROM information_schema.statistics
                 WHERE table_schema = DATABASE() AND table_name = ? AND non_unique = 0
                   AND column_name IS NOT NULL
                 ORDER BY index_name, seq_in_index"
                    .to_string(),
                vec![Value::Text(table.to_string())],
            ),
            // An `INTEGER PRIMARY KEY` is the rowid and has no index: the
            // primary key comes from the table's columns.
            Dialect::Sqlite => (
                "SELECT '(primary key)', name FROM pragma_table_info(?1) WHERE pk > 0
                 UNION ALL
                 SELECT il.name, ii.name FROM pragma_index_list(?1) AS il
                 JOIN pragma_index_info(il.name) AS ii
                 WHERE il.\"unique\" = 1 AND il.partial = 0"
                    .to_string(),
                vec![Value::Text(table.to_string())],
            ),
        };
        let (_, rows) = self
            .fetch(&sql, &params, &format!("read the unique keys of {table}"))
            .await?;
        let text = |v: Option<&Value>| match v {
            Some(Value::Text(s)) => Some(s.clone()),
            _ => None,
        };
        let mut keys: Vec<(String, Vec<String>)> = Vec::new();
        for r in &rows {
            let (Some(index), Some(column)) = (text(r.first()), text(r.get(1))) else {
                continue;
            };
            match keys.iter_mut().find(|(i, _)| *i == index) {
                Some((_, cols)) => cols.push(column),
                None => keys.push((index, vec![column])),
            }
        }
        Ok(keys.into_iter().map(|(_, cols)| cols).collect())
    }
}

/// Whether `key` is exactly one of `unique` (as a set: the order of an
/// index's columns does not change what it makes unique).
pub fn is_unique_key(unique: &[Vec<String>], key: &[String]) -> bool {
    let mut want: Vec<&str> = key.iter().map(String::as_str).collect();
    want.sort_unstable();
    unique.iter().any(|cols| {
        let mut have: Vec<&str> = cols.iter().map(String::as_str).collect();
        have.sort_unstable();
        have.dedup();
        have == want
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_unique_when_a_unique_index_has_exactly_its_columns() {
        let keys = vec![
            vec!["id".to_string()],
            vec!["member_id".to_string(), "email".to_string()],
        ];
        let key = |k: &[&str]| k.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_unique_key(&keys, &key(&["id"])));
        assert!(is_unique_key(&keys, &key(&["email", "member_id"])));
        assert!(!is_unique_key(&keys, &key(&["member_id"])));
        assert!(!is_unique_key(&keys, &key(&["member_id", "id"])));
        assert!(!is_unique_key(&[], &key(&["id"])));
    }
}
