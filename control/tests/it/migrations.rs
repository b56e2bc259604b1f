use tern_control::audit::AuditFilter;
use tern_control::buckets::Phase;
use tern_control::migrations::NewMigration;
use tern_control::{Actor, ControlError, Role, Store};

use crate::support::table_bucket;
use crate::{admin, both_stores};

fn contacts(buckets: i64) -> NewMigration {
    NewMigration {
        name: "contacts".into(),
        description: "Oracle contacts to the new store".into(),
        spec: "[source]\nurl = \"sqlite://a.db\"\n".into(),
        buckets: (0..buckets)
            .map(|i| {
                let (lo, hi) = ((i * 100).to_string(), ((i + 1) * 100).to_string());
                table_bucket(i, "contacts", Some(lo), Some(hi), 1000 + i)
            })
            .collect(),
    }
}

both_stores!(
    a_migration_is_created_with_its_buckets_and_audited,
    |store: Store| async move {
        let m = store.create_migration(&admin(), contacts(4)).await?;

        let buckets = store.list_buckets(m.id).await?;
        assert_eq!(buckets.len(), 4);
        assert!(buckets.iter().all(|b| b.phase == Phase::Planned));
        assert_eq!(buckets[3].lo.as_deref(), Some("300"));

        let summaries = store.migration_summaries().await?;
        assert_eq!(summaries.len(), 1);
        assert_eq!(summaries[0].buckets, 4);
        assert_eq!(summaries[0].phases, vec![(Phase::Planned, 4)]);
        assert_eq!(summaries[0].planned_rows, 4006);

        let events = store.list_audit(&admin(), &AuditFilter::default()).await?;
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].action, "migration.create");
        assert_eq!(events[0].entity_id, "contacts");
        Ok(())
    }
);

both_stores!(
    a_failed_creation_leaves_nothing_behind,
    |store: Store| async move {
        store.create_migration(&admin(), contacts(2)).await?;
        let again = store.create_migration(&admin(), contacts(3)).await;
        assert!(matches!(again, Err(ControlError::Conflict(_))));
        let summaries = store.migration_summaries().await?;
        assert_eq!(summaries[0].buckets, 2);
        assert_eq!(
            store
                .list_audit(&admin(), &AuditFilter::default())
                .await?
                .len(),
            1
        );
        Ok(())
    }
);

both_stores!(
    viewers_cannot_create_migrations,
    |store: Store| async move {
        let viewer = Actor {
            name: "pm".into(),
            role: Role::Viewer,
            clients: vec![],
        };
        let refused = store.create_migration(&viewer, contacts(1)).await;
        assert!(matches!(refused, Err(ControlError::Forbidden(_))));
        assert!(store.migration_summaries().await?.is_empty());
        Ok(())
    }
);

both_stores!(
    an_unknown_migration_is_not_found,
    |store: Store| async move {
        assert!(matches!(
            store.migration(42).await,
            Err(ControlError::NotFound(_))
        ));
        Ok(())
    }
);

#[tokio::test]
async fn a_sqlite_store_keeps_its_data_across_a_restart() -> anyhow::Result<()> {
    let db = tern_testkit::TestDb::sqlite()?;
    let path = std::path::PathBuf::from(&db.name);
    {
        let store = Store::open_sqlite_file(&path).await?;
        store.create_migration(&admin(), contacts(1)).await?;
        store.close().await;
    }
    let reopened = Store::open_sqlite_file(&path).await?;
    assert_eq!(reopened.migration_summaries().await?.len(), 1);
    Ok(())
}
