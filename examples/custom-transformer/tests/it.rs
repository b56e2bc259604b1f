//! The example binary is a whole `tern`: a spec naming its transformers is
//! planned and bulk-loaded through its command line against real databases,
//! and the target holds what the transformers made.

use std::process::Command;

use tern_testkit::TestDb;

const BIN: &str = env!("CARGO_BIN_EXE_tern-with-transformers");

fn spec(source: &TestDb, target: &TestDb) -> String {
    format!(
        r#"
[source]
url = "{}"
[target]
url = "{}"

[[tables]]
name = "people"
key = ["id"]
buckets = 2
transformers = ["initials", "redact_secrets"]
[tables.source]
table = "members"
[tables.columns]
id = "id"
first_name = "first_name"
bio = "bio"
initials = {{ cast = "text" }}
"#,
        source.url, target.url
    )
}

#[tokio::test]
async fn the_example_binary_runs_a_spec_that_names_its_transformers() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = sqlx::PgPool::connect(&source_db.url).await?;
    sqlx::raw_sql(
        "CREATE TABLE members (id BIGINT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL, bio TEXT NOT NULL);
         INSERT INTO members VALUES (1, 'Ada', 'Lovelace', 'Mathematician'),
           (2, 'Grace', 'Hopper', 'My password is COBOL'), (3, 'Alan', 'Turing', 'Codebreaker')",
    )
    .execute(&source)
    .await?;
    let dir = std::env::temp_dir().join(format!("tern-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join("people.toml");
    std::fs::write(&spec_path, spec(&source_db, &target_db))?;

    // Act
    let out = Command::new(BIN)
        .args(["bulk-load", "--spec"])
        .arg(&spec_path)
        .output()?;

    // Assert
    assert!(
        out.status.success(),
        "bulk-load failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let target = sqlx::PgPool::connect(&target_db.url).await?;
    let rows: Vec<(i64, String, String, String)> =
        sqlx::query_as("SELECT id, first_name, bio, initials FROM people ORDER BY id")
            .fetch_all(&target)
            .await?;
    assert_eq!(
        rows,
        vec![
            (1, "Ada".into(), "Mathematician".into(), "A.L.".into()),
            (2, "Grace".into(), "[redacted]".into(), "G.H.".into()),
            (3, "Alan".into(), "Codebreaker".into(), "A.T.".into()),
        ]
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}

#[tokio::test]
async fn an_unknown_transformer_is_refused_with_the_names_it_knows() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = sqlx::PgPool::connect(&source_db.url).await?;
    sqlx::raw_sql("CREATE TABLE members (id BIGINT PRIMARY KEY, first_name TEXT NOT NULL, last_name TEXT NOT NULL, bio TEXT NOT NULL)")
        .execute(&source)
        .await?;
    let dir = std::env::temp_dir().join(format!("tern-example-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let spec_path = dir.join("people.toml");
    std::fs::write(
        &spec_path,
        spec(&source_db, &target_db).replace("\"redact_secrets\"", "\"nope\""),
    )?;

    // Act
    let out = Command::new(BIN)
        .args(["plan", "--spec"])
        .arg(&spec_path)
        .output()?;

    // Assert
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("no transformer `nope` is registered (registered: initials, redact_secrets)"),
        "{err}"
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
