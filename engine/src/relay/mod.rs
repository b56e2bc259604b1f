//! The dual-write relay: applies source changes from the changelog to the
//! target for the keys that are ramped on.
//!
//! The relay reads the changelog through the change stream
//! ([`crate::change_stream`]), filtered by its ramp ([`RelayRamp`]: a set of
//! buckets, or a sticky percentage of the key hash, [`crate::ramp`]), and
//! brings each batch's keys up to date with [`crate::apply::apply_keys`]'s
//! path, the bulk load's own (re-read the *current* source rows through
//! joins, transformers and dedupers, write version-guarded, delete what the
//! source deleted). The relay's new position is written in the same target
//! transaction (`_tern_relay`), so a restart continues exactly after the
//! last committed batch.
//!
//! Delivery is at least once and idempotent: a batch retried after a crash or
//! applied by two relays re-reads the same current rows, and the version guard
//! and tombstones keep an older read from replacing a newer one. When the
//! target (or source) cannot be reached or refuses a batch, the stream waits
//! with backoff and retries the same batch, forever, until stopped: a change is
//! never dropped. Changes of keys not ramped on are passed over; the bucket's
//! catch-up ([`crate::catch_up`]) replays them once the bucket is ramped on,
//! which is why the order is: ramp on, then catch up.
//!
//! The ramp can change while the relay runs (a `watch` channel read before
//! every batch), and so can its throttle; the run control's cancel token
//! stops it between batches. Progress (changes applied, rate, lag in changes
//! and seconds, retries, the ramp as the note, retention warnings) goes to
//! the run control after every batch.

pub(crate) mod consumer;
mod ramp;
mod retention;
pub(crate) mod store;

pub use ramp::RelayRamp;
pub use retention::{PruneReport, prune_changelog};
pub use store::RELAY_TABLE;

use consumer::Every;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::buckets::Plan;
use crate::change_stream::{Applier, Batch, Consumer, Filter, StreamOptions, StreamState};
use crate::changelog::Position;
use crate::error::Result;
use crate::link::{Link, Side};
use crate::progress::Progress;
use crate::reverse::SwitchedBuckets;
use crate::run_control::RunControl;
use crate::value::Value;

/// How a relay runs (the throttle, in changes per second, cancel and
/// progress are the caller's [`RunControl`]). Build with
/// [`RelayOptions::new`] and set what differs.
#[derive(Clone)]
pub struct RelayOptions {
    /// The relay's name: its position is stored under it in the target.
    /// Relays with different names are independent; default `default`.
    pub name: String,
    /// Which keys are on; send a new value to change it while the relay runs.
    pub ramp: watch::Receiver<RelayRamp>,
    /// Salt of the percentage ramp: the migration's name, so that ramps of
    /// different migrations are independent. Default: empty.
    pub salt: String,
    /// Batch size (default 5,000 changes), gap timeout and retries.
    pub stream: StreamOptions,
    /// Wait between reads when the relay is at the head (default 50 ms).
    pub poll_interval: Duration,
    /// Where a relay with no stored position starts; default the head of the
    /// changelog now (earlier changes are the catch-up's).
    pub start: Option<Position>,
    /// Return once a read finds nothing after the position (for scripts and
    /// tests); default false: run until cancelled.
    pub stop_at_head: bool,
    /// Changelog retention (default 7 days): the relay warns when a bucket's
    /// backlog is older, and with `prune` deletes changelog rows older than
    /// it that every relay and pending catch-up has passed.
    pub retention: Duration,
    /// Prune the changelog every `maintenance_every` (default true).
    pub prune: bool,
    /// How often retention is checked (default 60 s).
    pub maintenance_every: Duration,
    /// The mirror option: buckets whose source of truth is switched to the
    /// target; their source changes are passed over (the reverse relay
    /// carries their changes the other way, [`crate::reverse`]). Default
    /// `None`: nothing is switched.
    pub switched: Option<watch::Receiver<SwitchedBuckets>>,
    /// Where the relay publishes the switched set it filters by, as it takes
    /// it before a batch: a changed set is in force for every change the
    /// relay reads after it shows here (see [`crate::reverse::wait_observed`]).
    pub observed: Option<Arc<watch::Sender<SwitchedBuckets>>>,
    /// Where the relay publishes the ramp it filters by, as it takes it
    /// before a batch: a changed ramp is in force for every change the relay
    /// reads after it shows here (a catch-up hands a bucket over by it).
    pub ramp_observed: Option<Arc<watch::Sender<RelayRamp>>>,
}

