//! The change stream: the one loop over a changelog. The relay (filtered by
//! its ramp), a bucket's catch-up (filtered by its bucket) and incremental
//! verification (filtered by its table) all read changes through it.
//!
//! One batch: read up to `batch_changes` changelog rows after a position
//! (and in its gaps: changes numbered earlier whose transactions had not
//! committed yet) → advance the position past what was read → give up gaps
//! older than the gap timeout → map the changes to keys through the spec's
//! `tracks` ([`crate::apply::keys_for_changes`]) → keep the keys the [`Filter`]
//! wants → hand back a [`Batch`] `{keys, next, at_head, lag, changes}`.
//! [`ChangeStream::next_batch`] hands it to the caller;
//! [`ChangeStream::run`] hands each batch to a [`Consumer`] that applies it
//! and commits `next` with it, and goes on until the head or until stopped.
//!
//! The stream owns what every reader of the changelog needs and must get
//! right the same way: the gap timeout, the throttle before each batch, and
//! the retries: a batch that fails on something that may go away by itself
//! (an unreachable or refusing database) is attempted again from the same
//! position, after a backoff that doubles up to a limit, until it lands or
//! the run is cancelled. A change is never dropped: the position moves only
//! with a batch that landed.
//!
//! # Directions
//!
//! A stream is built for a [`Side`] of the [`Link`]: the database whose
//! changelog it reads (`link.connector(side)`; reading, gaps and lag all go
//! there). On the source, changes map to the source keys of the spec's
//! tables through their `tracks`, applied to the target. On the target
//! (reverse replication, [`crate::reverse`]: change capture installed on
//! the target tables), changes map to *target* keys, with the source key and
//! bucket value each image maps to through the table's inverse mapping
//! (`TableKeys::source_keys`), applied to the source by the reverse relay.
//! The loop, the filters, gaps, retries and lag are the same.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::apply::{self, ApplyReport, ChangedKey, TableKeys};
use crate::buckets::Bucket;
use crate::changelog::{self, Change, DEFAULT_GAP_TIMEOUT, Lag, Position};
use crate::connector::{Connector, Statement};
use crate::error::{EngineError, Result};
use crate::link::{Link, Side};
use crate::progress::{Progress, Tally};
use crate::retry::{Backoff, is_transient};
use crate::reverse::keys::keys_for_target_changes;
use crate::run_control::RunControl;
use crate::value::{Value, identity};
use crate::writer::BatchWriter;

/// How a stream reads.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamOptions {
    /// Changelog rows per batch (default 5,000).
    pub batch_changes: usize,
    /// How long a changelog sequence number handed out but not committed is
    /// waited for (default [`DEFAULT_GAP_TIMEOUT`]).
    pub gap_timeout: Duration,
    /// First and longest wait between attempts of a failing batch
    /// (default 100 ms, 10 s).
    pub retry_initial: Duration,
    pub retry_max: Duration,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            batch_changes: 5_000,
            gap_timeout: DEFAULT_GAP_TIMEOUT,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
        }
    }
}

/// A ramp's decision: `(spec table, bucket column value) → on`.
pub type Admits = dyn Fn(&str, &Value) -> bool + Send + Sync;

/// Which keys a batch keeps. Decided by the value of a record's bucket
/// column: before the source is read when the key holds the bucket column,
/// otherwise by the applier once the row is read ([`Filter::admits`]).
#[derive(Clone)]
pub enum Filter {
    /// No keys: the changes are passed over and the position moves on (a
    /// relay ramped off).
    Nothing,
    /// Keys of every table whose bucket column value the function admits
    /// (a relay's ramp): `(table, value) → on`.
    Ramp(Arc<Admits>),
    /// Keys of one bucket of one table (a catch-up).
    Bucket(Bucket),
    /// Every changed key of one table (incremental verification).
    Table(String),
}

impl std::fmt::Debug for Filter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Filter::Nothing => f.write_str("Nothing"),
            Filter::Ramp(_) => f.write_str("Ramp(..)"),
            Filter::Bucket(b) => write!(f, "Bucket({} {})", b.table, b.index),
            Filter::Table(t) => write!(f, "Table({t})"),
        }
    }
}

impl Filter {
    /// Whether a record of spec table `table` whose bucket column holds
    /// `value` is wanted.
    pub fn admits(&self, table: &str, value: &Value) -> bool {
        match self {
            Filter::Nothing => false,
            Filter::Ramp(on) => on(table, value),
            Filter::Bucket(b) => table == b.table && b.range.contains(value),
            Filter::Table(t) => table == t,
        }
    }

