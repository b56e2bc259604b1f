//! Seed 001's shape under live changes: a legacy inbox with one row per
//! participant copy of each message, split by one spec into a shared
//! `messages` table (one row per message, keyed by UUIDv5 of thread and
//! message number, deduplicated, `keep = "first"`) and a `personal` table
//! (one row per member and message). A concurrent writer inserts copies and
//! messages, updates one copy and every copy, deletes one copy and the last
//! copy, while the relay runs, every bucket is loaded and then caught up.
//! Afterwards the target must equal, row for row, a fresh bulk load of the
//! final source into another database.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rand::Rng;
use tern_engine::{
    CatchUpOptions, CatchUpStatus, Link, RelayOptions, RelayRamp, RunControl, TransformerRegistry,
    catch_up_all, load_bucket, run_relay,
};
use tern_testkit::{DbKind, TestDb};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::relay_watch::{Seen, head};
use crate::support::{Side, connect_captured, load_all, spec_text};

const THREADS: i64 = 40;
const MESSAGES_PER_THREAD: i64 = 6;
const MEMBERS: i64 = 12;

/// The inbox split into `personal` (a row per member and message) and the
/// shared `messages` (a row per message, the first copy kept), `buckets`
/// buckets each; `personal` and `messages` are more columns of each.
pub fn inbox_spec(chunk_rows: u32, buckets: u32, personal: &str, messages: &str) -> String {
    format!(
        r#"
chunk_rows = {chunk_rows}

[[tables]]
name = "personal"
key = ["member_id", "message_id"]
buckets = {buckets}
[tables.source]
table = "inbox"
key = ["member_id", "id"]
bucket = "member_id"
[tables.columns]
member_id = "member_id"
message_id = {{ uuid5 = ["thread_id", "msg_no"], namespace = "messages" }}
{personal}

[[tables]]
name = "messages"
key = ["message_id"]
buckets = {buckets}
[tables.source]
table = "inbox"
key = ["member_id", "id"]
bucket = "thread_id"
[tables.columns]
{messages}
[tables.dedupe]
keep = "first"
"#
    )
}

/// Both tables with their source columns copied.
pub fn spec() -> String {
    inbox_spec(
        40,
        3,
        r#"is_unread = { from = "is_unread", cast = "bool" }"#,
        r#"message_id = { uuid5 = ["thread_id", "msg_no"], namespace = "messages" }
thread_id = "thread_id"
msg_no = "msg_no"
sender_id = "sender_id"
body = "body""#,
    )
}

/// A source on `kind` holding the inbox, filled, and an empty PostgreSQL
/// target: both databases, the source, and the last inbox id.
pub async fn filled_inbox(kind: DbKind) -> anyhow::Result<(TestDb, TestDb, Side, i64)> {
    let source_db = TestDb::new(kind).await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source.exec(&create_inbox(kind)).await?;
    let last_id = fill_inbox(&source).await?;
    Ok((source_db, target_db, source, last_id))
}

fn create_inbox(kind: DbKind) -> String {
    let body = if kind == DbKind::MariaDb {
        "VARCHAR(200)"
    } else {
        "TEXT"
    };
    format!(
        "CREATE TABLE inbox (member_id BIGINT NOT NULL, id BIGINT NOT NULL, thread_id BIGINT NOT NULL, \
         msg_no BIGINT NOT NULL, sender_id BIGINT NOT NULL, body {body} NOT NULL, \
         is_unread SMALLINT NOT NULL, PRIMARY KEY (member_id, id))"
    )
}

/// Every message of every thread, copied to 1–4 members.
async fn fill_inbox(source: &Side) -> anyhow::Result<i64> {
    let mut values = Vec::new();
    let mut id = 0;
    for thread in 1..=THREADS {
        for msg in 1..=MESSAGES_PER_THREAD {
            let copies = 1 + (thread * 7 + msg) % 4;
            for c in 0..copies {
                id += 1;
                let member = (thread + msg + c * 5) % MEMBERS;
                values.push(format!(
                    "({member}, {id}, {thread}, {msg}, {}, 'message {thread}-{msg}', {})",
                    thread % 5,
                    (id % 2)
                ));
            }
        }
    }
    for chunk in values.chunks(400) {
        source
            .exec(&format!("INSERT INTO inbox VALUES {}", chunk.join(", ")))
            .await?;
    }
    Ok(id)
}

