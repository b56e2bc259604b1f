//! Tern control plane.