    /// The spec tables whose keys the filter may want.
    fn tables<'a>(&'a self, link: &'a Link) -> Vec<&'a str> {
        match self {
            Filter::Nothing => Vec::new(),
            Filter::Ramp(_) => link.tables(),
            Filter::Bucket(b) => vec![b.table.as_str()],
            Filter::Table(t) => vec![t.as_str()],
        }
    }
}

/// One batch of changes, mapped to keys and filtered.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The keys the filter wants, per spec table, each once, in the order
    /// first met. Deleted records are included: their keys are no longer in
    /// the source.
    pub keys: Vec<TableKeys>,
    /// The position the batch was read from.
    pub from: Position,
    /// The position after it: commit it with whatever the batch leads to.
    pub next: Position,
    /// True when the read reached the head of the changelog.
    pub at_head: bool,
    /// How far `next` is behind the head of the changelog, measured once the
    /// batch was handled.
    pub lag: Lag,
    /// Changelog rows read (of every table).
    pub changes: u64,
    /// Keys passed over because the filter does not want them.
    pub skipped: u64,
}

impl Batch {
    /// Whether the batch moves the position (it read something, or a gap
    /// was filled or given up).
    pub fn moved(&self) -> bool {
        self.next != self.from
    }
}

/// Where a stream stands: what landed and what failed so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamState {
    /// The position after the last batch that landed.
    pub position: Position,
    /// Changelog rows read by batches that landed.
    pub changes: u64,
    pub batches: u64,
    /// Failed attempts so far.
    pub retries: u64,
    /// The error of the last failed attempt, cleared when a batch lands.
    pub last_error: Option<String>,
    /// The lag after the last batch, and the highest seen.
    pub lag: Lag,
    pub max_lag_seconds: f64,
    pub elapsed: Duration,
}

impl StreamState {
    /// Puts where the stream stands into a run's progress: changes read by
    /// this run of `total`, batches, rate, position, `lag` (the consumer's
    /// reading of the last batch's), retries and the last error.
    pub fn fill(&self, p: &mut Progress, lag: Lag, total: Option<u64>) {
        p.measure(self.changes, self.changes, total, self.elapsed);
        p.steps = self.batches;
        p.lag = Some(lag);
        p.position = Some(self.position.clone());
        p.retries = self.retries;
        p.last_error = self.last_error.clone();
    }
}

/// Applies the batches of a consumer that writes the target (the relay, a
/// catch-up) on one held writer, and counts what landed: a batch attempted
/// twice is counted once.
pub(crate) struct Applier<'l> {
    link: &'l Link,
    writer: Option<BatchWriter>,
    /// What the batch being attempted applied.
    pending: ApplyReport,
    /// What the batches that landed applied.
    pub total: ApplyReport,
    /// Keys passed over by the filter, before or after reading the source.
    pub skipped: u64,
}

impl<'l> Applier<'l> {
    pub(crate) fn new(link: &'l Link) -> Applier<'l> {
        Applier {
            link,
            writer: None,
            pending: ApplyReport::default(),
            total: ApplyReport::default(),
            skipped: 0,
        }
    }

    /// Brings the batch's keys up to date, writing the rows `filter` admits,
    /// and runs `after` (the consumer's position) in the same transaction.
    pub(crate) async fn apply(
        &mut self,
        batch: &Batch,
        filter: &Filter,
        after: Statement,
    ) -> Result<()> {
        self.pending = ApplyReport::default();
        let writer = match &mut self.writer {
            Some(w) => w,
            None => self
                .writer
                .insert(BatchWriter::open(self.link.target()).await?),
        };
        let admit = |table: &str, v: &Value| filter.admits(table, v);
        self.pending =
            apply::apply_keys_with(self.link, writer, &batch.keys, Some(&admit), vec![after])
                .await?;
        Ok(())
    }

    /// The batch landed: count it.
    pub(crate) fn landed(&mut self, batch: &Batch) {
        self.total.add(&self.pending);
        self.skipped += batch.skipped + self.pending.skipped;
        self.pending = ApplyReport::default();
    }

    /// An attempt failed: its connection may be dead, a new one is taken
    /// next time.
    pub(crate) fn failed(&mut self) {
        self.writer = None;
        self.pending = ApplyReport::default();
    }

    /// What landed, as a progress tally.
    pub(crate) fn tally(&self) -> Tally {
        Tally {
            rows_written: self.total.rows_written,
            keys_applied: self.total.keys,
            keys_deleted: self.total.keys_deleted,
            keys_skipped: self.skipped,
            ..Tally::default()
        }
    }
}

/// What a user of [`ChangeStream::run`] does with its batches.
pub trait Consumer {
    /// Where the stream starts (a relay's stored position, a bucket's
    /// watermark). An error is retried like a failed batch.
    fn start(&mut self) -> impl Future<Output = Result<Position>> + Send;

