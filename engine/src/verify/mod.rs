//! Verification: is the target what the source, through the spec, says it
//! should be? Four ways in, one result shape:
//!
//! - **Full diff** ([`Mode::Full`], `full.rs`) of one bucket or the whole table: the
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
//!   read and compared row by row, with the same result (see `checksum.rs`;
//!   [`VerifyOptions::row_by_row`] turns it off).
//! - **Incremental** ([`Mode::SinceLast`], `incremental.rs`): only the source
//!   keys the changelog saw change since the last completed run's position,
//!   read through the change stream.
//! - **Sampled by strata** ([`Mode::Sample`], `sample.rs`): a deterministic sample of N keys
//!   per value of a column: the N keys of each stratum with the smallest stable
//!   hash of their source key, the same sample every run while the data stays.
//! - **Repair** ([`repair`], `repair.rs`): re-copies exactly the open mismatches of a run
//!   through [`crate::apply::apply_keys`] (version-guarded, deletes included),
//!   then re-verifies those keys and updates the run.
//!
//! What the modes share is apart: the run's context and the comparison by
//! target key (`context.rs`), the row reads and their SQL (`reads.rs`), the
//! check of a set of keys (`keyset.rs`, for sample, incremental and repair),
//! and the run from start to end (`run.rs`). Every mode takes the caller's
//! [`RunControl`]: the throttle before every chunk or
//! batch of keys, the cancel token between them, progress after each.
//!
//! Results live in the target, in the tables of [`store`]: every mismatched
//! key with its field-level differences and both full values, browsable page
//! by page ([`list_mismatches`]) and as a tree ([`mismatch_tree`]).
//!
//! Accuracy is `matched / compared × 100` where `compared = matched + missing
//! + extra + different` (997 of 1,000 equal → 99.7).
//!
//! When the target key is not a copy of the source key (UUIDv5 keys,
//! transformers, dedupe, or a bucket column ahead of the key), or is a text
//! key between two kinds of database (MariaDB and PostgreSQL sort text by
//! different collations, so a chunk is not one key range on both sides), a
//! full diff looks the target rows up by key and by `_tern_source_key` of the
//! records it reads; a full diff of the whole table then walks the target
//! once more (`orphans.rs`) and goes back to the source through each row's
//! `_tern_source_key`: rows whose record is gone are extra, listed and
//! repaired like the rest. (A diff of one bucket skips that pass: a target
//! row cannot be placed in a bucket without its record.)

mod checksum;
pub mod compare;
mod context;
mod full;
mod grouped;
mod in_flight;
mod incremental;
mod key_groups;
mod keyset;
mod options;
mod orphans;
mod reads;
mod repair;
mod results;
mod run;
mod sample;
pub mod store;
mod sums;

pub use compare::{FieldDiff, MismatchTree, TreeNode};
pub use options::{Mode, Scope, VerifyOptions};
pub use results::{
    Counts, Mismatch, MismatchKind, RepairReport, Stratum, VerifyReport, VerifyStatus,
};
pub use store::{RunRow, list_mismatches, list_runs, load_run, mismatch_tree};

use crate::error::Result;
use crate::link::Link;
use crate::run_control::RunControl;

/// Runs a verification of one table and stores its results in the target.
///
/// ```no_run
/// # async fn f(link: &tern_engine::Link) -> tern_engine::error::Result<()> {
/// use tern_engine::RunControl;
/// use tern_engine::verify::{verify, VerifyOptions};
/// let report = verify(link, &VerifyOptions::full("messages"), &RunControl::new()).await?;
/// println!("{} of {} equal: {}%", report.counts.matched, report.counts.compared,
///          report.counts.accuracy_text());
/// print!("{}", report.tree.render());
/// # Ok(()) }
/// ```
pub async fn verify(
    link: &Link,
    opts: &VerifyOptions,
    control: &RunControl,
) -> Result<VerifyReport> {
    run::run(link, opts, control).await
}

/// Re-copies the open mismatches of run `run_id` through the version-guarded
/// [`crate::apply::apply_keys`], re-verifies them, and updates the run: fixed
/// rows are marked resolved and counted as matched (a deleted extra row no
/// longer counts), so a fully repaired run shows 100%.
pub async fn repair(link: &Link, run_id: &str, control: &RunControl) -> Result<RepairReport> {
    repair::run(link, run_id, control).await
}
