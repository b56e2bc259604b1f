//! Control store tests: every case runs against SQLite and the local PostgreSQL
//! server, each in its own fresh database.

mod audit;
mod batches;
mod buckets;
mod clients;
mod dashboard;
mod datafix;
mod decommission_steps;
mod drive_bulk_load;
mod drive_relay;
mod fencing;
mod jobs;
mod migrations;
mod one_active;
mod runbook;
mod schedule;
mod schema;
mod sessions;
mod support;
mod switch;
mod users;
mod worker;

use tern_control::users::NewUser;
use tern_control::{Actor, Role, Store};
use tern_testkit::{DbKind, TestDb};

/// A store on a fresh database of `kind`; keep the `TestDb` alive while using it.
pub async fn fresh_store(kind: DbKind) -> anyhow::Result<(TestDb, Store)> {
    let db = TestDb::new(kind).await?;
    let store = Store::open(&db.url).await?;
    Ok((db, store))
}

/// Runs the same test body against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $body:expr) => {
        mod $name {
            use super::*;
            #[tokio::test]
            async fn sqlite() -> anyhow::Result<()> {
                let (_db, store) = $crate::fresh_store(tern_testkit::DbKind::Sqlite).await?;
                ($body)(store).await
            }
            #[tokio::test]
            async fn postgres() -> anyhow::Result<()> {
                let (_db, store) = $crate::fresh_store(tern_testkit::DbKind::Postgres).await?;
                ($body)(store).await
            }
        }
    };
}

pub fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.into(),
        display_name: String::new(),
        role,
        password: "correct horse battery".into(),
        clients: if role == Role::ClientOwner {
            vec!["inbox-service".into()]
        } else {
            vec![]
        },
    }
}

pub fn admin() -> Actor {
    Actor::system()
}
