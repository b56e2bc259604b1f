//! The reverse relay: reads the target's changelog through the change
//! stream ([`crate::change_stream`], [`Side::Target`]) and applies the
//! changes of switched buckets to the source, new → old
//! ([`super::apply`]). Its position is stored in the *source* (`_tern_relay`,
//! under its name), in the same transaction as the batch it describes, so a
//! restart continues after the last committed batch. Delivery, retries and
//! gaps are the stream's: at least once, idempotent, never dropping a change.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::apply::{ReverseApplyReport, apply_to_source};
use super::switched::SwitchedBuckets;
use crate::buckets::Plan;
use crate::change_stream::{Batch, Consumer, Filter, StreamOptions, StreamState};
use crate::changelog::Position;
use crate::error::Result;
use crate::link::{Link, Side};
use crate::progress::{Progress, Tally};
use crate::relay::consumer::{self, Every};
use crate::relay::store;
use crate::run_control::RunControl;
use crate::value::Value;
use crate::writer::BatchWriter;

/// The reverse relay's default name (its position's key in the source).
pub const DEFAULT_REVERSE_RELAY: &str = "reverse";

/// How a reverse relay runs (throttle, cancel and progress are the caller's
/// [`RunControl`]). Build with [`ReverseOptions::new`] and set what differs.
#[derive(Clone)]
pub struct ReverseOptions {
    /// Its name: the position is stored under it in the source; default
    /// [`DEFAULT_REVERSE_RELAY`].
    pub name: String,
    /// The switched buckets; send a new value to change them while it runs.
    pub switched: watch::Receiver<SwitchedBuckets>,
    /// Batch size, gap timeout and retries.
    pub stream: StreamOptions,
    /// Wait between reads at the head (default 50 ms).
    pub poll_interval: Duration,
    /// Where a relay with no stored position starts: the head of the
    /// target's changelog taken when the first bucket was switched. Default:
    /// the head now.
    pub start: Option<Position>,
    /// Return once a read finds nothing after the position (scripts, tests).
    pub stop_at_head: bool,
    /// Where the relay publishes the switched set it filters by, as it takes
    /// it before a batch (see [`super::wait_observed`]).
    pub observed: Option<Arc<watch::Sender<SwitchedBuckets>>>,
    /// Target changelog retention (default 7 days): every minute, rows
    /// older than it that the reverse relays have passed are deleted
    /// ([`super::prune_target_changelog`]); `None` never prunes.
    pub retention: Option<Duration>,
}

impl ReverseOptions {
    pub fn new(switched: watch::Receiver<SwitchedBuckets>) -> ReverseOptions {
        ReverseOptions {
            name: DEFAULT_REVERSE_RELAY.into(),
            switched,
            stream: StreamOptions::default(),
            poll_interval: Duration::from_millis(50),
            start: None,
            stop_at_head: false,
            observed: None,
            retention: Some(Duration::from_secs(7 * 24 * 3600)),
        }
    }
}

/// What a reverse relay run did, when it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct ReverseSummary {
    pub name: String,
    /// The position it stopped at (persisted in the source).
    pub position: Position,
    /// Target changelog rows read.
    pub changes: u64,
    /// Distinct target keys applied, source rows written and deleted, target
    /// rows left out (bucket not switched), summed over batches.
    pub applied: ReverseApplyReport,
    pub retries: u64,
    pub max_lag_seconds: f64,
    pub elapsed: Duration,
}

/// Runs the reverse relay until `control` is cancelled (or, with
/// `stop_at_head`, until it reaches the head of the target's changelog).
///
/// Fails on what retrying cannot fix: capture not installed on the target,
/// a switched table that is not reversible ([`crate::EngineError::NotReversible`],
/// with its reason), a row that cannot be mapped back.
pub async fn run_reverse_relay(
    link: &Link,
    opts: ReverseOptions,
    control: &RunControl,
) -> Result<ReverseSummary> {
    consumer::check(link, &opts.name)?;
    let started = Instant::now();
    let mut relay = Reverse {
        link,
        opts: &opts,
        switched_rx: opts.switched.clone(),
        plans: Arc::new(HashMap::new()),
        plans_for: None,
        writer: None,
        pending: ReverseApplyReport::default(),
        total: ReverseApplyReport::default(),
        control,
        progress: consumer::progress(&opts.name),
        maintenance: Every::default(),
    };
    let who = ("reverse relay", opts.name.as_str());
    let s = consumer::run(link, Side::Target, &opts.stream, who, control, &mut relay).await?;
    Ok(ReverseSummary {
        name: opts.name.clone(),
        position: s.position,
        changes: s.changes,
        applied: relay.total,
        retries: s.retries,
        max_lag_seconds: s.max_lag_seconds,
        elapsed: started.elapsed(),
    })
}

