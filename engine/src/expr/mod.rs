//! Expressions: the one small language of specs (`{ expr = "…" }` columns)
//! and data fixes (`set = { col = "…" }`), documented in
//! `docs/expressions.md`. It is [Rhai](https://rhai.rs), a maintained
//! embedded scripting language, run in a sandbox: no modules or files, no
//! `eval`, no printing, and limits on operations, nesting, string, array
//! and map sizes, so a spec or a fix cannot hang or exhaust a worker.
//!
//! An expression reads the record's columns as variables (`first_name`,
//! `thread_id`), and gives one value: conditionals (`if unread == 1 { "new" }
//! else { "read" }`), string building (`first + " " + last`, `` `${a}-${b}` ``),
//! arithmetic and comparisons, and the functions registered here:
//! `truncate`, `substr`, `lower`, `upper`, `trim`, `concat`, `replace`,
//! `coalesce`, `add`, `sub`, `mul`, `text`, `is_null`, `uuid5` (the same
//! deterministic IDs as the spec's `uuid5` transform, for custom dedupe
//! keys) and `lookup` (a value of another source table, see [`lookup`]).
//! NULL is `()`; a function of NULL is NULL, except `coalesce`, `concat` and
//! `is_null`.

pub mod lookup;

use std::sync::OnceLock;

use rhai::packages::{BasicArrayPackage, BasicMapPackage, BasicMathPackage, CorePackage, Package};
use rhai::{AST, Blob, Dynamic, Engine, ParseErrorType, Scope};

use crate::ids::{uuid5, uuid5_namespace};
use crate::value::Value;

/// Operations one evaluation may take (a loop over a million items is cut).
const MAX_OPERATIONS: u64 = 200_000;

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Expression {
    text: String,
    ast: AST,
    reads: Vec<String>,
}

impl Expression {
    /// Compiles `text`. With `columns`, every variable it reads must be one
    /// of them (an error names the unknown one and lists the columns);
    /// without, whatever it reads is taken as a column name.
    pub fn compile(text: &str, columns: Option<&[String]>) -> Result<Expression, String> {
        if text.trim().is_empty() {
            return Err("the expression is empty".into());
        }
        let mut reads: Vec<String> = Vec::new();
        loop {
            let mut scope = Scope::new();
            for r in &reads {
                scope.push_dynamic(r.as_str(), Dynamic::UNIT);
            }
            match engine().compile_with_scope(&scope, text) {
                Ok(ast) => {
                    check_calls(text, &mut scope, &ast)?;
                    return Ok(Expression {
                        text: text.to_string(),
                        ast,
                        reads,
                    });
                }
                Err(e) => match e.err_type() {
                    ParseErrorType::VariableUndefined(name) if !reads.contains(name) => {
                        if let Some(cols) = columns
                            && !cols.contains(name)
                        {
                            return Err(format!(
                                "`{text}` reads `{name}`, which is not a column (columns: {})",
                                cols.join(", ")
                            ));
                        }
                        reads.push(name.clone());
                    }
                    _ => return Err(describe_parse_error(text, &e)),
                },
            }
        }
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns it reads.
    pub fn reads(&self) -> &[String] {
        &self.reads
    }

    /// Its value for one record; `column` gives a column's value (`None`
    /// when the record has no such column, an error naming it).
    pub fn eval(&self, column: impl Fn(&str) -> Option<Value>) -> Result<Value, String> {
        let mut scope = Scope::new();
        for r in &self.reads {
            let v = column(r).ok_or_else(|| format!("the record has no column `{r}`"))?;
            scope.push_dynamic(r.as_str(), to_dynamic(v));
        }
        let out: Dynamic = engine()
            .eval_ast_with_scope(&mut scope, &self.ast)
            .map_err(|e| format!("`{}`: {e}", self.text))?;
        from_dynamic(out)
    }
}

/// The functions registered here.
const OUR_FUNCTIONS: [&str; 15] = [
    "truncate", "substr", "lower", "upper", "trim", "concat", "replace", "coalesce", "add", "sub",
    "mul", "text", "is_null", "uuid5", "lookup",
];

/// The name of every function the sandbox has.
fn function_names() -> &'static std::collections::HashSet<String> {
    static NAMES: OnceLock<std::collections::HashSet<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        engine()
            .gen_fn_signatures(true)
            .iter()
            .filter_map(|s| s.split('(').next())
            .map(|n| n.trim().trim_start_matches("private ").to_string())
            .collect()
    })
}

