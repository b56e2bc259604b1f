//! The path the relay reuses: map a source change to keys through the spec's
//! tracks, re-read those keys through the join and transformers, and write
//! them version-guarded.

use tern_engine::{Record, Value};
use tern_testkit::TestDb;

use crate::composite::{LEGACY_INBOX, body, conv, mailbox, messages, msg, registry};
use crate::support::{Side, load_all, spec_text};

#[tokio::test]
async fn a_change_in_a_joined_table_reloads_every_record_that_reads_it() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    source.exec(LEGACY_INBOX).await?;
    let (link, _) = load_all(&spec_text(&source_db, &target_db, &body(true)), &registry()).await?;
    source
        .exec("UPDATE threads SET subject = 'Lunch!' WHERE id = 1; UPDATE inbox SET is_unread = 0 WHERE member_id = 2 AND id = 1; DELETE FROM inbox WHERE member_id = 3 AND id = 1")
        .await?;

    // Act
    let cols = vec!["id".to_string(), "subject".to_string()];
    let vals = vec![Value::Int(1), Value::Text("Lunch!".into())];
    let changed = Record {
        columns: &cols,
        values: &vals,
    };
    let mut keys =
        tern_engine::apply::keys_for_change(&link, "mailbox", "threads", &changed).await?;
    keys.sort_by(|a, b| format!("{a:?}").cmp(&format!("{b:?}")));
    keys.push(vec![Value::Int(3), Value::Int(1)]);
    let report = tern_engine::apply::load_keys(&link, "mailbox", &keys).await?;

    // Assert
    assert_eq!(
        keys.len(),
        5,
        "four copies read thread 1, plus the deleted one"
    );
    assert_eq!(report.rows_read, 4);
    assert_eq!(report.missing, vec![vec![Value::Int(3), Value::Int(1)]]);
    let target = Side::open(&target_db).await?;
    let p = target.pg()?;
    let m = mailbox(p).await?;
    assert!(m.contains(&(2, msg(100), conv(1), false)), "{m:?}");
    assert!(
        m.contains(&(3, msg(102), conv(2), true)),
        "the relay decides about deletes: {m:?}"
    );
    let subjects: Vec<(uuid::Uuid, String)> =
        messages(p).await?.into_iter().map(|r| (r.0, r.4)).collect();
    assert!(
        subjects.contains(&(msg(100), "Lunch!".to_string())),
        "{subjects:?}"
    );
    assert!(
        subjects.contains(&(msg(102), "Offer".to_string())),
        "{subjects:?}"
    );
    Ok(())
}