/// The reverse relay as a change stream consumer.
struct Reverse<'a> {
    link: &'a Link,
    opts: &'a ReverseOptions,
    switched_rx: watch::Receiver<SwitchedBuckets>,
    plans: Arc<HashMap<String, Plan>>,
    /// The switched buckets `plans` were loaded for.
    plans_for: Option<SwitchedBuckets>,
    /// Writers on the source and the target, held across batches.
    writer: Option<(BatchWriter, BatchWriter)>,
    pending: ReverseApplyReport,
    total: ReverseApplyReport,
    control: &'a RunControl,
    progress: Progress,
    maintenance: Every,
}

impl Reverse<'_> {
    /// Prunes the target's changelog every minute; a failure is logged and
    /// tried again next time.
    async fn maintenance(&mut self) {
        let Some(retention) = self.opts.retention else {
            return;
        };
        if !self.maintenance.due(Duration::from_secs(60)) {
            return;
        }
        if let Err(e) = super::prune_target_changelog(self.link, retention).await {
            tracing::warn!(relay = %self.opts.name, error = %e, "target changelog pruning failed; will try again");
        }
    }
}

impl Consumer for Reverse<'_> {
    async fn start(&mut self) -> Result<Position> {
        let (link, opts) = (self.link, self.opts);
        consumer::start(
            link.target(),
            link.source(),
            ("reverse relay", &opts.name),
            opts.start.as_ref(),
            || {
                "install it first (`tern reverse-relay` does; from code, \
                 tern_engine::reverse::install_capture)"
                    .to_string()
            },
            &mut self.progress,
        )
        .await
    }

    async fn filter(&mut self) -> Result<Filter> {
        self.maintenance().await;
        let switched = self.switched_rx.borrow_and_update().clone();
        if let Some(o) = &self.opts.observed {
            o.send_replace(switched.clone());
        }
        self.progress.note = Some(format!("switched {switched}"));
        if switched.is_empty() {
            return Ok(Filter::Nothing);
        }
        if self.plans_for.as_ref() != Some(&switched) {
            // Every switched table must map back: refused here with its
            // reason rather than at its first change.
            for (table, _) in switched.iter() {
                self.link.reverse_table(table).await?;
            }
            self.plans = Arc::new(self.link.stored_plans().await?);
            self.plans_for = Some(switched.clone());
        }
        let plans = self.plans.clone();
        Ok(Filter::Ramp(Arc::new(move |table: &str, v: &Value| {
            switched.admits(&plans, table, v)
        })))
    }

    async fn apply(&mut self, batch: &Batch, filter: &Filter) -> Result<()> {
        self.pending = ReverseApplyReport::default();
        if !batch.moved() {
            return Ok(());
        }
        let save = store::save(self.link.source().dialect(), &self.opts.name, &batch.next);
        let (source, target) = match &mut self.writer {
            Some(w) => w,
            None => self.writer.insert((
                BatchWriter::open(self.link.source()).await?,
                BatchWriter::open(self.link.target()).await?,
            )),
        };
        let admit = |table: &str, v: &Value| filter.admits(table, v);
        self.pending =
            apply_to_source(self.link, source, target, &batch.keys, &admit, vec![save]).await?;
        Ok(())
    }

    fn landed(&mut self, batch: &Batch, state: &StreamState) {
        self.total.add(&self.pending);
        self.total.skipped += batch.skipped;
        self.pending = ReverseApplyReport::default();
        self.progress.tally = Tally {
            rows_written: self.total.rows_written,
            keys_applied: self.total.keys,
            keys_deleted: self.total.rows_deleted,
            keys_skipped: self.total.skipped,
            ..Tally::default()
        };
        consumer::report(&mut self.progress, state, batch.lag, self.control);
    }

    fn retrying(&mut self, state: &StreamState) {
        self.writer = None;
        self.pending = ReverseApplyReport::default();
        consumer::report_retry(&mut self.progress, state, self.control);
    }

    async fn at_head(&mut self, batch: &Batch, control: &RunControl) -> bool {
        // A closed channel (a fixed set) would wake at once.
        let open = self.switched_rx.has_changed().is_ok();
        let rx = &mut self.switched_rx;
        let changed = async {
            if open {
                let _ = rx.changed().await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let (stop_at_head, poll) = (self.opts.stop_at_head, self.opts.poll_interval);
        consumer::wait_at_head(stop_at_head, batch, control, poll, changed).await
    }
}