    /// The filter of the next batch (a relay's ramp may have changed).
    fn filter(&mut self) -> impl Future<Output = Result<Filter>> + Send;

    /// Applies a batch and commits `batch.next` in the same transaction as
    /// its writes, so the position never passes a change that did not land.
    /// On an error nothing of the batch may stay committed: the same batch
    /// is read and applied again.
    fn apply(&mut self, batch: &Batch, filter: &Filter) -> impl Future<Output = Result<()>> + Send;

    /// A batch landed (the stream's state includes it).
    fn landed(&mut self, batch: &Batch, state: &StreamState);

    /// An attempt failed and will be retried after a wait (the error is in
    /// `state.last_error`).
    fn retrying(&mut self, state: &StreamState);

    /// The last batch reached the head of the changelog: wait for more and
    /// return true to go on, or false to stop.
    fn at_head(&mut self, batch: &Batch, control: &RunControl)
    -> impl Future<Output = bool> + Send;
}

/// How [`ChangeStream::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The consumer stopped at the head of the changelog.
    Head,
    /// The run was cancelled; what landed stays, with its position.
    Cancelled,
}

/// The one reader of a changelog; see the module docs.
pub struct ChangeStream<'l> {
    link: &'l Link,
    side: Side,
    /// Who reads, for logs: `relay default`, `catch-up items bucket 3`.
    name: String,
    opts: StreamOptions,
    backoff: Backoff,
    state: StreamState,
    started: Instant,
}

impl<'l> ChangeStream<'l> {
    /// A stream over the changelog of `side`'s database (see "Directions"
    /// in the module docs).
    pub fn new(link: &'l Link, side: Side, opts: StreamOptions) -> Result<ChangeStream<'l>> {
        Ok(ChangeStream {
            link,
            side,
            name: "change stream".into(),
            backoff: Backoff::new(opts.retry_initial, opts.retry_max),
            opts,
            state: StreamState::default(),
            started: Instant::now(),
        })
    }

    /// Names the reader in the stream's logs.
    pub fn named(mut self, name: impl Into<String>) -> ChangeStream<'l> {
        self.name = name.into();
        self
    }

    /// Where the stream stands.
    pub fn state(&self) -> &StreamState {
        &self.state
    }

    /// The database whose changelog the stream reads.
    fn db(&self) -> &Connector {
        self.link.connector(self.side)
    }

