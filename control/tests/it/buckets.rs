use tern_control::audit::AuditFilter;
use tern_control::buckets::{BucketPlan, Phase};
use tern_control::migrations::NewMigration;
use tern_control::{Actor, ControlError, Role, Store};

use crate::{admin, both_stores};

async fn one_bucket(store: &Store) -> anyhow::Result<i64> {
    let m = store
        .create_migration(
            &admin(),
            NewMigration {
                name: "contacts".into(),
                description: String::new(),
                spec: "x = 1".into(),
                buckets: vec![BucketPlan {
                    idx: 0,
                    lo: None,
                    hi: None,
                    planned_rows: 10,
                    table_name: None,
                    table_bucket: None,
                }],
            },
        )
        .await?;
    Ok(store.list_buckets(m.id).await?[0].id)
}

both_stores!(
    a_bucket_walks_the_playbook_and_each_step_is_stamped_and_audited,
    |store: Store| async move {
        let id = one_bucket(&store).await?;
        for to in [
            Phase::BulkLoading,
            Phase::Paused,
            Phase::BulkLoading,
            Phase::Loaded,
            Phase::CatchingUp,
            Phase::CaughtUp,
            Phase::Verifying,
            Phase::Verified,
            Phase::ReadsSwitching,
        ] {
            store.move_bucket(&admin(), id, to, "step").await?;
        }
        // The source of truth moves with a switch (hold, drain, flip), never by hand.
        let by_hand = store
            .move_bucket(&admin(), id, Phase::Switched, "step")
            .await;
        assert!(
            matches!(by_hand, Err(ControlError::Conflict(ref m)) if m.contains("tern switch")),
            "{by_hand:?}"
        );
        let b = store.bucket(id).await?;
        assert_eq!(b.phase, Phase::ReadsSwitching);
        assert!(b.loaded_at.is_some() && b.caught_up_at.is_some() && b.verified_at.is_some());

        let events = store
            .list_audit(
                &admin(),
                &AuditFilter {
                    action: Some("bucket.phase".into()),
                    ..Default::default()
                },
            )
            .await?;
        assert_eq!(events.len(), 9);
        assert_eq!(events[0].from_state.as_deref(), Some("verified"));
        assert_eq!(events[0].to_state.as_deref(), Some("reads-switching"));
        Ok(())
    }
);

both_stores!(
    an_illegal_move_is_refused_with_the_allowed_ones_and_changes_nothing,
    |store: Store| async move {
        let id = one_bucket(&store).await?;
        let refused = store
            .move_bucket(&admin(), id, Phase::Verified, "skip ahead")
            .await;
        match refused {
            Err(ControlError::Conflict(m)) => assert!(
                m.contains("is planned: it can move to bulk-loading, not to verified"),
                "{m}"
            ),
            other => anyhow::bail!("expected a conflict, got {other:?}"),
        }
        assert_eq!(store.bucket(id).await?.phase, Phase::Planned);

        let viewer = Actor {
            name: "pm".into(),
            role: Role::Viewer,
            clients: vec![],
        };
        let forbidden = store.move_bucket(&viewer, id, Phase::BulkLoading, "").await;
        assert!(matches!(forbidden, Err(ControlError::Forbidden(_))));
        Ok(())
    }
);

both_stores!(
    a_failed_bucket_remembers_where_to_retry,
    |store: Store| async move {
        let id = one_bucket(&store).await?;
        store
            .move_bucket(&admin(), id, Phase::BulkLoading, "")
            .await?;
        store
            .move_bucket(&admin(), id, Phase::Failed, "target refused row 42")
            .await?;
        let b = store.bucket(id).await?;
        assert_eq!(
            (b.phase, b.resume_phase, b.last_error.as_deref()),
            (
                Phase::Failed,
                Some(Phase::BulkLoading),
                Some("target refused row 42")
            )
        );
        store
            .move_bucket(&admin(), id, Phase::BulkLoading, "retry")
            .await?;
        assert_eq!(store.bucket(id).await?.resume_phase, None);
        Ok(())
    }
);
