//! Chunk checksums: the fast path of a full diff ([`super::full`]).
//!
//! When the spec maps a table by plain column copies (no transformer, no
//! dedupe, the target key a copy of a one-column integer source key)
//! between MariaDB/MySQL and PostgreSQL, each database can compute the
//! canonical text of a row itself. A chunk of the bucket, `(after, upto]` in
//! key order (its end found from the key index alone), is cut into about a
//! hundred groups of equal key width, and each
//! database returns per group its row count and the XOR of the first 64
//! bits of its rows' MD5s (order-independent, so a database's row order
//! does not matter; rows are unique by key, so none cancel out),
//! without moving the rows. Only the groups whose sums differ are read row by
//! row, through the spec's transform like every full diff, and their
//! mismatches are found, counted and stored exactly as the row-by-row path
//! does: every mismatched key with its field diffs and both full rows. A
//! thousand scattered differences in two million rows cost reading about a
//! thousand small groups, not every chunk.
//!
//! The canonical text is built so that equal sums imply rows the row-by-row
//! comparison would call equal: each value is `length:text` or `~` for NULL,
//! integers in decimal, booleans `1`/`0`, timestamps to the microsecond,
//! dates as `YYYY-MM-DD`, text in UTF-8 as the database returns it (padded
//! `char(n)` included on PostgreSQL). Rows that the comparison would call
//! equal but whose texts differ only cost a row-by-row read of their group.
//! Columns of other types (floats, decimals, JSON, UUIDs, bytes, time zones)
//! or other mappings leave the table on the row-by-row path; the reason is
//! in the run's report.

use std::collections::{BTreeSet, HashMap};

use std::time::Instant;

use super::context::{BucketDiff, Ctx};
use super::reads::range_where;
use super::results::Counts;
use super::store;
use super::sums::{Sum, piece, row_hash, sums_of};
use crate::buckets::Bucket;
use crate::chunk::KeyRange;
use crate::connector::{Connector, Dialect};
use crate::error::{EngineError, Result};
use crate::link::Side;
use crate::run_control::RunControl;
use crate::spec::{TableSpec, Transform};
use crate::value::{ColumnType, Value};

/// How each side computes a chunk's checksums.
#[derive(Debug)]
pub(super) struct Checksums {
    /// The source key column, quoted for the source.
    source_key: String,
    target_key: String,
    /// Per-row `md5(canonical row)`, for each side.
    source_hash: String,
    target_hash: String,
}

/// The next chunk of a bucket, `(after, upto]`, cut into groups of equal
/// key width: group `g` holds the keys from `base + g·width` to
/// `base + (g+1)·width − 1`; keys below `base` fall in the first group, keys
/// above the last group's end (extra target rows) in the last.
#[derive(Debug)]
pub(super) struct Cut {
    after: Option<i64>,
    /// The chunk's last key; `None` when the chunk runs to the bucket's end.
    pub upto: Option<i64>,
    base: i64,
    width: i64,
    groups: i64,
}

impl Cut {
    /// The key range `(lo, hi]` of group `g` (open ends are the bucket's).
    fn group(&self, g: i64) -> (Option<i64>, Option<i64>) {
        let lo = match g {
            0 => self.after,
            _ => Some(self.base + g * self.width - 1),
        };
        let hi = if g + 1 >= self.groups {
            self.upto
        } else {
            Some(self.base + (g + 1) * self.width - 1)
        };
        (lo, hi)
    }

    /// The SQL expression of the group of key column `k`.
    fn group_expr(&self, d: Dialect, k: &str) -> String {
        if self.groups <= 1 {
            return "0".into();
        }
        // Integer division truncates toward zero in both databases; keys
        // below `base` give 0 or less and are clamped into the first group.
        let div = if d == Dialect::MySql { "DIV" } else { "/" };
        format!(
            "GREATEST(0, LEAST({}, ({k} - {}) {div} {}))",
            self.groups - 1,
            self.base,
            self.width
        )
    }

    /// Groups whose sums differ between the sides, and the rows of the
    /// equal ones.
    pub(super) fn differing(
        source: &HashMap<i64, Sum>,
        target: &HashMap<i64, Sum>,
    ) -> (Vec<i64>, u64) {
        let groups: BTreeSet<i64> = source.keys().chain(target.keys()).copied().collect();
        let mut differ = Vec::new();
        let mut equal_rows = 0;
        for g in groups {
            match (source.get(&g), target.get(&g)) {
                (Some(a), Some(b)) if a == b => equal_rows += a.rows,
                _ => differ.push(g),
            }
        }
        (differ, equal_rows)
    }