/// Inserts copies and messages, updates one copy and every copy of a
/// message, deletes one copy and every copy (the last one with them).
fn spawn_writer(
    source: Arc<Side>,
    running: Arc<AtomicBool>,
    mut next_id: i64,
) -> tokio::task::JoinHandle<anyhow::Result<[u64; 6]>> {
    tokio::spawn(async move {
        let mut done = [0u64; 6];
        let mut new_msg = MESSAGES_PER_THREAD;
        while running.load(Ordering::Relaxed) {
            let (op, member, thread, msg, word) = {
                let mut rng = rand::thread_rng();
                (
                    rng.gen_range(0..6usize),
                    rng.gen_range(0..MEMBERS),
                    rng.gen_range(1..=THREADS),
                    rng.gen_range(1..=new_msg),
                    rng.gen_range(0..1_000_000),
                )
            };
            // The first copy (the one that writes the shared row) or the last.
            let dir = if word % 2 == 0 { "ASC" } else { "DESC" };
            let one_copy = format!(
                "(SELECT member_id, id FROM (SELECT member_id, id FROM inbox WHERE thread_id = {thread} \
                 AND msg_no = {msg} ORDER BY member_id {dir}, id {dir} LIMIT 1) one)"
            );
            let sql = match op {
                0 => {
                    next_id += 1;
                    if word % 3 == 0 {
                        new_msg += 1;
                    }
                    let m = if word % 3 == 0 { new_msg } else { msg };
                    // A member holds one copy of a message.
                    format!(
                        "INSERT INTO inbox SELECT {member}, {next_id}, {thread}, {m}, {}, \
                         'message {thread}-{m}', 1 FROM (SELECT 1 AS x) one WHERE NOT EXISTS \
                         (SELECT 1 FROM inbox WHERE member_id = {member} AND thread_id = {thread} \
                         AND msg_no = {m})",
                        thread % 5
                    )
                }
                1 => format!(
                    "UPDATE inbox SET body = 'edited one {word}', is_unread = 0 \
                     WHERE (member_id, id) IN {one_copy}"
                ),
                2 => format!(
                    "UPDATE inbox SET body = 'edited all {word}' WHERE thread_id = {thread} \
                     AND msg_no = {msg}"
                ),
                3 | 4 => format!("DELETE FROM inbox WHERE (member_id, id) IN {one_copy}"),
                _ => format!("DELETE FROM inbox WHERE thread_id = {thread} AND msg_no = {msg}"),
            };
            source.run(&sql).await?;
            done[op] += 1;
            tokio::time::sleep(Duration::from_millis(4)).await;
        }
        Ok(done)
    })
}

/// The rows of both target tables, as text, sorted.
pub async fn target_rows(target: &Side) -> anyhow::Result<(Vec<String>, Vec<String>)> {
    let personal = target
        .strings(
            "SELECT CAST(member_id AS TEXT) || '|' || CAST(message_id AS TEXT) || '|' || \
             CAST(is_unread AS TEXT) FROM personal ORDER BY 1",
        )
        .await?;
    let messages = target
        .strings(
            "SELECT CAST(message_id AS TEXT) || '|' || CAST(thread_id AS TEXT) || '|' || \
             CAST(msg_no AS TEXT) || '|' || CAST(sender_id AS TEXT) || '|' || body \
             FROM messages ORDER BY 1",
        )
        .await?;
    Ok((personal, messages))
}

fn differences(want: &[String], got: &[String]) -> Vec<String> {
    let w: BTreeSet<&String> = want.iter().collect();
    let g: BTreeSet<&String> = got.iter().collect();
    let mut out: Vec<String> = w.difference(&g).map(|r| format!("missing {r}")).collect();
    out.extend(g.difference(&w).map(|r| format!("extra {r}")));
    out
}

