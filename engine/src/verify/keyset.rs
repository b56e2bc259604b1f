//! The key-set check, shared by the sampled and incremental modes and by
//! repair: given source keys, read them from the source, transform them,
//! look their target rows up by expected key and by source key, compare.
//! Unlike a full diff it reads no range, so it finds extra target rows only
//! among those the given keys wrote.

use std::collections::HashSet;
use std::time::Instant;

use super::context::{Ctx, KEYS_PER_BATCH};
use super::results::{Counts, Mismatch};
use super::store;
use crate::buckets::Plan;
use crate::chunk::KeyRange;
use crate::error::Result;
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;
use crate::value::{Value, source_key_text};

/// Which part of a table a key-set check covers.
pub(super) struct Span<'a> {
    /// The table's plan, to tell which bucket a mismatched row is in.
    pub plan: Option<&'a Plan>,
    /// The bucket's range when the run covers one bucket: rows outside it
    /// are left out.
    pub range: Option<&'a KeyRange>,
    pub bucket: Option<usize>,
}

impl Span<'_> {
    /// The verification task of this span, for progress.
    pub(super) fn task(&self, table: &str) -> Task {
        Task::Verify {
            table: table.to_string(),
            bucket: self.bucket,
        }
    }
}

/// Where a key-set check stands: keys checked of how many, for the run
/// control.
pub(super) struct KeysProgress {
    progress: Progress,
    started: Instant,
    done: u64,
}

impl KeysProgress {
    /// `total` keys to check for `task`.
    pub(super) fn new(task: Task, total: u64) -> KeysProgress {
        let mut progress = Progress::new(task, Unit::Keys);
        progress.total = Some(total);
        KeysProgress {
            progress,
            started: Instant::now(),
            done: 0,
        }
    }

    fn add(&mut self, keys: u64, control: &RunControl) {
        self.done += keys;
        let total = self.progress.total;
        self.progress
            .measure(self.done, self.done, total, self.started.elapsed());
        self.progress.steps += 1;
        control.report(&self.progress);
    }
}

impl Ctx {
    /// Checks a set of source keys: reads them from the source (dropping rows
    /// whose bucket value is outside the span's range), transforms, looks the
    /// target up by expected key and by source key, compares.
    /// `extra_target_keys` are target keys to look up as well (extra rows no
    /// source key is known for). False when `control` stopped it between
    /// batches.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn check_keys(
        &self,
        keys: &[Vec<Value>],
        span: &Span<'_>,
        extra_target_keys: &[Vec<Value>],
        control: &RunControl,
        progress: &mut KeysProgress,
        counts: &mut Counts,
        found: &mut Vec<Mismatch>,
    ) -> Result<bool> {
        let bucket_idx = self.query.bucket_index();
        let mut ord = 0u64;
        for (n, batch) in keys.chunks(KEYS_PER_BATCH).enumerate() {
            if !control.admit(batch.len() as u64).await {
                return Ok(false);
            }
            let (sql, params) = self.query.keys_sql(batch);
            let (_, mut rows) = self
                .source
                .fetch(
                    &sql,
                    &params,
                    &format!("read {} source rows by key to verify", self.table),
                )
                .await?;
            // Keys whose source row lies in another bucket are that bucket's
            // business: neither compared nor looked up in the target by
            // source key (they would show there as extra rows). A key with
            // no source row at all is still looked up: its leftovers are extra.
            let mut elsewhere = std::collections::HashSet::new();
            if let (Some(r), Some(b)) = (span.range, bucket_idx) {
                rows.retain(|row| {
                    let inside = r.contains(&row[b]);
                    if !inside {
                        elsewhere.insert(source_key_text(&self.query.key_of(row)));
                    }
                    inside
                });
            }
            let bucket = match (span.plan, bucket_idx, rows.first()) {
                (Some(p), Some(b), Some(row)) => p
                    .buckets
                    .iter()
                    .find(|x| x.range.contains(&row[b]))
                    .map_or(0, |x| x.index),
                _ => 0,
            };
            let source_texts: Vec<String> = batch
                .iter()
                .map(|k| source_key_text(k))
                .filter(|t| !elsewhere.contains(t))
                .collect();
            let expected = self.expected(rows).await?;
            let mut wanted: Vec<Vec<Value>> = expected.iter().map(|r| self.key_of(r)).collect();
            if n == 0 {
                wanted.extend(extra_target_keys.iter().cloned());
            }
            if self.shape.key_from_source.is_some() {
                // Found by key: a deleted record's leftover row has its key.
                let have: HashSet<String> = wanted.iter().map(|k| key_text(k)).collect();
                for k in batch {
                    if !elsewhere.contains(&source_key_text(k))
                        && let Some(t) = self.shape.target_key_of(k)
                        && !have.contains(&key_text(&t))
                    {
                        wanted.push(t);
                    }
                }
            }
            let actual = self.target_lookup(&wanted, &source_texts).await?;
            self.compare(expected, actual, bucket, &mut ord, counts, found);
            progress.add(batch.len() as u64, control);
        }
        if keys.is_empty() && !extra_target_keys.is_empty() {
            let actual = self.target_lookup(extra_target_keys, &[]).await?;
            self.compare(Vec::new(), actual, 0, &mut ord, counts, found);
        }
        Ok(true)
    }

    /// Stores a key-set check's mismatches.
    pub(super) async fn store_found(&self, found: &[Mismatch]) -> Result<()> {
        let statements = store::insert_mismatches(self.target.dialect(), &self.run_id, found);
        for chunk in statements.chunks(20) {
            self.target
                .transaction(
                    chunk,
                    &format!("store verification results of {}", self.table),
                )
                .await?;
        }
        Ok(())
    }
}

fn key_text(key: &[Value]) -> String {
    crate::value::identity(key)
}

/// One stored row per key (a key could be met in two batches).
pub(super) fn dedupe_found(found: &mut Vec<Mismatch>) {
    let mut seen = HashSet::new();
    found.retain(|m| seen.insert(m.key_id.clone()));
}
