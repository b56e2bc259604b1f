//! What a run is given and what it tells: the settings it follows while it
//! goes on, the engine's [`RunControl`] that steers it, the observer that
//! records its failures and checkpoints, and what it reports at the end.

use std::collections::HashSet;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use tern_engine::RunControl;
use tokio::sync::watch;

use crate::record::Record;
use crate::spec::{OnFailure, Settings};

/// Settings a running job follows as they change: concurrency, batch size
/// and failure policy. The rate and the pause are the run's throttle
/// ([`RunOptions::control`]). Clone it to keep a handle while the job runs.
#[derive(Debug, Clone)]
pub struct LiveSettings {
    settings: Arc<watch::Sender<Settings>>,
}

impl LiveSettings {
    pub fn new(s: Settings) -> LiveSettings {
        LiveSettings {
            settings: Arc::new(watch::channel(s).0),
        }
    }

    pub fn current(&self) -> Settings {
        self.settings.borrow().clone()
    }

    pub fn set_concurrency(&self, n: usize) {
        self.settings
            .send_modify(|s| s.concurrency = n.clamp(1, 256));
    }

    pub fn set_batch_size(&self, n: usize) {
        self.settings
            .send_modify(|s| s.batch_size = n.clamp(1, 100_000));
    }

    pub fn set_on_failure(&self, p: OnFailure) {
        self.settings.send_modify(|s| s.on_failure = p);
    }
}

/// A record that could not be changed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixFailure {
    /// The key as text, `(5)`.
    pub key_text: String,
    /// The key as a JSON object, `{"id": 5}`.
    pub key: Json,
    pub reason: String,
    pub pass: u32,
    pub attempts: u32,
}

/// Where a run stands; the control plane stores it to resume after a crash.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The filter pass (1-based).
    pub pass: u32,
    /// The last key of the last page finished in this pass (the cursor).
    pub after: Option<Record>,
    pub changed: u64,
    pub failed: u64,
    pub stale: u64,
}

/// Told what a run did to the data, to keep it: the control plane stores
/// it; the CLI prints the failures. (Progress goes to the run control.)
#[async_trait::async_trait]
pub trait FixObserver: Send + Sync {
    /// Records that failed, before the checkpoint that passes them is stored.
    async fn failures(&self, _f: &[FixFailure]) -> std::result::Result<(), String> {
        Ok(())
    }
    /// After every page's writes committed.
    async fn checkpoint(&self, _c: &Checkpoint) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// An observer that does nothing.
#[derive(Debug, Default)]
pub struct NoObserver;
impl FixObserver for NoObserver {}

/// How a run is started.
pub struct RunOptions {
    pub settings: LiveSettings,
    /// The engine's run control: the throttle, asked before every page with
    /// its number of records (its rate and pause change while the run goes
    /// on); the cancel token, which stops the run between pages; and the
    /// progress callback, told a [`tern_engine::Progress`] of
    /// [`tern_engine::Task::Fix`] in [`tern_engine::Unit::Records`] after
    /// every page.
    pub control: RunControl,
    pub observer: Arc<dyn FixObserver>,
    /// Resume from here (an earlier run's last checkpoint).
    pub resume: Option<Checkpoint>,
    /// Keys (as [`Record::key_text`]) already recorded as failed: not tried again.
    pub failed_keys: HashSet<String>,
}

impl RunOptions {
    /// A run with these settings, throttled at their rate (see
    /// [`Settings::throttle`]), reporting to no one.
    pub fn new(settings: LiveSettings) -> RunOptions {
        let throttle = Arc::new(settings.current().throttle());
        RunOptions {
            settings,
            control: RunControl::new().with_throttle(throttle),
            observer: Arc::new(NoObserver),
            resume: None,
            failed_keys: HashSet::new(),
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// The filter selects nothing (but the failed records).
    Completed,
    /// Stopped at a checkpoint because the run was cancelled.
    Cancelled,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixReport {
    pub status: RunStatus,
    pub passes: u32,
    pub changed: u64,
    pub failed: u64,
    pub stale: u64,
    pub elapsed_seconds: f64,
}

/// One record of a dry run: what it is and what it would become.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DryRunRecord {
    pub key_text: String,
    pub record: Json,
    /// `set`, `delete`, `applied_by_service`, `no_change` or `failure`.
    pub action: String,
    /// For `set`: column, value before (previewed), value after (previewed).
    pub changes: Vec<(String, String, String)>,
    /// For `failure`: why.
    pub reason: Option<String>,
}