/// The functions an expression may call, for messages.
pub const FUNCTIONS: &str = "truncate(s, n), substr(s, start[, len]), lower(s), upper(s), trim(s), \
    concat(a, …), replace(s, from, to), coalesce(a, …), add(a, b), sub(a, b), mul(a, b), text(v), \
    is_null(v), uuid5(namespace, a, …), lookup(table, column[, by], key), and Rhai's operators \
    and math";

/// Rhai resolves function names when it runs; a trial run with every column
/// NULL finds a misspelt function or a wrong number of arguments while the
/// spec or fix is read, not on the first record.
fn check_calls(text: &str, scope: &mut Scope<'_>, ast: &AST) -> Result<(), String> {
    let Err(e) = lookup::trial(|| engine().eval_ast_with_scope::<Dynamic>(scope, ast)) else {
        return Ok(());
    };
    if let rhai::EvalAltResult::ErrorFunctionNotFound(sig, _) = e.as_ref() {
        let name = sig.split([' ', '(']).next().unwrap_or_default();
        // A name no function has, or one of ours (they take any value, so
        // only the number of arguments can be wrong). Rhai's own functions
        // may just not take NULL, which the trial run gives them.
        let ours = OUR_FUNCTIONS.contains(&name);
        if ours || !function_names().contains(name) {
            return Err(format!(
                "`{text}` calls `{name}`, which is no function or does not take those \
                 arguments (the functions are {FUNCTIONS})"
            ));
        }
    }
    Ok(())
}

fn describe_parse_error(text: &str, e: &rhai::ParseError) -> String {
    let hint = match e.err_type() {
        ParseErrorType::BadInput(rhai::LexError::MalformedChar(_)) => {
            " (text is written in double quotes: \"text\"; single quotes hold one character)"
        }
        _ => "",
    };
    format!("`{text}` is not a valid expression: {e}{hint}")
}

/// The sandboxed engine, built once.
fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(sandbox)
}

fn sandbox() -> Engine {
    let mut e = Engine::new_raw();
    for m in [
        CorePackage::new().as_shared_module(),
        BasicMathPackage::new().as_shared_module(),
        BasicArrayPackage::new().as_shared_module(),
        BasicMapPackage::new().as_shared_module(),
    ] {
        e.register_global_module(m);
    }
    e.set_strict_variables(true);
    e.set_max_operations(MAX_OPERATIONS);
    e.set_max_expr_depths(64, 32);
    e.set_max_call_levels(16);
    e.set_max_string_size(1 << 20);
    e.set_max_array_size(10_000);
    e.set_max_map_size(10_000);
    e.disable_symbol("eval");
    e.on_print(|_| {});
    e.on_debug(|_, _, _| {});
    register_functions(&mut e);
    e
}

fn null() -> Dynamic {
    Dynamic::UNIT
}

fn text_of(d: &Dynamic) -> String {
    if d.is_string() {
        d.clone().into_string().unwrap_or_default()
    } else {
        d.to_string()
    }
}

fn int_of(d: &Dynamic, what: &str) -> Result<i64, Box<rhai::EvalAltResult>> {
    if let Ok(i) = d.as_int() {
        return Ok(i);
    }
    if let Ok(f) = d.as_float() {
        return Ok(f as i64);
    }
    text_of(d)
        .trim()
        .parse()
        .map_err(|_| format!("{what}: `{d}` is not a whole number").into())
}

