//! Switching the source of truth per bucket: the write routing and its
//! versions, the gates and their reasons, the hold that waits for every
//! active client, the drain through the relay's real position, the flip, the
//! rollback, and the aborts that release a hold and change nothing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tern_control::audit::AuditFilter;
use tern_control::buckets::Phase;
use tern_control::clients::NewClient;
use tern_control::jobs::{JobKind, JobState, NewJob};
use tern_control::migrations::Migration;
use tern_control::switch::{
    Direction, Drain, Primary, SwitchOptions, SwitchRecord, drain_through_head,
};
use tern_control::verify_runs::NewVerifyRun;
use tern_control::{ControlError, Store};
use tern_engine::{Connector, Value};
use tern_testkit::TestDb;

use crate::support::{create_migration, refusal, table_bucket, walk_bucket};
use crate::{admin, both_stores};

/// A source changelog and a target relay position in two real SQLite
/// databases: the drain waits for the position to pass the head.
pub(crate) struct Relay {
    _dbs: (TestDb, TestDb),
    source: Connector,
    target: Connector,
}

impl Relay {
    pub(crate) async fn new() -> anyhow::Result<Relay> {
        let (s, t) = (TestDb::sqlite()?, TestDb::sqlite()?);
        let source = Connector::connect(&s.url, "source").await?;
        let target = Connector::connect(&t.url, "target").await?;
        source
            .execute("CREATE TABLE _tern_changelog (seq INTEGER PRIMARY KEY, table_name TEXT, op TEXT, old_row TEXT, new_row TEXT, changed_at INTEGER)", &[], "t")
            .await?;
        target
            .execute("CREATE TABLE _tern_relay (name TEXT PRIMARY KEY, position TEXT NOT NULL, updated_at INTEGER NOT NULL)", &[], "t")
            .await?;
        target
            .execute(
                "INSERT INTO _tern_relay VALUES ('migration-1', '0', 0)",
                &[],
                "t",
            )
            .await?;
        Ok(Relay {
            _dbs: (s, t),
            source,
            target,
        })
    }

