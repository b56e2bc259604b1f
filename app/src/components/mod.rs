//! Components shared by several pages.

pub mod accuracy_chart;
pub mod decommission_steps;
pub mod forecast;
pub mod grid;
pub mod guard;
pub mod layout;
pub mod live;
pub mod old_system;
pub mod page_head;
pub mod phase_bar;
pub mod phase_move;
pub mod source_of_truth;