    /// ` WHERE …` selecting the rows of the given groups within the bucket
    /// range, on key column `col` (quoted), with its parameters. Each group
    /// is a closed key range of its own, so the database reads just those
    /// ranges from the key index.
    pub(super) fn groups_where(
        &self,
        d: Dialect,
        col: &str,
        range: &KeyRange,
        groups: &[i64],
    ) -> (String, Vec<Value>) {
        let mut params = Vec::new();
        let mut ors = Vec::with_capacity(groups.len());
        for &g in groups {
            let (lo, hi) = self.group(g);
            let mut conds = Vec::new();
            // Each end: the group's own bound (exclusive below, inclusive
            // above), else the bucket's (inclusive below, exclusive above).
            for (own, own_op, edge, edge_op) in
                [(lo, ">", &range.lo, ">="), (hi, "<=", &range.hi, "<")]
            {
                match (own, edge) {
                    (Some(x), _) => conds.push(format!("{col} {own_op} {x}")),
                    (None, Some(v)) => {
                        params.push(v.clone());
                        conds.push(format!("{col} {edge_op} {}", d.placeholder(params.len())));
                    }
                    (None, None) => {}
                }
            }
            ors.push(if conds.is_empty() {
                "1 = 1".to_string()
            } else {
                format!("({})", conds.join(" AND "))
            });
        }
        (format!(" WHERE {}", ors.join(" OR ")), params)
    }
}

fn int_of(v: Option<&Value>) -> Option<i64> {
    match v {
        Some(Value::Int(i)) => Some(*i),
        _ => None,
    }
}

impl Checksums {
    /// The checksum queries of the table, or why it is verified row by row.
    pub(super) fn plan(ctx: &Ctx, spec: &TableSpec) -> std::result::Result<Checksums, String> {
        let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
        for d in [sd, td] {
            if d == Dialect::Sqlite {
                return Err("SQLite has no MD5 to checksum chunks with".into());
            }
        }
        if !ctx.aligned {
            return Err("the target key is not a copy of the source key".into());
        }
        // Chunks are key ranges on both sides: only integers sort the same
        // in every database (text keys follow each database's collation).
        let int_keys = ctx
            .query
            .key_types()
            .iter()
            .all(|t| *t == Some(ColumnType::Int))
            && ctx
                .shape
                .key
                .iter()
                .all(|&i| ctx.shape.types.get(i).copied().flatten() == Some(ColumnType::Int));
        if !int_keys {
            return Err("the key is not made of integers on both sides".into());
        }
        let columns = ctx.compared_types()?;
        let mut source_pieces = Vec::with_capacity(columns.len());
        let mut target_pieces = Vec::with_capacity(columns.len());
        for (name, target_ty) in columns {
            let col = spec
                .column(name)
                .ok_or_else(|| format!("column {name} is not in the spec"))?;
            let Transform::Copy(from) = &col.transform else {
                return Err(format!(
                    "column {name} is not a plain copy of a source column"
                ));
            };
            if col.trim || col.lower {
                return Err(format!("column {name} is trimmed or lowered"));
            }
            if col.cast.is_some_and(|c| c != target_ty) {
                return Err(format!(
                    "column {name} is cast to another type than the target's"
                ));
            }
            let source_ty = ctx
                .query
                .columns
                .iter()
                .find(|c| &c.name == from)
                .and_then(|c| c.ty)
                .ok_or_else(|| format!("the source does not say the type of column {from}"))?;
            let supported = matches!(
                (source_ty, target_ty),
                (ColumnType::Int, ColumnType::Int | ColumnType::Bool)
                    | (ColumnType::Bool, ColumnType::Bool)
                    | (ColumnType::Text, ColumnType::Text)
                    | (ColumnType::Timestamp, ColumnType::Timestamp)
                    | (ColumnType::Date, ColumnType::Date)
            );
            if !supported {
                return Err(format!(
                    "column {name} ({source_ty} to {target_ty}) has no canonical text in both databases"
                ));
            }
            source_pieces.push(piece(sd, &sd.quote(from), source_ty, target_ty));
            target_pieces.push(piece(td, &td.quote(name), target_ty, target_ty));
        }
        Ok(Checksums {
            source_key: sd.quote(&ctx.query.key[0]),
            target_key: td.quote(&ctx.shape.columns[ctx.shape.key[0]]),
            source_hash: row_hash(sd, &source_pieces),
            target_hash: row_hash(td, &target_pieces),
        })
    }

