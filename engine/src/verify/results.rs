//! What a verification finds: counts by outcome, the mismatched rows, and
//! the report of a run or a repair.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::compare::{self, FieldDiff, MismatchTree};
use crate::error::EngineError;
use crate::value::Value;

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

impl Counts {
    fn take(&mut self, k: MismatchKind) {
        match k {
            MismatchKind::Missing => self.missing = self.missing.saturating_sub(1),
            MismatchKind::Extra => self.extra = self.extra.saturating_sub(1),
            MismatchKind::Different => self.different = self.different.saturating_sub(1),
        }
    }

    fn put(&mut self, k: MismatchKind) {
        match k {
            MismatchKind::Missing => self.missing += 1,
            MismatchKind::Extra => self.extra += 1,
            MismatchKind::Different => self.different += 1,
        }
    }
}

/// The mismatches `before`, checked again (`again`: what the second check
/// found among their keys): each still found is kept as it is now (in its
/// old place), each no longer found is marked resolved; `counts` follow (a
/// resolved row counts as matched, a resolved extra row no longer counts).
pub(super) fn reconcile(
    before: Vec<Mismatch>,
    again: Vec<Mismatch>,
    counts: &mut Counts,
) -> Vec<Mismatch> {
    let still: std::collections::HashMap<String, Mismatch> =
        again.into_iter().map(|m| (m.key_id.clone(), m)).collect();
    before
        .into_iter()
        .map(|m| match still.get(&m.key_id) {
            Some(now) => {
                let mut keep = now.clone();
                keep.bucket = m.bucket;
                keep.ord = m.ord;
                if keep.kind != m.kind {
                    counts.take(m.kind);
                    counts.put(keep.kind);
                }
                keep
            }
            None => {
                counts.take(m.kind);
                if m.kind == MismatchKind::Extra {
                    counts.compared = counts.compared.saturating_sub(1);
                } else {
                    counts.matched += 1;
                }
                Mismatch {
                    resolved: true,
                    ..m
                }
            }
        })
        .collect()
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

    pub(super) fn parse(s: &str) -> MismatchKind {
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
    pub(super) fn as_str(self) -> &'static str {
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

/// The error for a run id the target does not know.
pub(super) fn unknown_run(run_id: &str) -> EngineError {
    EngineError::Spec {
        at: format!("run {run_id}"),
        message:
            "no verification run with this id in the target; check the run id `tern verify` printed"
                .into(),
    }
}
