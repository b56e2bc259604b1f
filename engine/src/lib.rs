//! Tern's data-movement engines. The control plane drives them through this
//! crate's public API; the engine knows nothing of the web or the control store.
//!
//! The bulk load in brief: a [`Spec`] (TOML) says which source table or query
//! becomes which target table; [`Link::connect`] checks it against the
//! databases and creates missing target tables; [`Link::plan_or_resume`]
//! cuts the source into buckets of about equal row count; and
//! [`load_bucket`] copies a bucket chunk by chunk, version-guarded and
//! resumable from its checkpoint. [`apply::apply_keys`] runs the same path
//! for single keys, deletes included (the relay's and catch-up's way in).
//!
//! Change capture ([`capture`]) logs every source change to a changelog in
//! the source; [`run_relay`] applies the changes of ramped-on keys to the
//! target (dual write), [`catch_up_bucket`] replays what a bucket missed since
//! its watermark, and [`ramp`] is the sticky ramp function applications that
//! dual-write themselves call. [`reverse`] keeps the old store complete once
//! buckets are switched to the new one (capture on the target, the reverse
//! relay, draining for the switch). `docs/architecture.md` draws the parts.

pub mod apply;
pub mod buckets;
pub mod bulk_load;
pub mod capture;
pub mod catch_up;
pub mod change_stream;
pub mod changelog;
pub mod checkpoint;
pub mod chunk;
pub mod connector;
pub mod error;
pub mod expr;
pub mod fence;
mod ids;
pub mod index_build;
pub mod link;
pub mod progress;
pub mod ramp;
pub mod read_only;
pub mod relay;
mod retry;
pub mod reverse;
pub mod run_control;
pub mod shadow;
pub mod spec;
pub mod throttle;
pub mod transform;
pub mod value;
pub mod verify;
pub mod writer;

pub use apply::{ApplyReport, ChangedKey, KeysReport, TableKeys};
pub use buckets::{Bucket, Plan, PlannedBucket};
pub use bulk_load::{BucketReport, LoadStatus, load_bucket};
pub use changelog::{Lag, Position};
pub use chunk::{Chunk, ChunkReader, KeyRange};
pub use connector::{Connector, Dialect, Statement, VERSION_COLUMN};
pub use error::EngineError;
pub use fence::Fence;
pub use link::{Link, Side};
pub use progress::{Progress, Tally, Task, Unit};
pub use run_control::RunControl;

pub use catch_up::{
    CatchUpAll, CatchUpOptions, CatchUpStatus, CatchUpSummary, SkippedBucket, catch_up_all,
    catch_up_bucket, catch_up_window,
};
pub use change_stream::{Batch, ChangeStream, Filter, StreamOptions};
pub use relay::{PruneReport, RelayOptions, RelayRamp, RelaySummary, prune_changelog, run_relay};
pub use reverse::{
    Direction, Drain, ReverseOptions, ReverseSummary, Reversibility, SwitchedBuckets,
    run_reverse_relay,
};
pub use spec::{LoadLimits, SideLimits, Spec};
pub use throttle::{LoadGuard, LoadState, RateThrottle, Throttle};
pub use transform::{Emitted, Record, TargetRow, Transformer, TransformerRegistry};
pub use value::{ColumnType, Value};
pub use verify::{
    Counts, Mismatch, MismatchKind, Mode as VerifyMode, RepairReport, Scope as VerifyScope,
    VerifyOptions, VerifyReport, VerifyStatus,
};
