//! One active relay per migration and one active run per fix, kept by the
//! store (unique partial indexes), not by a check before the insert: eight
//! racing requests, exactly one gets its job, the others a conflict that says
//! why. SQLite and PostgreSQL.

use sqlx::Connection;
use tern_control::jobs::{JobKind, JobState, NewJob};
use tern_control::relay::RelayRampSpec;
use tern_control::{ControlError, Store};
use tern_testkit::TestDb;

use crate::support::{create_migration, table_bucket};
use crate::{admin, both_stores};

const RACERS: usize = 8;

async fn migration(store: &Store, name: &str) -> anyhow::Result<i64> {
    let buckets = vec![table_bucket(0, "contacts", None, None, 100)];
    create_migration(store, name, buckets).await
}

/// Runs `RACERS` copies of `f` at once; their results in order.
async fn race<T, F, Fut>(f: F) -> anyhow::Result<Vec<Result<T, ControlError>>>
where
    T: Send + 'static,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, ControlError>> + Send + 'static,
{
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(RACERS));
    let tasks: Vec<_> = (0..RACERS)
        .map(|_| {
            let (barrier, fut) = (barrier.clone(), f());
            tokio::spawn(async move {
                barrier.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await?);
    }
    Ok(out)
}

fn one_winner<T: std::fmt::Debug>(
    results: &[Result<T, ControlError>],
    says: &str,
) -> anyhow::Result<()> {
    let won = results.iter().filter(|r| r.is_ok()).count();
    anyhow::ensure!(won == 1, "exactly one of {RACERS} succeeds: {results:?}");
    for r in results {
        if let Err(e) = r {
            anyhow::ensure!(
                matches!(e, ControlError::Conflict(m) if m.contains(says)),
                "a loser gets a conflict saying `{says}`: {e:?}"
            );
        }
    }
    Ok(())
}

both_stores!(
    eight_racing_relay_jobs_for_one_migration_give_one_job,
    |store: Store| async move {
        let m = migration(&store, "relay-race").await?;
        let results = race(|| {
            let store = store.clone();
            async move {
                store
                    .enqueue_job(
                        &admin(),
                        NewJob {
                            migration_id: Some(m),
                            bucket_id: None,
                            kind: JobKind::Relay,
                            params: serde_json::json!({ "ramp": RelayRampSpec::Off }),
                            rate_limit: None,
                        },
                    )
                    .await
            }
        })
        .await?;
        one_winner(&results, "already has an active relay")?;

        // Turning the ramp on from many places at once ends with one relay.
        let other = migration(&store, "relay-ramp-race").await?;
        let results = race(|| {
            let store = store.clone();
            async move {
                let ramp = RelayRampSpec::parse("10%", &[])?;
                store.set_relay_ramp(&admin(), other, ramp, "race").await
            }
        })
        .await?;
        for r in &results {
            anyhow::ensure!(matches!(r, Ok(_) | Err(ControlError::Conflict(_))), "{r:?}");
        }
        let active: Vec<_> = store
            .list_jobs(Some(other), None, 100)
            .await?
            .into_iter()
            .filter(|j| j.kind == JobKind::Relay && !j.state.is_final())
            .collect();
        assert_eq!(active.len(), 1, "{active:?}");

        // Once it ended, another may start.
        store.cancel_job(&admin(), active[0].id, "done").await?;
        assert_eq!(store.job(active[0].id).await?.state, JobState::Cancelled);
        let ramp = RelayRampSpec::parse("10%", &[])?;
        store.set_relay_ramp(&admin(), other, ramp, "again").await?;
        Ok(())
    }
);

both_stores!(
    eight_racing_runs_of_one_fix_give_one_run,
    |store: Store| async move {
        let db = TestDb::postgres().await?;
        let mut c = sqlx::PgConnection::connect(&db.url).await?;
        sqlx::raw_sql(
            "CREATE TABLE members (id BIGINT PRIMARY KEY, fixed INT NOT NULL DEFAULT 0);
             INSERT INTO members (id) VALUES (1), (2), (3);",
        )
        .execute(&mut c)
        .await?;
        let spec = format!(
            "name = \"race\"\nurl = \"{}\"\nkey = [\"id\"]\n[filter]\n\
             sql = \"SELECT id, fixed FROM members WHERE fixed = 0\"\n[mapper]\n\
             kind = \"update\"\ntable = \"members\"\nset = {{ fixed = \"1\" }}\n",
            db.url
        );
        let fix = store.create_fix(&admin(), &spec).await?;
        let results = race(|| {
            let store = store.clone();
            async move { store.start_fix_run(&admin(), fix.id).await }
        })
        .await?;
        one_winner(&results, "is already running")?;
        let runs = store.fix_runs(fix.id).await?;
        assert_eq!(runs.len(), 1, "the losers left no run behind: {runs:?}");
        Ok(())
    }
);
