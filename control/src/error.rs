//! The control plane's one error type.
//!
//! Policy: each variant is a *kind* the web edge maps to one HTTP status (not
//! found 404, invalid input 422, forbidden 403, conflict 409, store unreachable
//! 503, anything else 500), and each message is written for the person who
//! reads it in the UI or the CLI: what is wrong and what to do about it.

use tern_engine::EngineError;

/// Everything a control-plane operation can refuse or fail with.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed or breaks a rule; the message says which and how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The actor's role does not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// The request clashes with the current state (a duplicate name, an illegal move).
    #[error("{0}")]
    Conflict(String),
    /// The control store cannot be reached.
    #[error("control store unreachable while {context}: {source}")]
    Unavailable {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// The control store refused or failed a statement.
    #[error("control store failed while {context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
    /// The control store's schema could not be brought up to date.
    #[error("control store migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// An engine reported an error while the control plane drove it.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A data fix refused or failed (bad spec or filter, unreachable database, …).
    #[error(transparent)]
    Datafix(#[from] tern_datafix::DatafixError),
    /// A bug or an impossible state; the message says where.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ControlError {
    /// Wraps a store error with what the control plane was doing, sorting out
    /// "unreachable" (retry later, 503) from everything else.
    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> ControlError {
        let context = context.into();
        move |source| match &source {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => ControlError::Unavailable { context, source },
            _ => ControlError::Database { context, source },
        }
    }

    /// A unique-constraint violation (a duplicate) becomes a conflict saying
    /// `message()`; any other error stays as it is.
    pub fn or_conflict(self, message: impl FnOnce() -> String) -> ControlError {
        if self.is_unique_violation() {
            ControlError::Conflict(message())
        } else {
            self
        }
    }

    /// True when the error is a unique-constraint violation (a duplicate).
    pub fn is_unique_violation(&self) -> bool {
        match self {
            ControlError::Database {
                source: sqlx::Error::Database(e),
                ..
            } => e.is_unique_violation(),
            _ => false,
        }
    }
}

/// The control plane's result type.
pub type Result<T, E = ControlError> = std::result::Result<T, E>;
