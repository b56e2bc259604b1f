//! Accuracy over time, as the overview draws it: the data the verification
//! runs' histories are computed into ([`crate::verify_runs`]) and the store
//! keeps in memory between requests ([`crate::caches`]).

use serde::{Deserialize, Serialize};

/// Accuracy over time by migration id: the whole migration's, and one
/// history per table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histories {
    pub total: std::collections::BTreeMap<i64, Vec<(i64, f64)>>,
    pub by_table: std::collections::BTreeMap<i64, Vec<TableAccuracy>>,
}

/// One table's accuracy over time: the row-weighted accuracy over the
/// latest full run of each of its buckets, after each run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableAccuracy {
    pub table: String,
    pub points: Vec<(i64, f64)>,
}