    /// The next chunk after `after`: its end (the `limit`-th source key,
    /// from the key index alone) and its groups of about `group_rows` keys.
    pub(super) async fn cut(
        &self,
        ctx: &Ctx,
        range: &KeyRange,
        after: Option<&[Value]>,
        limit: usize,
        group_rows: usize,
    ) -> Result<Cut> {
        let d = ctx.source.dialect();
        let k = &self.source_key;
        let from = ctx.query.from_clause();
        let what = format!("find the next chunk of {} to verify", ctx.table);
        let (where_, params) =
            range_where(d, std::slice::from_ref(k), range, after, None, &|v, _| {
                v.clone()
            });
        let one = |sql: String| {
            let params = params.clone();
            let what = what.clone();
            async move {
                let (_, rows) = ctx.source.fetch(&sql, &params, &what).await?;
                Ok::<_, EngineError>(int_of(rows.first().and_then(|r| r.first())))
            }
        };
        let upto = one(format!(
            "SELECT {k} FROM {from}{where_} ORDER BY {k} LIMIT 1 OFFSET {}",
            limit.saturating_sub(1)
        ))
        .await?;
        let after = int_of(after.and_then(<[Value]>::first));
        let base = match (after, int_of(range.lo.as_ref())) {
            (Some(a), _) => Some(a.saturating_add(1)),
            (None, Some(lo)) => Some(lo),
            (None, None) => one(format!("SELECT MIN({k}) FROM {from}{where_}")).await?,
        };
        let top = match upto {
            Some(u) => Some(u),
            None => one(format!("SELECT MAX({k}) FROM {from}{where_}")).await?,
        };
        let (base, width, groups) = match (base, top) {
            (Some(b), Some(t)) if t >= b => {
                let span = i128::from(t) - i128::from(b) + 1;
                let wanted = i128::try_from((limit / group_rows.max(1)).max(1)).unwrap_or(1);
                let width = (span + wanted - 1) / wanted;
                let groups = (span + width - 1) / width;
                (
                    b,
                    i64::try_from(width).unwrap_or(i64::MAX),
                    i64::try_from(groups).unwrap_or(1),
                )
            }
            _ => (0, 1, 1),
        };
        Ok(Cut {
            after,
            upto,
            base,
            width,
            groups,
        })
    }

    /// One side's database, key column, row hash and FROM clause.
    fn side<'a>(&'a self, ctx: &'a Ctx, side: Side) -> (&'a Connector, &'a str, &'a str, String) {
        match side {
            Side::Source => (
                &ctx.source,
                &self.source_key,
                &self.source_hash,
                ctx.query.from_clause().to_string(),
            ),
            Side::Target => (
                &ctx.target,
                &self.target_key,
                &self.target_hash,
                ctx.target.dialect().quote(&ctx.table),
            ),
        }
    }

    /// One side's checksums of the chunk `(after, cut.upto]`, per group. The
    /// key is an integer on both sides ([`Checksums::plan`] checks), so key
    /// values need no cast from one side to the other.
    pub(super) async fn sums(
        &self,
        ctx: &Ctx,
        side: Side,
        range: &KeyRange,
        after: Option<&[Value]>,
        cut: &Cut,
    ) -> Result<HashMap<i64, Sum>> {
        let (db, key, hash, from) = self.side(ctx, side);
        let d = db.dialect();
        let upto = cut.upto.map(|k| vec![Value::Int(k)]);
        let key = key.to_string();
        let (where_, params) = range_where(
            d,
            std::slice::from_ref(&key),
            range,
            after,
            upto.as_deref(),
            &|v, _| v.clone(),
        );
        let sql = group_sql(d, &key, hash, &from, &where_, cut);
        let what = format!("checksum a chunk of {} in the {}", ctx.table, side.name());
        let (_, rows) = db.fetch(&sql, &params, &what).await?;
        sums_of(rows, &what)
    }

    /// ` WHERE …` of one side's rows of the given groups, with parameters.
    pub(super) fn groups_where(
        &self,
        ctx: &Ctx,
        side: Side,
        range: &KeyRange,
        cut: &Cut,
        groups: &[i64],
    ) -> (String, Vec<Value>) {
        let (db, key, _, _) = self.side(ctx, side);
        cut.groups_where(db.dialect(), key, range, groups)
    }
}

/// Per group: its number, row count and the XOR of the first 64 bits of
/// the rows' MD5s (computed inline: a derived table would be materialized).
fn group_sql(d: Dialect, key: &str, hash: &str, from: &str, where_: &str, cut: &Cut) -> String {
    let group = cut.group_expr(d, key);
    match d {
        Dialect::MySql => format!(
            "SELECT {group} AS g, COUNT(*), \
             CAST(BIT_XOR(CAST(CONV(SUBSTRING({hash}, 1, 16), 16, 10) AS UNSIGNED)) AS CHAR) \
             FROM {from}{where_} GROUP BY 1"
        ),
        _ => format!(
            "SELECT ({group})::bigint AS g, count(*), \
             bit_xor(('x' || substr({hash}, 1, 16))::bit(64)::bigint)::text \
             FROM {from}{where_} GROUP BY 1"
        ),
    }
}

