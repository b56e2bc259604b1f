//! Clients: ramps and their gates, rollback, tokens, traffic and discovery,
//! shadow results, checklists, offline jobs, datasets and decommissioning.

use serde_json::json;
use tern_control::clients::{ClientEdit, Gates, NewClient, Route};
use tern_control::traffic::TrafficReport;
use tern_control::verify_runs::NewVerifyRun;
use tern_control::{Actor, ControlError, Role, Store};
use tern_ramp::Ramp;

use crate::support::{audit_of, bucket, create_migration};
use crate::{admin, both_stores};

fn engineer() -> Actor {
    Actor {
        name: "erin".into(),
        role: Role::Engineer,
        clients: vec![],
    }
}

fn owner() -> Actor {
    Actor {
        name: "olga".into(),
        role: Role::ClientOwner,
        clients: vec!["inbox-service".into()],
    }
}

async fn setup(store: &Store) -> anyhow::Result<(i64, i64)> {
    let m = create_migration(store, "contacts", vec![bucket(0, 10)]).await?;
    let c = store
        .create_client(
            &engineer(),
            m,
            NewClient {
                name: "inbox-service".into(),
                owner_team: "Inbox".into(),
                owner_contact: "olga@example.com".into(),
                kind: "online".into(),
            },
        )
        .await?;
    Ok((m, c.id))
}

async fn verified(store: &Store, migration_id: i64, accuracy: f64) -> anyhow::Result<()> {
    let compared = 10_000;
    let matched = (accuracy / 100.0 * compared as f64).round() as i64;
    store
        .record_verify_run(&NewVerifyRun {
            migration_id,
            kind: "full".into(),
            rows_compared: compared,
            matched,
            different: compared - matched,
            accuracy,
            ..Default::default()
        })
        .await?;
    Ok(())
}

async fn shadows(
    store: &Store,
    client_id: i64,
    total: usize,
    mismatched: usize,
) -> anyhow::Result<()> {
    let client = store.client(client_id).await?;
    for i in 0..total {
        let new = if i < mismatched {
            json!({"name": "B"})
        } else {
            json!({"name": "A"})
        };
        store
            .record_shadow(&client, &format!("k{i}"), &json!({"name": "A"}), &new)
            .await?;
    }
    Ok(())
}

both_stores!(
    a_ramp_above_the_threshold_is_refused_until_the_gates_hold,
    |store: Store| async move {
        // Arrange
        let (mid, cid) = setup(&store).await?;

        // Act / Assert: below the threshold (10%) no gate applies.
        let c = store
            .set_ramp(&engineer(), cid, Ramp::parse("10%")?, "first step", None)
            .await?;
        assert_eq!(c.ramp, 10_000);
        assert_eq!(c.status, "in-progress");

        // Above it, without verification or shadow data: refused, saying why.
        let err = store
            .set_ramp(&engineer(), cid, Ramp::parse("25%")?, "next step", None)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("refused"), "{err}");
        assert!(err.contains("verification"), "{err}");
        assert!(err.contains("shadow"), "{err}");

        // Low accuracy and a high mismatch rate: still refused, with both numbers.
        verified(&store, mid, 98.0).await?;
        shadows(&store, cid, 10, 3).await?;
        let check = store
            .check_gates(&store.client(cid).await?, Ramp::parse("25%")?)
            .await?;
        assert!(!check.allowed);
        assert_eq!(check.reasons.len(), 2, "{:?}", check.reasons);
        assert!(check.reasons[0].contains("98.000%"));
        assert!(check.reasons[1].contains("30.000%"));

        // Good accuracy and a clean shadow window: allowed.
        let mut gates = store.gates(mid).await?;
        gates.max_mismatch_rate = 50.0;
        gates.min_accuracy = 97.5;
        store.set_gates(&engineer(), &gates).await?;
        let c = store
            .set_ramp(&engineer(), cid, Ramp::parse("25%")?, "gates hold", None)
            .await?;
        assert_eq!(c.ramp, 25_000);
        assert_eq!(store.client(cid).await?.read_ramp().to_string(), "25%");

        // Lowering is never gated, and rollback goes to 0 at once.
        let c = store.rollback(&engineer(), cid, "errors in inbox").await?;
        assert_eq!(c.ramp, 0);
        let steps = store.ramp_steps(cid).await?;
        assert_eq!(
            steps.iter().map(|s| s.to_ramp).collect::<Vec<_>>(),
            vec![10_000, 25_000, 0]
        );
        let audit = audit_of(&store, "ramp.").await?;
        assert_eq!(audit.len(), 3);
        assert_eq!(audit[0].to_state.as_deref(), Some("0%"));
        assert_eq!(audit[0].reason.as_deref(), Some("errors in inbox"));
        Ok(())
    }
);

