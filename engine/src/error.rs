//! The engine's one error type.
//!
//! Policy: every message says *where* (migration table, bucket, key range,
//! column) and *what to do*, because operators read these in the UI and the CLI.

/// Everything that can go wrong while moving or checking data.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A database the engine needs could not be reached or refused a statement.
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },
}
