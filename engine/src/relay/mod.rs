//! The dual-write relay: applies source changes from the changelog
//! ([`crate::changelog`]) to the target for the keys that are ramped on.
//!
//! Each batch: read up to `batch_changes` changelog rows after the relay's
//! position (and in its gaps: changes numbered earlier whose transactions had
//! not committed yet); map them to source keys through the spec's `tracks`;
//! keep the keys whose bucket column value is ramped on ([`RelayRamp`]: a set
//! of buckets, or a sticky percentage of the key hash, [`crate::ramp`]); and
//! bring those keys up to date with [`crate::apply::apply_keys`]'s path, the bulk
//! load's own (re-read the *current* source rows through joins, transformers
//! and dedupers, write version-guarded, delete what the source deleted). The
//! relay's new position is written in the same target transaction
//! (`_tern_relay`), so a restart continues exactly after the last committed
//! batch.
//!
//! Delivery is at least once and idempotent: a batch retried after a crash or
//! applied by two relays re-reads the same current rows, and the version guard
//! and tombstones keep an older read from replacing a newer one. When the
//! target (or source) cannot be reached or refuses a batch, the relay waits
//! with backoff and retries the same batch, forever, until stopped: a change is
//! never dropped. Changes of keys not ramped on are passed over; the bucket's
//! catch-up ([`crate::catch_up`]) replays them once the bucket is ramped on,
//! which is why the order is: ramp on, then catch up.
//!
//! The ramp can change while the relay runs (a `watch` channel read before
//! every batch), and so can its throttle; a `CancellationToken` stops it between
//! batches. Progress (changes applied, rate, lag in changes and seconds,
//! retries, retention warnings) goes to a callback after every batch.

mod retention;
mod store;

pub use retention::{PruneReport, prune_changelog};
pub use store::RELAY_TABLE;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::apply::{self, ApplyReport, TableKeys};
use crate::buckets::Plan;
use crate::capture;
use crate::changelog::{self, DEFAULT_GAP_TIMEOUT, Lag, Position};
use crate::error::{EngineError, Result};
use crate::link::Link;
use crate::ramp::{self, Ramp};
use crate::retry::{Backoff, is_transient};
use crate::throttle::{RateThrottle, Throttle};
use crate::value::Value;
use crate::writer::BatchWriter;

/// Which keys the relay writes. Decided by the value of a row's bucket
/// column (e.g. the member id), so all of a member's records go together.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RelayRamp {
    /// Nothing is dual-written.
    #[default]
    Off,
    /// A sticky share of bucket column values by their hash
    /// ([`crate::ramp::value_is_on`] under [`RelayOptions::salt`]).
    Percent(Ramp),
    /// Whole buckets of the stored plan: `(table, bucket index)`.
    Buckets(BTreeSet<(String, usize)>),
}

impl RelayRamp {
    /// Every key: the same as `Percent(100%)`.
    pub fn full() -> RelayRamp {
        RelayRamp::Percent(Ramp::FULL)
    }

    /// Bucket indices `indices` of each of `tables`.
    pub fn buckets<'a>(
        tables: impl IntoIterator<Item = &'a str>,
        indices: impl IntoIterator<Item = usize> + Clone,
    ) -> RelayRamp {
        let mut set = BTreeSet::new();
        for t in tables {
            for i in indices.clone() {
                set.insert((t.to_string(), i));
            }
        }
        RelayRamp::Buckets(set)
    }

    /// Whether a row of `table` with bucket column value `value` is on.
    pub fn admits(
        &self,
        salt: &str,
        plans: &HashMap<String, Plan>,
        table: &str,
        value: &Value,
    ) -> bool {
        match self {
            RelayRamp::Off => false,
            RelayRamp::Percent(r) => ramp::value_is_on(salt, value, *r),
            RelayRamp::Buckets(set) => plans.get(table).is_some_and(|p| {
                p.buckets
                    .iter()
                    .find(|b| b.range.contains(value))
                    .is_some_and(|b| set.contains(&(table.to_string(), b.index)))
            }),
        }
    }
}

