use tern_control::buckets::Phase;
use tern_control::{Actor, ControlError, Role, Store};

use crate::support::{audit_of, bucket, create_migration, walk_bucket};
use crate::{admin, both_stores};

async fn one_bucket(store: &Store) -> anyhow::Result<i64> {
    let m = create_migration(store, "contacts", vec![bucket(0, 10)]).await?;
    Ok(store.list_buckets(m).await?[0].id)
}

both_stores!(
    a_bucket_walks_the_playbook_and_each_step_is_stamped_and_audited,
    |store: Store| async move {
        let id = one_bucket(&store).await?;
        // This walk has no jobs: the phases that need evidence are an
        // admin's override (the evidence itself is tested below).
        let walk = [
            Phase::BulkLoading,
            Phase::Paused,
            Phase::BulkLoading,
            Phase::Loaded,
            Phase::CatchingUp,
            Phase::CaughtUp,
            Phase::Verifying,
            Phase::Verified,
            Phase::ReadsSwitching,
        ];
        walk_bucket(&store, id, &walk, "step").await?;
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

        let events = audit_of(&store, "bucket.phase").await?;
        let moves: Vec<_> = events
            .iter()
            .filter(|e| e.action == "bucket.phase")
            .collect();
        assert_eq!(moves.len(), 9);
        assert_eq!(events.len(), 12, "and three overrides");
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

both_stores!(
    a_move_to_loaded_caught_up_or_verified_needs_its_evidence_or_an_admins_override,
    |store: Store| async move {
        use tern_control::jobs::{JobKind, Outcome};
        use tern_control::verify_runs::NewVerifyRun;
        let id = one_bucket(&store).await?;
        let m = store.bucket(id).await?.migration_id;
        let engineer = Actor {
            name: "eng".into(),
            role: Role::Engineer,
            clients: vec![],
        };

        // A bulk load is running: the bucket is not loaded yet.
        let jobs = store.start_bulk_load(&engineer, m, &[id]).await?;
        let refused = store
            .move_bucket(&engineer, id, Phase::Loaded, "looks done")
            .await;
        match refused {
            Err(ControlError::Conflict(msg)) => assert!(
                msg.contains("cannot be moved to loaded by hand")
                    && msg.contains(&format!(
                        "its latest bulk-load job (job {}) is queued",
                        jobs[0]
                    ))
                    && msg.contains("Run a bulk load")
                    && msg.contains("override"),
                "{msg}"
            ),
            other => anyhow::bail!("expected a refusal, got {other:?}"),
        }
        assert_eq!(store.bucket(id).await?.phase, Phase::BulkLoading);

        // The job succeeds (without moving the bucket itself): now it may.
        let lease = store
            .lease_job("w", &[JobKind::BulkLoad], 60_000)
            .await?
            .ok_or_else(|| anyhow::anyhow!("nothing to lease"))?;
        let ok = Outcome::Succeeded {
            summary: None,
            bucket_phase: None,
        };
        assert!(
            store
                .finish_job(lease.id, "w", lease.lease_token, &ok)
                .await?
        );
        store
            .move_bucket(&engineer, id, Phase::Loaded, "job done")
            .await?;

        // No catch-up has run: caught-up is refused; an engineer may not
        // override, an admin may with a reason, and it is audited.
        store
            .move_bucket(&engineer, id, Phase::CatchingUp, "")
            .await?;
        let refused = store.move_bucket(&engineer, id, Phase::CaughtUp, "").await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref m)) if m.contains("no catch-up job has run on it")),
            "{refused:?}"
        );
        let forbidden = store
            .override_bucket_move(&engineer, id, Phase::CaughtUp, "trust me")
            .await;
        assert!(
            matches!(forbidden, Err(ControlError::Forbidden(_))),
            "{forbidden:?}"
        );
        let no_reason = store
            .override_bucket_move(&admin(), id, Phase::CaughtUp, " ")
            .await;
        assert!(
            matches!(no_reason, Err(ControlError::Invalid(_))),
            "{no_reason:?}"
        );
        store
            .override_bucket_move(&admin(), id, Phase::CaughtUp, "caught up by the old tool")
            .await?;
        let overrides = audit_of(&store, "bucket.phase.override").await?;
        assert_eq!(overrides.len(), 1);
        assert_eq!(
            overrides[0].reason.as_deref(),
            Some("caught up by the old tool")
        );
        assert_eq!(overrides[0].to_state.as_deref(), Some("caught-up"));
        assert!(
            overrides[0]
                .details
                .as_deref()
                .unwrap_or_default()
                .contains("no catch-up job has run on it"),
            "{:?}",
            overrides[0].details
        );

        // Verified needs a verification run at the migration's accuracy.
        store
            .move_bucket(&engineer, id, Phase::Verifying, "")
            .await?;
        let run = |accuracy: f64| NewVerifyRun {
            migration_id: m,
            bucket_id: Some(id),
            job_id: None,
            engine_run: None,
            kind: "full".into(),
            rows_compared: 10,
            matched: (accuracy / 10.0) as i64,
            missing: 10 - (accuracy / 10.0) as i64,
            extra: 0,
            different: 0,
            accuracy,
            tree: None,
        };
        let refused = store.move_bucket(&engineer, id, Phase::Verified, "").await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref m)) if m.contains("no verification run has checked it")),
            "{refused:?}"
        );
        store.record_verify_run(&run(90.0)).await?;
        let refused = store.move_bucket(&engineer, id, Phase::Verified, "").await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref m)) if m.contains("found 90% of rows equal, below the migration's 100%")),
            "{refused:?}"
        );
        store.record_verify_run(&run(100.0)).await?;
        store
            .move_bucket(&engineer, id, Phase::Verified, "")
            .await?;
        assert_eq!(store.bucket(id).await?.phase, Phase::Verified);
        Ok(())
    }
);
