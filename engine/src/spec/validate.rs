//! Checks a parsed spec for everything that needs no database: names are
//! identifiers, keys name columns, every column gets a value, the dedupe key
//! exists. Each error names the line and the field.

use std::collections::HashSet;

use super::{ColumnSpec, Spec, TableSpec, Transform};
use crate::error::Result;

/// Reserved prefix for the engine's own columns and tables.
pub const RESERVED_PREFIX: &str = "_tern_";

pub(super) fn validate(spec: &Spec) -> Result<()> {
    if spec.tables.is_empty() {
        return Err(spec.error_at(1, "tables", "the spec has no [[tables]]"));
    }
    let mut names = HashSet::new();
    for t in &spec.tables {
        if !names.insert(t.name.as_str()) {
            return Err(spec.error_at(
                t.line,
                &t.field(),
                "a table of this name is already declared",
            ));
        }
        validate_table(spec, t)?;
    }
    for url in [&spec.source.url, &spec.target.url] {
        if crate::connector::Dialect::of_url(url).is_none() {
            return Err(spec.error_at(
                1,
                "source/target.url",
                format!(
                    "`{}` is not a postgres://, mysql:// or sqlite:// URL",
                    crate::connector::redact(url)
                ),
            ));
        }
    }
    Ok(())
}

fn validate_table(spec: &Spec, t: &TableSpec) -> Result<()> {
    let field = t.field();
    check_identifier(&t.name, true)
        .map_err(|m| spec.error_at(t.line, &format!("{field}.name"), m))?;
    if t.columns.is_empty() {
        return Err(spec.error_at(
            t.line,
            &format!("{field}.columns"),
            "the table has no columns",
        ));
    }
    let mut seen = HashSet::new();
    for c in &t.columns {
        let cf = format!("{field}.columns.{}", c.name);
        check_column_name(spec, c, &cf, &mut seen)?;
        match &c.transform {
            Transform::Slot if t.source.is_some() && t.transformers.is_empty() => {
                return Err(spec.error_at(
                    c.line,
                    &cf,
                    "the column gets no value: give `from`, `constant`, `json`, `uuid5` or `expr` (or list a transformer that fills it)",
                ));
            }
            Transform::Copy(_)
            | Transform::Json(_)
            | Transform::Uuid5 { .. }
            | Transform::Expr(_)
                if t.source.is_none() =>
            {
                return Err(spec.error_at(
                    c.line,
                    &cf,
                    "the table has no source, so its columns can only be slots ({ cast = \"type\" }) filled by transformers, or constants",
                ));
            }
            Transform::Uuid5 { from, .. } if from.is_empty() => {
                return Err(spec.error_at(c.line, &cf, "`uuid5` needs at least one source field"));
            }
            _ => {}
        }
    }
    if t.key.is_empty() {
        return Err(spec.error_at(t.line, &format!("{field}.key"), "the key names no column"));
    }
    for k in &t.key {
        if t.column(k).is_none() {
            return Err(spec.error_at(
                t.line,
                &format!("{field}.key"),
                format!("key column `{k}` is not one of the table's columns"),
            ));
        }
    }
    if let Some(d) = &t.dedupe {
        for k in &d.key {
            if t.column(k).is_none() {
                return Err(spec.error_at(
                    d.line,
                    &format!("{field}.dedupe.key"),
                    format!("dedupe column `{k}` is not one of the table's columns"),
                ));
            }
        }
    }
    if let Some(s) = &t.source {
        let sf = format!("{field}.source");
        if let super::Relation::Table(name) = &s.relation {
            check_identifier(name, true)
                .map_err(|m| spec.error_at(s.line, &format!("{sf}.table"), m))?;
        }
        if s.key.is_empty() {
            return Err(spec.error_at(
                s.line,
                &format!("{sf}.key"),
                "the source key names no column",
            ));
        }
        for k in s.key.iter().chain(std::iter::once(&s.bucket)) {
            check_identifier(k, false).map_err(|m| spec.error_at(s.line, &sf, m))?;
        }
    }
    Ok(())
}

/// A column's name (`cf` its field) is a plain identifier, not the
/// engine's own and not one `seen` before in its list.
pub(super) fn check_column_name<'a>(
    spec: &Spec,
    c: &'a ColumnSpec,
    cf: &str,
    seen: &mut HashSet<&'a str>,
) -> Result<()> {
    check_identifier(&c.name, false).map_err(|m| spec.error_at(c.line, cf, m))?;
    if !seen.insert(c.name.as_str()) {
        return Err(spec.error_at(c.line, cf, "declared twice"));
    }
    if c.name.starts_with(RESERVED_PREFIX) {
        return Err(spec.error_at(
            c.line,
            cf,
            "names starting with `_tern_` are the engine's own",
        ));
    }
    Ok(())
}

/// Names are quoted in SQL, but only plain identifiers are accepted so that no
/// name can break out of its quotes. `dotted` allows `schema.table`.
pub(crate) fn check_identifier(name: &str, dotted: bool) -> std::result::Result<(), String> {
    let parts: Vec<&str> = if dotted {
        name.split('.').collect()
    } else {
        vec![name]
    };
    let ok = parts.len() <= 2
        && parts.iter().all(|p| {
            let mut chars = p.chars();
            matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a plain identifier (letters, digits, _)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use crate::spec::fixture::{people, refused};

    /// Each refused spec (its columns and what follows the table's key)
    /// with what its error must say: where, and why.
    #[test]
    fn refusals_name_their_line_and_field() {
        let cases: [(&str, &str, &[&str]); 4] = [
            // A key that is not a column.
            (
                "ident = \"member_id\"",
                "",
                &[
                    "line 9, tables[people].key",
                    "`id` is not one of the table's columns",
                ],
            ),
            // A column without a value.
            (
                "id = \"member_id\"\nnote = { cast = \"text\" }",
                "",
                &["line 16, tables[people].columns.note", "gets no value"],
            ),
            // A name that could escape its quotes.
            (
                "id = \"member_id\"\n\"a\\\"b\" = \"x\"",
                "",
                &["not a plain identifier"],
            ),
            // A dedupe key that is not a column.
            (
                "id = \"member_id\"",
                "[tables.dedupe]\nkey = [\"nope\"]\n",
                &["tables[people].dedupe.key"],
            ),
        ];
        for (columns, extra, says) in cases {
            let err = refused(&people("postgres://u@h/db", "\"id\"", extra, "", columns));
            for s in says {
                assert!(err.contains(s), "{s}: {err}");
            }
        }
    }
}
