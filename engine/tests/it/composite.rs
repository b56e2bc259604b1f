//! A composite record (a SELECT joining two legacy tables), a chain of two
//! transformers and a deduper, as in seed 001's messaging bootstrap: exact
//! expected output in both target tables.

use sqlx::Row;
use tern_engine::{Emitted, Record, TransformerRegistry, Value};
use tern_testkit::TestDb;
use uuid::Uuid;

use crate::support::{Side, load_all, spec_text};

pub const LEGACY_INBOX: &str = "
CREATE TABLE threads (id BIGINT PRIMARY KEY, subject VARCHAR(200) NOT NULL);
CREATE TABLE inbox (member_id BIGINT NOT NULL, id BIGINT NOT NULL, msg_id BIGINT NOT NULL,
  thread_id BIGINT NOT NULL, sender_id BIGINT NOT NULL, body TEXT NOT NULL,
  is_unread TINYINT(1) NOT NULL, PRIMARY KEY (member_id, id));
INSERT INTO threads VALUES (1, 'Lunch?'), (2, 'Offer');
INSERT INTO inbox VALUES
  (1, 1, 100, 1, 1, 'Hi Bob', 0),
  (2, 1, 100, 1, 1, 'Hi Bob', 1),
  (1, 2, 101, 1, 2, 'Sure, noon', 1),
  (2, 2, 101, 1, 2, 'Sure, noon', 0),
  (3, 1, 102, 2, 3, 'my password is hunter2', 1),
  (1, 3, 102, 2, 3, 'my password is hunter2', 1)
";

pub fn body(dedupe: bool) -> String {
    let dedupe = if dedupe {
        "[tables.dedupe]\nkey = [\"message_id\"]\n"
    } else {
        ""
    };
    format!(
        r#"
chunk_rows = 100

[[tables]]
name = "mailbox"
key = ["member_id", "message_id"]
buckets = 1
transformers = ["shared_content", "redact_secrets"]

[tables.source]
query = """
SELECT i.member_id, i.id, i.msg_id, i.thread_id, i.sender_id, i.body, i.is_unread, t.subject
FROM inbox i JOIN threads t ON t.id = i.thread_id
"""
key = ["member_id", "id"]

[[tables.source.tracks]]
table = "inbox"
key = ["member_id", "id"]

[[tables.source.tracks]]
table = "threads"
query = "SELECT member_id, id FROM inbox WHERE thread_id = :id"

[tables.columns]
member_id = "member_id"
message_id = {{ uuid5 = ["msg_id"], namespace = "messages" }}
conversation_id = {{ uuid5 = ["thread_id"], namespace = "conversations" }}
is_unread = {{ from = "is_unread", cast = "bool" }}

[[tables]]
name = "messages"
key = ["message_id"]
{dedupe}
[tables.columns]
message_id = {{ cast = "uuid" }}
conversation_id = {{ cast = "uuid" }}
sender_id = {{ cast = "int" }}
body = {{ cast = "text" }}
subject = {{ cast = "text" }}
"#
    )
}

/// Emits the shared content of a message once per copy (the deduper keeps one).
fn shared_content(record: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
    let mailbox = out.rows.first().ok_or("no mailbox row")?;
    let message_id = mailbox.get("message_id").cloned().ok_or("no message_id")?;
    let conversation_id = mailbox
        .get("conversation_id")
        .cloned()
        .ok_or("no conversation_id")?;
    let mut row = out.new_row("messages")?;
    row.set("message_id", message_id)?;
    row.set("conversation_id", conversation_id)?;
    for c in ["sender_id", "body", "subject"] {
        row.set(c, record.get(c).cloned().ok_or(format!("no {c}"))?)?;
    }
    out.push(row);
    Ok(())
}

/// Changes the previous transformer's output: secrets never reach the target.
fn redact_secrets(_: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
    if let Some(row) = out.first_mut("messages")
        && matches!(row.get("body"), Some(Value::Text(b)) if b.contains("password"))
    {
        row.set("body", Value::Text("[redacted]".into()))?;
    }
    Ok(())
}

