//! The data-fix crate's one error type.
//!
//! Policy: every message says where (job spec field, filter, mapper table,
//! record key) and, where it can, what to do, because people read these in the
//! UI and the CLI. Nothing a user, a service or a database can cause panics.
//! The web edge maps `Spec` and `Filter` to invalid input (422), `Unreachable`
//! to 503, `Stopped` to a conflict (409) and the rest to 500. Failures of one
//! record are not errors of the job: they are [`crate::FixFailure`]s, recorded
//! and handled by the job's failure policy.

/// Everything that can go wrong with a data-fix job as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DatafixError {
    /// The job spec is malformed or inconsistent; `at` names the field.
    #[error("{at}: {message}")]
    Spec { at: String, message: String },

    /// The filter is not a plain read-only SELECT, or the database refused it
    /// (it tried to write, ran past its statement timeout, or is invalid SQL).
    #[error("filter refused: {message}")]
    Filter { message: String },

    /// The job's database could not be reached.
    #[error("database {url} is unreachable: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The engine's connector failed outside the filter (reading the mapper
    /// table's columns, a statement of the platform itself).
    #[error(transparent)]
    Engine(tern_engine::EngineError),

    /// The failure policy is `stop` and a record failed.
    #[error("stopped by the failure policy at record {key}: {reason}")]
    Stopped { key: String, reason: String },

    /// The filter still selects records after the last allowed pass.
    #[error(
        "the filter still selects {remaining} records after {passes} passes; \
         check that the mapper's change makes the filter stop selecting a record, or raise settings.max_passes"
    )]
    NotConverging { passes: u32, remaining: u64 },

    /// An observer (the control plane) could not record what the job did.
    #[error("recording the job's progress failed: {0}")]
    Observer(String),
}

impl DatafixError {
    pub(crate) fn spec(at: impl Into<String>, message: impl Into<String>) -> DatafixError {
        DatafixError::Spec {
            at: at.into(),
            message: message.into(),
        }
    }
}

impl From<tern_engine::EngineError> for DatafixError {
    /// An unreachable database stays [`DatafixError::Unreachable`] (503 at
    /// the edge); the rest is the engine's own error.
    fn from(e: tern_engine::EngineError) -> Self {
        match e {
            tern_engine::EngineError::Unreachable { url, source, .. } => {
                DatafixError::Unreachable { url, source }
            }
            other => DatafixError::Engine(other),
        }
    }
}

pub type Result<T, E = DatafixError> = std::result::Result<T, E>;
