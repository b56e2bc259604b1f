//! Spec columns computed by expressions (`docs/expressions.md`): a
//! conditional value, string building, and a custom dedupe key made with
//! `uuid5(…)`, whose group is read from the expression, on seed 001's inbox.

use std::collections::BTreeSet;

use tern_engine::{Link, Spec, TransformerRegistry, capture};
use tern_testkit::DbKind;

use crate::shared_rows::{filled_inbox, inbox_spec};
use crate::support::{Side, load_all, spec_text};

/// A conditional value and string building; the messages' key made by an
/// expression, so their dedupe group is read from it.
fn spec() -> String {
    inbox_spec(
        25,
        2,
        r#"state = { expr = 'if is_unread == 1 { "new" } else { "read" }', cast = "text" }"#,
        r#"message_id = { expr = 'uuid5("messages", thread_id, msg_no)', cast = "uuid" }
label = { expr = '`thread ${thread_id} #${msg_no}: ` + upper(body)', cast = "text" }"#,
    )
}

#[tokio::test]
async fn expression_columns_and_an_expression_dedupe_key_load_and_follow_deletes()
-> anyhow::Result<()> {
    // Arrange
    let (source_db, target_db, source, _) = filled_inbox(DbKind::Postgres).await?;
    let text = spec_text(&source_db, &target_db, &spec());
    let spec = Spec::parse(&text, "test.toml")?;
    let group = spec
        .table("messages")?
        .dedupe
        .as_ref()
        .map(|d| d.group.clone());

    // Act
    load_all(&text, &TransformerRegistry::new()).await?;

    // Assert
    assert_eq!(
        group,
        Some(vec!["thread_id".to_string(), "msg_no".to_string()])
    );
    let target = Side::open(&target_db).await?;
    let shared: BTreeSet<String> = target
        .strings("SELECT CAST(message_id AS TEXT) FROM messages")
        .await?
        .into_iter()
        .collect();
    let referenced: BTreeSet<String> = target
        .strings("SELECT DISTINCT CAST(message_id AS TEXT) FROM personal")
        .await?
        .into_iter()
        .collect();
    assert_eq!(
        shared, referenced,
        "the expression key is the builtin uuid5"
    );
    assert_eq!(
        target
            .strings("SELECT label FROM messages WHERE label LIKE 'thread 3 #2:%'")
            .await?,
        vec!["thread 3 #2: MESSAGE 3-2".to_string()]
    );
    let states = target
        .strings("SELECT DISTINCT state FROM personal ORDER BY 1")
        .await?;
    assert_eq!(states, vec!["new".to_string(), "read".to_string()]);
    let unread = source.count("inbox WHERE is_unread = 1").await?;
    assert_eq!(target.count("personal WHERE state = 'new'").await?, unread);

    // Act + Assert: a copy deleted through the relay keeps its shared row.
    let link = Link::connect(spec.clone(), &TransformerRegistry::new()).await?;
    capture::install(link.source(), &spec).await?;
    let before = target.count("messages").await?;
    crate::shared_rows::relay_step(
        &link,
        &source,
        "DELETE FROM inbox WHERE (member_id, id) IN \
         (SELECT member_id, id FROM inbox WHERE thread_id = 2 AND msg_no = 3 ORDER BY member_id LIMIT 1)",
    )
    .await?;
    let copies_left = source
        .count("inbox WHERE thread_id = 2 AND msg_no = 3")
        .await?;
    assert!(copies_left > 0, "the message had several copies");
    assert_eq!(target.count("messages").await?, before);
    Ok(())
}

#[test]
fn a_misspelt_function_is_refused_at_its_line() {
    let ends = "\n[source]\nurl = \"postgres://127.0.0.1/x\"\n[target]\nurl = \"postgres://127.0.0.1/y\"\n";
    let good = format!("{}{ends}", spec());
    assert!(Spec::parse(&good, "test.toml").is_ok());
    let bad = format!("{}{ends}", spec().replace("upper(body)", "shout(body)"));
    let err = Spec::parse(&bad, "test.toml").unwrap_err().to_string();
    assert!(err.contains("tables[messages].columns.label"), "{err}");
    assert!(err.contains("calls `shout`, which is no function"), "{err}");
}
