//! Group checksums for transformed keys: the fast path of a full diff when
//! the target key is not a copy of the source key (UUIDv5 keys, expression
//! keys), where a chunk of source keys is no key range in the target.
//!
//! Tern transforms the chunk's source rows as always. It then hashes each
//! expected row itself: the MD5 of the row's canonical text, the same text
//! the target database builds from its columns (`checksum.rs` writes it),
//! and sums them per group, a group being the first byte of that MD5 (one
//! hash a row on each side). The target computes the same sums over its rows
//! whose `_tern_source_key` is one of the chunk's source keys (found through
//! that column's index), grouped the same way, without sending a row. A row
//! that differs lands in one group on each side, and both differ. Only
//! the groups whose sums differ are read row by row (by key and by source
//! key, as the row-by-row path reads every row), and compared there, so
//! every mismatch is found and stored with its fields exactly as before.
//!
//! Rows of the target whose record is gone have no source key in any chunk.
//! When the source key is one integer column that is also the bucket column,
//! a chunk answers for every key from the previous chunk's last to its own
//! last, and the target sums that whole span: such a row makes its group
//! differ, and the group's rows outside the chunk's keys are read and
//! compared as extra, so the whole-table diff needs no orphan pass after the
//! chunks. Otherwise the orphan pass (`orphans.rs`) finds them, as on the
//! row path.
//! Dedupe and shared rows (several records, one row) and column types
//! without a canonical text in both places (floats, decimals, JSON, bytes,
//! time zones) keep the row-by-row path; the reason is in the run's report.

use std::collections::{HashMap, HashSet};

use md5::{Digest, Md5};

use super::context::{Ctx, GroupSums, KEYS_PER_BATCH};
use super::sums::{Sum, piece, row_hash};
use crate::chunk::KeyRange;
use crate::connector::{Dialect, SOURCE_KEY_COLUMN};
use crate::error::Result;
use crate::value::{ColumnType, TimestampText, Value};

/// What the group sums of a chunk said: the expected rows still to read row
/// by row (those of differing groups) and the rows found equal.
pub(super) struct Checked {
    pub expected: Vec<Vec<Value>>,
    pub equal_rows: u64,
    /// Target rows of differing groups inside the chunk's span whose source
    /// key is no record of the chunk: rows of deleted records (or of records
    /// inserted since the chunk was read), compared as extra.
    pub strays: Vec<Vec<Value>>,
}

impl GroupSums {
    /// The group checksum plan of the table, or why it is verified row by row.
    pub(super) fn plan(ctx: &Ctx) -> std::result::Result<GroupSums, String> {
        let td = ctx.target.dialect();
        if td == Dialect::Sqlite {
            return Err("SQLite has no MD5 to checksum groups with".into());
        }
        if ctx.shared.is_some() || ctx.shape.dedupe.is_some() {
            return Err("several records share a target row (dedupe)".into());
        }
        if ctx.shape.source_key.is_none() {
            return Err("the target rows do not keep their source key".into());
        }
        let n = ctx.compared_len();
        let mut pieces = Vec::with_capacity(n);
        let mut types = Vec::with_capacity(n);
        for (i, name) in ctx.shape.columns[..n].iter().enumerate() {
            let ty = ctx
                .shape
                .types
                .get(i)
                .copied()
                .flatten()
                .ok_or_else(|| format!("the target does not say the type of column {name}"))?;
            let supported = match ty {
                ColumnType::Int
                | ColumnType::Bool
                | ColumnType::Text
                | ColumnType::Timestamp
                | ColumnType::Date => true,
                ColumnType::Uuid => td == Dialect::Postgres,
                _ => false,
            };
            if !supported {
                return Err(format!(
                    "column {name} ({ty}) has no canonical text in both Tern and the target"
                ));
            }
            pieces.push(piece(td, &td.quote(name), ty, ty));
            types.push(ty);
        }
        Ok(GroupSums {
            target_hash: row_hash(td, &pieces),
            types,
        })
    }

