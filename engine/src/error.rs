//! The engine's one error type.
//!
//! Policy: every message says *where* (spec line and field, migration table,
//! bucket, key range, row key, column) and, where it can, *what to do*, because
//! operators read these in the UI and the CLI. Library code never panics on
//! anything a user or a database can cause; it returns one of these. Variants
//! are coarse on purpose so the web edge can map them to a status: `Spec`,
//! `Schema` and `Row` are invalid input, `Unreachable` is a database that cannot
//! be reached, `Database` a statement a reachable database refused.

/// Everything that can go wrong while planning, moving or checking data.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A reachable database refused a statement.
    #[error("{context}: {source}")]
    Database {
        context: String,
        #[source]
        source: sqlx::Error,
    },

    /// A source or target database could not be reached at all.
    #[error("{role} database {url} is unreachable: {source}")]
    Unreachable {
        /// `source` or `target`.
        role: String,
        /// The URL with any password removed.
        url: String,
        #[source]
        source: sqlx::Error,
    },

    /// The migration spec is malformed or inconsistent. `at` names the file,
    /// line and field: `messages.toml line 14, tables[messages].columns.body`.
    #[error("{at}: {message}")]
    Spec { at: String, message: String },

    /// A source or target table does not fit the spec (unknown column,
    /// missing version column, unsupported type...).
    #[error("table {table}: {message}")]
    Schema { table: String, message: String },

    /// One row could not be read, transformed or written.
    #[error("table {table} row key {key}: {message}")]
    Row {
        table: String,
        /// The row's source key, rendered as `(5, 'abc')`.
        key: String,
        message: String,
    },

    /// A chunk failed as a whole; nothing of it was committed and the
    /// checkpoint still points before it.
    #[error("copy {table} bucket {bucket} keys {range}: {message}")]
    Chunk {
        table: String,
        bucket: usize,
        range: String,
        message: String,
    },

    /// A batch of changes (relay or catch-up) could not be applied; nothing
    /// of it was committed and the reader's position did not move.
    #[error("apply {what}: {message}")]
    Apply { what: String, message: String },

    /// A run on behalf of a job wrote with an older fence token than the one
    /// its bucket's checkpoint was claimed with: another worker took the job
    /// over. Nothing of the write was committed; this run must stop.
    #[error(
        "{holder} lost its lease on {table} bucket {bucket}: the checkpoint was claimed by a newer lease \
         (token {current}, this run holds {token}), so this write was refused and nothing of it \
         committed; this worker stops and the job goes on under the worker that took it over"
    )]
    Fenced {
        holder: String,
        table: String,
        bucket: usize,
        token: i64,
        current: i64,
    },

    /// A table whose rows cannot be written back from the target to the
    /// source (reverse replication): its mapping does not invert and the spec
    /// gives no `[tables.reverse]` section. `reason` says why and what to do.
    #[error("table {table} cannot be replicated back to the source: {reason}")]
    NotReversible { table: String, reason: String },

    /// The persisted checkpoint or plan contradicts the request.
    #[error("checkpoint of {table} bucket {bucket}: {message}")]
    Checkpoint {
        table: String,
        bucket: usize,
        message: String,
    },
}

impl EngineError {
    /// A `Database` error with the place it happened.
    pub fn db(context: impl Into<String>) -> impl FnOnce(sqlx::Error) -> EngineError {
        let context = context.into();
        move |source| EngineError::Database { context, source }
    }

    /// True for a statement refused because it would duplicate a unique key.
    pub fn is_unique_violation(&self) -> bool {
        matches!(self, EngineError::Database { source: sqlx::Error::Database(e), .. } if e.is_unique_violation())
    }

    /// A unique violation, or PostgreSQL's "already exists" (42P07, 42710)
    /// that concurrent `CREATE … IF NOT EXISTS` statements race into.
    pub fn is_concurrent_ddl(&self) -> bool {
        self.is_unique_violation()
            || matches!(self, EngineError::Database { source: sqlx::Error::Database(e), .. }
                if matches!(e.code().as_deref(), Some("42P07") | Some("42710")))
    }

    pub fn schema(table: impl Into<String>, message: impl Into<String>) -> EngineError {
        EngineError::Schema {
            table: table.into(),
            message: message.into(),
        }
    }
}

/// The engine's result type.
pub type Result<T, E = EngineError> = std::result::Result<T, E>;
