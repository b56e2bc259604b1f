//! Verification: is the target what the source, through the spec, says it
//! should be? Four ways in, one result shape:
//!
//! - **Full diff** ([`Mode::Full`]) of one bucket or the whole table: the
//!   source is read chunk by chunk in key order through the bulk load's own
//!   transform ([`crate::transform::Pipeline`]); for each chunk the target rows
//!   of the same key range are read in one query (or, when the target key is
//!   not the source key, looked up by key and by `_tern_source_key`), joined by
//!   key and compared field by field ([`compare`] says what differs). Buckets
//!   run in parallel tasks; every chunk asks the throttle first; a chunk's
//!   mismatches and its bucket's progress commit together, so a stopped run is
//!   resumed with [`VerifyOptions::resume`] and neither loses nor double-counts.
//!   Fast path: when the table is mapped by plain column copies between
//!   MariaDB/MySQL and PostgreSQL with integer keys, each database computes a
//!   checksum of the chunk itself and only chunks whose checksums differ are
//!   read and compared row by row, with the same result (see `scan/checksum.rs`;
//!   [`VerifyOptions::row_by_row`] turns it off).
//! - **Incremental** ([`Mode::SinceLast`]): only the source keys the changelog
//!   saw change since the last completed run's position.
//! - **Sampled by strata** ([`Mode::Sample`]): a deterministic sample of N keys
//!   per value of a column: the N keys of each stratum with the smallest stable
//!   hash of their source key, the same sample every run while the data stays.
//! - **Repair** ([`repair`]): re-copies exactly the open mismatches of a run
//!   through [`crate::apply::apply_keys`] (version-guarded, deletes included),
//!   then re-verifies those keys and updates the run.
//!
//! Results live in the target, in the tables of [`store`]: every mismatched
//! key with its field-level differences and both full values, browsable page
//! by page ([`list_mismatches`]) and as a tree ([`mismatch_tree`]).
//!
//! Accuracy is `matched / compared × 100` where `compared = matched + missing
//! + extra + different` (997 of 1,000 equal → 99.7).
//!
//! Limit: when the target key is not a copy of the source key (UUIDv5 keys,
//! transformers, dedupe, or a bucket column ahead of the key), or is a text
//! key between two kinds of database (MariaDB and PostgreSQL sort text by
//! different collations, so a chunk is not one key range on both sides), a
//! full diff looks the target rows up by key and finds extra target rows only
//! among those of the source records it reads (through `_tern_source_key`);
//! rows of records deleted from the source are found by the incremental run,
//! which sees the deletes.

pub mod compare;
mod scan;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use compare::{FieldDiff, MismatchTree, TreeNode};
pub use store::{RunRow, list_mismatches, list_runs, load_run};

use crate::apply::TableKeys;
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::progress::ProgressFn;
use crate::throttle::{RateThrottle, Throttle};
use crate::value::Value;

/// Which rows a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every bucket of the table.
    All,
    /// One bucket of the load's plan.
    Bucket(usize),
}

/// How a run picks the rows it compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every row of the scope.
    Full,
    /// `per_stratum` keys of each distinct value of source column `strata`.
    Sample { per_stratum: usize, strata: String },
    /// Only the keys changed since the last completed run (needs change capture).
    SinceLast,
}

/// How a run goes.
#[derive(Clone)]
pub struct VerifyOptions {
    /// The spec table to verify (one with a source).
    pub table: String,
    pub scope: Scope,
    pub mode: Mode,
    /// Asked before every chunk, like the bulk load's.
    pub throttle: Arc<dyn Throttle>,
    /// Called after every compared chunk (per bucket for a full diff).
    pub progress: Option<ProgressFn>,
    /// Stops between chunks; a full diff resumes with `resume`.
    pub cancel: CancellationToken,
    /// Buckets compared at once (default 4).
    pub parallelism: usize,
    /// Continue this earlier full-diff run instead of starting a new one.
    pub resume: Option<String>,
    /// Read every row of a full diff even where chunk checksums could
    /// skip the equal chunks (see the fast path in the module docs).
    pub row_by_row: bool,
}

