//! One page of a pass: the mapper over the page's records (several at
//! once, each retried as the failure policy says), then their changes
//! written in one transaction through the engine's connector, each guarded
//! by the values its record was read with.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use super::options::FixFailure;
use crate::db::{FixDb, Write, WriteOutcome};
use crate::error::DatafixError;
use crate::mapper::{Change, Mapper};
use crate::record::Record;
use crate::spec::{OnFailure, Settings};

/// Records changed, failed and found stale, over all runs of the job.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Totals {
    pub changed: u64,
    pub failed: u64,
    pub stale: u64,
}

/// How a page ended: the records that failed, and the error that stops the
/// run under the `stop` policy.
#[derive(Debug, Default)]
pub(super) struct PageEnd {
    pub failures: Vec<FixFailure>,
    pub stop: Option<DatafixError>,
}

/// What a page works with.
pub(super) struct Page<'a> {
    pub db: &'a FixDb,
    pub mapper: &'a Arc<Mapper>,
    pub key: &'a [String],
    pub pass: u32,
    pub settings: &'a Settings,
}

impl Page<'_> {
    /// Maps the records and writes their changes, counting into `totals`.
    pub(super) async fn run(&self, recs: &[Record], totals: &mut Totals) -> PageEnd {
        let key = self.key;
        let retries = self.retries();
        let key_arc = Arc::new(key.to_vec());
        // A loop, not an iterator's `map`: a closure over borrowed records
        // makes a spawned run's future fail the compiler's lifetime check.
        let mut futs = Vec::with_capacity(recs.len());
        for (i, rec) in recs.iter().enumerate() {
            let (mapper, key) = (Arc::clone(self.mapper), Arc::clone(&key_arc));
            futs.push(map_one(mapper, key, i, rec.clone(), retries));
        }
        let mut mapped: Vec<(usize, Result<Change, String>, u32)> = futures::stream::iter(futs)
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        mapped.sort_by_key(|(i, _, _)| *i);
        let mut end = PageEnd::default();
        let mut writes: Vec<(Record, Write)> = Vec::new();
        for (i, res, attempts) in mapped {
            let rec = &recs[i];
            match res {
                Ok(Change::Set(cols)) => {
                    if cols.iter().all(|(c, v)| rec.get(c) == Some(v)) {
                        self.fail(&mut end, rec, "the mapper makes no change, yet the filter selects the record: fix the filter or the mapper".into(), attempts);
                    } else {
                        writes.push((rec.clone(), Write::Set(cols)));
                    }
                }
                Ok(Change::Delete) => writes.push((rec.clone(), Write::Delete)),
                Ok(Change::AppliedByService) => totals.changed += 1,
                Err(reason) => self.fail(&mut end, rec, reason, attempts),
            }
        }
        if !writes.is_empty() {
            let outcomes = self.db.write_batch(key, &writes).await;
            for ((rec, w), out) in writes.iter().zip(outcomes) {
                match out {
                    WriteOutcome::Applied => totals.changed += 1,
                    WriteOutcome::Stale => totals.stale += 1,
                    WriteOutcome::Failed(reason) => {
                        self.retry_write(&mut end, rec, w, reason, totals).await
                    }
                }
            }
        }
        totals.failed += end.failures.len() as u64;
        end
    }

    fn retries(&self) -> u32 {
        if self.settings.on_failure == OnFailure::Retry {
            self.settings.retries.max(1)
        } else {
            1
        }
    }

    /// Writes a change the page's transaction could not, again, as the
    /// policy allows. A retried write is another guarded attempt: harmless
    /// if it already landed.
    async fn retry_write(
        &self,
        end: &mut PageEnd,
        rec: &Record,
        w: &Write,
        mut reason: String,
        totals: &mut Totals,
    ) {
        let mut attempts = 1;
        while attempts < self.retries() {
            tokio::time::sleep(backoff(attempts)).await;
            attempts += 1;
            let batch = [(rec.clone(), w.clone())];
            match self.db.write_batch(self.key, &batch).await.pop() {
                Some(WriteOutcome::Applied) => {
                    totals.changed += 1;
                    return;
                }
                Some(WriteOutcome::Stale) => {
                    totals.stale += 1;
                    return;
                }
                Some(WriteOutcome::Failed(r)) => reason = r,
                None => return,
            }
        }
        self.fail(end, rec, reason, attempts);
    }

    /// Records a failed record; under the `stop` policy the page ends the run.
    fn fail(&self, end: &mut PageEnd, rec: &Record, reason: String, attempts: u32) {
        let key = self.key;
        end.failures.push(FixFailure {
            key_text: rec.key_text(key),
            key: rec.key_json(key),
            reason: reason.clone(),
            pass: self.pass,
            attempts,
        });
        if self.settings.on_failure == OnFailure::Stop && end.stop.is_none() {
            end.stop = Some(DatafixError::Stopped {
                key: rec.key_text(key),
                reason,
            });
        }
    }
}

/// The wait before attempt `attempt + 1`: 200 ms, doubling, at most 6.4 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 << attempt.min(6))
}

/// Maps one record, retrying as the policy says.
async fn map_one(
    mapper: Arc<Mapper>,
    key: Arc<Vec<String>>,
    i: usize,
    rec: Record,
    retries: u32,
) -> (usize, Result<Change, String>, u32) {
    let key = key.as_slice();
    let mut attempt = 1;
    loop {
        match mapper.map(&rec, key, false).await {
            Ok(c) => return (i, Ok(c), attempt),
            Err(e) if attempt < retries => {
                tokio::time::sleep(backoff(attempt)).await;
                attempt += 1;
                tracing::debug!(key = %rec.key_text(key), error = %e, attempt, "retrying a record");
            }
            Err(e) => return (i, Err(e), attempt),
        }
    }
}