    /// Checks a chunk's expected rows against the target's group sums. When
    /// the chunk answers for a range of integer source keys (`span`, see
    /// [`Span::of_chunk`]), the target sums its rows of that range through
    /// the `_tern_source_key` index (one range scan) instead of looking up
    /// every key of the chunk, and a row of the range that is no record of
    /// the chunk (an orphan) makes its group differ: it is read and returned
    /// in [`Checked::strays`].
    pub(super) async fn check(
        &self,
        ctx: &Ctx,
        expected: Vec<Vec<Value>>,
        span: Option<Span>,
    ) -> Result<Checked> {
        let Some(sk) = ctx.shape.source_key else {
            return Ok(Checked {
                expected,
                equal_rows: 0,
                strays: Vec::new(),
            });
        };
        let mut mine: HashMap<i64, Sum> = HashMap::new();
        let mut group_of = Vec::with_capacity(expected.len());
        let mut keys: Vec<String> = Vec::with_capacity(expected.len());
        let mut seen = HashSet::with_capacity(expected.len());
        let mut text = String::new();
        for row in &expected {
            let key = match &row[sk] {
                Value::Text(t) => t.as_str(),
                _ => "",
            };
            if seen.insert(key) {
                keys.push(key.to_string());
            }
            text.clear();
            self.canonical(&row[..self.types.len()], &mut text);
            let h = Md5::digest(text.as_bytes());
            let g = group_of_hash(&h);
            group_of.push(g);
            let s = mine.entry(g).or_insert(Sum::EMPTY);
            s.add(u64::from_be_bytes(h[..8].try_into().unwrap_or([0; 8])));
        }
        let ranges = span
            .filter(|_| ctx.target.dialect() == Dialect::Postgres)
            .map(Span::text_ranges);
        let theirs = match &ranges {
            Some(ranges) => self.target_sums_in(ctx, ranges).await?,
            None => self.target_sums(ctx, &keys).await?,
        };
        let differ: HashSet<i64> = mine
            .keys()
            .chain(theirs.keys())
            .filter(|g| mine.get(g) != theirs.get(g))
            .copied()
            .collect();
        let mut equal_rows = 0;
        let mut to_read = Vec::new();
        for (row, g) in expected.into_iter().zip(group_of) {
            if differ.contains(&g) {
                to_read.push(row);
            } else {
                equal_rows += 1;
            }
        }
        let strays = match &ranges {
            Some(ranges) if !differ.is_empty() => {
                let mine: HashSet<&str> = keys.iter().map(String::as_str).collect();
                self.strays_in(ctx, ranges, &mine).await?
            }
            _ => Vec::new(),
        };
        Ok(Checked {
            expected: to_read,
            equal_rows,
            strays,
        })
    }

    /// Whether the chunks of a whole-table diff find every orphan themselves
    /// (then the orphan pass has nothing to do): the table is checked by
    /// group sums, each chunk over its whole span of source keys
    /// ([`Span::of_chunk`]) in a PostgreSQL target, and the buckets cover
    /// every key.
    pub(super) fn finds_orphans(ctx: &Ctx) -> bool {
        ctx.grouped.is_some()
            && ctx.target.dialect() == Dialect::Postgres
            && ctx.shape.source_key.is_some()
            && !ctx.range_reads
            && !ctx.row_by_row
            && Span::applies(ctx)
    }

    /// The canonical text of a row's compared values, as `piece` builds it
    /// in the target, fields joined by `|`.
    fn canonical(&self, row: &[Value], out: &mut String) {
        use chrono::Datelike;
        use std::fmt::Write;
        for (i, (v, ty)) in row.iter().zip(&self.types).enumerate() {
            if i > 0 {
                out.push('|');
            }
            let _ = match (v, ty) {
                (Value::Null, _) => write!(out, "~"),
                (Value::Bool(b), _) => write!(out, "{}", u8::from(*b)),
                (Value::Int(n), ColumnType::Bool) => write!(out, "{}", u8::from(*n != 0)),
                (Value::Int(n), _) => write!(out, "{n}"),
                (Value::Text(s), ColumnType::Text) => write!(out, "{}:{s}", s.chars().count()),
                // Written field by field: a format string is parsed anew
                // for every value.
                (Value::Timestamp(t), _) if (0..=9999).contains(&t.year()) => {
                    write!(out, "{}", TimestampText(t))
                }
                (Value::Timestamp(t), _) => write!(out, "{}", t.format("%Y-%m-%d %H:%M:%S%.6f")),
                (Value::Date(d), _) if (0..=9999).contains(&d.year()) => {
                    write!(out, "{:04}-{:02}-{:02}", d.year(), d.month(), d.day())
                }
                (Value::Date(d), _) => write!(out, "{}", d.format("%Y-%m-%d")),
                (Value::Uuid(u), _) => write!(out, "{u}"),
                // Anything else cannot equal the target's text: its group is
                // read row by row.
                (other, _) => write!(out, "\u{0}{}", other.canonical_text()),
            };
        }
    }