impl VerifyOptions {
    /// A full diff of the whole table, unthrottled.
    pub fn full(table: &str) -> VerifyOptions {
        VerifyOptions {
            table: table.to_string(),
            scope: Scope::All,
            mode: Mode::Full,
            throttle: Arc::new(RateThrottle::unlimited()),
            progress: None,
            cancel: CancellationToken::new(),
            parallelism: 4,
            resume: None,
            row_by_row: false,
        }
    }
}

/// Rows by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Distinct keys seen on either side: matched + missing + extra + different.
    pub compared: u64,
    pub matched: u64,
    /// Expected from the source, absent in the target.
    pub missing: u64,
    /// In the target, expected by no source row read.
    pub extra: u64,
    /// Present on both sides with at least one differing field.
    pub different: u64,
}

impl Counts {
    pub fn add(&mut self, o: &Counts) {
        self.compared += o.compared;
        self.matched += o.matched;
        self.missing += o.missing;
        self.extra += o.extra;
        self.different += o.different;
    }

    pub fn mismatched(&self) -> u64 {
        self.missing + self.extra + self.different
    }

    /// `matched / compared × 100`; 100 when nothing was compared.
    pub fn accuracy(&self) -> f64 {
        if self.compared == 0 {
            100.0
        } else {
            self.matched as f64 * 100.0 / self.compared as f64
        }
    }

    /// The accuracy with up to four decimals, trailing zeros cut: `99.7`.
    pub fn accuracy_text(&self) -> String {
        let s = format!("{:.4}", self.accuracy());
        let s = s.trim_end_matches('0').trim_end_matches('.');
        s.to_string()
    }
}

/// What kind of mismatch a row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MismatchKind {
    Missing,
    Extra,
    Different,
}

impl MismatchKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MismatchKind::Missing => "missing",
            MismatchKind::Extra => "extra",
            MismatchKind::Different => "different",
        }
    }

    fn parse(s: &str) -> MismatchKind {
        match s {
            "missing" => MismatchKind::Missing,
            "extra" => MismatchKind::Extra,
            _ => MismatchKind::Different,
        }
    }
}

/// One mismatched row, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    /// The target key's identity text (unique within a run).
    pub key_id: String,
    pub bucket: usize,
    /// Position in the bucket's key order (for paging in order).
    pub ord: u64,
    pub kind: MismatchKind,
    /// The target key.
    pub target_key: Vec<Value>,
    /// The source key of the record that should write (or wrote) the row;
    /// `None` for an extra row no tern write made.
    pub source_key: Option<Vec<Value>>,
    /// Field-level differences (empty for missing and extra rows).
    pub diffs: Vec<FieldDiff>,
    /// The expected row, every column in full, as a JSON object.
    pub source_row: Option<serde_json::Value>,
    /// The target row, every column in full, as a JSON object.
    pub target_row: Option<serde_json::Value>,
    /// Repair fixed it (re-verified equal).
    pub resolved: bool,
}

impl Mismatch {
    /// The paths this row adds to the mismatch tree.
    pub fn paths(&self) -> Vec<String> {
        match self.kind {
            MismatchKind::Missing => vec![compare::MISSING_PATH.to_string()],
            MismatchKind::Extra => vec![compare::EXTRA_PATH.to_string()],
            MismatchKind::Different => self.diffs.iter().map(|d| d.path.clone()).collect(),
        }
    }

