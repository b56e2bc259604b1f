//! Whether a table's mapping inverts, read from the spec alone: copies,
//! renames and casts run backwards on their own; anything that loses or
//! combines information (a UUIDv5 of fields, a JSON document assembled
//! from columns, many records deduplicated into one row, a constant, an
//! expression, a plug-in transformer, a query over several tables) needs the
//! table's `[tables.reverse]` section, which says how each source column is
//! computed from the target's columns.

use crate::spec::{ColumnSpec, Relation, Spec, TableSpec, Transform};

/// How a target row of one table maps back to a source row.
#[derive(Debug, Clone, PartialEq)]
pub struct InverseMapping {
    /// The spec table (the target table read).
    pub table: String,
    /// The source table written.
    pub source_table: String,
    /// Its key: rows are upserted and deleted by it.
    pub source_key: Vec<String>,
    /// The source column that places a row in a bucket (one of `columns`).
    pub bucket: String,
    /// Source column ← value computed from the target row's columns.
    pub columns: Vec<ColumnSpec>,
}

impl InverseMapping {
    /// The inverse of source column `name`.
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

/// Whether, and how, a table's rows map back from the target to the source.
#[derive(Debug, Clone, PartialEq)]
pub enum Reversibility {
    /// Copies, renames and casts only: the inverse is derived from the
    /// mapping itself.
    Derived(InverseMapping),
    /// The spec's `[tables.reverse]` section gives the inverse.
    Declared(InverseMapping),
    /// The mapping does not invert and the spec gives no `reverse` section:
    /// a sentence that says why and what to write.
    No(String),
}

impl Reversibility {
    pub fn is_reversible(&self) -> bool {
        !matches!(self, Reversibility::No(_))
    }

    /// The inverse mapping, when there is one.
    pub fn inverse(&self) -> Option<&InverseMapping> {
        match self {
            Reversibility::Derived(m) | Reversibility::Declared(m) => Some(m),
            Reversibility::No(_) => None,
        }
    }

