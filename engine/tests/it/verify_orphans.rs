//! Extra target rows where the target key is not the source key: seed 001's
//! inbox loaded into a uuid5-keyed shared `messages` table and a `personal`
//! table, then orphans planted (records deleted from the source behind
//! Tern's back, and a row written into the target from a record that never
//! existed). The full diff counts and lists every orphan as extra, and
//! repair removes them.

use tern_engine::verify::{self, MismatchKind, VerifyOptions};
use tern_engine::{RunControl, TransformerRegistry, Value};
use tern_testkit::DbKind;

use crate::shared_rows::{filled_inbox, spec};
use crate::support::{Side, load_all, spec_text};

#[tokio::test]
async fn orphans_in_a_uuid5_keyed_target_are_listed_as_extra_and_repair_removes_them()
-> anyhow::Result<()> {
    // Arrange: the inbox loaded, then two messages deleted from the source
    // with no capture to tell the target, and one made-up row in the target.
    let (source_db, target_db, source, _) = filled_inbox(DbKind::MariaDb).await?;
    let (link, _) = load_all(
        &spec_text(&source_db, &target_db, &spec()),
        &TransformerRegistry::new(),
    )
    .await?;
    let target = Side::open(&target_db).await?;
    let messages_before = target.count("messages").await?;
    let personal_before = target.count("personal").await?;
    let copies: i64 = source
        .strings(
            "SELECT CAST(COUNT(*) AS CHAR) FROM inbox WHERE thread_id = 1 AND msg_no IN (1, 2)",
        )
        .await?[0]
        .parse()?;
    source
        .exec("DELETE FROM inbox WHERE thread_id = 1 AND msg_no IN (1, 2)")
        .await?;
    target
        .exec(
            "INSERT INTO messages (message_id, thread_id, msg_no, sender_id, body, _tern_version, \
             _tern_source_key) VALUES ('6f2c1f3e-0000-5000-8000-000000000001', 999, 1, 1, 'planted', 1, \
             '999' || chr(31) || '99999')",
        )
        .await?;

    // Act
    let messages =
        verify::verify(&link, &VerifyOptions::full("messages"), &RunControl::new()).await?;
    let personal =
        verify::verify(&link, &VerifyOptions::full("personal"), &RunControl::new()).await?;

    // Assert: each orphan counted and listed as extra, nothing else wrong.
    assert_eq!(messages.counts.extra, 3, "{:?}", messages.counts);
    assert_eq!(messages.counts.matched as i64, messages_before - 2);
    assert_eq!(messages.counts.missing + messages.counts.different, 0);
    assert_eq!(
        personal.counts.extra as i64, copies,
        "{:?}",
        personal.counts
    );
    assert_eq!(personal.counts.matched as i64, personal_before - copies);
    assert!(messages.counts.accuracy() < 100.0);
    let listed = verify::list_mismatches(link.target(), &messages.run_id, 0, 100, false).await?;
    assert_eq!(listed.len(), 3);
    assert!(listed.iter().all(|m| m.kind == MismatchKind::Extra));
    assert!(
        listed.iter().any(
            |m| m.source_key == Some(vec![Value::Int(999), Value::Int(99999)])
                && m.target_row
                    .as_ref()
                    .is_some_and(|r| r["body"] == "planted")
        ),
        "the planted row is listed with the record it claims: {listed:?}"
    );

    // Act: repair both runs.
    let repaired = verify::repair(&link, &messages.run_id, &RunControl::new()).await?;
    verify::repair(&link, &personal.run_id, &RunControl::new()).await?;
    let again = verify::verify(&link, &VerifyOptions::full("messages"), &RunControl::new()).await?;
    let personal_again =
        verify::verify(&link, &VerifyOptions::full("personal"), &RunControl::new()).await?;

    // Assert: the orphans are gone, the rest untouched.
    assert_eq!(repaired.resolved, 3);
    assert_eq!(repaired.counts.accuracy(), 100.0);
    assert_eq!(target.count("messages").await?, messages_before - 2);
    assert_eq!(target.count("personal").await?, personal_before - copies);
    assert_eq!(again.counts.extra, 0);
    assert_eq!(again.counts.accuracy(), 100.0);
    assert_eq!(personal_again.counts.accuracy(), 100.0);
    Ok(())
}