fn num_of(d: &Dynamic, what: &str) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    if d.is_int() || d.is_float() {
        return Ok(d.clone());
    }
    let s = text_of(d);
    let t = s.trim();
    t.parse::<i64>()
        .map(Dynamic::from)
        .or_else(|_| t.parse::<f64>().map(Dynamic::from))
        .map_err(|_| format!("{what}: `{s}` is not a number").into())
}

fn arith(
    a: Dynamic,
    b: Dynamic,
    name: &str,
    iop: fn(i64, i64) -> Option<i64>,
    fop: fn(f64, f64) -> f64,
) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    if a.is_unit() || b.is_unit() {
        return Ok(null());
    }
    let (a, b) = (num_of(&a, name)?, num_of(&b, name)?);
    if let (Ok(x), Ok(y)) = (a.as_int(), b.as_int()) {
        return iop(x, y)
            .map(Dynamic::from)
            .ok_or_else(|| format!("{name}({x}, {y}) overflows").into());
    }
    let f = |d: &Dynamic| d.as_float().or_else(|_| d.as_int().map(|i| i as f64));
    Ok(Dynamic::from(fop(
        f(&a).unwrap_or(0.0),
        f(&b).unwrap_or(0.0),
    )))
}

/// Registers `name` for 1 to 8 arguments, all handed over as one list.
fn register_variadic(e: &mut Engine, name: &str, f: fn(&[Dynamic]) -> Dynamic) {
    e.register_fn(name, move |a: Dynamic| f(&[a]));
    e.register_fn(name, move |a: Dynamic, b: Dynamic| f(&[a, b]));
    e.register_fn(name, move |a: Dynamic, b: Dynamic, c: Dynamic| {
        f(&[a, b, c])
    });
    e.register_fn(
        name,
        move |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic| f(&[a, b, c, d]),
    );
    e.register_fn(
        name,
        move |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, g: Dynamic| f(&[a, b, c, d, g]),
    );
    e.register_fn(
        name,
        move |a: Dynamic, b: Dynamic, c: Dynamic, d: Dynamic, g: Dynamic, h: Dynamic| {
            f(&[a, b, c, d, g, h])
        },
    );
}

fn register_functions(e: &mut Engine) {
    let unary = |e: &mut Engine, name: &str, f: fn(String) -> String| {
        e.register_fn(name, move |s: Dynamic| -> Dynamic {
            if s.is_unit() {
                null()
            } else {
                f(text_of(&s)).into()
            }
        });
    };
    unary(e, "lower", |s| s.to_lowercase());
    unary(e, "upper", |s| s.to_uppercase());
    unary(e, "trim", |s| s.trim().to_string());
    unary(e, "text", |s| s);
    e.register_fn("is_null", |d: Dynamic| d.is_unit());
    e.register_fn(
        "truncate",
        |s: Dynamic, n: Dynamic| -> Result<Dynamic, Box<rhai::EvalAltResult>> {
            if s.is_unit() || n.is_unit() {
                return Ok(null());
            }
            let n = int_of(&n, "truncate")?.max(0) as usize;
            Ok(text_of(&s).chars().take(n).collect::<String>().into())
        },
    );
    let substr = |s: Dynamic,
                  start: Dynamic,
                  len: Option<Dynamic>|
     -> Result<Dynamic, Box<rhai::EvalAltResult>> {
        if s.is_unit() || start.is_unit() || len.as_ref().is_some_and(Dynamic::is_unit) {
            return Ok(null());
        }
        let start = int_of(&start, "substr")?.max(1) as usize - 1;
        let s = text_of(&s);
        let it = s.chars().skip(start);
        Ok(match len {
            Some(l) => it
                .take(int_of(&l, "substr")?.max(0) as usize)
                .collect::<String>(),
            None => it.collect::<String>(),
        }
        .into())
    };
    e.register_fn("substr", move |s: Dynamic, start: Dynamic| {
        substr(s, start, None)
    });
    e.register_fn("substr", move |s: Dynamic, start: Dynamic, len: Dynamic| {
        substr(s, start, Some(len))
    });
    e.register_fn("replace", |s: Dynamic, from: Dynamic, to: Dynamic| {
        if s.is_unit() || from.is_unit() || to.is_unit() {
            null()
        } else {
            text_of(&s).replace(&text_of(&from), &text_of(&to)).into()
        }
    });
    register_variadic(e, "coalesce", |v| {
        v.iter().find(|d| !d.is_unit()).cloned().unwrap_or_default()
    });
    register_variadic(e, "concat", |v| {
        v.iter()
            .filter(|d| !d.is_unit())
            .map(text_of)
            .collect::<String>()
            .into()
    });
    e.register_fn("add", |a: Dynamic, b: Dynamic| {
        arith(a, b, "add", i64::checked_add, |x, y| x + y)
    });
    e.register_fn("sub", |a: Dynamic, b: Dynamic| {
        arith(a, b, "sub", i64::checked_sub, |x, y| x - y)
    });
    e.register_fn("mul", |a: Dynamic, b: Dynamic| {
        arith(a, b, "mul", i64::checked_mul, |x, y| x * y)
    });
    lookup::register(e);
    register_variadic(e, "uuid5", |v| {
        let Some((ns, fields)) = v.split_first() else {
            return null();
        };
        let fields: Vec<Value> = fields
            .iter()
            .map(|d| from_dynamic(d.clone()).unwrap_or(Value::Null))
            .collect();
        let refs: Vec<&Value> = fields.iter().collect();
        uuid5(&uuid5_namespace(&text_of(ns)), &refs)
            .to_string()
            .into()
    });
}

