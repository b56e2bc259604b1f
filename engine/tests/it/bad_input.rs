//! Bad input gives a clear error naming the table, column or row key, and
//! leaves nothing half-written unmarked: what is in the target is exactly what
//! the checkpoint says.

use tern_engine::{EngineError, Link, Spec, TransformerRegistry};
use tern_testkit::TestDb;

use crate::pairs::{contacts, create_source};
use crate::support::{Side, load_all, spec_text};

const BODY: &str = r#"
chunk_rows = 37

[[tables]]
name = "member_contacts"
key = ["member_id", "legacy_id"]
buckets = 1

[tables.source]
table = "contacts"
key = ["member_id", "id"]

[tables.columns]
member_id = "member_id"
legacy_id = "id"
email = "email"
score = { from = "score", cast = "int" }
"#;

async fn source_with_contacts(kind: tern_testkit::DbKind) -> anyhow::Result<(TestDb, Side)> {
    let db = TestDb::new(kind).await?;
    let side = Side::open(&db).await?;
    create_source(&side, &contacts()).await?;
    Ok((db, side))
}

#[tokio::test]
async fn an_unknown_column_names_the_spec_line_and_creates_nothing() -> anyhow::Result<()> {
    // Arrange
    let (source_db, _source) = source_with_contacts(tern_testkit::DbKind::MariaDb).await?;
    let target_db = TestDb::postgres().await?;
    let text = spec_text(
        &source_db,
        &target_db,
        &BODY.replace("email = \"email\"", "email = \"emial\""),
    );

    // Act
    let err = load_all(&text, &TransformerRegistry::new())
        .await
        .expect_err("unknown column")
        .to_string();

    // Assert
    assert!(
        err.starts_with("test.toml line 16, tables[member_contacts].columns.email:"),
        "{err}"
    );
    assert!(
        err.contains("source column `emial` does not exist"),
        "{err}"
    );
    let target = Side::open(&target_db).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(target.pg()?)
    .await?;
    assert_eq!(
        tables, 0,
        "nothing is created for a spec that does not fit the source"
    );
    Ok(())
}

