//! Records made straight in a control store before `tern serve` opens it
//! (shared with `examples/route_bench.rs`, which includes this file).

use tern_control::buckets::BucketPlan;
use tern_control::clients::NewClient;
use tern_control::migrations::NewMigration;
use tern_control::{Actor, Store};

/// Creates migration `name` from `spec` with one bucket of `planned_rows`
/// rows (no range, no table), as the system; its id.
pub async fn migration(
    store: &Store,
    name: &str,
    spec: String,
    planned_rows: i64,
) -> anyhow::Result<i64> {
    let bucket = BucketPlan {
        idx: 0,
        lo: None,
        hi: None,
        planned_rows,
        table_name: None,
        table_bucket: None,
    };
    let m = store
        .create_migration(
            &Actor::system(),
            NewMigration {
                name: name.into(),
                description: String::new(),
                spec,
                buckets: vec![bucket],
            },
        )
        .await?;
    Ok(m.id)
}

/// Registers clients `names` of migration `m`, owned by team `team`, as the
/// system; their ids in order.
pub async fn clients(
    store: &Store,
    m: i64,
    names: &[&str],
    team: &str,
) -> anyhow::Result<Vec<i64>> {
    let mut ids = Vec::new();
    for name in names {
        let c = store
            .create_client(
                &Actor::system(),
                m,
                NewClient {
                    name: (*name).into(),
                    owner_team: team.into(),
                    ..Default::default()
                },
            )
            .await?;
        ids.push(c.id);
    }
    Ok(ids)
}
