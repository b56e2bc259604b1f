//! The steps that end a migration, each refused with its reason while its
//! condition does not hold: buckets still writing to the old store, clients
//! still reading from it, offline jobs not migrated, an earlier step not
//! done, a step done already, a role that may not, a reverse relay that has
//! not drained, relays still stopping; and a switched bucket that can no
//! longer be rolled back once the relays have stopped.

use std::sync::Arc;
use std::time::Duration;

use tern_control::audit::AuditFilter;
use tern_control::decommission_steps::Step;
use tern_control::jobs::{JobState, Outcome};
use tern_control::offline::NewOfflineJob;
use tern_control::runners::RunnerContext;
use tern_control::switch::Direction;
use tern_control::{Actor, ControlError, Role, Store};
use tern_engine::TransformerRegistry;
use tern_ramp::Ramp;

use crate::support::refusal;
use crate::switch::{Relay, ready_with_relays, switch, switch_all};
use crate::{admin, both_stores};

/// The client's reads ramped to 100% new, by an admin's override.
async fn reads_moved(store: &Store, client: i64) -> anyhow::Result<()> {
    let ramp = Ramp::parse("100%")?;
    let why = Some("test: verified by hand");
    store
        .set_ramp(&admin(), client, ramp, "reads moved", why)
        .await?;
    Ok(())
}

both_stores!(
    each_decommission_step_is_refused_with_its_reason_until_it_may_run,
    |store: Store| async move {
        // Arrange: 4 verified buckets writing to the old store, both relays
        // running, client `writer` reading 0% new, one offline job not migrated.
        let (m, client, jobs) = ready_with_relays(&store).await?;
        let job = store
            .create_offline_job(
                &admin(),
                m,
                NewOfflineJob {
                    name: "nightly-export".into(),
                    owner: "Data".into(),
                    ..NewOfflineJob::default()
                },
            )
            .await?;
        let ctx = RunnerContext {
            registry: Arc::new(TransformerRegistry::new()),
        };
        let system = admin();
        // Stopping the relays drains the reverse relay: here a changelog
        // and a relay position in two SQLite databases.
        let relay = Relay::new().await?;
        let wait = Duration::from_millis(300);
        let run =
            |step: Step| store.run_decommission_step_draining(&system, m, step, &ctx, &relay, wait);

        // Act / Assert: every step says every blocker.
        let why = refusal(run(Step::StopRelays).await);
        assert!(
            why.contains("bucket(s) 0, 1, 2, 3 are not switched to the new store"),
            "{why}"
        );
        assert!(
            why.contains("still read from the old store: writer at 0%"),
            "{why}"
        );
        assert!(
            why.contains("offline job(s) not migrated: nightly-export"),
            "{why}"
        );
        for s in store.decommission_steps(m).await? {
            assert!(
                s.refusal
                    .as_deref()
                    .is_some_and(|r| r.contains("not switched")),
                "{s:?}"
            );
        }
        // Only admins decommission; an unknown step names the real ones.
        let engineer = Actor {
            name: "eng".into(),
            role: Role::Engineer,
            clients: vec![],
        };
        assert!(matches!(
            store
                .run_decommission_step(&engineer, m, Step::StopRelays, &ctx)
                .await,
            Err(ControlError::Forbidden(_))
        ));
        assert!(matches!(
            Step::parse("explode"),
            Err(ControlError::Invalid(ref msg)) if msg.contains("stop-relays, remove-capture")
        ));

        // Every bucket switched: the buckets no longer block, the rest still does.
        switch_all(&store, m, &jobs, &relay).await?;
        let why = refusal(run(Step::StopRelays).await);
        assert!(!why.contains("not switched"), "{why}");
        assert!(
            why.contains("writer at 0%") && why.contains("nightly-export"),
            "{why}"
        );
        reads_moved(&store, client).await?;
        let why = refusal(run(Step::StopRelays).await);
        assert!(
            !why.contains("writer") && why.contains("nightly-export"),
            "{why}"
        );
        store
            .set_job_status(&admin(), job.id, "migrated", "reads the new dataset")
            .await?;
        assert_eq!(store.decommission_blockers(m).await?, Vec::<String>::new());

        // In order: each step waits for the one before it.
        for (step, first) in [
            (
                Step::RemoveCapture,
                "Stop the forward and the reverse relay",
            ),
            (Step::DropColumns, "Remove Tern's capture objects"),
            (Step::ReadOnly, "Remove Tern's capture objects"),
            (Step::Complete, "Put the old tables in read-only mode"),
        ] {
            let why = refusal(run(step).await);
            assert!(
                why.contains(&format!("first: {first}")),
                "{}: {why}",
                step.as_str()
            );
        }
        // The new store took a write the reverse relay has not applied yet:
        // nothing is stopped until it has.
        relay.log(1).await?;
        let why = refusal(run(Step::StopRelays).await);
        assert!(
            why.contains("reverse relay has not drained") && why.contains("head is 1"),
            "{why}"
        );
        assert!(
            store.job(jobs[1]).await?.state == JobState::Running,
            "the reverse relay still runs"
        );
        relay.relay_to(1).await?;
        let done = run(Step::StopRelays).await?;
        assert!(done.contains("drained through change 1"), "{done}");
        assert!(
            done.contains(&format!("relay job {}", jobs[0]))
                && done.contains(&format!("reverse-relay job {}", jobs[1])),
            "{done}"
        );
        assert!(refusal(run(Step::StopRelays).await).contains("done already"));
        let steps = store.decommission_steps(m).await?;
        assert_eq!(steps[0].actor.as_deref(), Some("system"));
        assert!(steps[0].done_at.is_some());
        let actions: Vec<String> = store
            .list_audit(&admin(), &AuditFilter::default())
            .await?
            .into_iter()
            .map(|e| e.action)
            .collect();
        assert!(
            actions.iter().any(|a| a == "decommission.stop-relays"),
            "{actions:?}"
        );

        // A relay stops at its next heartbeat; its capture objects stay until it has.
        let why = refusal(run(Step::RemoveCapture).await);
        assert!(
            why.contains("still stopping")
                && why.contains(&format!("relay job {}", jobs[0]))
                && why.contains(&format!("reverse-relay job {}", jobs[1])),
            "{why}"
        );
        for id in &jobs {
            let j = store.job(*id).await?;
            let worker = j.worker.clone().unwrap_or_default();
            assert!(
                store
                    .finish_job(*id, &worker, j.lease_token, &Outcome::Cancelled)
                    .await?
            );
        }
        let steps = store.decommission_steps(m).await?;
        assert_eq!(steps[1].step, Step::RemoveCapture);
        assert_eq!(steps[1].refusal, None, "{:?}", steps[1]);

        // With the relays stopped a switched bucket can no longer be rolled back.
        let why = refusal(switch(&store, m, &[2], Direction::Rollback, &relay).await);
        assert!(why.contains("forward relay is not running"), "{why}");
        Ok(())
    }
);

