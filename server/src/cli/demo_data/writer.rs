//! The demo's live writer: about 20 changes a second — new contacts and
//! messages, updated emails, read messages, deleted contacts — like the live
//! applications a migration must not stop.
//!
//! It honours the write primary as a client must (issue 17): before each
//! change it asks where the key's writes go (the bucket column, `member_id`,
//! is the key). A key whose bucket is switched is written to the new store,
//! in the new store's shape: the spec's own transform makes the target row
//! from the source-shaped row, so the writer holds no SQL per table, and the
//! reverse relay carries the change back to the old store. A held key waits
//! and asks again. After each round of writes the writer says which routing
//! version it applied, as `tern-client` does, so that a switch waits for it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::{Executor, SqlitePool};
use tern_control::Store;
use tern_control::switch::{Primary, WriteRouting};
use tern_engine::{Link, VERSION_COLUMN, Value};
use tokio_util::sync::CancellationToken;

use super::{MEMBERS, Size, pool};

/// How long a held key waits for its switch to end before the change is
/// dropped (a switch holds for well under a second).
const HOLD_WAIT: Duration = Duration::from_secs(10);

/// Where the writer's writes go, and how it says which routing it applied.
#[async_trait]
pub trait WriteRouter: Send + Sync {
    /// The write routing now.
    async fn routing(&self) -> anyhow::Result<WriteRouting>;
    /// Every write made under a routing older than `version` has committed.
    async fn applied(&self, version: i64) -> anyhow::Result<()>;
}

/// The write routing of a migration in Tern's own store, applied as one of
/// its clients (the demo runs the server in the same process).
pub struct StoreRouter {
    pub store: Store,
    pub migration_id: i64,
    pub client_id: i64,
}

#[async_trait]
impl WriteRouter for StoreRouter {
    async fn routing(&self) -> anyhow::Result<WriteRouting> {
        Ok(self.store.write_routing(self.migration_id).await?)
    }

    async fn applied(&self, version: i64) -> anyhow::Result<()> {
        Ok(self
            .store
            .ack_write_routing(self.client_id, version)
            .await?)
    }
}

/// What the writer needs to honour the write primary: the routing, and the
/// migration's link (its transform, and the new store to write).
#[derive(Clone)]
pub struct Routed {
    pub router: Arc<dyn WriteRouter>,
    pub link: Arc<Link>,
}

/// What the writer did, when it stops.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriterTally {
    /// Changes written to the old store (the source).
    pub old: u64,
    /// Changes written to the new store (the target), for switched keys.
    pub new: u64,
    /// Changes that waited for a hold to end.
    pub held: u64,
    /// Changes dropped: a hold that did not end in time, or a failed write.
    pub dropped: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Insert,
    Update,
    Delete,
}

