//! Tern's control plane: the domain rules (roles, phases, audit) and the control
//! store that keeps them (SQLite by default, PostgreSQL for a fleet of workers).
//!
//! It knows nothing of the web: the server, the UI's server functions and the CLI
//! all call the same functions here, so a rule holds the same way everywhere.

pub mod access;
mod accuracy;
pub mod audit;
pub mod batches;
pub mod blockers;
pub mod buckets;
mod caches;
pub mod clients;
pub mod clock;
pub mod connections;
pub mod dashboard;
mod db;
pub mod decommission;
pub mod decommission_steps;
pub mod error;
mod evidence;
pub mod fixes;
pub mod forecast;
pub mod guides;
pub mod jobs;
pub mod migrations;
pub mod mismatches;
pub mod offline;
mod own_runtime;
pub mod own_store;
pub mod phases;
pub mod planning;
pub mod redact;
pub mod relay;
pub mod runbook;
pub mod runners;
pub mod schedule;
pub mod sessions;
pub mod store;
pub mod switch;
pub mod throughput;
pub mod traffic;
pub mod users;
pub mod verify_runs;
pub mod worker;

pub use error::ControlError;
pub use store::{Dialect, Store};
pub use users::{Actor, Role, User};
