//! What a verification is asked to do: which rows (scope), how they are
//! picked (mode), and how a full diff goes.

/// Which rows a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Every bucket of the table.
    All,
    /// One bucket of the load's plan.
    Bucket(usize),
}

/// How a run picks the rows it compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Every row of the scope.
    Full,
    /// `per_stratum` keys of each distinct value of source column `strata`.
    Sample { per_stratum: usize, strata: String },
    /// Only the keys changed since the last completed run (needs change capture).
    SinceLast,
}

/// What a run compares (the throttle, cancel and progress are the caller's
/// [`RunControl`](crate::RunControl): the throttle is asked before every
/// chunk, like the bulk load's; a cancelled full diff resumes with `resume`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// The spec table to verify (one with a source).
    pub table: String,
    pub scope: Scope,
    pub mode: Mode,
    /// Buckets compared at once (default 4).
    pub parallelism: usize,
    /// Continue this earlier full-diff run instead of starting a new one.
    pub resume: Option<String>,
    /// Read every row of a full diff even where chunk checksums could
    /// skip the equal chunks (see the fast path in the module docs).
    pub row_by_row: bool,
}

impl VerifyOptions {
    /// A full diff of the whole table.
    pub fn full(table: &str) -> VerifyOptions {
        VerifyOptions {
            table: table.to_string(),
            scope: Scope::All,
            mode: Mode::Full,
            parallelism: 4,
            resume: None,
            row_by_row: false,
        }
    }
}