/// One change in the old store's shape: the columns it sets (an insert's
/// whole row), and the statement that makes it in the old store.
struct Change {
    table: &'static str,
    op: Op,
    id: i64,
    set: Vec<(&'static str, Value)>,
    sql: String,
}

/// The changes of the writer's `n`th round, `now` the time they carry.
fn changes(n: i64, size: Size, now: &str) -> Vec<Change> {
    let Size { contacts, messages } = size;
    let text = |s: String| Value::Text(s);
    let id = contacts + n;
    let member = 1 + (n * 13) % MEMBERS;
    let email = format!("New.Person{id}@Example.com");
    let changed = 1 + (n * 7919) % contacts;
    let gone = 1 + (n * 104_729) % contacts;
    let (message, message_member, conversation) =
        (messages + n, 1 + (n * 17) % MEMBERS, 1 + n % 40_000);
    let read = 1 + (n * 31) % messages;
    vec![
        Change {
            table: "contacts",
            op: Op::Insert,
            id,
            set: vec![
                ("id", Value::Int(id)),
                ("member_id", Value::Int(member)),
                ("email", text(email.clone())),
                ("full_name", text(format!("New person {id}"))),
                ("source", text("mobile".into())),
                ("updated_at", text(now.into())),
            ],
            sql: format!(
                "INSERT INTO contacts (id, member_id, email, full_name, source, updated_at)
                 VALUES ({id}, {member}, '{email}', 'New person {id}', 'mobile', '{now}')"
            ),
        },
        Change {
            table: "contacts",
            op: Op::Update,
            id: changed,
            set: vec![
                ("email", text(format!("changed{n}@example.com"))),
                ("updated_at", text(now.into())),
            ],
            sql: format!(
                "UPDATE contacts SET email = 'changed{n}@example.com', updated_at = '{now}' WHERE id = {changed}"
            ),
        },
        Change {
            table: "contacts",
            op: Op::Delete,
            id: gone,
            set: Vec::new(),
            sql: format!("DELETE FROM contacts WHERE id = {gone}"),
        },
        Change {
            table: "messages",
            op: Op::Insert,
            id: message,
            set: vec![
                ("id", Value::Int(message)),
                ("member_id", Value::Int(message_member)),
                ("conversation_id", Value::Int(conversation)),
                ("sender_id", Value::Int(1)),
                ("body", text(format!("live message {n}"))),
                ("is_unread", Value::Int(1)),
                ("created_at", text(now.into())),
            ],
            sql: format!(
                "INSERT INTO messages (id, member_id, conversation_id, sender_id, body, is_unread, created_at)
                 VALUES ({message}, {message_member}, {conversation}, 1, 'live message {n}', 1, '{now}')"
            ),
        },
        Change {
            table: "messages",
            op: Op::Update,
            id: read,
            set: vec![("is_unread", Value::Int(0))],
            sql: format!("UPDATE messages SET is_unread = 0 WHERE id = {read}"),
        },
    ]
}

/// Writes to the source until `stop`, about 20 changes a second; with
/// `routed`, each change goes where the write primary of its key says.
/// Answers what it wrote when it stops.
pub fn start_writer(
    path: &std::path::Path,
    size: Size,
    stop: CancellationToken,
    routed: Option<Routed>,
) -> tokio::task::JoinHandle<WriterTally> {
    let path = path.to_path_buf();
    tokio::spawn(async move {
        let mut tally = WriterTally::default();
        let db = match pool(&path).await {
            Ok(db) => db,
            Err(e) => {
                tracing::warn!(error = %e, "the demo writer cannot start");
                return tally;
            }
        };
        let writer = Writer { db, routed };
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut n: i64 = 0;
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            n += 1;
            if let Err(e) = writer.round(n, size, &mut tally).await {
                tracing::debug!(error = %e, "a round of the demo writer failed");
            }
        }
        writer.db.close().await;
        tally
    })
}

struct Writer {
    db: SqlitePool,
    routed: Option<Routed>,
}

