//! The expressions of the declarative mapper: `set = { first_name =
//! "truncate(first_name, 1000)" }`. They are the engine's expression
//! language ([`tern_engine::expr`], documented in `docs/expressions.md`),
//! the same as a spec's `expr` columns: the record's fields are variables,
//! with conditionals, string building and the shared functions. They are
//! evaluated by the platform, not the database, so a dry run shows the exact
//! value each record would get and the write can be guarded by the values
//! the filter read.
//!
//! Fix specs written for the earlier mapper language keep working: its text
//! literals were single-quoted (`'x'`, `'it''s'`), and they are read as the
//! double-quoted text of the shared language.

use serde_json::Value as Json;
use tern_engine::Value;
use tern_engine::expr::Expression;

use crate::record::Record;

/// A parsed expression.
#[derive(Debug, Clone)]
pub struct Expr(Expression);

impl Expr {
    /// Parses an expression; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Expr, String> {
        Expression::compile(&double_quoted(text)?, None).map(Expr)
    }

    /// The fields the expression reads.
    pub fn fields(&self, out: &mut Vec<String>) {
        for f in self.0.reads() {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
    }

    /// The expression's value for one record.
    pub fn eval(&self, rec: &Record) -> Result<Json, String> {
        self.0
            .eval(|name| rec.get(name).map(|v| Value::Json(v.clone())))
            .map(|v| v.to_json())
            .map_err(|m| match m.strip_prefix("the record has no column ") {
                Some(f) => format!("the filter returned no field {f}"),
                None => m,
            })
    }
}

/// The text with the earlier language's single-quoted literals (`'a'`,
/// `'it''s'`) written as double-quoted ones (`"a"`, `"it's"`).
fn double_quoted(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let mut in_double = false;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_double = !in_double;
                out.push(c);
            }
            '\\' if in_double => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            '\'' if !in_double => {
                out.push('"');
                loop {
                    match chars.next() {
                        Some('\'') if chars.peek() == Some(&'\'') => {
                            chars.next();
                            out.push('\'');
                        }
                        Some('\'') => break,
                        Some('"') => out.push_str("\\\""),
                        Some('\\') => out.push_str("\\\\"),
                        Some(ch) => out.push(ch),
                        None => {
                            return Err(format!("unterminated text in `{text}`: close it with '"));
                        }
                    }
                }
                out.push('"');
            }
            _ => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec() -> Record {
        Record::from_pairs(vec![
            ("id".into(), json!(7)),
            ("first_name".into(), json!("Ann-Marie")),
            ("n".into(), json!(41)),
            ("gone".into(), Json::Null),
        ])
    }

    #[test]
    fn truncates_by_characters_and_keeps_short_values() {
        let e = Expr::parse("truncate(first_name, 3)").expect("parses");
        assert_eq!(e.eval(&rec()), Ok(json!("Ann")));
        let e = Expr::parse("truncate(first_name, 1000)").expect("parses");
        assert_eq!(e.eval(&rec()), Ok(json!("Ann-Marie")));
        let r = Record::from_pairs(vec![("first_name".into(), json!("ééé"))]);
        assert_eq!(
            Expr::parse("truncate(first_name, 2)").unwrap().eval(&r),
            Ok(json!("éé"))
        );
    }

    #[test]
    fn earlier_fix_specs_keep_working_and_nulls_propagate() {
        let e = Expr::parse("concat(upper(substr(first_name, 1, 3)), '-', add(n, 1), 'it''s')")
            .unwrap();
        assert_eq!(e.eval(&rec()), Ok(json!("ANN-42it's")));
        assert_eq!(Expr::parse("'x'").unwrap().eval(&rec()), Ok(json!("x")));
        assert_eq!(
            Expr::parse("lower(gone)").unwrap().eval(&rec()),
            Ok(Json::Null)
        );
        assert_eq!(
            Expr::parse("coalesce(gone, 'x')").unwrap().eval(&rec()),
            Ok(json!("x"))
        );
        let mut f = Vec::new();
        e.fields(&mut f);
        assert_eq!(f, vec!["first_name".to_string(), "n".to_string()]);
    }

    #[test]
    fn the_shared_language_adds_conditionals_and_string_building() {
        let e = Expr::parse(r#"if n > 40 { first_name + " (old)" } else { first_name }"#).unwrap();
        assert_eq!(e.eval(&rec()), Ok(json!("Ann-Marie (old)")));
    }

    #[test]
    fn mistakes_are_named() {
        let err = Expr::parse("shout(first_name)").unwrap_err();
        assert!(err.contains("calls `shout`, which is no function"), "{err}");
        let err = Expr::parse("truncate(first_name)").unwrap_err();
        assert!(err.contains("calls `truncate`"), "{err}");
        assert!(Expr::parse("'open").unwrap_err().contains("unterminated"));
        assert!(
            Expr::parse("a b")
                .unwrap_err()
                .contains("not a valid expression")
        );
        assert!(
            Expr::parse("missing")
                .unwrap()
                .eval(&rec())
                .unwrap_err()
                .contains("no field `missing`")
        );
    }
}