impl std::fmt::Display for RelayRamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RelayRamp::Off => f.write_str("off"),
            RelayRamp::Percent(r) => write!(f, "{r} of keys"),
            RelayRamp::Buckets(set) => {
                let parts: Vec<String> = set.iter().map(|(t, i)| format!("{t}#{i}")).collect();
                write!(f, "buckets {}", parts.join(","))
            }
        }
    }
}

/// Where a relay stands, reported after every batch.
#[derive(Debug, Clone, PartialEq)]
pub struct RelayProgress {
    pub name: String,
    /// The ramp the last batch was applied with.
    pub ramp: String,
    /// The persisted position after the last committed batch.
    pub position: Position,
    /// Changelog rows handled by this run (applied, or passed over because
    /// their keys are not ramped on).
    pub changes: u64,
    /// Keys brought up to date and target rows written by this run.
    pub keys_applied: u64,
    pub rows_written: u64,
    /// Keys deleted in the target because the source deleted them.
    pub keys_deleted: u64,
    /// Keys passed over because they are not ramped on.
    pub keys_skipped: u64,
    /// Changes per second of this run.
    pub rate: f64,
    /// How far the relay is behind the head of the changelog.
    pub lag: Lag,
    /// Failed attempts so far (each batch is retried until it lands).
    pub retries: u64,
    /// The error of the last failed attempt, cleared when a batch lands.
    pub last_error: Option<String>,
    /// Things an operator should act on (backlog older than the retention).
    pub warnings: Vec<String>,
    pub elapsed: Duration,
}

/// The relay's progress callback; called from its task, so keep it quick.
pub type RelayProgressFn = Arc<dyn Fn(&RelayProgress) + Send + Sync>;

/// How a relay runs. Build with [`RelayOptions::new`] and set what differs.
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
    /// Changelog rows per batch (default 5,000).
    pub batch_changes: usize,
    /// Wait between reads when the relay is at the head (default 50 ms).
    pub poll_interval: Duration,
    /// Asked before every batch (rate in changes per second).
    pub throttle: Arc<dyn Throttle>,
    /// Stops the relay between batches.
    pub cancel: CancellationToken,
    pub progress: Option<RelayProgressFn>,
    /// Where a relay with no stored position starts; default the head of the
    /// changelog now (earlier changes are the catch-up's).
    pub start: Option<Position>,
    /// Return once a read finds nothing after the position (for scripts and
    /// tests); default false: run until cancelled.
    pub stop_at_head: bool,
    /// First and longest wait between attempts of a failing batch
    /// (default 100 ms, 10 s).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How long a changelog sequence number handed out but not committed is
    /// waited for (default [`DEFAULT_GAP_TIMEOUT`]).
    pub gap_timeout: Duration,
    /// Changelog retention (default 7 days): the relay warns when a bucket's
    /// backlog is older, and with `prune` deletes changelog rows older than
    /// it that every relay and pending catch-up has passed.
    pub retention: Duration,
    /// Prune the changelog every `maintenance_every` (default true).
    pub prune: bool,
    /// How often retention is checked (default 60 s).
    pub maintenance_every: Duration,
}

