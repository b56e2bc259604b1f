//! The SQL dialect of a database: how it quotes names, marks parameters
//! and lists keys.

use crate::value::Value;

/// The SQL dialect of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    /// The dialect a URL's scheme names.
    pub fn of_url(url: &str) -> Option<Dialect> {
        let scheme = url.split(':').next()?.to_ascii_lowercase();
        match scheme.as_str() {
            "postgres" | "postgresql" => Some(Dialect::Postgres),
            "mysql" | "mariadb" => Some(Dialect::MySql),
            "sqlite" => Some(Dialect::Sqlite),
            _ => None,
        }
    }

    /// Quotes an identifier (each part of `schema.table`). Names are checked
    /// to be plain identifiers when the spec is parsed.
    pub fn quote(self, name: &str) -> String {
        let q = if self == Dialect::MySql { '`' } else { '"' };
        name.split('.')
            .map(|p| format!("{q}{p}{q}"))
            .collect::<Vec<_>>()
            .join(".")
    }

    /// The column type of a text of any length, for the engine's own tables
    /// (MySQL's `TEXT` holds only 64 KiB).
    pub fn long_text(self) -> &'static str {
        match self {
            Dialect::MySql => "LONGTEXT",
            _ => "TEXT",
        }
    }

    /// The placeholder for the `n`-th (1-based) parameter.
    pub fn placeholder(self, n: usize) -> String {
        match self {
            Dialect::Postgres => format!("${n}"),
            _ => "?".to_string(),
        }
    }

    /// `cols IN (…)` for a list of keys (one value per column each, in
    /// order), pushing their parameters after those already in `params`: a
    /// plain `IN` for one column, a row-value `IN` for several. Never an
    /// `OR` of `AND`s: SQLite refuses one over a thousand keys ("Expression
    /// tree is too large (maximum depth 1000)"); its row-value `IN` takes a
    /// `VALUES` list, PostgreSQL and MySQL/MariaDB a list of rows. Callers
    /// keep a list under the parameter limits (1000 keys per statement).
    pub fn keys_in(self, cols: &[String], keys: &[Vec<Value>], params: &mut Vec<Value>) -> String {
        let mut rows = Vec::with_capacity(keys.len());
        for k in keys {
            let marks: Vec<String> = k
                .iter()
                .take(cols.len())
                .map(|v| {
                    params.push(v.clone());
                    self.placeholder(params.len())
                })
                .collect();
            rows.push(if cols.len() == 1 {
                marks.join("")
            } else {
                format!("({})", marks.join(", "))
            });
        }
        if rows.is_empty() {
            // `IN ()` is not SQL; no key matches nothing.
            return "1 = 0".to_string();
        }
        match (cols, self) {
            ([col], _) => format!("{col} IN ({})", rows.join(", ")),
            (_, Dialect::Sqlite) => {
                format!("({}) IN (VALUES {})", cols.join(", "), rows.join(", "))
            }
            _ => format!("({}) IN ({})", cols.join(", "), rows.join(", ")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::MySql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_are_one_flat_in_on_every_dialect() {
        let cols = ["\"a\"".to_string(), "\"b\"".to_string()];
        let keys = vec![
            vec![Value::Int(1), Value::Int(2)],
            vec![Value::Int(3), Value::Int(4)],
        ];
        let mut params = vec![Value::Int(0)];
        assert_eq!(
            Dialect::Postgres.keys_in(&cols, &keys, &mut params),
            "(\"a\", \"b\") IN (($2, $3), ($4, $5))"
        );
        assert_eq!(params.len(), 5);
        assert_eq!(
            Dialect::Sqlite.keys_in(&cols, &keys, &mut Vec::new()),
            "(\"a\", \"b\") IN (VALUES (?, ?), (?, ?))"
        );
        assert_eq!(
            Dialect::MySql.keys_in(&cols[..1], &keys, &mut Vec::new()),
            "\"a\" IN (?, ?)"
        );
        assert_eq!(Dialect::MySql.keys_in(&cols, &[], &mut Vec::new()), "1 = 0");
    }

    #[test]
    fn quotes_each_part_of_a_qualified_name() {
        assert_eq!(Dialect::Postgres.quote("s.t"), "\"s\".\"t\"");
        assert_eq!(Dialect::MySql.quote("t"), "`t`");
    }
}
