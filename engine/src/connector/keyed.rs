//! Reads and updates of the engine's own tables (checkpoints, relay
//! positions, verification runs, index builds) by the columns that key
//! them: `WHERE a = $1 AND b = $2`, numbered per dialect, with the values
//! bound in the same order.

use super::{Connector, Dialect};
use crate::error::Result;
use crate::value::Value;

/// `a = $1, b = $2` (`sep` between) for columns, from the `from`-th
/// placeholder on.
fn assigned(d: Dialect, columns: &[(&str, Value)], from: usize, sep: &str) -> String {
    columns
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = {}", d.placeholder(from + i)))
        .collect::<Vec<_>>()
        .join(sep)
}

impl Connector {
    /// The rows of `SELECT columns FROM table WHERE …` with one equality per
    /// `(column, value)` of `filter`, then `tail` (`ORDER BY …`); `context`
    /// says what the read is for, in errors.
    pub(crate) async fn select_where(
        &self,
        columns: &str,
        table: &str,
        filter: &[(&str, Value)],
        tail: &str,
        context: &str,
    ) -> Result<Vec<Vec<Value>>> {
        let d = self.dialect();
        let sql = format!(
            "SELECT {columns} FROM {} WHERE {} {tail}",
            d.quote(table),
            assigned(d, filter, 1, " AND ")
        );
        let params: Vec<Value> = filter.iter().map(|(_, v)| v.clone()).collect();
        let (_, rows) = self.fetch(&sql, &params, context).await?;
        Ok(rows)
    }

    /// `UPDATE table SET …` with one assignment per `(column, value)` of
    /// `sets`, for the rows that `filter` selects as in
    /// [`Connector::select_where`], and `tail` (more conditions); the rows
    /// it changed.
    pub(crate) async fn update_where(
        &self,
        table: &str,
        sets: &[(&str, Value)],
        filter: &[(&str, Value)],
        tail: &str,
        context: &str,
    ) -> Result<u64> {
        let d = self.dialect();
        let sql = format!(
            "UPDATE {} SET {} WHERE {} {tail}",
            d.quote(table),
            assigned(d, sets, 1, ", "),
            assigned(d, filter, sets.len() + 1, " AND ")
        );
        let params: Vec<Value> = sets.iter().chain(filter).map(|(_, v)| v.clone()).collect();
        self.execute(&sql, &params, context).await
    }
}
