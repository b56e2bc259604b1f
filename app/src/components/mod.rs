//! Components shared by several pages.

pub mod guard;
pub mod layout;
pub mod phase_bar;