/// A value as the expression sees it: integers, floats, booleans and text
/// as themselves, bytes as a blob, JSON as maps and arrays, NULL as `()`,
/// anything else (decimals, UUIDs, times) as its canonical text.
pub(crate) fn to_dynamic(v: Value) -> Dynamic {
    match v {
        Value::Null => Dynamic::UNIT,
        Value::Bool(b) => b.into(),
        Value::Int(i) => i.into(),
        Value::Float(f) => f.into(),
        Value::Text(s) => s.into(),
        Value::Bytes(b) => Dynamic::from_blob(b),
        Value::Json(j) => json_to_dynamic(j),
        other => other.canonical_text().into(),
    }
}

fn json_to_dynamic(j: serde_json::Value) -> Dynamic {
    use serde_json::Value as J;
    match j {
        J::Null => Dynamic::UNIT,
        J::Bool(b) => b.into(),
        J::Number(n) => n
            .as_i64()
            .map(Dynamic::from)
            .unwrap_or_else(|| n.as_f64().unwrap_or(0.0).into()),
        J::String(s) => s.into(),
        J::Array(a) => Dynamic::from_array(a.into_iter().map(json_to_dynamic).collect()),
        J::Object(o) => Dynamic::from_map(
            o.into_iter()
                .map(|(k, v)| (k.into(), json_to_dynamic(v)))
                .collect(),
        ),
    }
}

/// An expression's result as a value.
pub(crate) fn from_dynamic(d: Dynamic) -> Result<Value, String> {
    Ok(if d.is_unit() {
        Value::Null
    } else if let Ok(i) = d.as_int() {
        Value::Int(i)
    } else if let Ok(f) = d.as_float() {
        Value::Float(f)
    } else if let Ok(b) = d.as_bool() {
        Value::Bool(b)
    } else if let Ok(c) = d.as_char() {
        Value::Text(c.to_string())
    } else if d.is_string() {
        Value::Text(d.into_string().unwrap_or_default())
    } else if d.is_blob() {
        Value::Bytes(d.cast::<Blob>())
    } else if d.is_array() || d.is_map() {
        Value::Json(dynamic_to_json(&d)?)
    } else {
        return Err(format!(
            "the expression gave a {}, not a value a column can hold",
            d.type_name()
        ));
    })
}

