//! TOML → [`Spec`]. The raw structures keep the byte span of every field so
//! that errors found after parsing can name the line.

use std::fmt;

use super::{
    ColumnSpec, DEFAULT_BUCKETS, DEFAULT_CHUNK_ROWS, DedupeSpec, Endpoint, Keep, LoadLimits,
    Relation, ReverseSpec, SideLimits, SourceSpec, Spec, TableSpec, Track, TrackMap, Transform,
};
use crate::error::{EngineError, Result};
use crate::value::{ColumnType, Value};
use serde::Deserialize;
use serde::de::{self, MapAccess, Visitor};
use toml::Spanned;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    chunk_rows: Option<Spanned<i64>>,
    source: RawEndpoint,
    target: RawEndpoint,
    #[serde(default)]
    tables: Vec<Spanned<RawTable>>,
    throttle: Option<RawThrottle>,
}

/// `[throttle]`: the load limits of the source and the target.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawThrottle {
    source_active: Option<Spanned<i64>>,
    target_active: Option<Spanned<i64>>,
    source_lag_s: Option<Spanned<f64>>,
    target_lag_s: Option<Spanned<f64>>,
    check_every_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndpoint {
    url: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    name: String,
    key: Spanned<Vec<String>>,
    buckets: Option<Spanned<i64>>,
    source: Option<Spanned<RawSource>>,
    #[serde(default)]
    transformers: Vec<String>,
    dedupe: Option<Spanned<RawDedupe>>,
    columns: RawColumns,
    reverse: Option<Spanned<RawReverse>>,
}

