//! The `tern` subcommands, one file each: a `clap::Args` struct and `run`.

pub mod bulk_load;
pub mod capture;
pub mod catch_up;
pub mod demo;
pub mod demo_clients;
pub mod demo_data;
pub mod fix;
pub mod plan;
pub mod relay;
pub mod serve;
pub mod user;
pub mod verify;
pub mod worker;