    /// The target's sums per group over its rows whose source key's text is
    /// in one of the given ranges (PostgreSQL; see [`Span::text_ranges`]).
    async fn target_sums_in(&self, ctx: &Ctx, ranges: &[TextRange]) -> Result<HashMap<i64, Sum>> {
        let (conds, params) = in_ranges(ctx, ranges);
        let sql = self.pg_sums(ctx, &conds);
        let what = format!("checksum groups of {} in the target", ctx.table);
        let (_, rows) = ctx.target.fetch(&sql, &params, &what).await?;
        super::sums::sums_of(rows, &what)
    }

    /// PostgreSQL's sums per group of the rows meeting any of `conds` (one
    /// index scan each): each row's MD5 computed once (the fence keeps the
    /// planner from writing it twice).
    fn pg_sums(&self, ctx: &Ctx, conds: &[String]) -> String {
        let table = ctx.target.dialect().quote(&ctx.table);
        let rows: Vec<String> = conds
            .iter()
            .map(|c| format!("SELECT {} AS h FROM {table} WHERE {c}", self.target_hash))
            .collect();
        format!(
            "SELECT {g} AS g, count(*), bit_xor(('x' || substr(h, 1, 16))::bit(64)::bigint)::text \
             FROM (SELECT h FROM ({rows}) u OFFSET 0) s GROUP BY 1",
            g = pg_group("h"),
            rows = rows.join(" UNION ALL "),
        )
    }

    /// The target's rows whose source key's text is in one of the ranges but
    /// is none of `mine` (PostgreSQL): the source keys of the range first
    /// (from the index alone, no row hashed), then the rows of those that
    /// are no record of the chunk.
    async fn strays_in(
        &self,
        ctx: &Ctx,
        ranges: &[TextRange],
        mine: &HashSet<&str>,
    ) -> Result<Vec<Vec<Value>>> {
        let d = ctx.target.dialect();
        let (conds, params) = in_ranges(ctx, ranges);
        let sql: Vec<String> = conds
            .iter()
            .map(|c| {
                format!(
                    "SELECT {} FROM {} WHERE {c}",
                    d.quote(SOURCE_KEY_COLUMN),
                    d.quote(&ctx.table)
                )
            })
            .collect();
        let sql = sql.join(" UNION ALL ");
        let what = format!("list the source keys of a chunk's span in {}", ctx.table);
        let (_, keys) = ctx.target.fetch(&sql, &params, &what).await?;
        let gone: Vec<String> = keys
            .into_iter()
            .filter_map(|r| match r.into_iter().next() {
                Some(Value::Text(k)) if !mine.contains(k.as_str()) => Some(k),
                _ => None,
            })
            .collect();
        if gone.is_empty() {
            return Ok(Vec::new());
        }
        ctx.target_lookup(&[], &gone).await
    }

    /// The target's sums per group over the rows of the given source keys.
    async fn target_sums(&self, ctx: &Ctx, keys: &[String]) -> Result<HashMap<i64, Sum>> {
        let d = ctx.target.dialect();
        let table = d.quote(&ctx.table);
        let sk = d.quote(SOURCE_KEY_COLUMN);
        let what = format!("checksum groups of {} in the target", ctx.table);
        let mut out: HashMap<i64, Sum> = HashMap::new();
        let h = &self.target_hash;
        let batches: Vec<(String, Vec<Value>)> = match d {
            // One array parameter: one index scan for the whole chunk.
            Dialect::Postgres => vec![(
                self.pg_sums(
                    ctx,
                    &[format!(
                        "{sk} = ANY(ARRAY(SELECT jsonb_array_elements_text($1::text::jsonb)))"
                    )],
                ),
                vec![Value::Text(
                    serde_json::to_string(keys).unwrap_or_else(|_| "[]".into()),
                )],
            )],
            _ => keys
                .chunks(KEYS_PER_BATCH)
                .map(|part| {
                    let mut params = Vec::with_capacity(part.len());
                    let vals: Vec<Vec<Value>> =
                        part.iter().map(|k| vec![Value::Text(k.clone())]).collect();
                    let cond = d.keys_in(std::slice::from_ref(&sk), &vals, &mut params);
                    (
                        format!(
                            "SELECT CAST(CONV(SUBSTRING(h, 1, 2), 16, 10) AS SIGNED) AS g, COUNT(*), \
                             CAST(BIT_XOR(CAST(CONV(SUBSTRING(h, 1, 16), 16, 10) AS UNSIGNED)) AS CHAR) \
                             FROM (SELECT {h} AS h FROM {table} WHERE {cond}) s GROUP BY 1"
                        ),
                        params,
                    )
                })
                .collect(),
        };
        for (sql, params) in batches {
            let (_, rows) = ctx.target.fetch(&sql, &params, &what).await?;
            for (g, s) in super::sums::sums_of(rows, &what)? {
                out.entry(g).or_insert(Sum::EMPTY).merge(s);
            }
        }
        Ok(out)
    }
}