fn dynamic_to_json(d: &Dynamic) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    if d.is_array() {
        let a = d.clone().into_array().unwrap_or_default();
        return a
            .iter()
            .map(dynamic_to_json)
            .collect::<Result<_, _>>()
            .map(J::Array);
    }
    if d.is_map() {
        let m = d.clone().cast::<rhai::Map>();
        let mut o = serde_json::Map::new();
        for (k, v) in m {
            o.insert(k.to_string(), dynamic_to_json(&v)?);
        }
        return Ok(J::Object(o));
    }
    from_dynamic(d.clone()).map(|v| v.to_json())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, cols: &[(&str, Value)]) -> Result<Value, String> {
        let names: Vec<String> = cols.iter().map(|(n, _)| n.to_string()).collect();
        let e = Expression::compile(text, Some(&names))?;
        e.eval(|c| cols.iter().find(|(n, _)| *n == c).map(|(_, v)| v.clone()))
    }

    #[test]
    fn conditionals_and_string_building() {
        let cols = [
            ("first", Value::Text("Ada".into())),
            ("last", Value::Text("Lovelace".into())),
            ("unread", Value::Int(1)),
        ];
        assert_eq!(
            eval(r#"if unread == 1 { "new" } else { "read" }"#, &cols),
            Ok(Value::Text("new".into()))
        );
        assert_eq!(
            eval(r#"first + " " + upper(last)"#, &cols),
            Ok(Value::Text("Ada LOVELACE".into()))
        );
        assert_eq!(
            eval("`${first}-${unread}`", &cols),
            Ok(Value::Text("Ada-1".into()))
        );
    }

    #[test]
    fn the_data_fix_functions_keep_their_meaning() {
        let cols = [("s", Value::Text("  Hello  ".into())), ("n", Value::Null)];
        assert_eq!(
            eval("truncate(trim(s), 3)", &cols),
            Ok(Value::Text("Hel".into()))
        );
        assert_eq!(eval("substr(s, 3, 2)", &cols), Ok(Value::Text("He".into())));
        assert_eq!(eval("lower(n)", &cols), Ok(Value::Null));
        assert_eq!(eval("coalesce(n, 7)", &cols), Ok(Value::Int(7)));
        assert_eq!(
            eval(r#"concat("a", n, 1)"#, &cols),
            Ok(Value::Text("a1".into()))
        );
        assert_eq!(eval(r#"add("2", 3)"#, &cols), Ok(Value::Int(5)));
        assert_eq!(
            eval(r#"replace(s, "l", "L")"#, &cols),
            Ok(Value::Text("  HeLLo  ".into()))
        );
    }

    #[test]
    fn uuid5_matches_the_spec_transform() {
        let cols = [("thread_id", Value::Int(1)), ("msg", Value::Int(2))];
        let want = uuid5(
            &uuid5_namespace("messages"),
            &[&Value::Int(1), &Value::Int(2)],
        );
        assert_eq!(
            eval(r#"uuid5("messages", thread_id, msg)"#, &cols),
            Ok(Value::Text(want.to_string()))
        );
    }

    #[test]
    fn unknown_columns_and_bad_syntax_are_clear_errors() {
        let cols = [("a", Value::Int(1))];
        let err = eval("b + 1", &cols).unwrap_err();
        assert!(
            err.contains("reads `b`, which is not a column (columns: a)"),
            "{err}"
        );
        let err = eval("'text'", &cols).unwrap_err();
        assert!(err.contains("double quotes"), "{err}");
        let e = Expression::compile("x + y * 2", None).map_err(|e| e.to_string());
        assert_eq!(
            e.map(|e| e.reads().to_vec()),
            Ok(vec!["x".into(), "y".into()])
        );
    }

    #[test]
    fn the_sandbox_stops_runaway_expressions() {
        let err = eval("let x = 0; loop { x += 1; }", &[]).unwrap_err();
        assert!(err.contains("operations"), "{err}");
        assert!(eval(r#"eval("1")"#, &[]).is_err());
        assert!(eval(r#"import "x" as y; 1"#, &[]).is_err());
    }
}