both_stores!(
    an_admin_overrides_a_refused_ramp_with_a_reason_and_it_is_audited,
    |store: Store| async move {
        let (_mid, cid) = setup(&store).await?;
        // An engineer cannot override.
        let refused = store
            .set_ramp(
                &engineer(),
                cid,
                Ramp::parse("50%")?,
                "go",
                Some("trust me"),
            )
            .await;
        assert!(
            matches!(refused, Err(ControlError::Forbidden(_))),
            "{refused:?}"
        );
        // An admin can, with a reason.
        let c = store
            .set_ramp(
                &admin(),
                cid,
                Ramp::parse("50%")?,
                "go",
                Some("verification is re-running; incident 42"),
            )
            .await?;
        assert_eq!(c.ramp, 50_000);
        let audit = audit_of(&store, "ramp.override").await?;
        assert_eq!(audit.len(), 1);
        assert!(
            audit[0]
                .reason
                .as_deref()
                .unwrap_or_default()
                .contains("incident 42")
        );
        assert!(
            audit[0]
                .details
                .as_deref()
                .unwrap_or_default()
                .contains("refused_because")
        );
        assert!(store.ramp_steps(cid).await?[0].overridden);
        // A client owner may tick and change status, but not ramp.
        let no = store
            .set_ramp(&owner(), cid, Ramp::parse("1%")?, "x", None)
            .await;
        assert!(matches!(no, Err(ControlError::Forbidden(_))));
        let item = store.checklist(cid).await?[0].clone();
        let ticked = store.tick_checklist_item(&owner(), item.id, true).await?;
        assert!(ticked.done);
        assert_eq!(ticked.done_by.as_deref(), Some("olga"));
        let c = store
            .set_client_status(&owner(), cid, "migrated", "all reads moved")
            .await?;
        assert_eq!(c.status, "migrated");
        let stranger = Actor {
            clients: vec!["search".into()],
            ..owner()
        };
        assert!(matches!(
            store.tick_checklist_item(&stranger, item.id, false).await,
            Err(ControlError::Forbidden(_))
        ));
        Ok(())
    }
);

both_stores!(
    tokens_traffic_discovery_and_routing,
    |store: Store| async move {
        let (mid, cid) = setup(&store).await?;
        let (listed, token) = store
            .create_token(&engineer(), mid, Some(cid), "prod")
            .await?;
        assert!(token.starts_with("tern_"));
        assert!(token.starts_with(&listed.prefix));
        let grant = store
            .check_token(&token)
            .await?
            .ok_or_else(|| anyhow::anyhow!("token refused"))?;
        assert_eq!(grant.client.as_deref(), Some("inbox-service"));
        assert!(store.check_token("tern_wrong").await?.is_none());

        // A client's token reports for its client only.
        let report = |client: &str| TrafficReport {
            client: client.into(),
            at: None,
            interval_ms: None,
            old: 90,
            new: 10,
        };
        store
            .record_traffic(&grant, &[report("inbox-service")])
            .await?;
        assert!(matches!(
            store.record_traffic(&grant, &[report("search")]).await,
            Err(ControlError::Forbidden(_))
        ));

        // A collector token discovers unregistered callers.
        let (_, collector) = store
            .create_token(&engineer(), mid, None, "old-store proxy")
            .await?;
        let cgrant = store
            .check_token(&collector)
            .await?
            .ok_or_else(|| anyhow::anyhow!("refused"))?;
        store
            .record_traffic(&cgrant, &[report("legacy-report")])
            .await?;
        let all = store.list_clients(&owner(), Some(mid)).await?;
        assert_eq!(
            all[0].name, "inbox-service",
            "the owner's client comes first"
        );
        let found = all
            .iter()
            .find(|c| c.name == "legacy-report")
            .ok_or_else(|| anyhow::anyhow!("not discovered"))?;
        assert_eq!(found.status, "discovered");
        let series = store.traffic_series(cid, 0, 60_000).await?;
        assert_eq!((series[0].old, series[0].new), (90, 10));

        // Revoked: refused at once.
        store.revoke_token(&engineer(), listed.id).await?;
        assert!(store.check_token(&token).await?.is_none());

        // The routing path agrees with the hash.
        store
            .set_ramp(&engineer(), cid, Ramp::parse("5%")?, "start", None)
            .await?;
        let state = store.ramp_state("contacts", "inbox-service").await?;
        assert_eq!(state.ramp, Ramp::parse("5%")?);
        assert_eq!(state.salt, "contacts/inbox-service");
        let new = (0..10_000)
            .filter(|k| Route::of(state.ramp, &state.salt, k.to_string().as_bytes()) == Route::New)
            .count();
        assert!((300..700).contains(&new), "{new} of 10000 keys new at 5%");
        Ok(())
    }
);

