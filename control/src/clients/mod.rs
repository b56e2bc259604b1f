//! Client services of a migration: their owner, kind and status, the read ramp
//! (with its gates, rollback and history), per-client notes and checklist, the
//! migration guide, and the API tokens clients authenticate with.
//!
//! The read ramp of client `c` in migration `m` routes a key to the new system
//! when `tern_ramp::Ramp::is_on("m/c", key)` — the same rule the routing API and
//! the embedded `tern-client` crate apply, so raising a ramp only moves keys from
//! old to new.

mod checklist;
mod gates;
mod model;
mod ramps;
mod registry;
mod rules;
mod tokens;

pub use checklist::ChecklistItem;
pub use gates::GateCheck;
pub use model::*;
pub use ramps::RampStep;
pub(crate) use registry::insert_client;
pub use rules::{GateInputs, Gates, gate_reasons, ramp_reason, ramp_refused};
pub use tokens::ApiToken;