    /// The target key rendered: `(5)`.
    pub fn key_text(&self) -> String {
        crate::value::render_key(&self.target_key)
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyStatus {
    Completed,
    /// Stopped between chunks; resume a full diff with its run id.
    Cancelled,
}

impl VerifyStatus {
    fn as_str(self) -> &'static str {
        match self {
            VerifyStatus::Completed => "completed",
            VerifyStatus::Cancelled => "cancelled",
        }
    }
}

/// Counts of one stratum of a sampled run.
#[derive(Debug, Clone, PartialEq)]
pub struct Stratum {
    /// The stratum column's value, as canonical text.
    pub value: String,
    pub counts: Counts,
}

/// What a run found.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifyReport {
    pub run_id: String,
    pub table: String,
    pub status: VerifyStatus,
    pub counts: Counts,
    /// Source keys the run read: every row of the scope for a full diff, the
    /// changed keys for an incremental run, the sample for a sampled one.
    pub keys_read: u64,
    /// Of the rows a full diff compared, those found equal by chunk
    /// checksums without being read row by row (0 on the row-by-row path).
    pub rows_by_checksum: u64,
    /// Why a full diff read every row instead of checksumming chunks
    /// (`None` when it used checksums, or for other modes).
    pub row_by_row_reason: Option<String>,
    /// The changelog position taken before the first read (the next
    /// incremental run starts there); `None` without change capture.
    pub position: Option<String>,
    pub elapsed: Duration,
    pub tree: MismatchTree,
    /// Per stratum, for a sampled run.
    pub strata: Vec<Stratum>,
}

/// What a repair did.
#[derive(Debug, Clone, PartialEq)]
pub struct RepairReport {
    pub run_id: String,
    /// Open mismatches the repair started from.
    pub mismatches: u64,
    /// Source keys re-copied through `apply_keys`.
    pub keys_applied: u64,
    pub rows_written: u64,
    /// Keys gone from the source whose target rows were deleted.
    pub keys_deleted: u64,
    /// Mismatches re-verified equal.
    pub resolved: u64,
    /// Mismatches still differing after the repair (see the run's mismatches).
    pub still_open: u64,
    /// The run's counts after the repair.
    pub counts: Counts,
}

/// Runs a verification of one table and stores its results in the target.
///
/// ```no_run
/// # async fn f(link: &tern_engine::Link) -> tern_engine::error::Result<()> {
/// use tern_engine::verify::{verify, VerifyOptions};
/// let report = verify(link, &VerifyOptions::full("messages")).await?;
/// println!("{} of {} equal: {}%", report.counts.matched, report.counts.compared,
///          report.counts.accuracy_text());
/// print!("{}", report.tree.render());
/// # Ok(()) }
/// ```
pub async fn verify(link: &Link, opts: &VerifyOptions) -> Result<VerifyReport> {
    scan::run(link, opts).await
}

/// Re-copies the open mismatches of run `run_id` through the version-guarded
/// [`crate::apply::apply_keys`], re-verifies them, and updates the run: fixed
/// rows are marked resolved and counted as matched (a deleted extra row no
/// longer counts), so a fully repaired run shows 100%.
pub async fn repair(
    link: &Link,
    run_id: &str,
    throttle: Arc<dyn Throttle>,
    cancel: CancellationToken,
) -> Result<RepairReport> {
    scan::repair(link, run_id, throttle, cancel).await
}

/// The mismatch tree of a run's open mismatches.
pub async fn mismatch_tree(target: &Connector, run_id: &str) -> Result<MismatchTree> {
    let mut tree = MismatchTree::default();
    for (key, paths) in store::paths_of(target, run_id).await? {
        let paths: Vec<String> = paths.lines().map(str::to_string).collect();
        tree.add(&key, &paths);
    }
    Ok(tree)
}

/// The keys of `mismatches` grouped for [`crate::apply::apply_keys`].
fn repair_keys(table: &str, mismatches: &[Mismatch]) -> TableKeys {
    TableKeys {
        table: table.to_string(),
        keys: mismatches
            .iter()
            .filter_map(|m| m.source_key.clone())
            .collect(),
    }
}

fn unknown_run(run_id: &str) -> EngineError {
    EngineError::Spec {
        at: format!("run {run_id}"),
        message:
            "no verification run with this id in the target; check the run id `tern verify` printed"
                .into(),
    }
}
