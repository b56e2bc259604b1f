//! Checks of a table's `[tables.reverse]` section that need no database: it
//! says which source table it writes and what its key is, gives every key
//! column and the bucket column a value, and reads only columns the target
//! table has. Each error names the line and the field, and says what to
//! write instead.

use std::collections::HashSet;

use super::validate::{check_column_name, check_identifier};
use super::{ColumnSpec, Relation, Spec, TableSpec, Transform};
use crate::error::Result;

/// The column names a column's value is computed from (for a reverse
/// column: target columns; for a forward one: source columns).
pub(crate) fn reads(col: &ColumnSpec) -> Vec<String> {
    match &col.transform {
        Transform::Copy(c) => vec![c.clone()],
        Transform::Json(fields) => fields.iter().map(|(_, c)| c.clone()).collect(),
        Transform::Uuid5 { from, .. } => from.clone(),
        Transform::Expr(e) => crate::expr::Expression::compile(e, None)
            .map(|x| x.reads().to_vec())
            .unwrap_or_default(),
        Transform::Constant(_) | Transform::Slot => Vec::new(),
    }
}

pub(super) fn validate_reverse(spec: &Spec, t: &TableSpec) -> Result<()> {
    let Some(r) = &t.reverse else {
        return Ok(());
    };
    let field = format!("{}.reverse", t.field());
    let Some(src) = &t.source else {
        return Err(spec.error_at(
            r.line,
            &field,
            "the table has no source, so there is no source row to map back to: remove \
             [tables.reverse], or give the table a [tables.source]",
        ));
    };
    let table = match (&r.table, &src.relation) {
        (Some(name), _) => name.clone(),
        (None, Relation::Table(name)) => name.clone(),
        (None, Relation::Query(_)) => {
            return Err(spec.error_at(
                r.line,
                &format!("{field}.table"),
                "the source is a query, so Tern cannot tell which source table a target row \
                 goes back to: name it, e.g. table = \"messages\"",
            ));
        }
    };
    check_identifier(&table, true)
        .map_err(|m| spec.error_at(r.line, &format!("{field}.table"), m))?;
    let key = r.key.clone().unwrap_or_else(|| src.key.clone());
    if key.is_empty() {
        return Err(spec.error_at(
            r.line,
            &format!("{field}.key"),
            "the key names no column: name the source table's key columns, e.g. key = [\"id\"]",
        ));
    }
    if r.columns.is_empty() {
        return Err(spec.error_at(
            r.line,
            &format!("{field}.columns"),
            "no column is mapped back: under [tables.reverse.columns] write each source \
             column = how it is computed from the target's columns",
        ));
    }
    let target_columns: HashSet<&str> = t.columns.iter().map(|c| c.name.as_str()).collect();
    let mut seen = HashSet::new();
    for c in &r.columns {
        let cf = format!("{field}.columns.{}", c.name);
        check_column_name(spec, c, &cf, &mut seen)?;
        if c.transform == Transform::Slot {
            return Err(spec.error_at(
                c.line,
                &cf,
                "the source column gets no value: give `from` (a target column), `expr`, \
                 `constant`, `json` or `uuid5`",
            ));
        }
        for read in reads(c) {
            if !target_columns.contains(read.as_str()) {
                let mut names: Vec<&str> = target_columns.iter().copied().collect();
                names.sort_unstable();
                return Err(spec.error_at(
                    c.line,
                    &cf,
                    format!(
                        "reads `{read}`, which is not a column of target table {} (its columns: {})",
                        t.name,
                        names.join(", ")
                    ),
                ));
            }
        }
    }
    let given = |name: &str| r.columns.iter().any(|c| c.name == name);
    for k in &key {
        if !given(k) {
            return Err(spec.error_at(
                r.line,
                &format!("{field}.columns"),
                format!(
                    "source key column `{k}` gets no value, so a target row cannot be matched \
                     to its source row: add `{k} = …` under [tables.reverse.columns]"
                ),
            ));
        }
    }
    if !given(&src.bucket) {
        return Err(spec.error_at(
            r.line,
            &format!("{field}.columns"),
            format!(
                "the bucket column `{}` gets no value, so Tern cannot tell which bucket a change \
                 in the target belongs to: add `{} = …` under [tables.reverse.columns]",
                src.bucket, src.bucket
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::Spec;
    use crate::spec::fixture::refused;

    fn spec(reverse: &str) -> String {
        let columns = format!(
            r#"uid = {{ uuid5 = ["member_id"], namespace = "members" }}
member = "member_id"
doc = {{ json = {{ name = "name" }} }}
{reverse}"#
        );
        crate::spec::fixture::people(
            "postgres://u@h/db",
            "\"uid\"",
            "",
            "key = [\"member_id\"]\n",
            &columns,
        )
    }

    #[test]
    fn a_reverse_section_parses_with_its_columns() -> anyhow::Result<()> {
        let text = spec(
            "[tables.reverse.columns]\nmember_id = \"member\"\nname = { expr = \"doc.name\" }\n",
        );
        let s = Spec::parse(&text, "s.toml")?;
        let r = s.tables[0].reverse.as_ref().expect("reverse");
        assert_eq!(r.table, None);
        let names: Vec<_> = r.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["member_id", "name"]);
        assert_eq!(r.columns[0].line, 20);
        Ok(())
    }

    #[test]
    fn a_reverse_column_must_read_target_columns() {
        let text = spec("[tables.reverse.columns]\nmember_id = \"member_id\"\n");
        let err = refused(&text);
        assert!(
            err.starts_with("s.toml line 20, tables[people].reverse.columns.member_id"),
            "{err}"
        );
        assert!(
            err.contains("reads `member_id`, which is not a column of target table people"),
            "{err}"
        );
    }

    /// Each refused reverse section with what its error must say.
    #[test]
    fn refusals_say_what_to_write() {
        let cases: [(&str, &[&str]); 3] = [
            // A missing key column is named with what to add.
            (
                "[tables.reverse.columns]\nname = { expr = \"doc.name\" }\n",
                &[
                    "tables[people].reverse.columns",
                    "source key column `member_id` gets no value",
                    "add `member_id = …`",
                ],
            ),
            // An unknown field in the reverse section.
            ("[tables.reverse]\ntabel = \"x\"\n", &["tabel"]),
            // An empty reverse section says what to write.
            (
                "[tables.reverse]\ntable = \"members\"\n",
                &["no column is mapped back"],
            ),
        ];
        for (reverse, says) in cases {
            let err = refused(&spec(reverse));
            for s in says {
                assert!(err.contains(s), "{s}: {err}");
            }
        }
    }
}
