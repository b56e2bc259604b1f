//! Command-line commands, each a self-contained module: a `clap::Args`
//! struct and `run`.

pub mod bulk_load;
pub mod plan;
