//! A whole migration MariaDB → PostgreSQL through the real control plane
//! (issue 17), with an application that writes through `tern-client` the
//! whole time from the end of the catch-up on (see the test for why not
//! before): inserts, updates and deletes at a steady rate, each under a
//! write permit and sent to the primary store the permit names. Load, relay,
//! catch up, verify, switch half the buckets, keep writing, roll one
//! switched bucket back, switch the rest, decommission. At the end the old
//! and the new store hold, row for row, what the writer's own log says:
//! nothing lost, nothing applied twice; the old tables refuse writes and no
//! capture object is left in either store.
//!
//! `tern serve` (its workers run the jobs, its HTTP API answers the write
//! routing the client long-polls and runs the switches) shares a PostgreSQL
//! control store with the test, which arranges through the same `Store`.
//!
//! The writer counts every update of a row in the row itself (`n = n + 1`),
//! so a store that missed a write shows a lower count (lost) and one that
//! took a write twice a higher one (doubled).
//!
//! `bench/switch.sh` runs [`bench`] (ignored here) for the measured line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure};
use rand::Rng;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{MySqlPool, PgPool, Row};
use tern_client::{ClientConfig, ClientError, Primary, TernClient};
use tern_control::buckets::{Bucket, Phase};
use tern_control::clients::NewClient;
use tern_control::jobs::{JobKind, JobState};
use tern_control::relay::RelayRampSpec;
use tern_control::runbook::VerifyMode;
use tern_control::users::NewUser;
use tern_control::{Actor, Role, Store};
use tern_engine::TransformerRegistry;
use tern_ramp::Ramp;
use tern_testkit::TestDb;

use crate::{ApiSession, DataDir, PASSWORD, Server};

/// What a row must hold, by the writer's log: (member_id, body, n).
pub type RowState = (i64, String, i64);

const MIGRATION: &str = "items";
const CLIENT: &str = "inbox-writer";

/// A migration of `items` in `buckets` buckets of `member_id`, every column
/// copied (so it inverts on its own), ready to run on a `tern serve`.
pub struct Journey {
    // Dropped first: the server holds connections to the databases below.
    pub server: Server,
    pub store: Store,
    pub source: TestDb,
    pub target: TestDb,
    _control: TestDb,
    _data: DataDir,
    admin: ApiSession,
    pub migration: i64,
    pub client_id: i64,
    token: String,
    /// Rows seeded before the migration: (id, member_id).
    pub seeded: Vec<(i64, i64)>,
}

impl Journey {
    /// Seeds `rows` rows over `members` members, plans the migration,
    /// registers the client and an admin, and starts `tern serve`.
    pub async fn start(buckets: u32, rows: i64, members: i64) -> anyhow::Result<Journey> {
        let (source, target, control) = (
            TestDb::mariadb().await?,
            TestDb::postgres().await?,
            TestDb::postgres().await?,
        );
        let old = MySqlPool::connect(&source.url).await?;
        sqlx::query(
            "CREATE TABLE items (id BIGINT PRIMARY KEY, member_id BIGINT NOT NULL,
             body VARCHAR(200) NOT NULL, n BIGINT NOT NULL, KEY by_member (member_id, id))",
        )
        .execute(&old)
        .await?;
        let mut seeded = Vec::new();
        for start in (1..=rows).step_by(1000) {
            let chunk: Vec<(i64, i64)> = (start..(start + 1000).min(rows + 1))
                .map(|id| (id, (id * 7919) % members))
                .collect();
            let values: Vec<String> = chunk
                .iter()
                .map(|(id, m)| format!("({id}, {m}, 'seed {id}', 0)"))
                .collect();
            sqlx::query(&format!("INSERT INTO items VALUES {}", values.join(",")))
                .execute(&old)
                .await?;
            seeded.extend(chunk);
        }
        old.close().await;

