//! Track queries: how a spec says which records of a table a change of
//! another table touches (`[[tables.source.tracks]] query = "SELECT member_id,
//! id FROM inbox WHERE thread_id = :thread_id"`). Their `:name` placeholders
//! are the columns change capture must record for the changed table, and are
//! bound to the changed row's values when a change is mapped to keys. Kept
//! apart from everything that runs them, so that capture (which only needs
//! the names) does not depend on the apply path.

use crate::connector::Dialect;
use crate::transform::Record;
use crate::value::Value;

/// The `:name` placeholders of a track query, in order of appearance (the
/// columns change capture must record for it).
pub(crate) fn placeholders(sql: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = sql.chars().peekable();
    let mut prev = ' ';
    while let Some(c) = chars.next() {
        let next_is_ident = chars
            .peek()
            .is_some_and(|n| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && next_is_ident && prev != ':' {
            let mut name = String::new();
            while let Some(&n) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            if !names.contains(&name) {
                names.push(name);
            }
            prev = 'x';
        } else {
            prev = c;
        }
    }
    names
}

/// `:name` placeholders of a track query → the dialect's placeholders and
/// the changed row's values.
pub(crate) fn bind_named(
    sql: &str,
    row: &Record<'_>,
    d: Dialect,
) -> std::result::Result<(String, Vec<Value>), String> {
    let mut out = String::with_capacity(sql.len());
    let mut params = Vec::new();
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        let next_is_ident = chars
            .peek()
            .is_some_and(|(_, n)| n.is_ascii_alphabetic() || *n == '_');
        if c == ':' && next_is_ident && !out.ends_with(':') {
            let mut name = String::new();
            while let Some(&(_, n)) = chars.peek() {
                if n.is_ascii_alphanumeric() || n == '_' {
                    name.push(n);
                    chars.next();
                } else {
                    break;
                }
            }
            let v = row
                .get(&name)
                .ok_or_else(|| format!("the changed row has no column {name}"))?;
            params.push(v.clone());
            out.push_str(&d.placeholder(params.len()));
        } else {
            out.push(c);
        }
    }
    Ok((out, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_listed_once_and_casts_are_not_placeholders() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE x = :id AND y::text = :name OR z = :id"),
            vec!["id".to_string(), "name".to_string()]
        );
    }

    #[test]
    fn track_queries_take_named_values_from_the_changed_row() -> std::result::Result<(), String> {
        let cols = vec!["id".to_string(), "thread_id".to_string()];
        let vals = vec![Value::Int(1), Value::Int(9)];
        let row = Record {
            columns: &cols,
            values: &vals,
        };
        let (sql, params) = bind_named(
            "SELECT member_id, id FROM inbox WHERE thread_id = :thread_id AND x::text = 'a'",
            &row,
            Dialect::Postgres,
        )?;
        assert_eq!(
            sql,
            "SELECT member_id, id FROM inbox WHERE thread_id = $1 AND x::text = 'a'"
        );
        assert_eq!(params, vec![Value::Int(9)]);
        Ok(())
    }
}