#[tokio::test]
async fn a_source_key_that_is_not_unique_names_the_table_and_key() -> anyhow::Result<()> {
    // Arrange: member_id alone repeats (member 1 has 40 contacts).
    let (source_db, _source) = source_with_contacts(tern_testkit::DbKind::Postgres).await?;
    let target_db = TestDb::postgres().await?;
    let body = BODY
        .replace(
            "key = [\"member_id\", \"legacy_id\"]",
            "key = [\"member_id\"]",
        )
        .replace("key = [\"member_id\", \"id\"]", "key = [\"member_id\"]");
    let text = spec_text(&source_db, &target_db, &body);

    // Act
    let err = load_all(&text, &TransformerRegistry::new())
        .await
        .expect_err("duplicate key")
        .to_string();

    // Assert
    assert_eq!(
        err,
        "table member_contacts row key (1): the source key (member_id) is not unique: at least two source rows have it"
    );
    let target = Side::open(&target_db).await?;
    assert_eq!(target.count("member_contacts").await?, 0);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_is_named_without_its_password() -> anyhow::Result<()> {
    // Arrange
    let target_db = TestDb::sqlite()?;
    let text = format!(
        "{BODY}\n[source]\nurl = \"postgres://tern:secret@127.0.0.1:1/nowhere\"\n[target]\nurl = \"{}\"\n",
        target_db.url
    );
    let spec = Spec::parse(&text, "test.toml")?;

    // Act
    let err = Link::connect(spec, &TransformerRegistry::new())
        .await
        .expect_err("unreachable");

    // Assert
    assert!(matches!(err, EngineError::Unreachable { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with("source database postgres://tern:***@127.0.0.1:1/nowhere is unreachable"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn a_value_that_cannot_be_cast_names_table_column_and_row_and_the_checkpoint_marks_what_was_written()
-> anyhow::Result<()> {
    // Arrange: the 100th contact (in key order) has a score that is no number.
    let (source_db, source) = source_with_contacts(tern_testkit::DbKind::MariaDb).await?;
    let mut rows = contacts();
    rows.sort_by_key(|c| (c.member_id, c.id));
    let bad = &rows[99];
    source
        .exec(&format!(
            "UPDATE contacts SET score = 'n/a' WHERE member_id = {} AND id = {}",
            bad.member_id, bad.id
        ))
        .await?;
    let target_db = TestDb::postgres().await?;
    let text = spec_text(&source_db, &target_db, BODY);

    // Act
    let (link_err, link) = {
        let spec = Spec::parse(&text, "test.toml")?;
        let link = Link::connect(spec, &TransformerRegistry::new()).await?;
        let plan = link.plan_or_resume("member_contacts", None).await?;
        let err = tern_engine::load_bucket(&link, &plan.buckets[0], &Default::default())
            .await
            .expect_err("bad cast");
        (err.to_string(), link)
    };

    // Assert
    assert_eq!(
        link_err,
        format!(
            "table member_contacts row key ({}, {}): column score: cannot cast text 'n/a' to int",
            bad.member_id, bad.id
        )
    );
    let target = Side::open(&target_db).await?;
    let written = target.count("member_contacts").await?;
    assert_eq!(
        written, 74,
        "the two chunks before the bad row (37 rows each) are committed"
    );
    let cp = link.checkpoints("member_contacts").await?.remove(0);
    assert_eq!(cp.rows_written as i64, written);
    assert!(!cp.done);
    let last: Vec<i64> = cp
        .last_key
        .unwrap_or_default()
        .iter()
        .map(|v| match v {
            tern_engine::Value::Int(i) => *i,
            _ => -1,
        })
        .collect();
    assert_eq!(
        last,
        vec![rows[73].member_id, rows[73].id],
        "the checkpoint is the last written row"
    );
    Ok(())
}

#[tokio::test]
async fn a_chunk_the_target_rejects_names_table_bucket_and_keys_and_commits_nothing()
-> anyhow::Result<()> {
    // Arrange: the target refuses negative scores, which the source has.
    let (source_db, _source) = source_with_contacts(tern_testkit::DbKind::MariaDb).await?;
    let target_db = TestDb::postgres().await?;
    let target = Side::open(&target_db).await?;
    target
        .exec(
            "CREATE TABLE member_contacts (member_id BIGINT NOT NULL, legacy_id BIGINT NOT NULL, email TEXT,
             score BIGINT CHECK (score >= 0), _tern_source_key TEXT, _tern_version BIGINT NOT NULL,
             PRIMARY KEY (member_id, legacy_id))",
        )
        .await?;
    let text = spec_text(&source_db, &target_db, BODY);

    // Act
    let err = load_all(&text, &TransformerRegistry::new())
        .await
        .expect_err("check constraint")
        .to_string();

    // Assert
    assert!(
        err.starts_with("copy member_contacts bucket 0 keys (1, 1001)..(1, 1037): target rejected the chunk, nothing of it was committed:"),
        "{err}"
    );
    assert!(err.contains("check constraint"), "{err}");
    assert_eq!(target.count("member_contacts").await?, 0);
    Ok(())
}

#[tokio::test]
async fn a_transformer_that_is_not_registered_is_named_with_its_spec_line() -> anyhow::Result<()> {
    // Arrange
    let (source_db, _source) = source_with_contacts(tern_testkit::DbKind::Sqlite).await?;
    let target_db = TestDb::sqlite()?;
    let body = BODY.replace(
        "buckets = 1\n",
        "buckets = 1\ntransformers = [\"enrich\"]\n",
    );
    let text = spec_text(&source_db, &target_db, &body);

    // Act
    let err = load_all(&text, &TransformerRegistry::new())
        .await
        .expect_err("unknown transformer")
        .to_string();

    // Assert
    assert!(
        err.starts_with("test.toml line 4, tables[member_contacts].transformers: no transformer `enrich` is registered"),
        "{err}"
    );
    Ok(())
}