        let store = Store::open(&control.url).await?;
        let spec = format!(
            "chunk_rows = 500\n[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n\n\
             [[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = {buckets}\n\
             [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
             [tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\nn = \"n\"\n",
            source.url, target.url
        );
        let admin = Actor::system();
        let m = store
            .create_migration_from_spec(
                &admin,
                MIGRATION,
                "the switch journey",
                &spec,
                &Arc::new(TransformerRegistry::new()),
            )
            .await?;
        let client = store
            .create_client(
                &admin,
                m.id,
                NewClient {
                    name: CLIENT.into(),
                    owner_team: "Inbox".into(),
                    owner_contact: "inbox@example.com".into(),
                    kind: "online".into(),
                },
            )
            .await?;
        let (_, token) = store
            .create_token(&admin, m.id, Some(client.id), "writer")
            .await?;
        store
            .create_user(
                &admin,
                NewUser {
                    username: "boss".into(),
                    display_name: String::new(),
                    role: Role::Admin,
                    password: PASSWORD.into(),
                    clients: vec![],
                },
            )
            .await?;

        let data = DataDir::new();
        let server =
            Server::start_with(&data.0, &[("TERN_DATABASE_URL", control.url.as_str())]).await?;
        let admin = ApiSession::sign_in(&server, "boss").await?;
        Ok(Journey {
            server,
            store,
            source,
            target,
            _control: control,
            _data: data,
            admin,
            migration: m.id,
            client_id: client.id,
            token,
            seeded,
        })
    }

    /// The application's `tern-client`, following the write routing.
    pub async fn tern_client(&self) -> anyhow::Result<TernClient> {
        let mut cfg = ClientConfig::new(
            self.server.base.clone(),
            MIGRATION,
            CLIENT,
            self.token.clone(),
        );
        cfg.write_routing = true;
        cfg.poll_every = Duration::from_secs(1);
        Ok(TernClient::connect(cfg).await?)
    }

    /// Starts an application writing through `tern-client` at `rate`
    /// writes per second, spread over `tasks` tasks.
    pub async fn writer(&self, tasks: u32, rate: f64) -> anyhow::Result<Writer> {
        let client = self.tern_client().await?;
        let old = MySqlPool::connect(&self.source.url).await?;
        let new = PgPool::connect(&self.target.url).await?;
        let first_new = self.seeded.iter().map(|r| r.0).max().unwrap_or(0) + 1;
        let members = self.seeded.iter().map(|r| r.1).max().unwrap_or(0) + 1;
        Ok(Writer::spawn(
            client,
            old,
            new,
            &self.seeded,
            members,
            first_new,
            tasks,
            rate,
        ))
    }