pub fn registry() -> TransformerRegistry {
    let mut r = TransformerRegistry::new();
    r.register("shared_content", shared_content);
    r.register("redact_secrets", redact_secrets);
    r
}

pub fn msg(id: i64) -> Uuid {
    Uuid::new_v5(
        &Uuid::new_v5(&Uuid::NAMESPACE_URL, b"messages"),
        id.to_string().as_bytes(),
    )
}

pub fn conv(id: i64) -> Uuid {
    Uuid::new_v5(
        &Uuid::new_v5(&Uuid::NAMESPACE_URL, b"conversations"),
        id.to_string().as_bytes(),
    )
}

pub async fn mailbox(p: &sqlx::PgPool) -> anyhow::Result<Vec<(i64, Uuid, Uuid, bool)>> {
    let mut rows: Vec<(i64, Uuid, Uuid, bool)> =
        sqlx::query_as("SELECT member_id, message_id, conversation_id, is_unread FROM mailbox")
            .fetch_all(p)
            .await?;
    rows.sort();
    Ok(rows)
}

pub async fn messages(p: &sqlx::PgPool) -> anyhow::Result<Vec<(Uuid, Uuid, i64, String, String)>> {
    let mut rows = Vec::new();
    for r in
        sqlx::query("SELECT message_id, conversation_id, sender_id, body, subject FROM messages")
            .fetch_all(p)
            .await?
    {
        rows.push((
            r.try_get("message_id")?,
            r.try_get("conversation_id")?,
            r.try_get("sender_id")?,
            r.try_get("body")?,
            r.try_get("subject")?,
        ));
    }
    rows.sort();
    Ok(rows)
}

#[tokio::test]
async fn a_join_two_transformers_and_a_deduper_give_exactly_the_normalized_records()
-> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    Side::open(&source_db).await?.exec(LEGACY_INBOX).await?;

    // Act
    let (_, reports) =
        load_all(&spec_text(&source_db, &target_db, &body(true)), &registry()).await?;

    // Assert
    assert_eq!(reports.iter().map(|r| r.rows_read).sum::<u64>(), 6);
    assert_eq!(
        reports.iter().map(|r| r.rows_written).sum::<u64>(),
        6 + 3,
        "six copies, three shared messages"
    );
    let target = Side::open(&target_db).await?;
    let p = target.pg()?;
    let mut want_mailbox = vec![
        (1, msg(100), conv(1), false),
        (2, msg(100), conv(1), true),
        (1, msg(101), conv(1), true),
        (2, msg(101), conv(1), false),
        (3, msg(102), conv(2), true),
        (1, msg(102), conv(2), true),
    ];
    want_mailbox.sort();
    assert_eq!(mailbox(p).await?, want_mailbox);
    let mut want_messages = vec![
        (
            msg(100),
            conv(1),
            1,
            "Hi Bob".to_string(),
            "Lunch?".to_string(),
        ),
        (
            msg(101),
            conv(1),
            2,
            "Sure, noon".to_string(),
            "Lunch?".to_string(),
        ),
        (
            msg(102),
            conv(2),
            3,
            "[redacted]".to_string(),
            "Offer".to_string(),
        ),
    ];
    want_messages.sort();
    assert_eq!(messages(p).await?, want_messages);
    Ok(())
}

#[tokio::test]
async fn without_the_deduper_the_repeated_content_is_a_key_error_naming_table_and_key()
-> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    Side::open(&source_db).await?.exec(LEGACY_INBOX).await?;

    // Act
    let err = load_all(
        &spec_text(&source_db, &target_db, &body(false)),
        &registry(),
    )
    .await
    .expect_err("duplicate target keys must fail")
    .to_string();

    // Assert
    assert!(err.starts_with("table messages row key ("), "{err}");
    assert!(err.contains("the key is not unique"), "{err}");
    let target = Side::open(&target_db).await?;
    assert_eq!(
        target.count("messages").await?,
        0,
        "nothing of the failed chunk is written"
    );
    Ok(())
}