both_stores!(
    shadow_results_give_a_mismatch_rate_and_trees,
    |store: Store| async move {
        let (_mid, cid) = setup(&store).await?;
        store
            .edit_client(
                &engineer(),
                cid,
                ClientEdit {
                    shadow_rules: Some(r#"{"ignore": ["updated_at"]}"#.into()),
                    ..Default::default()
                },
            )
            .await?;
        let client = store.client(cid).await?;
        let same = store
            .record_shadow(
                &client,
                "1",
                &json!({"a": 1, "updated_at": "x"}),
                &json!({"a": 1.0, "updated_at": "y"}),
            )
            .await?;
        assert!(same.matched);
        let diff = store
            .record_shadow(
                &client,
                "2",
                &json!({"p": {"name": "Ann"}}),
                &json!({"p": {"name": "Anne"}}),
            )
            .await?;
        assert!(!diff.matched);
        let latest = store.latest_mismatches(cid, 10).await?;
        assert_eq!(latest.len(), 1);
        assert_eq!(
            latest[0].tree.as_deref(),
            Some("p\n└── name: \"Ann\" → \"Anne\"\n")
        );
        let (rate, n) = store.mismatch_rate(cid, 3_600_000).await?;
        assert_eq!((rate, n), (Some(50.0), 2));
        let bad = store
            .edit_client(
                &engineer(),
                cid,
                ClientEdit {
                    shadow_rate: Some(2.0),
                    ..Default::default()
                },
            )
            .await;
        assert!(matches!(bad, Err(ControlError::Invalid(_))));
        Ok(())
    }
);

both_stores!(
    offline_jobs_datasets_and_decommission,
    |store: Store| async move {
        let (mid, cid) = setup(&store).await?;
        let report = store
            .import_offline_csv(
                &engineer(),
                mid,
                "job,owner,schedule,old_dataset,new_dataset,status\n\
             nightly-export,Data,0 2 * * *,contacts_v1,contacts_v2,\n\
             nightly-export,Data,0 2 * * *,edges_v1,edges_v2,\n\
             \"weekly, audit\",Risk,weekly,contacts_v1,contacts_v2,in-progress\n",
            )
            .await?;
        assert_eq!((report.jobs, report.datasets), (2, 2));
        let jobs = store.list_offline_jobs(mid).await?;
        assert_eq!(jobs.len(), 2);
        assert_eq!(
            jobs[0].datasets,
            vec!["contacts_v1".to_string(), "edges_v1".to_string()]
        );
        assert!(
            store
                .import_offline_csv(&engineer(), mid, "name,owner\nx,y\n")
                .await
                .is_err()
        );

        // The access log finds a job still reading old data.
        store
            .record_access(mid, "nightly-export", "edges_v1", None)
            .await?;
        let ds = store.list_datasets(mid).await?;
        let edges = ds
            .iter()
            .find(|d| d.name == "edges_v1")
            .ok_or_else(|| anyhow::anyhow!("no edges"))?;
        assert_eq!(
            edges.last_access.as_ref().map(|a| a.0.as_str()),
            Some("nightly-export")
        );

        // Locking is refused while a job reads it; forcing is audited.
        let refused = store.lock_dataset(&engineer(), edges.id, None).await;
        let msg = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("nightly-export"), "{msg}");
        let locked = store
            .lock_dataset(
                &engineer(),
                edges.id,
                Some("export rewritten, old read is a dry run"),
            )
            .await?;
        assert_eq!(locked.status, "locked");
        let forced = audit_of(&store, "dataset.force-lock").await?;
        assert_eq!(forced.len(), 1);
        // Deleting is refused until it has been locked long enough.
        let early = store.delete_dataset(&engineer(), edges.id).await;
        assert!(matches!(early, Err(ControlError::Conflict(_))));
        let mut gates: Gates = store.gates(mid).await?;
        gates.lock_days = 0;
        store.set_gates(&engineer(), &gates).await?;
        assert_eq!(
            store.delete_dataset(&engineer(), edges.id).await?.status,
            "deleted"
        );

        // Decommission: not ready while anything is left, and it says what.
        let d = store.decommission(mid).await?;
        assert!(!d.ready);
        assert_eq!(d.items.len(), 4);
        assert!(
            d.items[1].detail.contains("inbox-service at 0%"),
            "{}",
            d.items[1].detail
        );
        assert!(d.items[2].detail.contains("nightly-export"));
        let old = store.still_on_old_system().await?;
        assert!(
            old.iter()
                .any(|o| o.kind == "client" && o.name == "inbox-service")
        );
        assert!(
            old.iter()
                .any(|o| o.kind == "job" && o.name == "weekly, audit")
        );

        // Finish everything: ready.
        for j in &jobs {
            store
                .set_job_status(&engineer(), j.id, "migrated", "moved to v2")
                .await?;
        }
        let contacts = store
            .list_datasets(mid)
            .await?
            .into_iter()
            .find(|d| d.name == "contacts_v1")
            .ok_or_else(|| anyhow::anyhow!("no contacts"))?;
        store.lock_dataset(&engineer(), contacts.id, None).await?;
        store.delete_dataset(&engineer(), contacts.id).await?;
        store
            .set_ramp(&admin(), cid, Ramp::FULL, "all reads", Some("test"))
            .await?;
        store
            .set_client_status(&engineer(), cid, "migrated", "done")
            .await?;
        let b = store.list_buckets(mid).await?[0].id;
        sqlx::query("UPDATE buckets SET phase = 'done' WHERE id = $1")
            .bind(b)
            .execute(store.pool())
            .await?;
        let d = store.decommission(mid).await?;
        assert!(d.ready, "{:?}", d.items);
        assert!(store.still_on_old_system().await?.is_empty());
        Ok(())
    }
);
