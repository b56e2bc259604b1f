//! Integration tests of the `tern` binary, run as a real process against real
//! databases (fresh per test).

mod cli_bulk_load;
mod cli_plan;
mod support;
