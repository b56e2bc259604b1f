//! What the forward relay and the reverse relay ([`crate::reverse`]) share
//! as change-stream consumers: the checks before a run, the run itself, the
//! start (capture installed, position resumed or stored), their progress
//! reports, the maintenance clock and the wait at the changelog's head.

use std::future::Future;
use std::time::{Duration, Instant};

use super::store;
use crate::change_stream::{Batch, ChangeStream, Consumer, StreamOptions, StreamState};
use crate::changelog::{self, Lag, Position};
use crate::connector::Connector;
use crate::error::{EngineError, Result};
use crate::link::{Link, Side};
use crate::progress::{Progress, Task, Unit};
use crate::run_control::RunControl;

/// A relay writes, and stores its position under its name: the link must
/// be writable and the name must fit the position table.
pub(crate) fn check(link: &Link, name: &str) -> Result<()> {
    link.check_writable()?;
    if name.is_empty() || name.len() > 255 {
        return Err(EngineError::Spec {
            at: link.spec().file.clone(),
            message: "a relay name must have 1 to 255 characters".into(),
        });
    }
    Ok(())
}

/// A relay's progress, counted in changes.
pub(crate) fn progress(name: &str) -> Progress {
    Progress::new(
        Task::Relay {
            name: name.to_string(),
        },
        Unit::Changes,
    )
}

/// Runs `relay` (`kind` says which, in logs) over the changelog of `side`
/// until it stops; where the stream stood then.
pub(crate) async fn run<C: Consumer>(
    link: &Link,
    side: Side,
    stream: &StreamOptions,
    (kind, name): (&str, &str),
    control: &RunControl,
    relay: &mut C,
) -> Result<StreamState> {
    let mut stream = ChangeStream::new(link, side, stream.clone())?.named(format!("{kind} {name}"));
    stream.run(control, relay).await?;
    let s = stream.state().clone();
    tracing::info!(relay = %name, position = %s.position, changes = s.changes, "{kind} stopped");
    Ok(s)
}

/// Where a relay starts: the position stored in `positions` under `name`,
/// or (first run) `start`, stored. Refused when change capture is not
/// installed on `changes`, the database whose changelog it reads (`how`
/// says how to install it). The position goes into `progress`.
pub(crate) async fn start(
    changes: &Connector,
    positions: &Connector,
    (kind, name): (&str, &str),
    start: Option<&Position>,
    how: impl FnOnce() -> String,
    progress: &mut Progress,
) -> Result<Position> {
    if !crate::capture::is_installed(changes).await? {
        return Err(EngineError::schema(
            changelog::CHANGELOG_TABLE,
            format!(
                "change capture is not installed on the {} {}: {}",
                changes.role(),
                changes.url(),
                how()
            ),
        ));
    }
    let position = store::resume_or_start(changes, positions, name, start).await?;
    tracing::info!(relay = %name, position = %position, "{kind} started");
    progress.position = Some(position.clone());
    Ok(position)
}

/// Puts where the stream stands into `progress`, with `lag` (a landed
/// batch's), and reports it.
pub(crate) fn report(progress: &mut Progress, state: &StreamState, lag: Lag, control: &RunControl) {
    state.fill(progress, lag, None);
    control.report(progress);
}

/// Reports a failed attempt: the lag stays as last seen.
pub(crate) fn report_retry(progress: &mut Progress, state: &StreamState, control: &RunControl) {
    let lag = progress.lag.unwrap_or_default();
    report(progress, state, lag, control);
}

/// When periodic maintenance (retention, pruning) is due: at the first
/// ask, then once every period.
#[derive(Default)]
pub(crate) struct Every(Option<Instant>);

impl Every {
    /// Whether it is due now (then the period starts again).
    pub(crate) fn due(&mut self, period: Duration) -> bool {
        if self.0.is_some_and(|t| t.elapsed() < period) {
            return false;
        }
        self.0 = Some(Instant::now());
        true
    }
}

/// At the changelog's head: `false` to stop (with `stop_at_head`, once a
/// batch shows no lag); else waits for a cancel, `changed` (a new ramp or
/// switched set) or the poll interval, and `true`.
pub(crate) async fn wait_at_head(
    stop_at_head: bool,
    batch: &Batch,
    control: &RunControl,
    poll_interval: Duration,
    changed: impl Future<Output = ()>,
) -> bool {
    if stop_at_head && batch.lag.is_zero() {
        return false;
    }
    tokio::select! {
        biased;
        _ = control.cancel.cancelled() => {}
        _ = changed => {}
        _ = tokio::time::sleep(poll_interval) => {}
    }
    true
}
