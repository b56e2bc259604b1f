//! Integration tests of the engine against real PostgreSQL, MariaDB and
//! SQLite databases, each test in fresh databases dropped afterwards.
//! Expected target rows are computed here, independently of the engine's code.

mod bad_input;
mod capture;
mod catch_up_all;
mod composite;
mod concurrent_writer;
mod expressions;
mod index_after_load;
mod load_guard;
mod load_keys;
mod lookups;
mod pairs;
mod plan;
mod read_only;
mod relay;
mod relay_watch;
mod resume;
mod reverse;
mod reverse_live;
mod reverse_rate;
mod shared_rows;
mod support;
mod verify;
mod verify_checksum;
mod verify_grouped;
mod verify_orphans;
mod version_guard;