impl RelayOptions {
    /// Defaults with the given ramp receiver.
    pub fn new(ramp: watch::Receiver<RelayRamp>) -> RelayOptions {
        RelayOptions {
            name: "default".into(),
            ramp,
            salt: String::new(),
            batch_changes: 5_000,
            poll_interval: Duration::from_millis(50),
            throttle: Arc::new(RateThrottle::unlimited()),
            cancel: CancellationToken::new(),
            progress: None,
            start: None,
            stop_at_head: false,
            retry_initial: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            gap_timeout: DEFAULT_GAP_TIMEOUT,
            retention: Duration::from_secs(7 * 24 * 3600),
            prune: true,
            maintenance_every: Duration::from_secs(60),
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

/// Runs the dual-write relay until `opts.cancel` fires (or, with
/// `stop_at_head`, until it reaches the head of the changelog).
///
/// Fails only on what retrying cannot fix (capture not installed, a spec or
/// schema error, a change that cannot be mapped to keys); an unreachable or
/// refusing database is waited out with backoff.
pub async fn run_relay(link: &Link, opts: RelayOptions) -> Result<RelaySummary> {
    link.check_writable()?;
    if opts.name.is_empty() || opts.name.len() > 255 {
        return Err(EngineError::Spec {
            at: link.spec().file.clone(),
            message: "a relay name must have 1 to 255 characters".into(),
        });
    }
    let started = Instant::now();
    let mut backoff = Backoff::new(opts.retry_initial, opts.retry_max);
    let mut state = RelayState {
        progress: RelayProgress {
            name: opts.name.clone(),
            ramp: String::new(),
            position: Position::start(),
            changes: 0,
            keys_applied: 0,
            rows_written: 0,
            keys_deleted: 0,
            keys_skipped: 0,
            rate: 0.0,
            lag: Lag::default(),
            retries: 0,
            last_error: None,
            warnings: Vec::new(),
            elapsed: Duration::ZERO,
        },
        max_lag: 0.0,
    };
    // Start-up, retried like any batch: the target may be down when we start.
    let mut position = loop {
        match start_position(link, &opts).await {
            Ok(p) => break p,
            Err(e) if is_transient(&e) => {
                if !state.wait_after(&e, &mut backoff, &opts).await {
                    return Ok(state.summary(Position::start(), started));
                }
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(relay = %opts.name, position = %position, "relay started");
    state.progress.position = position.clone();
    let mut ramp_rx = opts.ramp.clone();
    let mut plans: HashMap<String, Plan> = HashMap::new();
    let mut plans_for: Option<RelayRamp> = None;
    let mut writer: Option<BatchWriter> = None;
    let mut last_maintenance: Option<Instant> = None;
    let mut last_batch = opts.batch_changes as u64;
    loop {
        if opts.cancel.is_cancelled() {
            break;
        }
        if last_maintenance.is_none_or(|t| t.elapsed() >= opts.maintenance_every) {
            last_maintenance = Some(Instant::now());
            match retention::check(link, &opts, &state.progress.lag).await {
                Ok(w) => state.progress.warnings = w,
                Err(e) => {
                    tracing::warn!(relay = %opts.name, error = %e, "retention check failed; will try again")
                }
            }
        }
        // The throttle spaces batches by the size it is told; a batch's size
        // is known only once read, so it is told the last one's (a relay at
        // the head reads small batches and must not wait for a full one).
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => break,
            _ = opts.throttle.admit(last_batch.max(1)) => {}
        }
        let ramp = ramp_rx.borrow_and_update().clone();
        state.progress.ramp = ramp.to_string();
        let attempt = async {
            if matches!(ramp, RelayRamp::Buckets(_)) && plans_for.as_ref() != Some(&ramp) {
                plans = link.stored_plans().await?;
                plans_for = Some(ramp.clone());
            }
            if writer.is_none() {
                writer = Some(BatchWriter::open(link.target()).await?);
            }
            let w = writer.as_mut().ok_or_else(|| EngineError::Apply {
                what: "relay batch".into(),
                message: "no writer".into(),
            })?;
            relay_batch(link, &opts, &ramp, &plans, w, &position).await
        };
        match attempt.await {
            Ok(step) => {
                backoff.reset();
                state.progress.last_error = None;
                state.add(&step);
                last_batch = step.changes;
                position = step.next.clone();
                state.progress.position = position.clone();
                state.progress.elapsed = started.elapsed();
                let secs = started.elapsed().as_secs_f64();
                state.progress.rate = if secs > 0.0 {
                    state.progress.changes as f64 / secs
                } else {
                    0.0
                };
                if let Some(cb) = &opts.progress {
                    cb(&state.progress);
                }
                if step.at_head {
                    if opts.stop_at_head && step.lag.is_zero() {
                        break;
                    }
                    // A closed ramp channel (a fixed ramp) would wake at once.
                    let ramp_open = ramp_rx.has_changed().is_ok();
                    tokio::select! {
                        biased;
                        _ = opts.cancel.cancelled() => break,
                        _ = ramp_rx.changed(), if ramp_open => {}
                        _ = tokio::time::sleep(opts.poll_interval) => {}
                    }
                }
            }
            Err(e) if is_transient(&e) => {
                // The connection may be dead; a new one is taken next time.
                writer = None;
                if !state.wait_after(&e, &mut backoff, &opts).await {
                    break;
                }
            }
            Err(e) => return Err(e),
        }
    }
    tracing::info!(relay = %opts.name, position = %position, changes = state.progress.changes, "relay stopped");
    Ok(state.summary(position, started))
}

struct RelayState {
    progress: RelayProgress,
    max_lag: f64,
}

impl RelayState {
    fn add(&mut self, step: &Step) {
        let p = &mut self.progress;
        p.changes += step.changes;
        p.keys_applied += step.report.keys;
        p.rows_written += step.report.rows_written;
        p.keys_deleted += step.report.keys_deleted;
        p.keys_skipped += step.skipped + step.report.skipped;
        p.lag = step.lag;
        self.max_lag = self.max_lag.max(step.lag.seconds);
    }

    /// Records a failed attempt and waits before the next; false when the
    /// relay was cancelled meanwhile.
    async fn wait_after(
        &mut self,
        e: &EngineError,
        backoff: &mut Backoff,
        opts: &RelayOptions,
    ) -> bool {
        let wait = backoff.next_wait();
        self.progress.retries += 1;
        self.progress.last_error = Some(e.to_string());
        tracing::warn!(
            relay = %opts.name,
            error = %e,
            retry_in_ms = wait.as_millis() as u64,
            "relay batch failed; retrying the same batch (no change is dropped)"
        );
        if let Some(cb) = &opts.progress {
            cb(&self.progress);
        }
        tokio::select! {
            biased;
            _ = opts.cancel.cancelled() => false,
            _ = tokio::time::sleep(wait) => true,
        }
    }

    fn summary(&self, position: Position, started: Instant) -> RelaySummary {
        let p = &self.progress;
        RelaySummary {
            name: p.name.clone(),
            position,
            changes: p.changes,
            keys_applied: p.keys_applied,
            rows_written: p.rows_written,
            keys_deleted: p.keys_deleted,
            keys_skipped: p.keys_skipped,
            retries: p.retries,
            max_lag_seconds: self.max_lag,
            elapsed: started.elapsed(),
        }
    }
}

/// The stored position, or (first run) the start position, stored.
async fn start_position(link: &Link, opts: &RelayOptions) -> Result<Position> {
    if !capture::is_installed(link.source()).await? {
        return Err(EngineError::schema(
            changelog::CHANGELOG_TABLE,
            format!(
                "change capture is not installed on the source {}: run `tern capture install --spec {}` first",
                link.source().url(),
                link.spec().file
            ),
        ));
    }
    store::ensure(link.target()).await?;
    if let Some(p) = store::load(link.target(), &opts.name).await? {
        return Ok(p);
    }
    let p = match &opts.start {
        Some(p) => p.clone(),
        None => capture::head_position(link.source())
            .await?
            .unwrap_or_default(),
    };
    store::insert(link.target(), &opts.name, &p).await?;
    // Another relay of the same name may have stored its start first.
    Ok(store::load(link.target(), &opts.name).await?.unwrap_or(p))
}

/// What one batch did.
struct Step {
    next: Position,
    changes: u64,
    skipped: u64,
    report: ApplyReport,
    at_head: bool,
    lag: Lag,
}

async fn relay_batch(
    link: &Link,
    opts: &RelayOptions,
    ramp: &RelayRamp,
    plans: &HashMap<String, Plan>,
    writer: &mut BatchWriter,
    from: &Position,
) -> Result<Step> {
    let source = link.source();
    let limit = opts.batch_changes.max(1);
    let changes = changelog::read(source, from, limit).await?;
    let new_ones = changes.iter().filter(|c| c.seq > from.high).count();
    let mut next = changelog::advance(from, &changes);
    changelog::expire_gaps(source, &mut next, opts.gap_timeout).await?;
    let at_head = new_ones < limit;
    let mut skipped = 0u64;
    let mut keys = Vec::new();
    if !changes.is_empty() && *ramp != RelayRamp::Off {
        for table in link.tables() {
            let mut tk = TableKeys {
                table: table.to_string(),
                keys: Vec::new(),
            };
            for k in apply::keys_for_changes(link, table, &changes).await? {
                // When the key holds the bucket column, the ramp is decided
                // before reading the source; otherwise after (see `admit`).
                match &k.bucket {
                    Some(b) if !ramp.admits(&opts.salt, plans, table, b) => skipped += 1,
                    _ => tk.keys.push(k.key),
                }
            }
            if !tk.keys.is_empty() {
                keys.push(tk);
            }
        }
    }
    let report = if next != *from {
        let admit = |table: &str, v: &Value| ramp.admits(&opts.salt, plans, table, v);
        let save = store::save(link.target().dialect(), &opts.name, &next);
        apply::apply_keys_with(link, writer, &keys, Some(&admit), vec![save]).await?
    } else {
        ApplyReport::default()
    };
    let lag = changelog::lag(source, &next).await?;
    Ok(Step {
        next,
        changes: changes.len() as u64,
        skipped,
        report,
        at_head,
        lag,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buckets::Bucket;
    use crate::chunk::KeyRange;

    fn plans() -> HashMap<String, Plan> {
        let b = |i: usize, lo: Option<i64>, hi: Option<i64>| Bucket {
            table: "items".into(),
            index: i,
            range: KeyRange {
                lo: lo.map(Value::Int),
                hi: hi.map(Value::Int),
            },
            rows: 0,
        };
        HashMap::from([(
            "items".to_string(),
            Plan {
                table: "items".into(),
                bucket_column: "member_id".into(),
                buckets: vec![
                    b(0, None, Some(10)),
                    b(1, Some(10), Some(20)),
                    b(2, Some(20), None),
                ],
            },
        )])
    }

    #[test]
    fn a_bucket_ramp_admits_the_values_of_its_buckets_only() {
        let r = RelayRamp::buckets(["items"], [1, 2]);
        let p = plans();
        assert!(!r.admits("", &p, "items", &Value::Int(9)));
        assert!(r.admits("", &p, "items", &Value::Int(10)));
        assert!(r.admits("", &p, "items", &Value::Int(1_000)));
        assert!(!r.admits("", &p, "other", &Value::Int(15)));
        assert_eq!(r.to_string(), "buckets items#1,items#2");
    }

    #[test]
    fn percent_ramps_follow_the_sticky_hash() {
        let p = plans();
        let ten = RelayRamp::Percent(Ramp::from_millipercent(10_000));
        let on = (0..10_000i64)
            .filter(|k| ten.admits("m", &p, "items", &Value::Int(*k)))
            .count();
        assert!((800..1200).contains(&on), "{on} of 10,000 keys on at 10%");
        assert!(!RelayRamp::Off.admits("m", &p, "items", &Value::Int(1)));
        assert!(RelayRamp::full().admits("m", &p, "items", &Value::Int(1)));
    }
}