impl RelayOptions {
    /// Defaults with the given ramp receiver.
    pub fn new(ramp: watch::Receiver<RelayRamp>) -> RelayOptions {
        RelayOptions {
            name: "default".into(),
            ramp,
            salt: String::new(),
            stream: StreamOptions::default(),
            poll_interval: Duration::from_millis(50),
            start: None,
            stop_at_head: false,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune: true,
            maintenance_every: Duration::from_secs(60),
            switched: None,
            observed: None,
            ramp_observed: None,
        }
    }

    /// Defaults with a fixed ramp (no way to change it while running).
    pub fn fixed(ramp: RelayRamp) -> RelayOptions {
        RelayOptions::new(watch::channel(ramp).1)
    }
}

/// What a relay run did, when it stopped.
#[derive(Debug, Clone, PartialEq)]
pub struct RelaySummary {
    pub name: String,
    /// The position it stopped at (persisted).
    pub position: Position,
    pub changes: u64,
    pub keys_applied: u64,
    pub rows_written: u64,
    pub keys_deleted: u64,
    pub keys_skipped: u64,
    pub retries: u64,
    /// The highest lag seen after a batch, in seconds.
    pub max_lag_seconds: f64,
    pub elapsed: Duration,
}

/// Runs the dual-write relay until `control` is cancelled (or, with
/// `stop_at_head`, until it reaches the head of the changelog).
///
/// Fails only on what retrying cannot fix (capture not installed, a spec or
/// schema error, a change that cannot be mapped to keys); an unreachable or
/// refusing database is waited out with backoff.
pub async fn run_relay(
    link: &Link,
    opts: RelayOptions,
    control: &RunControl,
) -> Result<RelaySummary> {
    consumer::check(link, &opts.name)?;
    let started = Instant::now();
    let mut relay = Relay {
        link,
        opts: &opts,
        control,
        ramp_rx: opts.ramp.clone(),
        plans: Arc::new(HashMap::new()),
        plans_for: None,
        switched_rx: opts.switched.clone(),
        applier: Applier::new(link),
        maintenance: Every::default(),
        start_warnings: Vec::new(),
        progress: consumer::progress(&opts.name),
    };
    let who = ("relay", opts.name.as_str());
    let s = consumer::run(link, Side::Source, &opts.stream, who, control, &mut relay).await?;
    Ok(RelaySummary {
        name: opts.name.clone(),
        position: s.position,
        changes: s.changes,
        keys_applied: relay.applier.total.keys,
        rows_written: relay.applier.total.rows_written,
        keys_deleted: relay.applier.total.keys_deleted,
        keys_skipped: relay.applier.skipped,
        retries: s.retries,
        max_lag_seconds: s.max_lag_seconds,
        elapsed: started.elapsed(),
    })
}

/// The relay as a change stream consumer.
struct Relay<'a> {
    link: &'a Link,
    opts: &'a RelayOptions,
    control: &'a RunControl,
    ramp_rx: watch::Receiver<RelayRamp>,
    /// Every table's stored plan, for a ramp by buckets, and the ramp they
    /// were loaded for.
    plans: Arc<HashMap<String, Plan>>,
    plans_for: Option<(RelayRamp, SwitchedBuckets)>,
    switched_rx: Option<watch::Receiver<SwitchedBuckets>>,
    applier: Applier<'a>,
    maintenance: Every,
    /// Said once at start, shown with every report: buckets whose older
    /// changes no catch-up has applied.
    start_warnings: Vec<String>,
    progress: Progress,
}

impl Relay<'_> {
    /// Retention warnings and pruning, every `maintenance_every`; a failure
    /// is logged and tried again next time.
    async fn maintenance(&mut self) {
        if !self.maintenance.due(self.opts.maintenance_every) {
            return;
        }
        let lag = self.progress.lag.unwrap_or_default();
        let (name, retention, prune) = (&self.opts.name, self.opts.retention, self.opts.prune);
        match retention::check(self.link, name, retention, prune, &lag).await {
            Ok(w) => self.progress.warnings = [self.start_warnings.clone(), w].concat(),
            Err(e) => {
                tracing::warn!(relay = %self.opts.name, error = %e, "retention check failed; will try again")
            }
        }
    }
}