/// Compares one bucket chunk by chunk from its progress by checksums,
/// reading row by row only the groups whose checksums differ.
pub(super) async fn full_bucket(
    ctx: &Ctx,
    sums: &Checksums,
    bucket: &Bucket,
    control: &RunControl,
    progress: store::BucketProgress,
) -> Result<BucketDiff> {
    let range = &bucket.range;
    let started = Instant::now();
    let mut counts = progress.counts;
    // Groups of a hundredth of a chunk (at least 10 rows): a difference
    // costs reading its group, not its chunk.
    let group_rows = (ctx.chunk_rows / 100).max(10);
    let limit = group_rows * (ctx.chunk_rows / group_rows).max(1);
    let mut after = progress.last_key;
    let mut read = 0u64;
    let mut by_checksum = 0u64;
    let mut chunks = 0u64;
    // The next chunk's cut, found while this chunk's sums are computed.
    let mut next_cut: Option<Cut> = None;
    loop {
        if !control.admit(limit as u64).await {
            return Ok(BucketDiff {
                spanless: false,
                counts,
                done: false,
                read,
                by_checksum,
            });
        }
        let cut = match next_cut.take() {
            Some(c) => c,
            None => {
                sums.cut(ctx, range, after.as_deref(), limit, group_rows)
                    .await?
            }
        };
        let end = cut.upto.is_none();
        let upto = cut.upto.map(|k| vec![Value::Int(k)]);
        // Source sums, target sums and the next cut at once: the two
        // databases and the source's key index work side by side.
        let following = async {
            match &upto {
                Some(u) if !end => sums
                    .cut(ctx, range, Some(u), limit, group_rows)
                    .await
                    .map(Some),
                _ => Ok(None),
            }
        };
        let (source, target, following) = tokio::try_join!(
            sums.sums(ctx, Side::Source, range, after.as_deref(), &cut),
            sums.sums(ctx, Side::Target, range, after.as_deref(), &cut),
            following,
        )?;
        next_cut = following;
        let (differ, equal_rows) = Cut::differing(&source, &target);
        counts.compared += equal_rows;
        counts.matched += equal_rows;
        by_checksum += equal_rows;
        let mut found = Vec::new();
        if !differ.is_empty() {
            // Every differing group of the chunk in one read per side.
            let (sw, sp) = sums.groups_where(ctx, Side::Source, range, &cut, &differ);
            let (tw, tp) = sums.groups_where(ctx, Side::Target, range, &cut, &differ);
            let (expected, actual) =
                tokio::try_join!(ctx.source_rows(&sw, &sp), ctx.target_rows(&tw, &tp))?;
            let mut ord = counts.compared;
            let mut group_counts = Counts::default();
            ctx.compare(
                expected,
                actual,
                bucket.index,
                &mut ord,
                &mut group_counts,
                &mut found,
            );
            counts.add(&group_counts);
        }
        let chunk_rows: u64 = source.values().map(|s| s.rows).sum();
        // The last chunk's position stays the previous one: `end` marks it done.
        let last = upto.as_deref().or(after.as_deref());
        ctx.commit_chunk(bucket.index, &found, last, end, &counts)
            .await?;
        read += chunk_rows;
        chunks += 1;
        ctx.report(control, bucket, &counts, read, chunks, started);
        if end {
            return Ok(BucketDiff {
                spanless: false,
                counts,
                done: true,
                read,
                by_checksum,
            });
        }
        after = upto;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_mark_null_and_length_prefix_the_text() {
        let p = piece(
            Dialect::Postgres,
            "\"b\"",
            ColumnType::Text,
            ColumnType::Text,
        );
        assert_eq!(
            p,
            "CASE WHEN \"b\" IS NULL THEN '~' ELSE char_length(concat(\"b\"))::text || ':' || concat(\"b\") END"
        );
        let m = piece(Dialect::MySql, "`f`", ColumnType::Int, ColumnType::Bool);
        assert_eq!(
            m,
            "CASE WHEN `f` IS NULL THEN '~' WHEN `f` <> 0 THEN '1' ELSE '0' END"
        );
        let cut = Cut {
            after: Some(100),
            upto: Some(300),
            base: 101,
            width: 100,
            groups: 2,
        };
        let g = group_sql(Dialect::MySql, "`id`", "h", "`t`", "", &cut);
        assert!(
            g.starts_with("SELECT GREATEST(0, LEAST(1, (`id` - 101) DIV 100)) AS g"),
            "{g}"
        );
        assert_eq!(cut.group(0), (Some(100), Some(200)));
        assert_eq!(cut.group(1), (Some(200), Some(300)));
    }

    #[test]
    fn timestamps_keep_microseconds_on_both_sides() {
        for (d, micros) in [
            (Dialect::Postgres, "HH24:MI:SS.US"),
            (Dialect::MySql, "%H:%i:%s.%f"),
        ] {
            let p = piece(d, "c", ColumnType::Timestamp, ColumnType::Timestamp);
            assert!(p.contains(micros), "{d:?}: {p}");
        }
    }
}
