//! One file per page.

pub mod audit;
pub mod bucket;
pub mod client;
pub mod clients;
pub mod connections;
pub mod decommission;
pub mod fixes;
pub mod guide;
pub mod login;
pub mod migration;
pub mod new_migration;
pub mod not_found;
pub mod offline;
pub mod overview;
pub mod users;