/// `[tables.reverse]`: how a row of the target maps back to a source row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReverse {
    table: Option<String>,
    key: Option<Vec<String>>,
    columns: Option<RawColumns>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    table: Option<String>,
    query: Option<String>,
    key: Option<Vec<String>>,
    bucket: Option<String>,
    #[serde(default)]
    tracks: Vec<Spanned<RawTrack>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTrack {
    table: String,
    key: Option<Vec<String>>,
    query: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDedupe {
    key: Option<Vec<String>>,
    keep: Option<String>,
    group: Option<Vec<String>>,
}

/// `[tables.columns]`, in declaration order.
struct RawColumns(Vec<(String, Spanned<RawColumn>)>);

impl<'de> Deserialize<'de> for RawColumns {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawColumns;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a table of target columns")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<RawColumns, A::Error> {
                let mut out = Vec::new();
                while let Some(name) = map.next_key::<String>()? {
                    out.push((name, map.next_value()?));
                }
                Ok(RawColumns(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// A column: `"source_column"` or `{ from = …, cast = …, … }`.
enum RawColumn {
    From(String),
    Full(Box<RawColumnFull>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumnFull {
    from: Option<String>,
    constant: Option<toml::Value>,
    json: Option<toml::Value>,
    uuid5: Option<Vec<String>>,
    namespace: Option<String>,
    expr: Option<String>,
    #[serde(alias = "type")]
    cast: Option<String>,
    #[serde(default)]
    trim: bool,
    #[serde(default)]
    lower: bool,
}

impl<'de> Deserialize<'de> for RawColumn {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawColumn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(
                    "a source column name or a table such as { from = \"col\", cast = \"int\" }",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<RawColumn, E> {
                Ok(RawColumn::From(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                map: A,
            ) -> std::result::Result<RawColumn, A::Error> {
                RawColumnFull::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(|f| RawColumn::Full(Box::new(f)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Line numbers of byte offsets in the spec text.
struct Lines<'a> {
    text: &'a str,
}

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1
    }

    /// A spanned value's line, and the value.
    fn unspan<T>(&self, v: Spanned<T>) -> (usize, T) {
        (self.of(v.span().start), v.into_inner())
    }

    /// An optional section, built by `f` from its line and contents.
    fn section<R, T>(
        &self,
        raw: Option<Spanned<R>>,
        f: impl FnOnce(usize, R) -> Result<T>,
    ) -> Result<Option<T>> {
        raw.map(|r| {
            let (line, r) = self.unspan(r);
            f(line, r)
        })
        .transpose()
    }

    /// The columns of a `columns` table (`field` its path), in order, each
    /// with its line.
    fn columns(
        &self,
        raw: RawColumns,
        field: &str,
        err: &impl Fn(usize, String, String) -> EngineError,
    ) -> Result<Vec<ColumnSpec>> {
        raw.0
            .into_iter()
            .map(|(name, raw_col)| {
                let (col_line, raw_col) = self.unspan(raw_col);
                let col_field = format!("{field}.{name}");
                column(name, raw_col, col_line).map_err(|m| err(col_line, col_field, m))
            })
            .collect()
    }
}

/// A whole number within `range`, if it is one.
fn count_in(v: &Spanned<i64>, range: std::ops::RangeInclusive<usize>) -> Option<usize> {
    usize::try_from(*v.get_ref())
        .ok()
        .filter(|n| range.contains(n))
}

/// Exactly one of two alternative fields, as `left` or `right` makes it;
/// `None` when both or neither are given.
fn exactly_one<A, B, T>(
    a: Option<A>,
    b: Option<B>,
    left: impl FnOnce(A) -> T,
    right: impl FnOnce(B) -> T,
) -> Option<T> {
    match (a, b) {
        (Some(a), None) => Some(left(a)),
        (None, Some(b)) => Some(right(b)),
        _ => None,
    }
}

pub(super) fn parse(text: &str, file: &str) -> Result<Spec> {
    let raw: RawSpec = toml::from_str(text).map_err(|e| {
        let line = e.span().map(|s| Lines { text }.of(s.start));
        EngineError::Spec {
            at: match line {
                Some(l) => format!("{file} line {l}"),
                None => file.to_string(),
            },
            message: e.message().to_string(),
        }
    })?;
    let lines = Lines { text };
    let err = |line: usize, field: String, message: String| EngineError::Spec {
        at: format!("{file} line {line}, {field}"),
        message,
    };

    let chunk_rows = match &raw.chunk_rows {
        None => DEFAULT_CHUNK_ROWS,
        Some(v) => count_in(v, 1..=1_000_000).ok_or_else(|| {
            err(
                lines.of(v.span().start),
                "chunk_rows".into(),
                "must be between 1 and 1000000".into(),
            )
        })?,
    };

    let mut tables = Vec::new();
    for raw_table in raw.tables {
        let (line, t) = lines.unspan(raw_table);
        let field = format!("tables[{}]", t.name);
        let buckets = match &t.buckets {
            None => DEFAULT_BUCKETS,
            Some(v) => count_in(v, 1..=10_000).ok_or_else(|| {
                err(
                    lines.of(v.span().start),
                    format!("{field}.buckets"),
                    "must be between 1 and 10000".into(),
                )
            })?,
        };
        let columns = lines.columns(t.columns, &format!("{field}.columns"), &err)?;

        let source = lines.section(t.source, |s_line, s| {
            let relation = exactly_one(s.table, s.query, Relation::Table, Relation::Query)
                .ok_or_else(|| {
                    let m = "give exactly one of `table` or `query`";
                    err(s_line, format!("{field}.source"), m.into())
                })?;
            let key = match s.key {
                Some(k) => k,
                // Without an explicit source key, the target key columns
                // must be copies of source columns.
                None => default_source_key(&t.key, &columns)
                    .map_err(|m| err(lines.of(t.key.span().start), format!("{field}.key"), m))?,
            };
            let bucket = match s.bucket {
                Some(b) => b,
                None => key.first().cloned().unwrap_or_default(),
            };
            let mut tracks = Vec::new();
            for tr in s.tracks {
                let (tr_line, tr) = lines.unspan(tr);
                let map = exactly_one(tr.key, tr.query, TrackMap::Columns, TrackMap::Query)
                    .ok_or_else(|| {
                        let f = format!("{field}.source.tracks[{}]", tr.table);
                        err(tr_line, f, "give exactly one of `key` or `query`".into())
                    })?;
                tracks.push(Track {
                    table: tr.table,
                    map,
                });
            }
            if tracks.is_empty()
                && let Relation::Table(name) = &relation
            {
                tracks.push(Track {
                    table: name.clone(),
                    map: TrackMap::Columns(key.clone()),
                });
            }
            Ok(SourceSpec {
                relation,
                key,
                bucket,
                tracks,
                line: s_line,
            })
        })?;

        let dedupe = lines.section(t.dedupe, |d_line, d| {
            let keep = match d.keep.as_deref() {
                None | Some("first") => Keep::First,
                Some("last") => Keep::Last,
                Some(other) => {
                    return Err(err(
                        d_line,
                        format!("{field}.dedupe.keep"),
                        format!("`{other}` is not `first` or `last`"),
                    ));
                }
            };
            let key = d.key.unwrap_or_else(|| t.key.get_ref().clone());
            let group = match d.group {
                Some(g) => g,
                None if source.is_some() => derive_group(&key, &columns)
                    .map_err(|m| err(d_line, format!("{field}.dedupe.group"), m))?,
                None => Vec::new(),
            };
            Ok(DedupeSpec {
                key,
                keep,
                group,
                line: d_line,
            })
        })?;

        let reverse = lines.section(t.reverse, |r_line, r| {
            let columns = r.columns.unwrap_or(RawColumns(Vec::new()));
            Ok(ReverseSpec {
                table: r.table,
                key: r.key,
                columns: lines.columns(columns, &format!("{field}.reverse.columns"), &err)?,
                line: r_line,
            })
        })?;

        tables.push(TableSpec {
            name: t.name,
            key: t.key.into_inner(),
            buckets,
            source,
            columns,
            transformers: t.transformers,
            dedupe,
            reverse,
            line,
        });
    }

    let throttle = match raw.throttle {
        None => LoadLimits::default(),
        Some(t) => load_limits(t, &lines, &err)?,
    };

    Ok(Spec {
        file: file.to_string(),
        source: Endpoint {
            url: raw.source.url,
        },
        target: Endpoint {
            url: raw.target.url,
        },
        chunk_rows,
        tables,
        throttle,
    })
}

/// `[throttle]` → [`LoadLimits`]: counts at least 1, lags above 0, checks
/// between every 100 ms and every minute.
fn load_limits(
    t: RawThrottle,
    lines: &Lines<'_>,
    err: &impl Fn(usize, String, String) -> EngineError,
) -> Result<LoadLimits> {
    let count = |v: Option<Spanned<i64>>, field: &str| -> Result<Option<u64>> {
        v.map(|v| {
            u64::try_from(*v.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    err(
                        lines.of(v.span().start),
                        format!("throttle.{field}"),
                        "must be a whole number of at least 1 (statements running at once)".into(),
                    )
                })
        })
        .transpose()
    };
    let lag = |v: Option<Spanned<f64>>, field: &str| -> Result<Option<f64>> {
        v.map(|v| {
            Some(*v.get_ref())
                .filter(|s| s.is_finite() && *s > 0.0)
                .ok_or_else(|| {
                    err(
                        lines.of(v.span().start),
                        format!("throttle.{field}"),
                        "must be a number of seconds above 0".into(),
                    )
                })
        })
        .transpose()
    };
    let check_every_ms = match t.check_every_ms {
        None => LoadLimits::default().check_every_ms,
        Some(v) => u64::try_from(*v.get_ref())
            .ok()
            .filter(|ms| (100..=60_000).contains(ms))
            .ok_or_else(|| {
                err(
                    lines.of(v.span().start),
                    "throttle.check_every_ms".into(),
                    "must be between 100 and 60000 (milliseconds)".into(),
                )
            })?,
    };
    Ok(LoadLimits {
        source: SideLimits {
            active: count(t.source_active, "source_active")?,
            lag_s: lag(t.source_lag_s, "source_lag_s")?,
        },
        target: SideLimits {
            active: count(t.target_active, "target_active")?,
            lag_s: lag(t.target_lag_s, "target_lag_s")?,
        },
        check_every_ms,
    })
}

fn default_source_key(
    key: &Spanned<Vec<String>>,
    columns: &[ColumnSpec],
) -> std::result::Result<Vec<String>, String> {
    key.get_ref()
        .iter()
        .map(|k| match columns.iter().find(|c| &c.name == k).map(|c| &c.transform) {
            Some(Transform::Copy(from)) => Ok(from.clone()),
            None => Err(format!("key column `{k}` is not one of the table's columns")),
            Some(_) => Err(format!(
                "key column `{k}` is not a copy of a source column; give the source key as `source.key`"
            )),
        })
        .collect()
}

fn column(name: String, raw: RawColumn, line: usize) -> std::result::Result<ColumnSpec, String> {
    let full = match raw {
        RawColumn::From(from) => {
            return Ok(ColumnSpec {
                name,
                transform: Transform::Copy(from),
                cast: None,
                trim: false,
                lower: false,
                line,
            });
        }
        RawColumn::Full(f) => *f,
    };
    let given = [
        full.from.is_some(),
        full.constant.is_some(),
        full.json.is_some(),
        full.uuid5.is_some(),
        full.expr.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given > 1 {
        return Err("give only one of `from`, `constant`, `json`, `uuid5` or `expr`".into());
    }
    if full.namespace.is_some() && full.uuid5.is_none() {
        return Err("`namespace` belongs with `uuid5`".into());
    }
    let cast = full
        .cast
        .as_deref()
        .map(str::parse::<ColumnType>)
        .transpose()?;
    let transform = if let Some(from) = full.from {
        Transform::Copy(from)
    } else if let Some(c) = full.constant {
        Transform::Constant(constant(c))
    } else if let Some(j) = full.json {
        Transform::Json(json_fields(j)?)
    } else if let Some(from) = full.uuid5 {
        let ns = full
            .namespace
            .ok_or("`uuid5` needs a `namespace` (a UUID, or any text that names the ID space)")?;
        Transform::Uuid5 {
            namespace: crate::ids::uuid5_namespace(&ns),
            from,
        }
    } else if let Some(e) = full.expr {
        crate::expr::Expression::compile(&e, None)?;
        Transform::Expr(e)
    } else {
        Transform::Slot
    };
    Ok(ColumnSpec {
        name,
        transform,
        cast,
        trim: full.trim,
        lower: full.lower,
        line,
    })
}

fn constant(v: toml::Value) -> Value {
    match v {
        toml::Value::String(s) => Value::Text(s),
        toml::Value::Integer(i) => Value::Int(i),
        toml::Value::Float(f) => Value::Float(f),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::Text(d.to_string()),
        other => Value::Json(serde_json::to_value(&other).unwrap_or(serde_json::Value::Null)),
    }
}

/// `json = ["a", "b"]` (field names = column names) or `json = { field = "column" }`.
fn json_fields(v: toml::Value) -> std::result::Result<Vec<(String, String)>, String> {
    let bad =
        || "`json` is a list of source columns or a table of field = \"source column\"".to_string();
    match v {
        toml::Value::Array(items) => items
            .into_iter()
            .map(|i| match i {
                toml::Value::String(s) => Ok((s.clone(), s)),
                _ => Err(bad()),
            })
            .collect(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k, s)),
                _ => Err(bad()),
            })
            .collect(),
        _ => Err(bad()),
    }
}

/// The source columns whose values decide a dedupe key, from the key
/// columns' mappings (copies, UUIDv5 and JSON of source columns; constants
/// add none). A key column a transformer fills cannot be traced back: the
/// spec must then say `group = [...]`.
fn derive_group(
    key: &[String],
    columns: &[ColumnSpec],
) -> std::result::Result<Vec<String>, String> {
    let mut group: Vec<String> = Vec::new();
    let mut add = |c: &String| {
        if !group.contains(c) {
            group.push(c.clone());
        }
    };
    for k in key {
        let Some(col) = columns.iter().find(|c| &c.name == k) else {
            continue;
        };
        match &col.transform {
            Transform::Copy(c) => add(c),
            Transform::Uuid5 { from, .. } => from.iter().for_each(&mut add),
            Transform::Json(fields) => fields.iter().for_each(|(_, c)| add(c)),
            Transform::Expr(e) => crate::expr::Expression::compile(e, None)?
                .reads()
                .iter()
                .for_each(&mut add),
            Transform::Constant(_) => {}
            Transform::Slot => {
                return Err(format!(
                    "dedupe key column `{k}` is filled by a transformer, so Tern cannot tell which \
                     source records share a row: name the source columns that decide it, e.g. \
                     group = [\"thread_id\", \"msg_no\"]"
                ));
            }
        }
    }
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::super::Spec;
    use super::*;
    use crate::spec::fixture::refused;

    fn minimal() -> String {
        crate::spec::fixture::people(
            "sqlite://b.db",
            "\"id\"",
            "",
            "",
            r#"id = "member_id"
email = { from = "email", trim = true, lower = true }
kind = { constant = "member" }
doc = { json = { name = "name", since = "created_at" } }
uid = { uuid5 = ["member_id"], namespace = "members" }"#,
        )
    }

    #[test]
    fn parses_columns_in_declaration_order_with_their_lines() -> anyhow::Result<()> {
        let spec = Spec::parse(&minimal(), "t.toml")?;
        let t = &spec.tables[0];
        let names: Vec<_> = t.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["id", "email", "kind", "doc", "uid"]);
        assert_eq!(t.columns[1].line, 16);
        let src = t.source.as_ref().expect("source");
        assert_eq!(src.key, ["member_id"]);
        assert_eq!(src.bucket, "member_id");
        assert_eq!(
            t.columns[2].transform,
            Transform::Constant(Value::Text("member".into()))
        );
        Ok(())
    }

    #[test]
    fn an_unknown_field_names_its_line() {
        let text = minimal().replace("trim = true", "trimm = true");
        let err = refused(&text);
        assert!(err.starts_with("s.toml line 16"), "{err}");
        assert!(err.contains("trimm"), "{err}");
    }

    #[test]
    fn a_bad_cast_type_names_line_and_field() {
        let text = minimal().replace("trim = true", "cast = \"widget\"");
        let err = refused(&text);
        assert_eq!(
            err,
            "s.toml line 16, tables[people].columns.email: unknown type `widget` (expected one of bool, int, float, decimal, text, bytes, uuid, json, timestamp, timestamptz, date)"
        );
    }

    #[test]
    fn a_derived_key_needs_an_explicit_source_key() {
        let text = minimal().replace("key = [\"id\"]", "key = [\"uid\"]");
        let err = refused(&text);
        assert!(err.contains("line 9, tables[people].key"), "{err}");
        assert!(err.contains("source.key"), "{err}");
    }
}
