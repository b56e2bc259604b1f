//! The expressions of the declarative mapper: `set = { first_name =
//! "truncate(first_name, 1000)" }`. Small on purpose: literals (`'text'`,
//! numbers, `null`, `true`, `false`), the record's fields by name, and a few
//! functions. They are evaluated by the platform, not the database, so a dry
//! run shows the exact value each record would get and the write can be
//! guarded by the values the filter read.
//!
//! Functions: `truncate(s, n)` (first n characters), `substr(s, start[, len])`
//! (1-based, characters), `lower(s)`, `upper(s)`, `trim(s)`, `concat(a, ...)`,
//! `replace(s, from, to)`, `coalesce(a, ...)`, `add(a, b)`, `sub(a, b)`,
//! `mul(a, b)`. A function of `null` is `null` (except `coalesce`, `concat`).

use serde_json::Value as Json;

use crate::record::Record;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Literal(Json),
    Field(String),
    Call(Func, Vec<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Truncate,
    Substr,
    Lower,
    Upper,
    Trim,
    Concat,
    Replace,
    Coalesce,
    Add,
    Sub,
    Mul,
}

impl Func {
    const ALL: [(&'static str, Func, usize, Option<usize>); 11] = [
        ("truncate", Func::Truncate, 2, Some(2)),
        ("substr", Func::Substr, 2, Some(3)),
        ("lower", Func::Lower, 1, Some(1)),
        ("upper", Func::Upper, 1, Some(1)),
        ("trim", Func::Trim, 1, Some(1)),
        ("concat", Func::Concat, 1, None),
        ("replace", Func::Replace, 3, Some(3)),
        ("coalesce", Func::Coalesce, 1, None),
        ("add", Func::Add, 2, Some(2)),
        ("sub", Func::Sub, 2, Some(2)),
        ("mul", Func::Mul, 2, Some(2)),
    ];

    fn names() -> String {
        Func::ALL.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
    }
}

impl Expr {
    /// Parses an expression; the error says what is wrong and where.
    pub fn parse(text: &str) -> Result<Expr, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        let e = p.expr()?;
        p.ws();
        if p.i < p.s.len() {
            return Err(format!(
                "unexpected `{}` at character {} of `{text}`",
                &text[p.i..],
                p.i + 1
            ));
        }
        Ok(e)
    }

    /// The fields the expression reads.
    pub fn fields(&self, out: &mut Vec<String>) {
        match self {
            Expr::Literal(_) => {}
            Expr::Field(f) => {
                if !out.contains(f) {
                    out.push(f.clone());
                }
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.fields(out)),
        }
    }

    /// The expression's value for one record.
    pub fn eval(&self, rec: &Record) -> Result<Json, String> {
        match self {
            Expr::Literal(v) => Ok(v.clone()),
            Expr::Field(f) => rec
                .get(f)
                .cloned()
                .ok_or_else(|| format!("the filter returned no field `{f}`")),
            Expr::Call(func, args) => {
                let vals = args
                    .iter()
                    .map(|a| a.eval(rec))
                    .collect::<Result<Vec<_>, _>>()?;
                call(*func, &vals)
            }
        }
    }
}

