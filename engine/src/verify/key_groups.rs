//! Where orphans can be: the source keys the target's rows were written from
//! (`_tern_source_key`) against the keys the source has, compared as sums
//! per group in each database, so that the orphan pass (`orphans.rs`) reads
//! only the target rows of groups that differ instead of walking the table.
//!
//! A group is the first 16 bits of the MD5 of a key's text (65,536 groups);
//! each side returns per group its row count and the XOR of its keys' MD5
//! bits. Both sides can write the key's text only for a one-column integer
//! source key (its decimal digits, which is what `_tern_source_key` holds),
//! between MariaDB/MySQL and PostgreSQL; other tables walk the whole target.
//! A group that differs holds an orphan, a missing row, or a record written
//! as several rows: reading it is always correct, only slower.

use std::collections::HashMap;

use super::context::Ctx;
use super::sums::{Sum, sums_of};
use crate::connector::{Connector, Dialect, SOURCE_KEY_COLUMN};
use crate::error::Result;
use crate::value::{ColumnType, Value};

/// More differing groups than this and the whole target is walked (one
/// sequential read beats many scattered ones).
const MAX_GROUPS: usize = 2048;

/// The groups whose sums differ, and how many target rows they hold.
pub(super) struct Suspects {
    pub groups: Vec<i64>,
    pub target_rows: u64,
}

/// The groups whose sums differ, or `None` when the table cannot be
/// checked by groups or too many differ (walk the whole target).
pub(super) async fn suspects(ctx: &Ctx) -> Result<Option<Suspects>> {
    let (sd, td) = (ctx.source.dialect(), ctx.target.dialect());
    let int_key = matches!(&ctx.query.key_types()[..], [Some(ColumnType::Int)]);
    if !int_key || sd == Dialect::Sqlite || td == Dialect::Sqlite {
        return Ok(None);
    }
    let source_key = sd.quote(&ctx.query.key[0]);
    let source_sql = group_sums(sd, &text_of(sd, &source_key), ctx.query.from_clause());
    let target_key = target_text(ctx);
    let target_sql = group_sums(
        td,
        &target_key,
        &format!("{} WHERE {target_key} IS NOT NULL", td.quote(&ctx.table)),
    );
    let what = format!("sum the source keys of {} by group", ctx.table);
    let (source, target) = tokio::try_join!(
        fetch_sums(&ctx.source, &source_sql, &what),
        fetch_sums(&ctx.target, &target_sql, &what),
    )?;
    let mut differ: Vec<i64> = source
        .keys()
        .chain(target.keys())
        .filter(|g| source.get(g) != target.get(g))
        .copied()
        .collect();
    differ.sort_unstable();
    differ.dedup();
    let target_rows = differ
        .iter()
        .filter_map(|g| target.get(g))
        .map(|s| s.rows)
        .sum();
    tracing::debug!(table = %ctx.table, groups = differ.len(), target_rows, "orphan groups to read");
    Ok((differ.len() <= MAX_GROUPS).then_some(Suspects {
        groups: differ,
        target_rows,
    }))
}

/// ` WHERE …` of the target rows in the given groups.
pub(super) fn target_where(ctx: &Ctx, groups: &[i64]) -> String {
    if groups.is_empty() {
        return " WHERE 1 = 0".into();
    }
    let list: Vec<String> = groups.iter().map(i64::to_string).collect();
    format!(
        " WHERE {} IN ({})",
        group_of(ctx.target.dialect(), &target_text(ctx)),
        list.join(", ")
    )
}

/// The text of the source key a target row was written from: its hidden
/// column, or its (one, integer) key's digits when that copies the source key.
fn target_text(ctx: &Ctx) -> String {
    let d = ctx.target.dialect();
    match (ctx.shape.source_key, &ctx.shape.key[..]) {
        (None, [k]) => text_of(d, &d.quote(&ctx.shape.columns[*k])),
        _ => d.quote(SOURCE_KEY_COLUMN),
    }
}

/// A key column's decimal text.
fn text_of(d: Dialect, col: &str) -> String {
    match d {
        Dialect::MySql => format!("CAST({col} AS CHAR)"),
        _ => format!("{col}::text"),
    }
}

/// The group of a key text expression.
fn group_of(d: Dialect, text: &str) -> String {
    match d {
        Dialect::MySql => format!("CAST(CONV(SUBSTRING(MD5({text}), 1, 4), 16, 10) AS SIGNED)"),
        _ => format!("('x' || substr(md5({text}), 1, 4))::bit(16)::int"),
    }
}

fn group_sums(d: Dialect, text: &str, from: &str) -> String {
    let g = group_of(d, text);
    match d {
        Dialect::MySql => format!(
            "SELECT {g} AS g, COUNT(*), \
             CAST(BIT_XOR(CAST(CONV(SUBSTRING(MD5({text}), 1, 16), 16, 10) AS UNSIGNED)) AS CHAR) \
             FROM {from} GROUP BY 1"
        ),
        _ => format!(
            "SELECT {g} AS g, count(*), \
             bit_xor(('x' || substr(md5({text}), 1, 16))::bit(64)::bigint)::text \
             FROM {from} GROUP BY 1"
        ),
    }
}

async fn fetch_sums(db: &Connector, sql: &str, what: &str) -> Result<HashMap<i64, Sum>> {
    let (_, rows) = db.fetch(sql, &[] as &[Value], what).await?;
    sums_of(rows, what)
}
