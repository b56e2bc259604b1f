//! The load-aware half of the throttle: the engines back off by themselves
//! when the source or the target is busy, as gh-ost and the seeds' data
//! movers do ("never hurt the live site").
//!
//! A [`LoadGuard`] asks both databases how busy they are every
//! `check_every_ms` (MariaDB/MySQL `Threads_running` and replica lag;
//! PostgreSQL active client backends and replication lag) and compares the
//! answers with the migration's [`LoadLimits`](crate::spec::LoadLimits). Over a limit, every run using
//! the guard's throttle waits before its next step; close to a limit (above
//! [`SLOW_FROM`] of it) each step waits as long as the previous one took, so
//! the run goes at about half speed; two clear samples in a row lift it. The
//! state, with the reason (`source threads_running 41 > 25`), is watched by
//! whoever shows the run (the job's page, the CLI).
//!
//! Why a guard beside the rate throttle rather than in it: one guard per
//! migration run samples once for every bucket loading in parallel, and the
//! engineer's rate limit keeps working under it unchanged.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, watch};
use tokio::time::Instant;

use super::Throttle;
use crate::connector::{Connector, Dialect};
use crate::error::Result;
use crate::link::Link;
use crate::spec::SideLimits;
use crate::value::Value;

/// Above this share of a limit, runs slow down before they pause.
pub const SLOW_FROM: f64 = 0.8;

/// Clear samples in a row before a paused or slowed run goes back to full
/// speed, so a load that flickers around its limit does not flap.
const CLEAR_SAMPLES: u32 = 2;

/// How busy one database is, as far as it says.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LoadSample {
    /// Statements running at once, the asking one not counted.
    pub active: Option<u64>,
    /// Replication lag in seconds.
    pub lag_s: Option<f64>,
}

/// Where the guard stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoadState {
    /// Both databases are under their limits: full speed.
    #[default]
    Clear,
    /// Close to a limit: half speed. The reason names the signal.
    Slowed(String),
    /// Over a limit: no step starts. The reason names the signal.
    Paused(String),
}

impl LoadState {
    /// The line a page or a terminal shows while the run is held back.
    pub fn note(&self) -> Option<String> {
        match self {
            LoadState::Clear => None,
            LoadState::Slowed(why) => Some(format!("slowed: {why}")),
            LoadState::Paused(why) => Some(format!("throttled: {why}")),
        }
    }
}

