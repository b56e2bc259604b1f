//! The built-in column transforms: copy/rename, constant, JSON document,
//! deterministic UUIDv5, then trim, lower and cast.

use uuid::Uuid;

use crate::expr::Expression;
use crate::ids::uuid5;
use crate::spec::{ColumnSpec, Transform};
use crate::value::{ColumnType, Value};

/// A compiled column: where the value comes from and what happens to it.
#[derive(Debug, Clone)]
pub(crate) struct ColumnOp {
    pub name: String,
    source: Source,
    trim: bool,
    lower: bool,
    cast: Option<ColumnType>,
}

#[derive(Debug, Clone)]
enum Source {
    /// Source column index; `take` when no later step reads it again.
    Copy {
        index: usize,
        take: bool,
    },
    Constant(Value),
    Json(Vec<(String, usize)>),
    Uuid5(Uuid, Vec<usize>),
    /// An expression and the source column index of each column it reads.
    Expr(Box<Expression>, Vec<usize>),
    Null,
}

impl ColumnOp {
    /// Resolves source column names. `Err` carries the unknown column's name.
    pub fn compile(spec: &ColumnSpec, source_columns: &[String]) -> Result<ColumnOp, String> {
        let idx = |name: &String| {
            source_columns
                .iter()
                .position(|c| c == name)
                .ok_or_else(|| name.clone())
        };
        let source = match &spec.transform {
            Transform::Copy(from) => Source::Copy {
                index: idx(from)?,
                take: false,
            },
            Transform::Constant(v) => Source::Constant(v.clone()),
            Transform::Json(fields) => Source::Json(
                fields
                    .iter()
                    .map(|(k, c)| Ok((k.clone(), idx(c)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Transform::Uuid5 { namespace, from } => Source::Uuid5(
                *namespace,
                from.iter().map(idx).collect::<Result<_, String>>()?,
            ),
            Transform::Expr(text) => {
                let e = Expression::compile(text, None).map_err(|_| text.clone())?;
                let idx = e.reads().iter().map(idx).collect::<Result<_, String>>()?;
                Source::Expr(Box::new(e), idx)
            }
            Transform::Slot => Source::Null,
        };
        Ok(ColumnOp {
            name: spec.name.clone(),
            source,
            trim: spec.trim,
            lower: spec.lower,
            cast: spec.cast,
        })
    }

    /// The type the value has before the final cast to the target column,
    /// given the source column types; `None` when unknown.
    pub fn inferred_type(&self, source_types: &[Option<ColumnType>]) -> Option<ColumnType> {
        if let Some(t) = self.cast {
            return Some(t);
        }
        if self.trim || self.lower {
            return Some(ColumnType::Text);
        }
        match &self.source {
            Source::Copy { index, .. } => source_types[*index],
            Source::Constant(v) => v.column_type(),
            Source::Json(_) => Some(ColumnType::Json),
            Source::Uuid5(..) => Some(ColumnType::Uuid),
            Source::Expr(..) | Source::Null => None,
        }
    }

    /// Source column indexes this op reads.
    pub fn reads(&self) -> Vec<usize> {
        match &self.source {
            Source::Copy { index, .. } => vec![*index],
            Source::Json(f) => f.iter().map(|(_, i)| *i).collect(),
            Source::Uuid5(_, idx) | Source::Expr(_, idx) => idx.clone(),
            Source::Constant(_) | Source::Null => vec![],
        }
    }

    /// Whether the op is an expression that calls `lookup(…)`.
    pub fn looks_up(&self) -> bool {
        matches!(&self.source, Source::Expr(e, _) if e.text().contains("lookup"))
    }

    /// Evaluates an expression op on a record without changing it, for the
    /// lookups it asks (see `expr/lookup.rs`); its value and errors are not
    /// wanted here.
    pub fn ask_lookups(&self, values: &[Value]) {
        if let Source::Expr(e, idx) = &self.source {
            let _ = e.eval(|name| {
                e.reads()
                    .iter()
                    .position(|r| r == name)
                    .map(|i| values[idx[i]].clone())
            });
        }
    }

    /// Lets a copy move its value out of the record instead of cloning it.
    pub fn allow_take(&mut self) {
        if let Source::Copy { take, .. } = &mut self.source {
            *take = true;
        }
    }

    /// Computes the value from a source record. `Err` says what failed.
    pub fn apply(&self, values: &mut [Value]) -> Result<Value, String> {
        let mut v = match &self.source {
            Source::Copy { index, take: true } => {
                std::mem::replace(&mut values[*index], Value::Null)
            }
            Source::Copy { index, take: false } => values[*index].clone(),
            Source::Constant(v) => v.clone(),
            Source::Json(fields) => {
                let mut doc = serde_json::Map::with_capacity(fields.len());
                for (k, i) in fields {
                    doc.insert(k.clone(), values[*i].to_json());
                }
                Value::Json(serde_json::Value::Object(doc))
            }
            Source::Uuid5(ns, idx) => {
                let fields: Vec<&Value> = idx.iter().map(|i| &values[*i]).collect();
                if fields.iter().any(|f| f.is_null()) {
                    return Err("a uuid5 source field is NULL".to_string());
                }
                Value::Uuid(uuid5(ns, &fields))
            }
            Source::Expr(e, idx) => e.eval(|name| {
                e.reads()
                    .iter()
                    .position(|r| r == name)
                    .map(|i| values[idx[i]].clone())
            })?,
            Source::Null => Value::Null,
        };
        if (self.trim || self.lower) && !v.is_null() {
            let mut s = match v {
                Value::Text(s) => s,
                other => other.canonical_text(),
            };
            if self.trim {
                let t = s.trim();
                if t.len() != s.len() {
                    s = t.to_string();
                }
            }
            if self.lower {
                s = s.to_lowercase();
            }
            v = Value::Text(s);
        }
        if let Some(t) = self.cast {
            v = v.cast(t)?;
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::uuid5_namespace;

    fn col(name: &str, transform: Transform) -> ColumnSpec {
        ColumnSpec {
            name: name.into(),
            transform,
            cast: None,
            trim: false,
            lower: false,
            line: 1,
        }
    }

    #[test]
    fn uuid5_matches_the_rfc_construction_of_the_joined_name() {
        let ns = uuid5_namespace("conversations");
        let id = uuid5(&ns, &[&Value::Int(42), &Value::Text("a".into())]);
        assert_eq!(id, Uuid::new_v5(&ns, "42\u{1f}a".as_bytes()));
        assert_eq!(id.get_version_num(), 5);
        // Known value, computed once with Python's uuid.uuid5; pins the name format.
        assert_eq!(
            uuid5(&Uuid::NAMESPACE_DNS, &[&Value::Int(7)]).to_string(),
            "a9f96b98-dd44-5216-ab0d-dbfc6b262edf"
        );
    }

    #[test]
    fn trim_lower_and_cast_apply_in_that_order() -> Result<(), String> {
        let cols = vec!["flag".to_string(), "email".to_string()];
        let mut spec = col("email", Transform::Copy("email".into()));
        spec.trim = true;
        spec.lower = true;
        let op = ColumnOp::compile(&spec, &cols)?;
        let mut row = vec![
            Value::Text(" 1 ".into()),
            Value::Text("  Ann@Example.COM ".into()),
        ];
        assert_eq!(op.apply(&mut row)?, Value::Text("ann@example.com".into()));

        let mut spec = col("flag", Transform::Copy("flag".into()));
        spec.trim = true;
        spec.cast = Some(ColumnType::Bool);
        let op = ColumnOp::compile(&spec, &cols)?;
        assert_eq!(op.apply(&mut row)?, Value::Bool(true));
        Ok(())
    }

    #[test]
    fn json_documents_carry_typed_fields() -> Result<(), String> {
        let cols = vec!["a".to_string(), "b".to_string()];
        let spec = col(
            "doc",
            Transform::Json(vec![("x".into(), "b".into()), ("y".into(), "a".into())]),
        );
        let op = ColumnOp::compile(&spec, &cols)?;
        let mut row = vec![Value::Int(1), Value::Text("t".into())];
        let Value::Json(doc) = op.apply(&mut row)? else {
            return Err("not json".into());
        };
        assert_eq!(doc.to_string(), r#"{"x":"t","y":1}"#);
        Ok(())
    }

    #[test]
    fn an_unknown_source_column_is_named() {
        let err = ColumnOp::compile(&col("x", Transform::Copy("nope".into())), &["a".into()])
            .unwrap_err();
        assert_eq!(err, "nope");
    }
}