    pub(crate) async fn log(&self, seq: i64) -> anyhow::Result<()> {
        self.source
            .execute(
                "INSERT INTO _tern_changelog VALUES (?, 'contacts', 'U', NULL, NULL, 0)",
                &[Value::Int(seq)],
                "t",
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn relay_to(&self, seq: i64) -> anyhow::Result<()> {
        self.target
            .execute(
                "UPDATE _tern_relay SET position = ?",
                &[Value::Text(seq.to_string())],
                "t",
            )
            .await?;
        Ok(())
    }
}

#[async_trait]
impl Drain for Relay {
    async fn drain(
        &self,
        _m: &Migration,
        _d: Direction,
        _t: &[String],
        timeout: Duration,
    ) -> tern_control::error::Result<String> {
        drain_through_head(&self.source, &self.target, "migration-1", timeout).await
    }
}

pub(crate) fn opts() -> SwitchOptions {
    SwitchOptions {
        ack_timeout: Duration::from_millis(600),
        drain_timeout: Duration::from_millis(600),
        ..SwitchOptions::default()
    }
}

/// A migration of 4 buckets of `contacts` cut at 100, 200, 300, each
/// verified at 100% with lag 0, a reversible table and both relays running,
/// and a registered client `writer`.
async fn ready(store: &Store) -> anyhow::Result<(i64, i64)> {
    let (m, c, _) = ready_with_relays(store).await?;
    Ok((m, c))
}

/// [`ready`], and the ids of the two running relay jobs.
pub(crate) async fn ready_with_relays(store: &Store) -> anyhow::Result<(i64, i64, Vec<i64>)> {
    let cuts = [None, Some("100"), Some("200"), Some("300"), None];
    let buckets = (0..4)
        .map(|i| {
            let (lo, hi) = (cuts[i as usize], cuts[i as usize + 1]);
            table_bucket(
                i,
                "contacts",
                lo.map(String::from),
                hi.map(String::from),
                10,
            )
        })
        .collect();
    let m = create_migration(store, "contacts", buckets).await?;
    for b in store.list_buckets(m).await? {
        let to_verified = [
            Phase::BulkLoading,
            Phase::Loaded,
            Phase::CatchingUp,
            Phase::CaughtUp,
            Phase::Verifying,
            Phase::Verified,
        ];
        walk_bucket(store, b.id, &to_verified, "test").await?;
        store
            .record_verify_run(&NewVerifyRun {
                migration_id: m,
                bucket_id: Some(b.id),
                kind: "full".into(),
                rows_compared: 10,
                matched: 10,
                accuracy: 100.0,
                ..Default::default()
            })
            .await?;
        store.record_bucket_lag(b.id, 0, 0.0).await?;
    }
    store
        .record_reverse_path(m, "contacts", true, "copies and casts invert")
        .await?;
    let mut relays = Vec::new();
    for kind in [JobKind::Relay, JobKind::ReverseRelay] {
        let job = store
            .enqueue_job(
                &admin(),
                NewJob {
                    migration_id: Some(m),
                    bucket_id: None,
                    kind,
                    params: serde_json::json!({}),
                    rate_limit: None,
                },
            )
            .await?;
        relays.push(job.id);
        store.lease_job("w1", &[kind], 60_000).await?;
    }
    let c = store
        .create_client(
            &admin(),
            m,
            NewClient {
                name: "writer".into(),
                owner_team: String::new(),
                owner_contact: String::new(),
                kind: "online".into(),
            },
        )
        .await?;
    Ok((m, c.id, relays))
}

/// What the relay runners do: follow the switched set and record the
/// routing version their relay filters by.
fn relays_follow(
    store: Store,
    migration_id: i64,
    jobs: Vec<i64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        while !stop.load(Ordering::Relaxed) {
            let Ok((version, _set)) = store.switched_set(migration_id).await else {
                return;
            };
            for j in &jobs {
                if store.record_relay_observed(*j, version).await.is_err() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Switches (or rolls back) buckets `idxs` through `relay` as an admin,
/// with no reason and [`opts`].
pub(crate) async fn switch(
    store: &Store,
    m: i64,
    idxs: &[i64],
    direction: Direction,
    relay: &Relay,
) -> tern_control::error::Result<SwitchRecord> {
    store
        .switch_buckets(&admin(), m, idxs, direction, "", relay, opts())
        .await
}

/// Switches all 4 buckets of [`ready_with_relays`] while its relays follow.
pub(crate) async fn switch_all(
    store: &Store,
    m: i64,
    jobs: &[i64],
    relay: &Relay,
) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let follower = relays_follow(store.clone(), m, jobs.to_vec(), stop.clone());
    let all = [0, 1, 2, 3];
    let switched = store
        .switch_buckets(&admin(), m, &all, Direction::Switch, "all", relay, opts())
        .await;
    stop.store(true, Ordering::Relaxed);
    follower.await?;
    switched?;
    Ok(())
}

/// What a client does: long-polls the routing and acknowledges each version
/// it applied, noting whether it ever saw a hold.
fn follow(
    store: Store,
    migration_id: i64,
    client_id: i64,
    stop: Arc<AtomicBool>,
    saw_hold: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut applied = -1;
        while !stop.load(Ordering::Relaxed) {
            if store.ack_write_routing(client_id, applied).await.is_err() {
                return;
            }
            let Ok(r) = store
                .wait_write_routing(migration_id, applied, Duration::from_millis(200))
                .await
            else {
                return;
            };
            if r.tables
                .iter()
                .flat_map(|t| &t.buckets)
                .any(|b| b.primary == Primary::Hold)
            {
                saw_hold.store(true, Ordering::Relaxed);
            }
            applied = r.version;
        }
    })
}

both_stores!(
    routing_answers_each_keys_write_primary,
    |store: Store| async move {
        let (m, c) = ready(&store).await?;
        let r = store.write_routing(m).await?;
        assert_eq!(r.tables.len(), 1);
        assert_eq!(r.tables[0].key_kind, "integer");
        assert_eq!(r.primary(None, "99")?, Primary::Old);
        assert_eq!(r.primary(Some("contacts"), "1000")?, Primary::Old);
        // A long poll with nothing new answers after its wait with the same version.
        let again = store
            .wait_write_routing(m, r.version, Duration::from_millis(50))
            .await?;
        assert_eq!(again.version, r.version);
        // Nobody polled yet: no active client; one poll and an ack make one.
        assert_eq!(store.routing_pickup(m).await?.active, 0);
        store.ack_write_routing(c, r.version).await?;
        let pickup = store.routing_pickup(m).await?;
        assert_eq!((pickup.active, pickup.applied), (1, 1));
        Ok(())
    }
);

both_stores!(
    a_switch_refused_says_which_gate_failed,
    |store: Store| async move {
        let (m, _) = ready(&store).await?;
        let relay = Relay::new().await?;
        let b1 = store.bucket_by_idx(m, 1).await?;
        store.record_bucket_lag(b1.id, 7, 1.5).await?;
        store
            .record_reverse_path(
                m,
                "contacts",
                false,
                "key `id` is a uuid5 of the source key: add a reverse section to the spec",
            )
            .await?;
        let msg = refusal(switch(&store, m, &[1], Direction::Switch, &relay).await);
        assert!(msg.contains("bucket 1"), "{msg}");
        assert!(msg.contains("lag is 7 changes"), "{msg}");
        assert!(msg.contains("uuid5"), "{msg}");
        // Rolling back a bucket that is not switched is refused too.
        let why = refusal(switch(&store, m, &[0], Direction::Rollback, &relay).await);
        assert!(why.contains("not switched"), "{why}");
        assert!(
            store.list_switches(m, 10).await?.is_empty(),
            "a refusal holds nothing"
        );
        Ok(())
    }
);

both_stores!(
    a_switch_holds_waits_for_the_client_drains_flips_and_rolls_back,
    |store: Store| async move {
        let (m, c, jobs) = ready_with_relays(&store).await?;
        let relay = Relay::new().await?;
        relay.log(1).await?;
        relay.log(2).await?;
        relay.relay_to(2).await?;
        let (stop, saw_hold) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let relays = relays_follow(store.clone(), m, jobs, stop.clone());
        let client = follow(store.clone(), m, c, stop.clone(), saw_hold.clone());
        tokio::time::sleep(Duration::from_millis(100)).await;
        let before = store.routing_version(m).await?;

        let done = store
            .switch_buckets(
                &admin(),
                m,
                &[1, 2],
                Direction::Switch,
                "first half",
                &relay,
                opts(),
            )
            .await?;
        assert_eq!(done.state, "done");
        assert_eq!(done.buckets, vec![1, 2]);
        assert_eq!((done.clients_expected, done.clients_acked), (1, 1));
        let hold = done.hold_ms.unwrap_or(-1);
        assert!((0..600).contains(&hold), "hold {hold} ms");
        eprintln!("switch buckets=2 clients=1 hold_ms={hold}");
        assert!(saw_hold.load(Ordering::Relaxed), "the client saw the hold");
        assert_eq!(
            store.routing_version(m).await?,
            before + 3,
            "hold, flip, release"
        );
        let r = store.write_routing(m).await?;
        assert_eq!(r.primary(None, "150")?, Primary::New);
        assert_eq!(r.primary(None, "250")?, Primary::New);
        assert_eq!(r.primary(None, "50")?, Primary::Old);
        assert_eq!(store.bucket_by_idx(m, 1).await?.phase, Phase::Switched);
        assert_eq!(store.bucket_by_idx(m, 1).await?.write_primary, "new");

        let back = store
            .switch_buckets(
                &admin(),
                m,
                &[2],
                Direction::Rollback,
                "undo one",
                &relay,
                opts(),
            )
            .await?;
        assert_eq!(back.direction, "rollback");
        eprintln!(
            "rollback buckets=1 clients=1 hold_ms={}",
            back.hold_ms.unwrap_or(-1)
        );
        let r = store.write_routing(m).await?;
        assert_eq!(r.primary(None, "250")?, Primary::Old);
        assert_eq!(r.primary(None, "150")?, Primary::New);
        assert_eq!(
            store.bucket_by_idx(m, 2).await?.phase,
            Phase::ReadsSwitching
        );
        let pickup = store.routing_pickup(m).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pickup_later = store.routing_pickup(m).await?;
        assert_eq!(
            pickup_later.applied, 1,
            "the client picked up the last change ({pickup:?} → {pickup_later:?})"
        );
        let actions: Vec<String> = store
            .list_audit(&admin(), &AuditFilter::default())
            .await?
            .into_iter()
            .map(|e| e.action)
            .collect();
        for a in [
            "switch.hold",
            "switch.done",
            "rollback.hold",
            "rollback.done",
        ] {
            assert!(actions.iter().any(|x| x == a), "{a} audited: {actions:?}");
        }
        stop.store(true, Ordering::Relaxed);
        client.await?;
        relays.await?;
        Ok(())
    }
);

both_stores!(
    a_client_that_does_not_ack_aborts_the_switch_and_releases,
    |store: Store| async move {
        let (m, c) = ready(&store).await?;
        let relay = Relay::new().await?;
        // The client polled once (it is active) and then went quiet.
        store.ack_write_routing(c, 0).await?;
        let why = refusal(switch(&store, m, &[0], Direction::Switch, &relay).await);
        assert!(why.contains("writer") && why.contains("aborted"), "{why}");
        let r = store.write_routing(m).await?;
        assert_eq!(
            r.primary(None, "5")?,
            Primary::Old,
            "released, not switched"
        );
        let rec = &store.list_switches(m, 1).await?[0];
        assert_eq!(rec.state, "aborted");
        assert!(rec.error.as_deref().unwrap_or("").contains("writer"));
        assert!(rec.hold_ms.unwrap_or(0) >= 600);
        Ok(())
    }
);

both_stores!(
    a_relay_that_does_not_drain_aborts_the_switch,
    |store: Store| async move {
        let (m, _, jobs) = ready_with_relays(&store).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let follower = relays_follow(store.clone(), m, jobs, stop.clone());
        let relay = Relay::new().await?;
        relay.log(1).await?;
        relay.log(2).await?;
        relay.relay_to(1).await?; // one change behind the head
        let why = refusal(switch(&store, m, &[3], Direction::Switch, &relay).await);
        assert!(why.contains("did not drain"), "{why}");
        assert_eq!(store.bucket_by_idx(m, 3).await?.write_primary, "old");
        assert_eq!(store.bucket_by_idx(m, 3).await?.held_by, None);
        // Once the relay catches up the same switch goes through.
        relay.relay_to(2).await?;
        let done = switch(&store, m, &[3], Direction::Switch, &relay).await?;
        assert_eq!(done.state, "done");
        stop.store(true, Ordering::Relaxed);
        follower.await?;
        Ok(())
    }
);

both_stores!(
    a_relay_that_does_not_take_the_flip_puts_the_primary_back,
    |store: Store| async move {
        // Both relays run but nothing follows the switched set for them.
        let (m, _) = ready(&store).await?;
        let relay = Relay::new().await?;
        let opts = SwitchOptions {
            observe_timeout: Duration::from_millis(300),
            ..opts()
        };
        let refused = store
            .switch_buckets(&admin(), m, &[0], Direction::Switch, "", &relay, opts)
            .await;
        assert!(
            matches!(refused, Err(ControlError::Conflict(ref msg)) if msg.contains("did not take the new switched buckets")),
            "{refused:?}"
        );
        let b = store.bucket_by_idx(m, 0).await?;
        assert_eq!(
            (b.write_primary.as_str(), b.held_by, b.phase),
            ("old", None, Phase::Verified)
        );
        assert_eq!(
            store.write_routing(m).await?.primary(None, "5")?,
            Primary::Old
        );
        Ok(())
    }
);

both_stores!(
    the_reverse_relay_job_shows_the_state_it_is_in_now,
    |store: Store| async move {
        // Queued by `start_reverse_relay`, then leased by a worker: the page
        // reads the job again and shows it running, not the queued answer.
        let (m, _, jobs) = ready_with_relays(&store).await?;
        let job = store
            .reverse_relay_job(m)
            .await?
            .ok_or_else(|| anyhow::anyhow!("a reverse relay job"))?;
        assert_eq!((job.id, job.state), (jobs[1], JobState::Running));
        // Starting it again while it runs answers the same running job.
        let again = store.start_reverse_relay(&admin(), m).await?;
        assert_eq!((again.id, again.state), (jobs[1], JobState::Running));
        Ok(())
    }
);