/// The source keys a chunk answers for, as an inclusive range of integers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    lo: i64,
    hi: i64,
}

/// Source keys' texts of one length between two bounds of that length: for
/// decimal digits of one length, text order is number order (and for
/// negative numbers of one length, the order of their absolute values).
#[derive(Debug, Clone, PartialEq, Eq)]
struct TextRange {
    lo: String,
    hi: String,
}

impl Span {
    /// Whether chunks of this table answer for spans of source keys: the
    /// source key is one integer column and also the bucket column, so that a
    /// chunk holds every record between the previous chunk's last key and
    /// its own last key.
    fn applies(ctx: &Ctx) -> bool {
        let q = &ctx.query;
        matches!(&q.key_types()[..], [Some(ColumnType::Int)])
            && q.order.len() == 1
            && q.order[0] == q.key[0]
    }

    /// The span of a chunk of a bucket of `range`: from after the previous
    /// chunk's last key (`after`), or the bucket's start, to its own last key,
    /// or the bucket's end for the bucket's last chunk (`end`). `None` when
    /// chunks have no spans ([`Span::applies`]) or a bound is no integer.
    pub(super) fn of_chunk(
        ctx: &Ctx,
        range: &KeyRange,
        after: Option<&[Value]>,
        last: Option<&[Value]>,
        end: bool,
    ) -> Option<Span> {
        if !Self::applies(ctx) {
            return None;
        }
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => Some(*n),
            _ => None,
        };
        let lo = match after {
            Some(a) => int(a.first())?.checked_add(1)?,
            None => match &range.lo {
                Some(v) => int(Some(v))?,
                None => i64::MIN,
            },
        };
        let hi = match (end, last) {
            (false, Some(l)) => int(l.first())?,
            (false, None) => return None,
            (true, _) => match &range.hi {
                Some(v) => int(Some(v))?.checked_sub(1)?,
                None => i64::MAX,
            },
        };
        (lo <= hi).then_some(Span { lo, hi })
    }

    /// The span's keys as text ranges, one per sign and number of digits.
    fn text_ranges(self) -> Vec<TextRange> {
        let digits = |n: i128| n.to_string().len() as u32;
        // [a, b] of non-negative numbers, one range per number of digits.
        let split = |a: i128, b: i128, sign: &str, out: &mut Vec<TextRange>| {
            for len in digits(a)..=digits(b) {
                let first = if len == 1 { 0 } else { 10i128.pow(len - 1) };
                let last = 10i128.pow(len) - 1;
                out.push(TextRange {
                    lo: format!("{sign}{}", a.max(first)),
                    hi: format!("{sign}{}", b.min(last)),
                });
            }
        };
        let (lo, hi) = (i128::from(self.lo), i128::from(self.hi));
        let mut out = Vec::new();
        if lo < 0 {
            // -1 … -9, then -10 … -99: by absolute value.
            split((-hi).max(1), -lo, "-", &mut out);
        }
        if hi >= 0 {
            split(lo.max(0), hi, "", &mut out);
        }
        out
    }
}

/// `WHERE` conditions and their parameters for source keys whose text is in
/// one of `ranges`: one condition a range, read through the source key's
/// index, and one for the ranges that hold every number of their length.
/// Text order puts longer numbers between the bounds of such a range
/// ('1000' … '9999' holds '1234567'), so its index range is most of the
/// table: they are read together in one pass by length instead of one pass
/// each (a span to the largest key has twelve).
fn in_ranges(ctx: &Ctx, ranges: &[TextRange]) -> (Vec<String>, Vec<Value>) {
    let d = ctx.target.dialect();
    let sk = d.quote(SOURCE_KEY_COLUMN);
    let mut params = Vec::with_capacity(ranges.len() * 2);
    let mut conds = Vec::with_capacity(ranges.len());
    // Lengths of whole ranges: negative numbers, then the others.
    let mut whole: [Vec<String>; 2] = [Vec::new(), Vec::new()];
    for r in ranges {
        let negative = r.lo.starts_with('-');
        // The sign is asked for apart: a collation other than C may pass
        // over the `-` when it orders ('-50' beside '50').
        let sign = if negative { "=" } else { "<>" };
        if r.is_whole() {
            whole[usize::from(!negative)].push(r.lo.len().to_string());
            continue;
        }
        params.push(Value::Text(r.lo.clone()));
        params.push(Value::Text(r.hi.clone()));
        conds.push(format!(
            "({sk} >= {} AND {sk} <= {} AND length({sk}) = {} AND left({sk}, 1) {sign} '-')",
            d.placeholder(params.len() - 1),
            d.placeholder(params.len()),
            r.lo.len()
        ));
    }
    let by_length: Vec<String> = whole
        .iter()
        .zip(["=", "<>"])
        .filter(|(lengths, _)| !lengths.is_empty())
        .map(|(lengths, sign)| {
            format!(
                "(length({sk}) IN ({}) AND left({sk}, 1) {sign} '-')",
                lengths.join(", ")
            )
        })
        .collect();
    if !by_length.is_empty() {
        conds.push(format!("({})", by_length.join(" OR ")));
    }
    (conds, params)
}

