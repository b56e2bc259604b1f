//! Tern's data-fix platform (seed 004): any data owner writes a fix as a
//! **filter** (a SELECT of the records that need the change, run read-only
//! with a statement timeout) plus a **mapper** (the change for one record:
//! declarative, an HTTP service that owns the validation, or a Rust
//! plug-in). The platform runs the mapper over the filtered records under a
//! throttle whose settings change while it runs, records every failure with
//! its key and reason, reports progress, and runs the filter again after
//! each pass until it selects nothing.
//!
//! ```text
//! let spec = FixSpec::parse(&std::fs::read_to_string("job.toml")?, "job.toml")?;
//! let job = FixJob::connect(spec, &PluginRegistry::default()).await?;
//! job.dry_run(10).await?;                         // nothing written
//! job.run(RunOptions::new(LiveSettings::new(job.spec().settings.clone()))).await?;
//! ```

pub mod db;
pub mod error;
pub mod expr;
pub mod filter;
pub mod mapper;
pub mod record;
pub mod run;
pub mod spec;

pub use error::DatafixError;
pub use filter::check_filter_text;
pub use mapper::{Change, FixPlugin, Mapper, PluginRegistry};
pub use record::Record;
pub use run::{
    Checkpoint, DryRunRecord, FixFailure, FixJob, FixObserver, FixProgress, FixReport,
    LiveSettings, NoObserver, RunOptions, RunStatus,
};
pub use spec::{EXAMPLE, FixSpec, MapperSpec, OnFailure, Settings};
