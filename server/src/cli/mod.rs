//! The `tern` subcommands, one file each: a `clap::Args` struct and `run`.

pub mod bulk_load;
pub mod demo;
pub mod demo_clients;
pub mod demo_data;
pub mod plan;
pub mod serve;
pub mod user;
pub mod worker;
