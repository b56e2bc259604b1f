//! Fencing: who may write a bucket's checkpoint. A job's lease carries a
//! token that grows with every lease taken (the control store hands them
//! out); an engine run on behalf of a job carries the token in its
//! [`RunControl`](crate::RunControl). The run *claims* the bucket's
//! checkpoint with it before reading where to resume, and every checkpoint
//! write after that says "only if no newer token has claimed it", in the same
//! transaction as the rows it describes.
//!
//! Why: a worker can stall (a long GC-like pause, a frozen VM, a network
//! partition) past its lease; another worker takes the job over and goes on.
//! When the first one wakes up it still believes it holds the job. A lease
//! alone cannot stop it; the store it writes to can: its next write carries
//! an older token than the one the checkpoint was claimed with, is refused
//! whole (rows and checkpoint roll back together), and the run stops with
//! [`EngineError::Fenced`](crate::EngineError::Fenced). Runs without a fence
//! (the CLI run by hand) neither claim nor check.

/// The token a run writes with, and who holds it (for the error message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    /// Grows with every lease taken; a newer lease has a larger token.
    pub token: i64,
    /// Who writes with it, e.g. `job 12 (worker a)`.
    pub holder: String,
}

impl Fence {
    pub fn new(token: i64, holder: impl Into<String>) -> Fence {
        Fence {
            token,
            holder: holder.into(),
        }
    }
}