    /// A JSON request as the signed-in admin; answers the status and body.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(StatusCode, Value)> {
        let r = self
            .admin
            .post(&self.server.url(path))
            .json(&body)
            .send()
            .await?;
        let status = r.status();
        let body = r.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let r = self.admin.get(&self.server.url(path)).send().await?;
        ensure!(r.status() == StatusCode::OK, "GET {path}: {}", r.status());
        Ok(r.json().await?)
    }

    pub async fn buckets(&self) -> anyhow::Result<Vec<Bucket>> {
        Ok(self.store.list_buckets(self.migration).await?)
    }

    async fn bucket_ids(&self) -> anyhow::Result<Vec<i64>> {
        Ok(self.buckets().await?.iter().map(|b| b.id).collect())
    }

    /// Waits until every bucket is in `phase` (a failed bucket stops it).
    pub async fn wait_phase(&self, phase: Phase) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let buckets = self.buckets().await?;
            if let Some(b) = buckets.iter().find(|b| b.phase == Phase::Failed) {
                bail!("bucket {} failed: {:?}", b.idx, b.last_error);
            }
            if buckets.iter().all(|b| b.phase == phase) {
                return Ok(());
            }
            if Instant::now() > deadline {
                let phases: Vec<String> = buckets
                    .iter()
                    .map(|b| format!("{}: {} {:?}", b.idx, b.phase, b.last_error))
                    .collect();
                bail!("buckets did not all reach {phase}: {phases:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Bulk load, relay at 100%, catch-up, full verification and the
    /// reverse relay (change capture installed first): every bucket verified
    /// and ready to switch.
    pub async fn make_ready(&self) -> anyhow::Result<()> {
        self.load().await?;
        self.relay_and_catch_up().await?;
        self.verify_and_reverse().await
    }

    /// Bulk-loads every bucket (change capture installed first).
    pub async fn load(&self) -> anyhow::Result<()> {
        let ids = self.bucket_ids().await?;
        self.store
            .start_bulk_load(&Actor::system(), self.migration, &ids)
            .await?;
        self.wait_phase(Phase::Loaded).await
    }

    /// The relay at 100% and a catch-up of every bucket.
    pub async fn relay_and_catch_up(&self) -> anyhow::Result<()> {
        let admin = Actor::system();
        let m = self.migration;
        let ids = self.bucket_ids().await?;
        self.store
            .set_relay_ramp(&admin, m, RelayRampSpec::parse("100%", &[])?, "every key")
            .await?;
        self.store.start_catch_up(&admin, m, &ids).await?;
        self.wait_phase(Phase::CaughtUp).await
    }

    /// A full verification of every bucket, then the reverse relay.
    pub async fn verify_and_reverse(&self) -> anyhow::Result<()> {
        let admin = Actor::system();
        let m = self.migration;
        let ids = self.bucket_ids().await?;
        self.store
            .start_verify(&admin, m, &ids, VerifyMode::Full)
            .await?;
        self.wait_verified().await?;
        let (status, job) = self
            .post(&format!("/api/v1/migrations/{m}/reverse-relay"), json!({}))
            .await?;
        ensure!(status == StatusCode::OK, "reverse relay: {status} {job}");
        // The reverse relay records the table's reverse path once it runs.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let paths = self.store.reverse_paths(m).await?;
            let running = self
                .store
                .list_jobs(Some(m), None, 100)
                .await?
                .iter()
                .any(|j| j.kind == JobKind::ReverseRelay && j.state == JobState::Running);
            if running && paths.iter().any(|p| p.table == "items" && p.reversible) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the reverse relay did not start: {paths:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Prints the last verification runs of every bucket with their
    /// mismatched rows (on a failure: what differed, and where).
    async fn explain(&self) -> anyhow::Result<()> {
        for b in self.buckets().await? {
            for r in self
                .store
                .list_verify_runs(self.migration, Some(b.id), 3)
                .await?
            {
                eprintln!(
                    "bucket {}: {} verification {:?}: {} compared, {} missing, {} extra, {} different\n{}",
                    b.idx,
                    r.kind,
                    r.engine_run,
                    r.rows_compared,
                    r.missing,
                    r.extra,
                    r.different,
                    r.tree.as_deref().unwrap_or("")
                );
                if let Some(e) = &r.engine_run {
                    for mm in self.store.run_mismatches(self.migration, e, 0, 20).await? {
                        eprintln!(
                            "  {} {}: old {:?} new {:?}",
                            mm.key, mm.kind, mm.source_row, mm.target_row
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// Waits until no bucket verifies; every bucket must end verified.
    async fn wait_verified(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let buckets = self.buckets().await?;
            if buckets.iter().all(|b| b.phase != Phase::Verifying) {
                let not: Vec<String> = buckets
                    .iter()
                    .filter(|b| b.phase != Phase::Verified)
                    .map(|b| format!("{}: {} at {:?}%", b.idx, b.phase, b.accuracy))
                    .collect();
                if !not.is_empty() {
                    self.explain().await?;
                }
                ensure!(not.is_empty(), "buckets not verified: {not:?}");
                return Ok(());
            }
            ensure!(Instant::now() < deadline, "verification did not end");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Switches (or rolls back) buckets through the HTTP API; answers the
    /// switch as it ran.
    pub async fn switch(&self, buckets: &[i64], rollback: bool) -> anyhow::Result<Value> {
        let way = if rollback { "rollback" } else { "switch" };
        let (status, body) = self
            .post(
                &format!("/api/v1/migrations/{}/{way}", self.migration),
                json!({ "buckets": buckets, "reason": format!("journey: {way} {buckets:?}") }),
            )
            .await?;
        if status != StatusCode::OK {
            self.explain().await?;
        }
        ensure!(
            status == StatusCode::OK,
            "{way} {buckets:?}: {status} {body}"
        );
        ensure!(body["state"] == "done", "{way} {buckets:?}: {body}");
        Ok(body)
    }

    /// Both stores as they are: id → (member_id, body, n).
    pub async fn stores(
        &self,
    ) -> anyhow::Result<(BTreeMap<i64, RowState>, BTreeMap<i64, RowState>)> {
        let old = MySqlPool::connect(&self.source.url).await?;
        let new = PgPool::connect(&self.target.url).await?;
        let sql = "SELECT id, member_id, body, n FROM items";
        let mut a = BTreeMap::new();
        for r in sqlx::query(sql).fetch_all(&old).await? {
            a.insert(
                r.try_get("id")?,
                (r.try_get("member_id")?, r.try_get("body")?, r.try_get("n")?),
            );
        }
        let mut b = BTreeMap::new();
        for r in sqlx::query(sql).fetch_all(&new).await? {
            b.insert(
                r.try_get("id")?,
                (r.try_get("member_id")?, r.try_get("body")?, r.try_get("n")?),
            );
        }
        old.close().await;
        new.close().await;
        Ok((a, b))
    }

    /// Both stores against the writer's log, waiting up to `wait` for the
    /// relays to apply the last writes: answers the tally of the last look.
    pub async fn settle(&self, log: &WriterLog, wait: Duration) -> anyhow::Result<Tally> {
        let deadline = Instant::now() + wait;
        loop {
            let (old, new) = self.stores().await?;
            let tally = Tally::of(log, &old, "old").add(Tally::of(log, &new, "new"));
            if tally.is_clean() || Instant::now() > deadline {
                return Ok(tally);
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
}

/// What one task of the writer knows at the end.
#[derive(Debug, Default)]
pub struct WriterLog {
    /// Every row the writer knows and what it must hold (`None`: deleted).
    pub rows: BTreeMap<i64, Option<RowState>>,
    /// Writes sent to the old store and to the new one.
    pub old_writes: u64,
    pub new_writes: u64,
    /// Updates and deletes that found no row in the store the routing named.
    pub misses: Vec<String>,
    /// The longest a write waited for its permit (a hold).
    pub max_wait: Duration,
    /// Permits refused after the client's hold wait (the write was retried).
    pub held_out: u64,
    pub elapsed: Duration,
}

impl WriterLog {
    pub fn writes(&self) -> u64 {
        self.old_writes + self.new_writes
    }

    fn merge(&mut self, other: WriterLog) {
        self.rows.extend(other.rows);
        self.old_writes += other.old_writes;
        self.new_writes += other.new_writes;
        self.misses.extend(other.misses);
        self.max_wait = self.max_wait.max(other.max_wait);
        self.held_out += other.held_out;
        self.elapsed = self.elapsed.max(other.elapsed);
    }
}

/// An application writing through `tern-client` until stopped.
pub struct Writer {
    running: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<WriterLog>>>,
    client: TernClient,
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        client: TernClient,
        old: MySqlPool,
        new: PgPool,
        seeded: &[(i64, i64)],
        members: i64,
        first_new: i64,
        tasks: u32,
        rate: f64,
    ) -> Writer {
        let running = Arc::new(AtomicBool::new(true));
        let tasks_n = i64::from(tasks.max(1));
        let period = Duration::from_secs_f64(f64::from(tasks.max(1)) / rate.max(1.0));
        let handles = (0..tasks_n)
            .map(|t| {
                let mine: Vec<(i64, i64)> = seeded
                    .iter()
                    .copied()
                    .filter(|(id, _)| id % tasks_n == t)
                    .collect();
                let task = Task {
                    client: client.clone(),
                    old: old.clone(),
                    new: new.clone(),
                    running: running.clone(),
                    members,
                    next_id: first_new + t,
                    step: tasks_n,
                    name: t,
                };
                tokio::spawn(task.run(mine, period))
            })
            .collect();
        Writer {
            running,
            tasks: handles,
            client,
        }
    }

    /// Stops writing and answers the log of every task.
    pub async fn stop(self) -> anyhow::Result<WriterLog> {
        self.running.store(false, Ordering::Relaxed);
        let mut log = WriterLog::default();
        for t in self.tasks {
            log.merge(t.await??);
        }
        self.client.shutdown().await.ok();
        Ok(log)
    }
}

struct Task {
    client: TernClient,
    old: MySqlPool,
    new: PgPool,
    running: Arc<AtomicBool>,
    members: i64,
    next_id: i64,
    step: i64,
    name: i64,
}

enum Op {
    Insert(i64, i64),
    Update(i64, i64),
    Delete(i64, i64),
}

impl Task {
    async fn run(mut self, seeded: Vec<(i64, i64)>, period: Duration) -> anyhow::Result<WriterLog> {
        let mut log = WriterLog::default();
        let mut live: Vec<(i64, i64)> = seeded.clone();
        for (id, member) in seeded {
            log.rows.insert(id, Some((member, format!("seed {id}"), 0)));
        }
        let started = Instant::now();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut seq = 0u64;
        while self.running.load(Ordering::Relaxed) {
            tick.tick().await;
            seq += 1;
            let op = {
                let mut rng = rand::thread_rng();
                let roll = rng.gen_range(0..10);
                if roll < 3 || live.len() < 10 {
                    let id = self.next_id;
                    self.next_id += self.step;
                    Op::Insert(id, rng.gen_range(0..self.members))
                } else if roll < 8 {
                    let (id, m) = live[rng.gen_range(0..live.len())];
                    Op::Update(id, m)
                } else {
                    let (id, m) = live.swap_remove(rng.gen_range(0..live.len()));
                    Op::Delete(id, m)
                }
            };
            let member = match op {
                Op::Insert(_, m) | Op::Update(_, m) | Op::Delete(_, m) => m,
            };
            let body = format!("t{} w{seq}", self.name);
            // The permit for the row's bucket key, held until the write commits.
            let asked = Instant::now();
            let permit = loop {
                match self.client.write_permit(&member.to_string()).await {
                    Ok(p) => break p,
                    Err(ClientError::Held { .. }) => log.held_out += 1,
                    Err(e) => return Err(e.into()),
                }
            };
            log.max_wait = log.max_wait.max(asked.elapsed());
            let on_new = permit.primary() == Primary::New;
            let affected = self.write(&op, &body, on_new).await?;
            drop(permit);
            if on_new {
                log.new_writes += 1;
            } else {
                log.old_writes += 1;
            }
            let store = if on_new { "new" } else { "old" };
            match op {
                Op::Insert(id, m) => {
                    live.push((id, m));
                    log.rows.insert(id, Some((m, body, 0)));
                }
                Op::Update(id, _) => {
                    if affected != 1 {
                        log.misses
                            .push(format!("update of {id} found no row in the {store} store"));
                    }
                    if let Some(Some(row)) = log.rows.get_mut(&id) {
                        row.1 = body;
                        row.2 += 1;
                    }
                }
                Op::Delete(id, _) => {
                    if affected != 1 {
                        log.misses
                            .push(format!("delete of {id} found no row in the {store} store"));
                    }
                    log.rows.insert(id, None);
                }
            }
        }
        log.elapsed = started.elapsed();
        Ok(log)
    }

    /// One statement on the primary store; answers the rows it touched.
    async fn write(&self, op: &Op, body: &str, on_new: bool) -> anyhow::Result<u64> {
        let done = match (op, on_new) {
            (Op::Insert(id, m), false) => {
                sqlx::query("INSERT INTO items (id, member_id, body, n) VALUES (?, ?, ?, 0)")
                    .bind(id)
                    .bind(m)
                    .bind(body)
                    .execute(&self.old)
                    .await?
                    .rows_affected()
            }
            // An application on the new store fills Tern's version column.
            (Op::Insert(id, m), true) => sqlx::query(
                "INSERT INTO items (id, member_id, body, n, _tern_version) VALUES ($1, $2, $3, 0, 0)",
            )
            .bind(id)
            .bind(m)
            .bind(body)
            .execute(&self.new)
            .await?
            .rows_affected(),
            (Op::Update(id, _), false) => {
                sqlx::query("UPDATE items SET n = n + 1, body = ? WHERE id = ?")
                    .bind(body)
                    .bind(id)
                    .execute(&self.old)
                    .await?
                    .rows_affected()
            }
            (Op::Update(id, _), true) => {
                sqlx::query("UPDATE items SET n = n + 1, body = $1 WHERE id = $2")
                    .bind(body)
                    .bind(id)
                    .execute(&self.new)
                    .await?
                    .rows_affected()
            }
            (Op::Delete(id, _), false) => sqlx::query("DELETE FROM items WHERE id = ?")
                .bind(id)
                .execute(&self.old)
                .await?
                .rows_affected(),
            (Op::Delete(id, _), true) => sqlx::query("DELETE FROM items WHERE id = $1")
                .bind(id)
                .execute(&self.new)
                .await?
                .rows_affected(),
        };
        Ok(done)
    }
}

/// A store against the writer's log: writes lost (a row missing, stale, or
/// back after its delete) and doubled (a row counting more updates than
/// were made, or one nobody wrote), with examples.
#[derive(Debug, Default)]
pub struct Tally {
    pub lost: u64,
    pub doubled: u64,
    pub examples: Vec<String>,
}

impl Tally {
    pub fn of(log: &WriterLog, store: &BTreeMap<i64, RowState>, name: &str) -> Tally {
        let mut t = Tally::default();
        let note = |t: &mut Tally, what: String| {
            if t.examples.len() < 20 {
                t.examples.push(format!("{name}: {what}"));
            }
        };
        for (id, want) in &log.rows {
            match (want, store.get(id)) {
                (Some(w), Some(got)) if w == got => {}
                (Some(w), Some(got)) if got.2 > w.2 => {
                    t.doubled += 1;
                    note(&mut t, format!("{id} holds {got:?}, the log says {w:?}"));
                }
                (Some(w), got) => {
                    t.lost += 1;
                    note(&mut t, format!("{id} holds {got:?}, the log says {w:?}"));
                }
                (None, Some(got)) => {
                    t.lost += 1;
                    note(&mut t, format!("{id} was deleted but holds {got:?}"));
                }
                (None, None) => {}
            }
        }
        for (id, got) in store {
            if !log.rows.contains_key(id) {
                t.doubled += 1;
                note(&mut t, format!("{id} holds {got:?}, which nobody wrote"));
            }
        }
        t
    }

    pub fn add(mut self, other: Tally) -> Tally {
        self.lost += other.lost;
        self.doubled += other.doubled;
        self.examples.extend(other.examples);
        self
    }

    pub fn is_clean(&self) -> bool {
        self.lost == 0 && self.doubled == 0
    }
}

#[tokio::test]
async fn a_whole_migration_switched_rolled_back_and_decommissioned_under_writes_loses_and_doubles_nothing()
-> anyhow::Result<()> {
    // Arrange: 4 buckets, change capture, an application writing through tern-client.
    let j = Journey::start(4, 3_000, 200).await?;
    let m = j.migration;
    j.store
        .install_capture(&Actor::system(), m, "journey")
        .await?;
    // The writer writes the whole time: through the load, the relay's start
    // and the catch-ups too. (Before the catch-up waited for the relay to
    // take its bucket over, writes made between a bucket's caught-up head
    // and the relay picking up its ramp reached neither: 1 to 6 rows missing
    // or stale in about one run in three.)
    let writer = j.writer(2, 150.0).await?;
    j.load().await?;
    j.relay_and_catch_up().await?;

    // Act: verify under writes, start the reverse relay.
    j.verify_and_reverse().await?;
    // Decommission is refused with its reason while buckets write to the old store.
    let (status, early) = j
        .post(
            &format!("/api/v1/migrations/{m}/decommission/stop-relays"),
            json!({}),
        )
        .await?;
    assert_eq!(status, StatusCode::CONFLICT, "{early}");
    assert!(
        early["error"]
            .as_str()
            .unwrap_or("")
            .contains("not switched"),
        "{early}"
    );

    // Switch half the buckets, keep writing, roll one back, switch the rest.
    let mut holds = Vec::new();
    let first = j.switch(&[0, 1], false).await?;
    holds.push(first["hold_ms"].as_i64().unwrap_or(-1));
    assert_eq!(
        (
            first["clients_expected"].as_i64(),
            first["clients_acked"].as_i64()
        ),
        (Some(1), Some(1)),
        "the writer applied the hold: {first}"
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let primaries: Vec<String> = j
        .buckets()
        .await?
        .iter()
        .map(|b| b.write_primary.clone())
        .collect();
    assert_eq!(primaries, ["new", "new", "old", "old"]);
    let pickup = j.get(&format!("/api/v1/migrations/{m}/switches")).await?;
    assert_eq!(pickup["pickup"]["active"], 1, "{pickup}");
    assert_eq!(
        pickup["pickup"]["applied"], 1,
        "the client picked up the switch: {pickup}"
    );

    let back = j.switch(&[1], true).await?;
    holds.push(back["hold_ms"].as_i64().unwrap_or(-1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let b1 = j.store.bucket_by_idx(m, 1).await?;
    assert_eq!(
        (b1.write_primary.as_str(), b1.phase),
        ("old", Phase::ReadsSwitching)
    );

    let rest = j.switch(&[1, 2, 3], false).await?;
    holds.push(rest["hold_ms"].as_i64().unwrap_or(-1));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let log = writer.stop().await?;

    // Assert: both stores hold what the writer wrote, once.
    let tally = j.settle(&log, Duration::from_secs(60)).await?;
    println!(
        "switch journey: writes old={} new={} holds_ms={holds:?} max_permit_wait_ms={} lost={} doubled={}",
        log.old_writes,
        log.new_writes,
        log.max_wait.as_millis(),
        tally.lost,
        tally.doubled
    );
    assert!(log.misses.is_empty(), "{:?}", log.misses);
    assert!(
        tally.is_clean(),
        "lost {} doubled {}: {:?}",
        tally.lost,
        tally.doubled,
        tally.examples
    );
    assert!(log.old_writes > 300 && log.new_writes > 300, "{log:?}");
    assert_eq!(log.held_out, 0, "no write waited out a whole hold");

    // Decommission: reads at 100% first, then every step in order.
    j.store
        .set_ramp(
            &Actor::system(),
            j.client_id,
            Ramp::parse("100%")?,
            "reads moved",
            Some("journey: verified by the test"),
        )
        .await?;
    let plan = j
        .get(&format!("/api/v1/migrations/{m}/decommission"))
        .await?;
    assert_eq!(plan["blockers"], json!([]), "{plan}");
    for step in [
        "stop-relays",
        "remove-capture",
        "drop-columns",
        "read-only",
        "complete",
    ] {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (status, body) = j
                .post(
                    &format!("/api/v1/migrations/{m}/decommission/{step}"),
                    json!({}),
                )
                .await?;
            // The relays stop at their next heartbeat; their capture stays until then.
            let stopping = body["error"]
                .as_str()
                .is_some_and(|e| e.contains("still stopping"));
            if status == StatusCode::CONFLICT && stopping && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            assert_eq!(status, StatusCode::OK, "{step}: {body}");
            break;
        }
    }
    let relays: Vec<(JobKind, JobState)> = j
        .store
        .list_jobs(Some(m), None, 1000)
        .await?
        .into_iter()
        .filter(|job| matches!(job.kind, JobKind::Relay | JobKind::ReverseRelay))
        .map(|job| (job.kind, job.state))
        .collect();
    assert!(
        relays.iter().all(|(_, s)| *s == JobState::Cancelled),
        "the relays stopped, none failed: {relays:?}"
    );
    let (old, new) = j.stores().await?;
    let end = Tally::of(&log, &old, "old").add(Tally::of(&log, &new, "new"));
    assert!(end.is_clean(), "after decommission: {:?}", end.examples);
    assert_eq!(old, new, "the old and the new store are equal row for row");
    assert!(j.store.migration_completed_at(m).await?.is_some());
    assert!(j.buckets().await?.iter().all(|b| b.phase == Phase::Done));
    let old_pool = MySqlPool::connect(&j.source.url).await?;
    // An insert (a row trigger refuses it; an update could find no row).
    let refused =
        sqlx::query("INSERT INTO items (id, member_id, body, n) VALUES (999999999, 1, 'late', 0)")
            .execute(&old_pool)
            .await;
    assert!(refused.is_err(), "the old tables refuse writes");
    let capture: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM information_schema.triggers
                 WHERE trigger_schema = DATABASE() AND action_timing = 'AFTER')
              + (SELECT COUNT(*) FROM information_schema.tables
                 WHERE table_schema = DATABASE() AND table_name = '_tern_changelog')",
    )
    .fetch_one(&old_pool)
    .await?;
    assert_eq!(
        capture, 0,
        "no capture trigger or changelog is left on the old store"
    );
    let new_pool = PgPool::connect(&j.target.url).await?;
    let left: i64 = sqlx::query_scalar(
        "SELECT (SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_tern_changelog')
              + (SELECT COUNT(*) FROM information_schema.columns
                 WHERE table_name = 'items' AND column_name LIKE '\\_tern\\_%')",
    )
    .fetch_one(&new_pool)
    .await?;
    assert_eq!(
        left, 0,
        "no changelog nor _tern_* column is left on the new store"
    );
    Ok(())
}

/// The measurement behind `bench/switch.sh`: a writer at `SWITCH_RATE`
/// writes/s (default 1,500, over `SWITCH_TASKS` tasks, default 24) through
/// tern-client while `SWITCH_BUCKETS` buckets (default 8) are switched one
/// at a time, then one rolled back and switched again. Prints one line:
/// `switch buckets=N writes_per_s=W max_hold_ms=H lost=L doubled=D`.
#[tokio::test]
#[ignore = "a benchmark: run it through bench/switch.sh"]
async fn bench() -> anyhow::Result<()> {
    let var = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let buckets = var("SWITCH_BUCKETS", 8.0) as u32;
    let rate = var("SWITCH_RATE", 1_500.0);
    let tasks = var("SWITCH_TASKS", 24.0) as u32;
    let rows = var("SWITCH_ROWS", 20_000.0) as i64;
    let j = Journey::start(buckets, rows, 1_000).await?;
    j.store
        .install_capture(&Actor::system(), j.migration, "bench")
        .await?;
    j.make_ready().await?;
    let writer = j.writer(tasks, rate).await?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut holds = Vec::new();
    let mut plan: Vec<(i64, bool)> = (0..i64::from(buckets)).map(|b| (b, false)).collect();
    plan.extend([(0, true), (0, false)]);
    for (b, rollback) in plan {
        let r = j.switch(&[b], rollback).await?;
        holds.push(r["hold_ms"].as_i64().unwrap_or(i64::MAX));
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let log = writer.stop().await?;
    let tally = j.settle(&log, Duration::from_secs(120)).await?;
    let lost = tally.lost + log.misses.len() as u64;
    eprintln!(
        "[bench] writes old={} new={} in {:.1}s; holds_ms={holds:?}; longest permit wait {} ms; {} permits timed out; {:?}",
        log.old_writes,
        log.new_writes,
        log.elapsed.as_secs_f64(),
        log.max_wait.as_millis(),
        log.held_out,
        tally.examples
    );
    println!(
        "switch buckets={buckets} writes_per_s={:.0} max_hold_ms={} lost={lost} doubled={}",
        log.writes() as f64 / log.elapsed.as_secs_f64().max(0.001),
        holds.iter().max().copied().unwrap_or(0),
        tally.doubled
    );
    Ok(())
}