impl Writer {
    /// One round: every change of round `n`, each where its key's writes go;
    /// then the routing version they were written under is acknowledged.
    async fn round(&self, n: i64, size: Size, tally: &mut WriterTally) -> anyhow::Result<()> {
        let now: String = sqlx::query_scalar("SELECT datetime('now')")
            .fetch_one(&self.db)
            .await?;
        let Some(routed) = &self.routed else {
            for c in changes(n, size, &now) {
                self.on_old(&c, tally).await;
            }
            return Ok(());
        };
        let mut routing = routed.router.routing().await?;
        for c in changes(n, size, &now) {
            // The row as the old store holds it: the key's bucket column, and
            // the columns an update leaves alone. The reverse relay keeps the
            // old store complete, and neither changes once a row exists.
            let row = match c.op {
                Op::Insert => None,
                Op::Update | Op::Delete => match self.old_row(&routed.link, &c).await? {
                    Some(row) => Some(row),
                    None => continue, // deleted already
                },
            };
            let member = match row.as_ref().and_then(|r| r.get("member_id")) {
                Some(v) => v.clone(),
                None => c
                    .set
                    .iter()
                    .find(|(k, _)| *k == "member_id")
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Value::Null),
            };
            let key = match &member {
                Value::Int(m) => m.to_string(),
                other => format!("{other:?}"),
            };
            let primary = self
                .primary(routed, &mut routing, c.table, &key, tally)
                .await?;
            match primary {
                Some(Primary::New) => match self.on_new(&routed.link, &c, row).await {
                    Ok(()) => tally.new += 1,
                    Err(e) => {
                        tally.dropped += 1;
                        tracing::debug!(error = %e, "demo writer: a write to the new store failed");
                    }
                },
                Some(_) => self.on_old(&c, tally).await,
                None => tally.dropped += 1,
            }
        }
        // Every write under `routing` has committed (they run one by one).
        routed.router.applied(routing.version).await
    }

    /// Where `key` of `table` is written now; a hold waits (acknowledging
    /// each routing it reads, so the switch that holds can go on) and asks
    /// again. `None`: the hold did not end in time.
    async fn primary(
        &self,
        routed: &Routed,
        routing: &mut WriteRouting,
        table: &str,
        key: &str,
        tally: &mut WriterTally,
    ) -> anyhow::Result<Option<Primary>> {
        let deadline = Instant::now() + HOLD_WAIT;
        let mut waited = false;
        loop {
            let primary = routing.primary(Some(table), key).unwrap_or(Primary::Old);
            if primary != Primary::Hold {
                if waited {
                    tally.held += 1;
                }
                return Ok(Some(primary));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            waited = true;
            // Nothing is in flight here: the writes before this one committed.
            routed.router.applied(routing.version).await?;
            tokio::time::sleep(Duration::from_millis(50)).await;
            *routing = routed.router.routing().await?;
        }
    }

    async fn on_old(&self, c: &Change, tally: &mut WriterTally) {
        match self.db.execute(c.sql.as_str()).await {
            Ok(_) => tally.old += 1,
            Err(e) => {
                tally.dropped += 1;
                tracing::debug!(error = %e, "demo writer statement failed");
            }
        }
    }

    /// The source row of a change by its id, column → value.
    async fn old_row(
        &self,
        link: &Link,
        c: &Change,
    ) -> anyhow::Result<Option<HashMap<String, Value>>> {
        let pipeline = link.pipeline(c.table)?;
        let source = link.source();
        let d = source.dialect();
        let cols: Vec<String> = pipeline
            .source_columns()
            .iter()
            .map(|c| d.quote(c))
            .collect();
        let sql = format!(
            "SELECT {} FROM {} WHERE {} = {}",
            cols.join(", "),
            d.quote(c.table),
            d.quote("id"),
            d.placeholder(1)
        );
        let (names, rows) = source
            .fetch(&sql, &[Value::Int(c.id)], "read a row for the demo writer")
            .await?;
        Ok(rows
            .into_iter()
            .next()
            .map(|row| names.into_iter().zip(row).collect()))
    }

    /// Makes the change in the new store, as an application would: the
    /// target row is the spec's transform of the changed source row.
    async fn on_new(
        &self,
        link: &Link,
        c: &Change,
        row: Option<HashMap<String, Value>>,
    ) -> anyhow::Result<()> {
        let pipeline = link.pipeline(c.table)?;
        let mut row = row.unwrap_or_default();
        for (k, v) in &c.set {
            row.insert((*k).to_string(), v.clone());
        }
        let values: Vec<Value> = pipeline
            .source_columns()
            .iter()
            .map(|col| row.get(col).cloned().unwrap_or(Value::Null))
            .collect();
        let out = pipeline.transform(vec![values]).await?;
        let rows = out
            .table(c.table)
            .with_context(|| format!("the transform of {} gave no {0} row", c.table))?;
        let target_row = rows.rows.first().context("the transform gave no row")?;
        let shape = &rows.shape;
        let target = link.target();
        let d = target.dialect();
        let q = |i: usize| d.quote(&shape.columns[i]);
        let key: Vec<usize> = shape.key.clone();
        let rest: Vec<usize> = (0..shape.columns.len())
            .filter(|i| !key.contains(i))
            .collect();
        // `key = $n AND …`, its placeholders numbered after the first `after`.
        let key_matches = |after: usize| -> String {
            let wheres: Vec<String> = key
                .iter()
                .enumerate()
                .map(|(n, &i)| format!("{} = {}", q(i), d.placeholder(after + n + 1)))
                .collect();
            wheres.join(" AND ")
        };
        let (sql, params): (String, Vec<Value>) = match c.op {
            Op::Insert => {
                let cols: Vec<String> = (0..shape.columns.len()).map(q).collect();
                let marks: Vec<String> = (1..=cols.len()).map(|i| d.placeholder(i)).collect();
                (
                    format!(
                        "INSERT INTO {} ({}, {}) VALUES ({}, 0)",
                        d.quote(c.table),
                        cols.join(", "),
                        d.quote(VERSION_COLUMN),
                        marks.join(", ")
                    ),
                    target_row.clone(),
                )
            }
            Op::Update => {
                let sets: Vec<String> = rest
                    .iter()
                    .enumerate()
                    .map(|(n, &i)| format!("{} = {}", q(i), d.placeholder(n + 1)))
                    .collect();
                (
                    format!(
                        "UPDATE {} SET {} WHERE {}",
                        d.quote(c.table),
                        sets.join(", "),
                        key_matches(rest.len())
                    ),
                    rest.iter()
                        .chain(&key)
                        .map(|&i| target_row[i].clone())
                        .collect(),
                )
            }
            Op::Delete => (
                format!("DELETE FROM {} WHERE {}", d.quote(c.table), key_matches(0)),
                key.iter().map(|&i| target_row[i].clone()).collect(),
            ),
        };
        target
            .execute(&sql, &params, "write the new store for the demo writer")
            .await?;
        Ok(())
    }
}