async fn shared_rows_under_live_changes(source_kind: DbKind) -> anyhow::Result<()> {
    // Arrange: the inbox, capture installed, the relay running at 100%, a
    // writer running.
    let (source_db, target_db, source, last_id) = filled_inbox(source_kind).await?;
    let source = Arc::new(source);
    let (link, _, _) = connect_captured(&spec_text(&source_db, &target_db, &spec())).await?;
    let link = Arc::new(link);
    let running = Arc::new(AtomicBool::new(true));
    let writer = spawn_writer(source.clone(), running.clone(), last_id);
    let (_ramp_tx, ramp_rx) = watch::channel(RelayRamp::full());
    let cancel = CancellationToken::new();
    let mut opts = RelayOptions::new(ramp_rx);
    opts.stream.batch_changes = 50;
    let seen = Arc::new(Seen::default());
    let relay = seen.spawn_relay(&link, opts, &cancel);

    // Act: load every bucket of both tables under the writer, catch every
    // bucket up, stop the writer, let the relay reach the head.
    let mut buckets = Vec::new();
    for table in ["personal", "messages"] {
        let plan = link.plan_or_resume(table, None).await?;
        for b in &plan.buckets {
            load_bucket(&link, b, &RunControl::new().with_rate(Some(2000))).await?;
        }
        buckets.extend(plan.buckets);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let all = catch_up_all(&link, &CatchUpOptions::default(), 3, &RunControl::new()).await?;
    assert!(all.skipped.is_empty(), "{:?}", all.skipped);
    assert_eq!(
        all.buckets.len(),
        buckets.len(),
        "every bucket of both tables"
    );
    let caught_up = all.buckets;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.store(false, Ordering::Relaxed);
    let done = writer.await??;
    seen.wait_for_position(head(&source).await?).await?;
    cancel.cancel();
    relay.await??;

    // Assert: equal to a fresh bulk load of the final source.
    let fresh_db = TestDb::postgres().await?;
    load_all(
        &spec_text(&source_db, &fresh_db, &spec()),
        &TransformerRegistry::new(),
    )
    .await?;
    let (want_personal, want_messages) = target_rows(&Side::open(&fresh_db).await?).await?;
    let (got_personal, got_messages) = target_rows(&Side::open(&target_db).await?).await?;
    assert!(
        done.iter().all(|&n| n > 3),
        "every kind of write ran: {done:?}"
    );
    assert!(
        want_messages.len() > 100 && want_personal.len() > want_messages.len(),
        "{} messages, {} personal rows",
        want_messages.len(),
        want_personal.len()
    );
    let d = differences(&want_messages, &got_messages);
    assert!(
        d.is_empty(),
        "messages: {} differences: {:?}",
        d.len(),
        &d[..d.len().min(10)]
    );
    let d = differences(&want_personal, &got_personal);
    assert!(
        d.is_empty(),
        "personal: {} differences: {:?}",
        d.len(),
        &d[..d.len().min(10)]
    );
    for c in &caught_up {
        assert_eq!(c.status, CatchUpStatus::CaughtUp);
    }
    Ok(())
}

#[tokio::test]
async fn mariadb_inbox_shared_messages_stay_right_under_live_changes() -> anyhow::Result<()> {
    shared_rows_under_live_changes(DbKind::MariaDb).await
}

#[tokio::test]
async fn postgres_inbox_shared_messages_stay_right_under_live_changes() -> anyhow::Result<()> {
    shared_rows_under_live_changes(DbKind::Postgres).await
}

/// Runs `sql` in the source, then the relay (at 100%, from its stored
/// position or the start of the changelog) up to the head.
pub async fn relay_step(link: &Link, source: &Side, sql: &str) -> anyhow::Result<()> {
    source.run(sql).await?;
    let (_tx, rx) = watch::channel(RelayRamp::full());
    let mut opts = RelayOptions::new(rx);
    opts.start = Some(tern_engine::Position::default());
    opts.stop_at_head = true;
    run_relay(link, opts, &RunControl::new()).await?;
    Ok(())
}

#[tokio::test]
async fn deleting_the_copy_that_wrote_a_shared_row_keeps_the_row_for_the_others()
-> anyhow::Result<()> {
    // Arrange: message 1-1 has copies for members 1, 2 and 3; member 1's
    // copy (the first) wrote the shared row.
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source.exec(&create_inbox(DbKind::Postgres)).await?;
    source
        .exec(
            "INSERT INTO inbox VALUES (1, 1, 1, 1, 7, 'first copy', 1), \
             (2, 2, 1, 1, 7, 'second copy', 1), (3, 3, 1, 1, 7, 'third copy', 0)",
        )
        .await?;
    let text = spec_text(&source_db, &target_db, &spec());
    let (link, _, _) = connect_captured(&text).await?;
    load_all(&text, &TransformerRegistry::new()).await?;
    let target = Side::open(&target_db).await?;
    let bodies = || target.strings("SELECT body FROM messages");
    assert_eq!(bodies().await?, vec!["first copy".to_string()]);

    // Act + Assert: each step through the relay from where it stopped.
    let relay_once = |sql: &'static str| relay_step(&link, &source, sql);
    relay_once("DELETE FROM inbox WHERE member_id = 1").await?;
    assert_eq!(
        bodies().await?,
        vec!["second copy".to_string()],
        "the next copy keeps the shared row"
    );
    assert_eq!(target.count("personal").await?, 2);
    relay_once("UPDATE inbox SET body = 'third, edited' WHERE member_id = 3").await?;
    assert_eq!(bodies().await?, vec!["second copy".to_string()]);
    relay_once("INSERT INTO inbox VALUES (0, 9, 1, 1, 7, 'new first copy', 1)").await?;
    assert_eq!(bodies().await?, vec!["new first copy".to_string()]);
    relay_once("DELETE FROM inbox WHERE member_id IN (0, 2)").await?;
    assert_eq!(bodies().await?, vec!["third, edited".to_string()]);
    relay_once("DELETE FROM inbox WHERE member_id = 3").await?;
    assert_eq!(
        target.count("messages").await?,
        0,
        "the last copy takes the row"
    );
    assert_eq!(target.count("personal").await?, 0);
    Ok(())
}