/// Asks a database how busy it is. SQLite has no server: nothing to say.
/// A signal the database will not give (no privilege for the replica
/// status, say) is left out rather than failing the run.
pub async fn sample(db: &Connector) -> Result<LoadSample> {
    match db.dialect() {
        Dialect::MySql => {
            let (_, rows) = db
                .fetch(
                    "SHOW GLOBAL STATUS LIKE 'Threads_running'",
                    &[],
                    "read Threads_running",
                )
                .await?;
            let active = rows
                .first()
                .and_then(|r| r.get(1))
                .and_then(number)
                .map(|n| (n as u64).saturating_sub(1));
            let lag_s = match db
                .fetch("SHOW SLAVE STATUS", &[], "read the replica status")
                .await
            {
                Ok((cols, rows)) => cols
                    .iter()
                    .position(|c| c.eq_ignore_ascii_case("Seconds_Behind_Master"))
                    .and_then(|i| rows.first().and_then(|r| r.get(i)))
                    .and_then(number),
                Err(e) => {
                    tracing::debug!(error = %e, "no replica status; replica lag not watched");
                    None
                }
            };
            Ok(LoadSample { active, lag_s })
        }
        Dialect::Postgres => {
            let (_, rows) = db
                .fetch(
                    "SELECT (SELECT count(*) FROM pg_stat_activity \
                       WHERE state = 'active' AND backend_type = 'client backend' \
                         AND pid <> pg_backend_pid())::bigint, \
                     (CASE WHEN pg_is_in_recovery() \
                        THEN COALESCE(EXTRACT(EPOCH FROM now() - pg_last_xact_replay_timestamp()), 0) \
                        ELSE COALESCE((SELECT EXTRACT(EPOCH FROM max(replay_lag)) FROM pg_stat_replication), 0) \
                      END)::float8",
                    &[],
                    "read active backends and replication lag",
                )
                .await?;
            let row = rows.first();
            Ok(LoadSample {
                active: row
                    .and_then(|r| r.first())
                    .and_then(number)
                    .map(|n| n as u64),
                lag_s: row.and_then(|r| r.get(1)).and_then(number),
            })
        }
        Dialect::Sqlite => Ok(LoadSample::default()),
    }
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Decimal(d) => d.to_string().parse().ok(),
        Value::Text(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The state one database's sample puts the runs in, against its limits.
/// `side` is `source` or `target`; `active_name` the database's own name
/// for its running-statement count.
pub fn judge(side: &str, active_name: &str, limits: &SideLimits, s: &LoadSample) -> LoadState {
    let mut slowed = None;
    let signals = [
        (
            active_name,
            s.active.map(|a| a as f64),
            limits.active.map(|l| l as f64),
        ),
        ("replica_lag_s", s.lag_s, limits.lag_s),
    ];
    for (name, value, limit) in signals {
        let (Some(v), Some(l)) = (value, limit) else {
            continue;
        };
        if v > l {
            return LoadState::Paused(format!("{side} {name} {} > {}", show(v), show(l)));
        }
        if v > l * SLOW_FROM && slowed.is_none() {
            slowed = Some(format!("{side} {name} {} near {}", show(v), show(l)));
        }
    }
    slowed.map_or(LoadState::Clear, LoadState::Slowed)
}

fn show(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn active_name(d: Dialect) -> &'static str {
    match d {
        Dialect::MySql => "threads_running",
        Dialect::Postgres => "active_backends",
        Dialect::Sqlite => "active",
    }
}

/// The worse of two states (paused over slowed over clear).
fn worse(a: LoadState, b: LoadState) -> LoadState {
    match (&a, &b) {
        (LoadState::Paused(_), _) => a,
        (_, LoadState::Paused(_)) => b,
        (LoadState::Slowed(_), _) => a,
        _ => b,
    }
}

/// Watches both databases of a link and holds back the runs that use its
/// [`throttle`](LoadGuard::throttle). Sampling stops when the guard is
/// dropped.
#[derive(Debug)]
pub struct LoadGuard {
    state: watch::Receiver<LoadState>,
    sampler: tokio::task::JoinHandle<()>,
}

impl Drop for LoadGuard {
    fn drop(&mut self) {
        self.sampler.abort();
    }
}

impl LoadGuard {
    /// Starts watching the link's databases against its spec's `[throttle]`
    /// limits; `None` when the spec sets none.
    pub fn start(link: &Link) -> Option<LoadGuard> {
        let limits = link.spec().throttle;
        if limits.is_empty() {
            return None;
        }
        let sides = [
            ("source", link.source().clone(), limits.source),
            ("target", link.target().clone(), limits.target),
        ];
        LoadGuard::watching(sides.into(), limits.check_every_ms)
    }

    /// Starts watching `sides` (a name for the notes, the database, its
    /// limits) every `check_every_ms`; `None` when no side sets a limit. A
    /// data fix watches its one database so.
    pub fn watching(
        sides: Vec<(&'static str, Connector, SideLimits)>,
        check_every_ms: u64,
    ) -> Option<LoadGuard> {
        if sides.iter().all(|(_, _, l)| l.is_empty()) {
            return None;
        }
        let (tx, rx) = watch::channel(LoadState::Clear);
        let period = Duration::from_millis(check_every_ms.max(1));
        let sampler = tokio::spawn(async move {
            let mut clear_in_a_row = 0u32;
            loop {
                let mut now = LoadState::Clear;
                for (side, db, limits) in &sides {
                    if limits.is_empty() {
                        continue;
                    }
                    match sample(db).await {
                        Ok(s) => {
                            now = worse(now, judge(side, active_name(db.dialect()), limits, &s));
                        }
                        // A database that cannot answer fails the run's own
                        // next step with a clear error; the guard does not
                        // hold the run on a guess.
                        Err(e) => {
                            tracing::warn!(side, error = %e, "cannot read how busy the database is")
                        }
                    }
                }
                let next = match now {
                    LoadState::Clear => {
                        clear_in_a_row += 1;
                        if clear_in_a_row >= CLEAR_SAMPLES {
                            LoadState::Clear
                        } else {
                            tx.borrow().clone()
                        }
                    }
                    held => {
                        clear_in_a_row = 0;
                        held
                    }
                };
                tx.send_if_modified(|cur| {
                    if *cur == next {
                        return false;
                    }
                    match next.note() {
                        Some(note) => tracing::info!(%note, "held back by the databases' load"),
                        None => tracing::info!("databases clear; back to full speed"),
                    }
                    *cur = next;
                    true
                });
                tokio::time::sleep(period).await;
            }
        });
        Some(LoadGuard { state: rx, sampler })
    }

    /// Where the guard stands now, and every change after.
    pub fn watch(&self) -> watch::Receiver<LoadState> {
        self.state.clone()
    }

    /// `inner` (the engineer's rate limit), held back while the databases
    /// are busy.
    pub fn throttle(&self, inner: Arc<dyn Throttle>) -> Arc<dyn Throttle> {
        Arc::new(Guarded {
            inner,
            state: self.state.clone(),
            last: Mutex::new(None),
        })
    }
}

/// A throttle under a load guard.
struct Guarded {
    inner: Arc<dyn Throttle>,
    state: watch::Receiver<LoadState>,
    /// When the previous step was admitted, to pace a slowed run.
    last: Mutex<Option<Instant>>,
}

#[async_trait::async_trait]
impl Throttle for Guarded {
    async fn admit(&self, units: u64) {
        let mut state = self.state.clone();
        loop {
            let now = state.borrow_and_update().clone();
            match now {
                LoadState::Paused(_) => {
                    // The sampler lives as long as the guard; if the guard is
                    // gone, nothing holds the run any more.
                    if state.changed().await.is_err() {
                        break;
                    }
                }
                LoadState::Slowed(_) => {
                    let since = self.last.lock().await.map(|at| at.elapsed());
                    if let Some(wait) = since {
                        tokio::select! {
                            _ = tokio::time::sleep(wait.min(Duration::from_secs(5))) => {}
                            _ = state.changed() => continue,
                        }
                    }
                    break;
                }
                LoadState::Clear => break,
            }
        }
        self.inner.admit(units).await;
        *self.last.lock().await = Some(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(active: u64, lag: f64) -> SideLimits {
        SideLimits {
            active: Some(active),
            lag_s: Some(lag),
        }
    }

    #[test]
    fn over_a_limit_pauses_and_says_which_signal() {
        let s = LoadSample {
            active: Some(41),
            lag_s: Some(0.0),
        };
        assert_eq!(
            judge("source", "threads_running", &limits(25, 10.0), &s),
            LoadState::Paused("source threads_running 41 > 25".into())
        );
        let lagging = LoadSample {
            active: Some(1),
            lag_s: Some(12.5),
        };
        assert_eq!(
            judge("target", "active_backends", &limits(25, 10.0), &lagging)
                .note()
                .as_deref(),
            Some("throttled: target replica_lag_s 12.5 > 10")
        );
    }

    #[test]
    fn near_a_limit_slows_and_under_it_is_clear() {
        let near = LoadSample {
            active: Some(22),
            lag_s: None,
        };
        assert!(matches!(
            judge("target", "active_backends", &limits(25, 10.0), &near),
            LoadState::Slowed(_)
        ));
        let calm = LoadSample {
            active: Some(3),
            lag_s: Some(0.2),
        };
        assert_eq!(
            judge("target", "active_backends", &limits(25, 10.0), &calm),
            LoadState::Clear
        );
        // A limit that is not set is not watched, whatever the value.
        assert_eq!(
            judge("source", "threads_running", &SideLimits::default(), &near),
            LoadState::Clear
        );
    }

    #[test]
    fn the_worse_state_wins() {
        let p = LoadState::Paused("a".into());
        let s = LoadState::Slowed("b".into());
        assert_eq!(worse(s.clone(), p.clone()), p);
        assert_eq!(worse(LoadState::Clear, s.clone()), s);
        assert_eq!(worse(LoadState::Clear, LoadState::Clear), LoadState::Clear);
    }

    #[tokio::test(start_paused = true)]
    async fn a_paused_guard_holds_every_step_until_it_clears() {
        let (tx, rx) = watch::channel(LoadState::Paused("target active_backends 30 > 8".into()));
        let guarded = Arc::new(Guarded {
            inner: Arc::new(super::super::RateThrottle::unlimited()),
            state: rx,
            last: Mutex::new(None),
        });
        let g = Arc::clone(&guarded);
        let step = tokio::spawn(async move { g.admit(100).await });
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !step.is_finished(),
            "a step started while the target was over its limit"
        );
        tx.send_replace(LoadState::Clear);
        tokio::time::timeout(Duration::from_secs(1), step)
            .await
            .expect("the step goes once the guard clears")
            .expect("task");
    }
}