fn text_of(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn int_of(v: &Json, what: &str) -> Result<i64, String> {
    match v {
        Json::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .ok_or_else(|| format!("{what}: {n} is not a whole number")),
        Json::String(s) => s
            .trim()
            .parse()
            .map_err(|_| format!("{what}: `{s}` is not a number")),
        other => Err(format!("{what}: {other} is not a number")),
    }
}

fn arith(
    a: &Json,
    b: &Json,
    name: &str,
    op: fn(f64, f64) -> f64,
    iop: fn(i64, i64) -> Option<i64>,
) -> Result<Json, String> {
    let num = |v: &Json| -> Result<Json, String> {
        match v {
            Json::Number(_) => Ok(v.clone()),
            Json::String(s) => serde_json::from_str::<Json>(s.trim())
                .ok()
                .filter(Json::is_number)
                .ok_or_else(|| format!("{name}: `{s}` is not a number")),
            other => Err(format!("{name}: {other} is not a number")),
        }
    };
    let (a, b) = (num(a)?, num(b)?);
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return iop(x, y)
            .map(Json::from)
            .ok_or_else(|| format!("{name}({x}, {y}) overflows"));
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    serde_json::Number::from_f64(op(x, y))
        .map(Json::Number)
        .ok_or_else(|| format!("{name}({x}, {y}) is not a finite number"))
}

fn call(func: Func, v: &[Json]) -> Result<Json, String> {
    let null_in = v.iter().any(Json::is_null);
    match func {
        Func::Coalesce => {
            return Ok(v
                .iter()
                .find(|x| !x.is_null())
                .cloned()
                .unwrap_or(Json::Null));
        }
        Func::Concat => {
            return Ok(Json::String(
                v.iter().filter(|x| !x.is_null()).map(text_of).collect(),
            ));
        }
        _ if null_in => return Ok(Json::Null),
        _ => {}
    }
    Ok(match func {
        Func::Truncate => {
            let n = int_of(&v[1], "truncate")?.max(0) as usize;
            Json::String(text_of(&v[0]).chars().take(n).collect())
        }
        Func::Substr => {
            let start = int_of(&v[1], "substr")?.max(1) as usize - 1;
            let s = text_of(&v[0]);
            let it = s.chars().skip(start);
            Json::String(match v.get(2) {
                Some(len) => it.take(int_of(len, "substr")?.max(0) as usize).collect(),
                None => it.collect(),
            })
        }
        Func::Lower => Json::String(text_of(&v[0]).to_lowercase()),
        Func::Upper => Json::String(text_of(&v[0]).to_uppercase()),
        Func::Trim => Json::String(text_of(&v[0]).trim().to_string()),
        Func::Replace => Json::String(text_of(&v[0]).replace(&text_of(&v[1]), &text_of(&v[2]))),
        Func::Add => arith(&v[0], &v[1], "add", |a, b| a + b, i64::checked_add)?,
        Func::Sub => arith(&v[0], &v[1], "sub", |a, b| a - b, i64::checked_sub)?,
        Func::Mul => arith(&v[0], &v[1], "mul", |a, b| a * b, i64::checked_mul)?,
        Func::Coalesce | Func::Concat => Json::Null,
    })
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn expr(&mut self) -> Result<Expr, String> {
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err(format!("`{}` ends where a value was expected", self.text));
        };
        if c == b'\'' {
            return self.string();
        }
        if c.is_ascii_digit() || c == b'-' {
            let start = self.i;
            self.i += 1;
            while self.i < self.s.len()
                && (self.s[self.i].is_ascii_digit() || self.s[self.i] == b'.')
            {
                self.i += 1;
            }
            let lit = &self.text[start..self.i];
            return serde_json::from_str::<Json>(lit)
                .ok()
                .filter(Json::is_number)
                .map(Expr::Literal)
                .ok_or_else(|| format!("`{lit}` is not a number (at character {})", start + 1));
        }
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = self.i;
            while self.i < self.s.len()
                && (self.s[self.i].is_ascii_alphanumeric() || self.s[self.i] == b'_')
            {
                self.i += 1;
            }
            let name = &self.text[start..self.i];
            self.ws();
            if self.s.get(self.i) == Some(&b'(') {
                self.i += 1;
                let lower = name.to_ascii_lowercase();
                let Some(&(_, func, min, max)) = Func::ALL.iter().find(|f| f.0 == lower) else {
                    return Err(format!(
                        "unknown function `{name}`; the functions are {}",
                        Func::names()
                    ));
                };
                let mut args = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b')') {
                    self.i += 1;
                } else {
                    loop {
                        args.push(self.expr()?);
                        self.ws();
                        match self.s.get(self.i) {
                            Some(b',') => self.i += 1,
                            Some(b')') => {
                                self.i += 1;
                                break;
                            }
                            _ => {
                                return Err(format!(
                                    "expected `,` or `)` in the arguments of `{name}` at character {}",
                                    self.i + 1
                                ));
                            }
                        }
                    }
                }
                if args.len() < min || max.is_some_and(|m| args.len() > m) {
                    let want = match max {
                        Some(m) if m == min => format!("{min}"),
                        Some(m) => format!("{min} to {m}"),
                        None => format!("at least {min}"),
                    };
                    return Err(format!(
                        "`{name}` takes {want} arguments, not {}",
                        args.len()
                    ));
                }
                return Ok(Expr::Call(func, args));
            }
            return Ok(match name.to_ascii_lowercase().as_str() {
                "null" => Expr::Literal(Json::Null),
                "true" => Expr::Literal(Json::Bool(true)),
                "false" => Expr::Literal(Json::Bool(false)),
                _ => Expr::Field(name.to_string()),
            });
        }
        Err(format!(
            "unexpected `{}` at character {} of `{}`",
            c as char,
            self.i + 1,
            self.text
        ))
    }

    fn string(&mut self) -> Result<Expr, String> {
        let start = self.i;
        self.i += 1;
        let mut out = String::new();
        let mut seg = self.i;
        loop {
            match self.s.get(self.i) {
                None => {
                    return Err(format!(
                        "unterminated string starting at character {}",
                        start + 1
                    ));
                }
                Some(b'\'') if self.s.get(self.i + 1) == Some(&b'\'') => {
                    out.push_str(&self.text[seg..=self.i]);
                    self.i += 2;
                    seg = self.i;
                }
                Some(b'\'') => {
                    out.push_str(&self.text[seg..self.i]);
                    self.i += 1;
                    return Ok(Expr::Literal(Json::String(out)));
                }
                Some(_) => self.i += 1,
            }
        }
    }
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
    fn functions_nest_and_null_propagates() {
        let e = Expr::parse("concat(upper(substr(first_name, 1, 3)), '-', add(n, 1), 'it''s')")
            .unwrap();
        assert_eq!(e.eval(&rec()), Ok(json!("ANN-42it's")));
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
    fn mistakes_are_named() {
        assert!(
            Expr::parse("shout(first_name)")
                .unwrap_err()
                .contains("unknown function `shout`")
        );
        assert!(
            Expr::parse("truncate(first_name)")
                .unwrap_err()
                .contains("takes 2 arguments")
        );
        assert!(Expr::parse("'open").unwrap_err().contains("unterminated"));
        assert!(Expr::parse("a b").unwrap_err().contains("unexpected"));
        assert!(
            Expr::parse("missing")
                .unwrap()
                .eval(&rec())
                .unwrap_err()
                .contains("no field `missing`")
        );
    }
}