    /// The next batch after `from` with its lag, retrying transient errors;
    /// `None` when `control` was cancelled while an error was waited out.
    /// Call it again with `batch.next` until `at_head`.
    pub async fn next_batch(
        &mut self,
        from: &Position,
        filter: &Filter,
        control: &RunControl,
    ) -> Result<Option<Batch>> {
        loop {
            let attempt = async {
                let mut batch = self.read(from, filter).await?;
                batch.lag = changelog::lag(self.db(), &batch.next).await?;
                Ok(batch)
            };
            match attempt.await {
                Ok(batch) => {
                    self.landed(&batch);
                    return Ok(Some(batch));
                }
                Err(e) => {
                    let wait = self.failed(e)?;
                    if !control.sleep(wait).await {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// Runs batches through `consumer` from its start until it stops at the
    /// head or `control` is cancelled. Before each batch the throttle is
    /// asked for the size of the last one (a batch's size is known only once
    /// read, and a stream at the head reads small batches that must not wait
    /// for a full one). Fails only on what retrying cannot fix (a spec or
    /// schema error, a change that cannot be mapped to keys).
    pub async fn run<C: Consumer>(
        &mut self,
        control: &RunControl,
        consumer: &mut C,
    ) -> Result<Ended> {
        let mut from = loop {
            match consumer.start().await {
                Ok(p) => break p,
                Err(e) => {
                    let wait = self.failed(e)?;
                    consumer.retrying(&self.state);
                    if !control.sleep(wait).await {
                        return Ok(Ended::Cancelled);
                    }
                }
            }
        };
        self.state.position = from.clone();
        let mut last = self.opts.batch_changes.max(1) as u64;
        loop {
            if !control.admit(last).await {
                return Ok(Ended::Cancelled);
            }
            let attempt = async {
                let filter = consumer.filter().await?;
                let mut batch = self.read(&from, &filter).await?;
                consumer.apply(&batch, &filter).await?;
                batch.lag = changelog::lag(self.db(), &batch.next).await?;
                Ok::<_, EngineError>(batch)
            };
            match attempt.await {
                Ok(batch) => {
                    self.landed(&batch);
                    last = batch.changes.max(1);
                    from = batch.next.clone();
                    consumer.landed(&batch, &self.state);
                    if batch.at_head && !consumer.at_head(&batch, control).await {
                        return Ok(Ended::Head);
                    }
                }
                Err(e) => {
                    let wait = self.failed(e)?;
                    consumer.retrying(&self.state);
                    if !control.sleep(wait).await {
                        return Ok(Ended::Cancelled);
                    }
                }
            }
        }
    }

    /// Read → advance → expire gaps → map to keys → filter.
    async fn read(&self, from: &Position, filter: &Filter) -> Result<Batch> {
        let db = self.db();
        let limit = self.opts.batch_changes.max(1);
        let changes = changelog::read(db, from, limit).await?;
        let new_ones = changes.iter().filter(|c| c.seq > from.high).count();
        let mut next = changelog::advance(from, &changes);
        changelog::expire_gaps(db, &mut next, self.opts.gap_timeout).await?;
        let mut batch = Batch {
            keys: Vec::new(),
            from: from.clone(),
            next,
            at_head: new_ones < limit,
            lag: Lag::default(),
            changes: changes.len() as u64,
            skipped: 0,
        };
        if changes.is_empty() {
            return Ok(batch);
        }
        for table in filter.tables(self.link) {
            let mut seen = HashSet::new();
            let mut keys = Vec::new();
            let (changed, touched) = match self.side {
                Side::Source => (self.keys_of(table, &changes).await?, Vec::new()),
                Side::Target => keys_for_target_changes(self.link, table, &changes).await?,
            };
            let mut source_keys = Vec::new();
            let mut seen_source = HashSet::new();
            for t in touched {
                if filter.admits(table, &t.bucket) && seen_source.insert(identity(&t.key)) {
                    source_keys.push(t.key);
                }
            }
            for k in changed {
                match &k.bucket {
                    Some(b) if !filter.admits(table, b) => batch.skipped += 1,
                    _ => {
                        if seen.insert(identity(&k.key)) {
                            keys.push(k.key);
                        }
                    }
                }
            }
            let mut groups = Vec::new();
            let mut seen_groups = HashSet::new();
            let group_changes = match self.side {
                Side::Source => apply::groups_for_changes(self.link, table, &changes)?,
                Side::Target => Vec::new(),
            };
            for (g, bucket) in group_changes {
                if bucket.is_none_or(|b| filter.admits(table, &b))
                    && seen_groups.insert(identity(&g))
                {
                    groups.push(g);
                }
            }
            if !keys.is_empty() || !groups.is_empty() || !source_keys.is_empty() {
                batch.keys.push(TableKeys {
                    table: table.to_string(),
                    keys,
                    groups,
                    source_keys,
                });
            }
        }
        Ok(batch)
    }

    /// The keys of spec table `table` that `changes` touch, through the
    /// mapping of the stream's direction: today the spec's `tracks` from
    /// source changes to source keys. A target stream would map through the
    /// inverse mapping here.
    async fn keys_of(&self, table: &str, changes: &[Change]) -> Result<Vec<ChangedKey>> {
        apply::keys_for_changes(self.link, table, changes).await
    }

    /// Records a batch that landed.
    fn landed(&mut self, batch: &Batch) {
        self.backoff.reset();
        let s = &mut self.state;
        s.position = batch.next.clone();
        s.changes += batch.changes;
        s.batches += 1;
        s.last_error = None;
        s.lag = batch.lag;
        s.max_lag_seconds = s.max_lag_seconds.max(batch.lag.seconds);
        s.elapsed = self.started.elapsed();
    }

    /// Records a failed attempt: the wait before the next one, or the error
    /// itself when waiting cannot fix it.
    fn failed(&mut self, e: EngineError) -> Result<Duration> {
        if !is_transient(&e) {
            return Err(e);
        }
        let wait = self.backoff.next_wait();
        self.state.retries += 1;
        self.state.last_error = Some(e.to_string());
        self.state.elapsed = self.started.elapsed();
        tracing::warn!(
            reader = %self.name,
            error = %e,
            retry_in_ms = wait.as_millis() as u64,
            position = %self.state.position,
            "change stream batch failed; retrying the same batch (no change is dropped)"
        );
        Ok(wait)
    }
}
