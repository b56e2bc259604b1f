//! Integration tests of the data-fix platform against real PostgreSQL and
//! MariaDB (each test in its own fresh database).

mod guard;
mod http;
mod load;
mod rate;
mod resume;
mod seed_example;
mod support;
