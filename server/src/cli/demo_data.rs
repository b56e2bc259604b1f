//! The demo's databases: a SQLite source with contacts and messages (old
//! members own far more rows than new ones, as in the seeds), an empty SQLite
//! target, the spec that maps one to the other, and a live writer that keeps
//! inserting, updating and deleting rows while the demo runs, in the store
//! each key's write primary names ([`writer`]).

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use sqlx::{Executor, SqlitePool};

mod writer;

pub use writer::{Routed, StoreRouter, start_writer};

/// How many contacts and messages a demo source starts with.
#[derive(Debug, Clone, Copy)]
pub struct Size {
    pub contacts: i64,
    pub messages: i64,
}

/// The size of `tern demo`'s source.
pub const DEMO: Size = Size {
    contacts: 150_000,
    messages: 250_000,
};
/// Members 1..=MEMBERS; low ids (old members) own the most rows.
const MEMBERS: i64 = 20_000;

async fn pool(path: &Path) -> anyhow::Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        // The journal mode is left as the file has it: turning a file that
        // Tern's engine writes (the target) to WAL needs it alone, and
        // failed at once while a relay wrote ("database is locked").
        .busy_timeout(Duration::from_secs(10));
    SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .with_context(|| format!("cannot open the demo database {}", path.display()))
}

/// Creates the source database with its rows (a second or two: the rows are
/// generated inside SQLite).
pub async fn create_source(path: &Path, size: Size) -> anyhow::Result<()> {
    let Size { contacts, messages } = size;
    let db = pool(path).await?;
    // x² spreads members so that density falls off with the member id: the
    // first members own many rows, the last few.
    let member =
        |i: &str| format!("1 + (({i} % 10007) * ({i} % 10007)) * {MEMBERS} / (10007 * 10007)");
    let script = format!(
        "CREATE TABLE contacts (
             id INTEGER PRIMARY KEY,
             member_id INTEGER NOT NULL,
             email TEXT NOT NULL,
             full_name TEXT,
             source TEXT NOT NULL,
             updated_at TEXT NOT NULL
         );
         CREATE INDEX contacts_by_member ON contacts (member_id, id);
         CREATE TABLE messages (
             id INTEGER PRIMARY KEY,
             member_id INTEGER NOT NULL,
             conversation_id INTEGER NOT NULL,
             sender_id INTEGER NOT NULL,
             body TEXT NOT NULL,
             is_unread INTEGER NOT NULL,
             created_at TEXT NOT NULL
         );
         CREATE INDEX messages_by_member ON messages (member_id, id);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {contacts})
         INSERT INTO contacts
         SELECT i, {cm}, '  Person.' || i || '@Example.COM ', 'Person ' || i,
                CASE i % 3 WHEN 0 THEN 'address-book' WHEN 1 THEN 'calendar' ELSE 'mobile' END,
                datetime('2018-01-01', '+' || (i % 2000) || ' days')
         FROM n;
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {messages})
         INSERT INTO messages
         SELECT i, {mm}, 1 + i % 40000, 1 + (i * 31) % {MEMBERS},
                'Message ' || i || ': ' || substr('Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore et dolore magna aliqua.', 1, 40 + i % 80),
                i % 4 = 0, datetime('2019-06-01', '+' || (i % 1500) || ' days')
         FROM n;",
        cm = member("i"),
        mm = member("(i * 7)"),
    );
    // WAL: the live writer and Tern's readers work on the source at once.
    db.execute("PRAGMA journal_mode = WAL")
        .await
        .context("cannot put the demo source in WAL mode")?;
    db.execute(script.as_str())
        .await
        .context("cannot fill the demo source")?;
    db.close().await;
    Ok(())
}

/// The demo migration's spec, for a source and target file.
pub fn spec(source: &Path, target: &Path) -> String {
    format!(
        r#"# The demo migration: contacts and messages, from the old store to the new.
chunk_rows = 5000

[source]
url = "sqlite://{source}"

[target]
url = "sqlite://{target}?mode=rwc"

[[tables]]
name = "contacts"
key = ["id"]
buckets = 8

[tables.source]
table = "contacts"
key = ["member_id", "id"]
bucket = "member_id"

[tables.columns]
id = "id"
member_id = "member_id"
email = {{ from = "email", trim = true, lower = true }}
full_name = "full_name"
source = "source"
updated_at = "updated_at"

# How a row written to the new store after a switch goes back to the old one
# (the reverse relay): the email stays as the new store holds it, trimmed and
# lower-cased. Rows are upserted by the old table's primary key.
[tables.reverse]
key = ["id"]

[tables.reverse.columns]
id = "id"
member_id = "member_id"
email = "email"
full_name = "full_name"
source = "source"
updated_at = "updated_at"

[[tables]]
name = "messages"
key = ["message_id"]
buckets = 8

[tables.source]
table = "messages"
key = ["member_id", "id"]
bucket = "member_id"

[tables.columns]
message_id = {{ uuid5 = ["member_id", "id"], namespace = "tern-demo/messages" }}
conversation_id = {{ uuid5 = ["conversation_id"], namespace = "tern-demo/conversations" }}
legacy_conversation_id = "conversation_id"
legacy_id = "id"
member_id = "member_id"
sender_id = "sender_id"
body = {{ from = "body", trim = true }}
unread = {{ from = "is_unread", cast = "bool" }}
created_at = "created_at"

# UUIDv5 keys do not run backwards: the legacy ids give the old row back.
[tables.reverse]
key = ["id"]

[tables.reverse.columns]
id = "legacy_id"
member_id = "member_id"
conversation_id = "legacy_conversation_id"
sender_id = "sender_id"
body = "body"
is_unread = "unread"
created_at = "created_at"
"#,
        source = source.display(),
        target = target.display(),
    )
}

#[cfg(test)]
mod tests;
