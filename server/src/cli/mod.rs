//! The `tern` subcommands, one file each.

pub mod demo;
pub mod serve;
pub mod user;
