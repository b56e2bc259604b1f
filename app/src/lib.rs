//! Tern UI.
