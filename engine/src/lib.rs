//! Tern's data-movement engines. The control plane drives them through this
//! crate's public API; the engine knows nothing of the web or the control store.

pub mod error;

pub use error::EngineError;