impl Consumer for Relay<'_> {
    /// The stored position, or (first run) the start position, stored.
    async fn start(&mut self) -> Result<Position> {
        let (link, opts) = (self.link, self.opts);
        let position = consumer::start(
            link.source(),
            link.target(),
            ("relay", &opts.name),
            opts.start.as_ref(),
            || {
                format!(
                    "run `tern capture install --spec {}` first",
                    link.spec().file
                )
            },
            &mut self.progress,
        )
        .await?;
        if let Some(w) = uncovered(link, &position).await? {
            tracing::warn!(relay = %opts.name, "{w}");
            self.start_warnings = vec![w.clone()];
            self.progress.warnings.push(w);
        }
        Ok(position)
    }

    async fn filter(&mut self) -> Result<Filter> {
        self.maintenance().await;
        let ramp = self.ramp_rx.borrow_and_update().clone();
        if let Some(o) = &self.opts.ramp_observed {
            o.send_if_modified(|shown| {
                let changed = *shown != ramp;
                if changed {
                    *shown = ramp.clone();
                }
                changed
            });
        }
        let switched = match &mut self.switched_rx {
            Some(rx) => rx.borrow_and_update().clone(),
            None => SwitchedBuckets::none(),
        };
        if let Some(o) = &self.opts.observed {
            o.send_replace(switched.clone());
        }
        self.progress.note = Some(if switched.is_empty() {
            ramp.to_string()
        } else {
            format!("{ramp}, switched {switched} skipped")
        });
        if ramp == RelayRamp::Off {
            return Ok(Filter::Nothing);
        }
        let needs_plans = matches!(ramp, RelayRamp::Buckets(_)) || !switched.is_empty();
        let loaded_for = (ramp.clone(), switched.clone());
        if needs_plans && self.plans_for.as_ref() != Some(&loaded_for) {
            self.plans = Arc::new(self.link.stored_plans().await?);
            self.plans_for = Some(loaded_for);
        }
        let plans = self.plans.clone();
        let salt = self.opts.salt.clone();
        Ok(Filter::Ramp(Arc::new(move |table: &str, v: &Value| {
            ramp.admits(&salt, &plans, table, v) && !switched.admits(&plans, table, v)
        })))
    }

    async fn apply(&mut self, batch: &Batch, filter: &Filter) -> Result<()> {
        if !batch.moved() {
            return Ok(());
        }
        let save = store::save(self.link.target().dialect(), &self.opts.name, &batch.next);
        self.applier.apply(batch, filter, save).await
    }

    fn landed(&mut self, batch: &Batch, state: &StreamState) {
        self.applier.landed(batch);
        self.progress.tally = self.applier.tally();
        consumer::report(&mut self.progress, state, batch.lag, self.control);
    }

    fn retrying(&mut self, state: &StreamState) {
        self.applier.failed();
        consumer::report_retry(&mut self.progress, state, self.control);
    }

    async fn at_head(&mut self, batch: &Batch, control: &RunControl) -> bool {
        // A closed channel (a fixed ramp) would wake at once.
        let ramp_open = self.ramp_rx.has_changed().is_ok();
        let switched_open = self
            .switched_rx
            .as_ref()
            .is_some_and(|rx| rx.has_changed().is_ok());
        let (ramp_rx, switched_rx) = (&mut self.ramp_rx, &mut self.switched_rx);
        let switched_changed = async {
            match switched_rx {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        let changed = async {
            tokio::select! {
                _ = ramp_rx.changed(), if ramp_open => {}
                _ = switched_changed, if switched_open => {}
                else => std::future::pending().await,
            }
        };
        let (stop_at_head, poll) = (self.opts.stop_at_head, self.opts.poll_interval);
        consumer::wait_at_head(stop_at_head, batch, control, poll, changed).await
    }
}

/// A warning when changes older than the relay's start position are not
/// covered: buckets whose watermark is before it and that no catch-up has
/// brought to the head. The relay only applies what comes after its
/// position; those buckets miss the changes in between until caught up.
async fn uncovered(link: &Link, start: &Position) -> Result<Option<String>> {
    let behind: Vec<String> = link
        .all_checkpoints()
        .await?
        .into_iter()
        .filter(|c| {
            c.caught_up_at.is_none() && c.watermark.as_ref().is_some_and(|w| w.low() < start.low())
        })
        .map(|c| format!("{} bucket {}", c.table, c.bucket))
        .collect();
    if behind.is_empty() {
        return Ok(None);
    }
    let shown: Vec<&str> = behind.iter().take(8).map(String::as_str).collect();
    Ok(Some(format!(
        "{} bucket(s) have changes from before this relay's start position {start} that no \
         catch-up has applied ({}{}): the relay does not replay them; run `tern catch-up --spec {}` \
         to catch up every bucket",
        behind.len(),
        shown.join(", "),
        if behind.len() > shown.len() {
            ", …"
        } else {
            ""
        },
        link.spec().file
    )))
}