    /// For people: `derived from copies, renames and casts`, `declared in
    /// [tables.reverse]`, or the reason it is not reversible.
    pub fn describe(&self) -> String {
        match self {
            Reversibility::Derived(_) => "reversible: copies, renames and casts invert".into(),
            Reversibility::Declared(_) => {
                "reversible: the spec's [tables.reverse] section gives the inverse".into()
            }
            Reversibility::No(why) => format!("not reversible: {why}"),
        }
    }
}

/// Every table of the spec with its reversibility, in spec order.
pub fn reversibility(spec: &Spec) -> Vec<(String, Reversibility)> {
    spec.tables
        .iter()
        .map(|t| (t.name.clone(), table_reversibility(t)))
        .collect()
}

const ADD_REVERSE: &str = "add a [tables.reverse] section that says how each source column is \
                           computed from the target's columns (see docs/migration-spec.md)";

/// Whether one table's mapping inverts; see the module docs.
pub fn table_reversibility(t: &TableSpec) -> Reversibility {
    let Some(src) = &t.source else {
        return Reversibility::No(format!(
            "table {} has no source: its rows are made by the transformers of another table, \
             and only that table's records can be written back",
            t.name
        ));
    };
    if let Some(r) = &t.reverse {
        let source_table = match (&r.table, &src.relation) {
            (Some(name), _) | (None, Relation::Table(name)) => name.clone(),
            // Refused when the spec is parsed; kept total here.
            (None, Relation::Query(_)) => String::new(),
        };
        return Reversibility::Declared(InverseMapping {
            table: t.name.clone(),
            source_table,
            source_key: r.key.clone().unwrap_or_else(|| src.key.clone()),
            bucket: src.bucket.clone(),
            columns: r.columns.clone(),
        });
    }
    let source_table = match &src.relation {
        Relation::Table(name) => name.clone(),
        Relation::Query(_) => {
            let read: Vec<&str> = src.tracks.iter().map(|tr| tr.table.as_str()).collect();
            return Reversibility::No(format!(
                "table {} is assembled by a query over {}, which does not run backwards: {ADD_REVERSE}, \
                 naming the source table to write (table = \"…\")",
                t.name,
                if read.is_empty() {
                    "the source".to_string()
                } else {
                    read.join(", ")
                }
            ));
        }
    };
    if t.dedupe.is_some() {
        return Reversibility::No(format!(
            "table {} deduplicates many source records into one row, so a change to that row \
             cannot be told apart by record: {ADD_REVERSE}",
            t.name
        ));
    }
    if !t.transformers.is_empty() {
        return Reversibility::No(format!(
            "table {} runs the transformer(s) {}, which do not run backwards: {ADD_REVERSE}",
            t.name,
            t.transformers.join(", ")
        ));
    }
    let mut columns: Vec<ColumnSpec> = Vec::new();
    let mut lossy = Vec::new();
    for c in &t.columns {
        match &c.transform {
            Transform::Copy(from) if !c.trim && !c.lower => {
                // Two target columns copying one source column hold the same
                // value: the first gives it back.
                if !columns.iter().any(|x| &x.name == from) {
                    columns.push(ColumnSpec {
                        name: from.clone(),
                        transform: Transform::Copy(c.name.clone()),
                        // Cast back to the source column's type when written.
                        cast: None,
                        trim: false,
                        lower: false,
                        line: c.line,
                    });
                }
            }
            Transform::Copy(from) => lossy.push(format!(
                "`{}` ({} of {from} cannot be undone)",
                c.name,
                match (c.trim, c.lower) {
                    (true, true) => "trimming and lower-casing",
                    (true, false) => "trimming",
                    _ => "lower-casing",
                }
            )),
            Transform::Constant(v) => lossy.push(format!(
                "`{}` (the constant {}: what the new store holds there has no source column)",
                c.name,
                v.preview()
            )),
            Transform::Json(fields) => lossy.push(format!(
                "`{}` (a JSON document assembled from {})",
                c.name,
                fields
                    .iter()
                    .map(|(_, s)| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Transform::Uuid5 { from, .. } => lossy.push(format!(
                "`{}` (a UUIDv5 of {}: a hash does not give back its fields)",
                c.name,
                from.join(", ")
            )),
            Transform::Expr(e) => lossy.push(format!("`{}` (the expression `{e}`)", c.name)),
            Transform::Slot => lossy.push(format!("`{}` (filled by a transformer)", c.name)),
        }
    }
    if !lossy.is_empty() {
        return Reversibility::No(format!(
            "in table {}, column{} {} do{} not map back to the source: {ADD_REVERSE}",
            t.name,
            if lossy.len() == 1 { "" } else { "s" },
            lossy.join(", "),
            if lossy.len() == 1 { "es" } else { "" }
        ));
    }
    for k in src.key.iter().chain(std::iter::once(&src.bucket)) {
        if !columns.iter().any(|c| &c.name == k) {
            let what = if *k == src.bucket && !src.key.contains(k) {
                "the bucket column"
            } else {
                "the source key column"
            };
            return Reversibility::No(format!(
                "{what} `{k}` of {source_table} is not copied to table {}, so a target row \
                 cannot be matched to its source row: copy it to a target column, or {ADD_REVERSE}",
                t.name
            ));
        }
    }
    Reversibility::Derived(InverseMapping {
        table: t.name.clone(),
        source_table,
        source_key: src.key.clone(),
        bucket: src.bucket.clone(),
        columns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(columns: &str, extra: &str) -> Spec {
        let text = crate::spec::fixture::people(
            "postgres://u@h/db",
            "\"id\"",
            extra,
            "key = [\"member_id\"]\nbucket = \"region\"\n",
            columns,
        );
        match Spec::parse(&text, "s.toml") {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }

    fn verdict(columns: &str, extra: &str) -> Reversibility {
        table_reversibility(&spec(columns, extra).tables[0])
    }

    #[test]
    fn copies_renames_and_casts_invert_on_their_own() {
        let r = verdict(
            "id = \"member_id\"\nwhere = \"region\"\nage = { from = \"age\", cast = \"text\" }",
            "",
        );
        let Reversibility::Derived(m) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(m.source_table, "members");
        assert_eq!(m.source_key, ["member_id"]);
        let back: Vec<(&str, &Transform)> = m
            .columns
            .iter()
            .map(|c| (c.name.as_str(), &c.transform))
            .collect();
        assert_eq!(
            back,
            [
                ("member_id", &Transform::Copy("id".into())),
                ("region", &Transform::Copy("where".into())),
                ("age", &Transform::Copy("age".into())),
            ]
        );
        assert!(r.describe().starts_with("reversible"));
    }

    #[test]
    fn lossy_columns_are_named_with_what_to_do() {
        let r = verdict(
            "id = \"member_id\"\nregion = \"region\"\nkind = { constant = \"member\" }\n\
             uid = { uuid5 = [\"member_id\"], namespace = \"m\" }\n\
             doc = { json = [\"name\", \"age\"] }\nemail = { from = \"email\", lower = true }\n\
             label = { expr = \"name + \\\"!\\\"\" }",
            "",
        );
        let Reversibility::No(why) = &r else {
            panic!("{r:?}")
        };
        for part in [
            "in table people, columns `kind` (the constant",
            "`uid` (a UUIDv5 of member_id",
            "`doc` (a JSON document assembled from name, age)",
            "`email` (lower-casing of email cannot be undone)",
            "`label` (the expression",
            "add a [tables.reverse] section",
        ] {
            assert!(why.contains(part), "{part} missing from: {why}");
        }
    }

    #[test]
    fn deduplicated_rows_and_transformers_do_not_invert() {
        let r = verdict(
            "id = \"member_id\"\nregion = \"region\"",
            "[tables.dedupe]\nkeep = \"last\"\n",
        );
        assert!(
            matches!(&r, Reversibility::No(w) if w.contains("deduplicates many source records")),
            "{r:?}"
        );
        let r = verdict(
            "id = \"member_id\"\nregion = \"region\"",
            "transformers = [\"split\"]\n",
        );
        assert!(
            matches!(&r, Reversibility::No(w) if w.contains("transformer(s) split")),
            "{r:?}"
        );
    }

    #[test]
    fn a_bucket_column_not_copied_leaves_the_table_unreversible() {
        let r = verdict("id = \"member_id\"", "");
        assert!(
            matches!(&r, Reversibility::No(w) if w.contains("the bucket column `region` of members is not copied")),
            "{r:?}"
        );
    }

    #[test]
    fn a_reverse_section_makes_a_lossy_table_reversible() {
        let s = spec(
            "id = { uuid5 = [\"member_id\"], namespace = \"m\" }\nm = \"member_id\"\n\
             doc = { json = [\"region\"] }\n\
             [tables.reverse.columns]\nmember_id = \"m\"\nregion = { expr = \"doc.region\" }",
            "",
        );
        let r = table_reversibility(&s.tables[0]);
        let Reversibility::Declared(m) = &r else {
            panic!("{r:?}")
        };
        assert_eq!(m.source_table, "members");
        assert_eq!(m.bucket, "region");
        assert_eq!(m.columns.len(), 2);
        assert_eq!(reversibility(&s).len(), 1);
    }
}