both_stores!(
    stopping_the_relays_is_refused_while_the_reverse_relay_does_not_run,
    |store: Store| async move {
        // Arrange: every bucket switched, the client at 100%, and then the
        // reverse relay ended (here: cancelled and finished by its worker).
        let (m, client, jobs) = ready_with_relays(&store).await?;
        let relay = Relay::new().await?;
        switch_all(&store, m, &jobs, &relay).await?;
        reads_moved(&store, client).await?;
        let reverse = store.job(jobs[1]).await?;
        store.cancel_job(&admin(), reverse.id, "test").await?;
        let worker = reverse.worker.clone().unwrap_or_default();
        assert!(
            store
                .finish_job(
                    reverse.id,
                    &worker,
                    reverse.lease_token,
                    &Outcome::Cancelled
                )
                .await?
        );
        let ctx = RunnerContext {
            registry: Arc::new(TransformerRegistry::new()),
        };

        // Act
        let why = refusal(
            store
                .run_decommission_step_draining(
                    &admin(),
                    m,
                    Step::StopRelays,
                    &ctx,
                    &relay,
                    Duration::from_millis(300),
                )
                .await,
        );

        // Assert: refused with what to do; the forward relay still runs.
        assert!(
            why.contains("the reverse relay is not running") && why.contains("start it"),
            "{why}"
        );
        assert_eq!(store.job(jobs[0]).await?.state, JobState::Running);
        assert!(store.decommission_steps(m).await?[0].done_at.is_none());
        Ok(())
    }
);
