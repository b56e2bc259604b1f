//! The job queue. An engineer's action (bulk-load these buckets, catch up,
//! verify, repair, run a data fix) becomes jobs here; workers lease them, renew
//! the lease with a heartbeat that also reports progress, and finish them. A
//! job whose worker died is leased again by another worker once its lease
//! expires, and resumes from the engine's own checkpoint.
//!
//! On PostgreSQL any number of worker processes lease with
//! `FOR UPDATE SKIP LOCKED`; SQLite serializes writers, so one process (with any
//! number of in-process workers) is the rule there.
//!
//! Pause, resume, cancel and rate changes are *requests* written on the job;
//! the worker running it sees them at its next heartbeat (every few seconds).

pub mod harness;
mod model;
mod params;
mod queue;
mod requests;

pub use model::*;
pub use params::{BucketParams, FixParams, RepairParams, VerifyParams};
pub use queue::enqueue;
