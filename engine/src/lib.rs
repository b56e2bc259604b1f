//! Tern's data-movement engines. The control plane drives them through this
//! crate's public API; the engine knows nothing of the web or the control store.
//!
//! The bulk load in brief: a [`Spec`] (TOML) says which source table or query
//! becomes which target table; [`BulkLoader::prepare`] checks it against the
//! databases and creates missing target tables; [`BulkLoader::plan_or_resume`]
//! cuts the source into buckets of about equal row count; and
//! [`BulkLoader::load_bucket`] copies a bucket chunk by chunk, version-guarded
//! and resumable from its checkpoint. [`BulkLoader::load_keys`] runs the same
//! path for single keys (the relay's and catch-up's way in).

pub mod buckets;
pub mod bulk_load;
pub mod capture;
pub mod changelog;
pub mod checkpoint;
pub mod chunk;
pub mod connector;
pub mod error;
pub mod progress;
pub mod shadow;
pub mod spec;
pub mod throttle;
pub mod transform;
pub mod value;
pub mod writer;

pub use buckets::{Bucket, Plan};
pub use bulk_load::{
    ApplyReport, BucketReport, BulkLoader, ChangedKey, KeysReport, LoadOptions, LoadStatus,
    TableKeys,
};
pub use changelog::{Lag, Position};
pub use chunk::{Chunk, ChunkReader, KeyRange};
pub use connector::{Connector, Dialect, VERSION_COLUMN};
pub use error::EngineError;
pub use progress::{Progress, ProgressFn};

pub use spec::Spec;
pub use throttle::{RateThrottle, Throttle};
pub use transform::{Emitted, Record, TargetRow, Transformer, TransformerRegistry};
pub use value::{ColumnType, Value};