impl TextRange {
    /// Whether the range holds every number of its length and sign
    /// ('0' … '9', '100' … '999', '-10' … '-99').
    fn is_whole(&self) -> bool {
        let lo = self.lo.trim_start_matches('-');
        let hi = self.hi.trim_start_matches('-');
        let first = lo == "0" || (lo.starts_with('1') && lo.bytes().skip(1).all(|b| b == b'0'));
        first && hi.len() == lo.len() && hi.bytes().all(|b| b == b'9')
    }
}

/// PostgreSQL's group of a row from its MD5 in hex (see [`group_of_hash`]).
fn pg_group(md5_hex: &str) -> String {
    format!("('x' || substr({md5_hex}, 1, 2))::bit(8)::int")
}

/// The group of a row: the first byte of its MD5.
fn group_of_hash(md5: &[u8]) -> i64 {
    md5.first().copied().map_or(0, i64::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_becomes_one_text_range_per_number_of_digits() {
        let ranges = |lo, hi| {
            Span { lo, hi }
                .text_ranges()
                .into_iter()
                .map(|t| (t.lo, t.hi))
                .collect::<Vec<_>>()
        };
        let s = |a: &str, b: &str| (a.to_string(), b.to_string());
        assert_eq!(ranges(1_020_000, 1_029_999), vec![s("1020000", "1029999")]);
        assert_eq!(
            ranges(95, 1_203),
            vec![s("95", "99"), s("100", "999"), s("1000", "1203")]
        );
        assert_eq!(
            ranges(-50, 7),
            vec![s("-1", "-9"), s("-10", "-50"), s("0", "7")]
        );
        assert_eq!(ranges(-50, -12), vec![s("-12", "-50")]);
        let all = ranges(i64::MIN, i64::MAX);
        assert_eq!(all.len(), 38);
        assert_eq!(all[18], s("-1000000000000000000", &i64::MIN.to_string()));
        assert_eq!(all[37], s("1000000000000000000", &i64::MAX.to_string()));
    }

    #[test]
    fn ranges_holding_every_number_of_their_length_are_told_apart() {
        let whole = |lo: &str, hi: &str| {
            TextRange {
                lo: lo.into(),
                hi: hi.into(),
            }
            .is_whole()
        };
        assert!(whole("0", "9"));
        assert!(whole("1000", "9999"));
        assert!(whole("-10", "-99"));
        assert!(whole("-1", "-9"));
        assert!(!whole("1001", "9999"));
        assert!(!whole("1000", "9998"));
        assert!(!whole("1020001", "1030000"));
    }

    #[test]
    fn timestamps_and_dates_are_written_as_the_target_writes_them() {
        let sums = GroupSums {
            target_hash: String::new(),
            types: vec![
                ColumnType::Timestamp,
                ColumnType::Date,
                ColumnType::Timestamp,
            ],
        };
        let at = |s: &str| {
            chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.f").unwrap_or_default()
        };
        let day = chrono::NaiveDate::from_ymd_opt(987, 3, 4).unwrap_or_default();
        let mut out = String::new();
        sums.canonical(
            &[
                Value::Timestamp(at("2026-12-06 07:08:09.000012")),
                Value::Date(day),
                Value::Timestamp(at("2010-01-01 00:00:00")),
            ],
            &mut out,
        );
        assert_eq!(
            out,
            "2026-12-06 07:08:09.000012|0987-03-04|2010-01-01 00:00:00.000000"
        );
    }

    #[test]
    fn the_group_is_the_first_byte_of_the_md5_as_the_databases_compute_it() {
        // md5('1') = c4ca4238a0b923820dcc509a6f75849b
        assert_eq!(group_of_hash(&Md5::digest(b"1")), 0xc4);
    }
}
