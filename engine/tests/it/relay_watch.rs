//! Watching a running relay from a test: its latest progress, the ramp it
//! applied, and the position it reached against the changelog's head.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tern_engine::{EngineError, Link, Progress, RelayOptions, RelaySummary, RunControl, run_relay};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::support::Side;

/// The latest relay progress, shared with the test.
#[derive(Default)]
pub struct Seen {
    last: Mutex<Option<Progress>>,
    pub batches: AtomicU64,
}

impl Seen {
    /// A run control reporting here, stopped by `cancel`.
    pub fn control(self: &Arc<Self>, cancel: &CancellationToken) -> RunControl {
        let me = self.clone();
        RunControl::new()
            .with_cancel(cancel.clone())
            .on_progress(move |p| {
                me.batches.fetch_add(1, Ordering::Relaxed);
                if let Ok(mut l) = me.last.lock() {
                    *l = Some(p.clone());
                }
            })
    }

    /// Runs the relay on `link` with `opts`, reporting here, until `cancel`.
    pub fn spawn_relay(
        self: &Arc<Self>,
        link: &Arc<Link>,
        opts: RelayOptions,
        cancel: &CancellationToken,
    ) -> JoinHandle<Result<RelaySummary, EngineError>> {
        let (link, control) = (link.clone(), self.control(cancel));
        tokio::spawn(async move { run_relay(&link, opts, &control).await })
    }

    pub fn get(&self) -> Option<Progress> {
        self.last.lock().ok().and_then(|l| l.clone())
    }

    /// Waits until a batch with this ramp has been applied.
    pub async fn wait_for_ramp(&self, ramp: &str) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if self.get().is_some_and(|p| p.note.as_deref() == Some(ramp)) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::bail!("the relay never applied ramp {ramp}: {:?}", self.get())
    }

    /// Waits until the relay's position has passed every change up to `h`.
    pub async fn wait_for_position(&self, h: i64) -> anyhow::Result<()> {
        let until = Instant::now() + Duration::from_secs(60);
        while Instant::now() < until {
            if self
                .get()
                .is_some_and(|p| p.position.is_some_and(|p| p.low() >= h))
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        anyhow::bail!("the relay did not reach change {h}: {:?}", self.get())
    }
}

/// The highest changelog sequence number in the source.
pub async fn head(source: &Side) -> anyhow::Result<i64> {
    let v = source
        .strings("SELECT CAST(COALESCE(MAX(seq), 0) AS CHAR(20)) FROM _tern_changelog")
        .await;
    let v = match v {
        Ok(v) => v,
        Err(_) => {
            source
                .strings("SELECT CAST(COALESCE(MAX(seq), 0) AS TEXT) FROM _tern_changelog")
                .await?
        }
    };
    Ok(v.first().map_or(Ok(0), |s| s.trim().parse())?)
}
