//! `lookup(…)` in spec expressions (`docs/expressions.md`), MariaDB →
//! PostgreSQL: values of other source tables by primary key, by another
//! column, a lookup of a lookup, missing rows and NULL keys, over several
//! chunks; the full diff agrees with the load; a misspelt table is an error
//! that names it.

use tern_engine::verify::{self, VerifyOptions, VerifyStatus};
use tern_engine::{RunControl, TransformerRegistry};
use tern_testkit::TestDb;

use crate::support::{Side, load_all, spec_text};

const SPEC: &str = r#"
chunk_rows = 70

[[tables]]
name = "posts"
key = ["id"]
buckets = 3
[tables.source]
table = "posts"
key = ["id"]
bucket = "id"
[tables.columns]
id = "id"
author = { expr = 'lookup("members", "name", member_id)', cast = "text" }
team = { expr = 'coalesce(lookup("teams", "name", lookup("members", "team_id", member_id)), "no team")', cast = "text" }
reviewer = { expr = 'lookup("members", "name", "handle", reviewer_handle)', cast = "text" }
"#;

const POSTS: i64 = 500;

/// Members 1..=40 in teams 1..=4 (member 7 in no team); posts by members
/// 0..=44 (0 and 41..=44 do not exist), every 10th by nobody.
async fn arrange(source: &Side) -> anyhow::Result<()> {
    source
        .exec(
            "CREATE TABLE teams (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL);
             CREATE TABLE members (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL,
               handle VARCHAR(40) NOT NULL UNIQUE, team_id INT NULL);
             CREATE TABLE posts (id INT PRIMARY KEY, member_id INT NULL,
               reviewer_handle VARCHAR(40) NULL)",
        )
        .await?;
    source
        .exec("INSERT INTO teams VALUES (1, 'red'), (2, 'green'), (3, 'blue'), (4, 'gold')")
        .await?;
    let members: Vec<String> = (1..=40)
        .map(|i| {
            let team = if i == 7 {
                "NULL".to_string()
            } else {
                (i % 4 + 1).to_string()
            };
            format!("({i}, 'member {i}', 'h{i}', {team})")
        })
        .collect();
    source
        .exec(&format!(
            "INSERT INTO members VALUES {}",
            members.join(", ")
        ))
        .await?;
    let posts: Vec<String> = (1..=POSTS)
        .map(|i| {
            let member = if i % 10 == 0 {
                "NULL".to_string()
            } else {
                (i % 45).to_string()
            };
            format!("({i}, {member}, 'h{}')", i % 50)
        })
        .collect();
    source
        .exec(&format!("INSERT INTO posts VALUES {}", posts.join(", ")))
        .await?;
    Ok(())
}

/// What the target should hold for post `i`, computed here.
fn expected(i: i64) -> (Option<String>, String, Option<String>) {
    let member = (i % 10 != 0).then_some(i % 45);
    let known = member.filter(|m| (1..=40).contains(m));
    let author = known.map(|m| format!("member {m}"));
    let team = match known {
        Some(m) if m != 7 => ["red", "green", "blue", "gold"][(m % 4) as usize].to_string(),
        _ => "no team".to_string(),
    };
    let r = i % 50;
    let reviewer = (1..=40).contains(&r).then(|| format!("member {r}"));
    (author, team, reviewer)
}

#[tokio::test]
async fn lookups_read_other_source_tables_per_chunk() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    arrange(&source).await?;
    let text = spec_text(&source_db, &target_db, SPEC);

    // Act
    let (link, reports) = load_all(&text, &TransformerRegistry::new()).await?;
    let report = verify::verify(&link, &VerifyOptions::full("posts"), &RunControl::new()).await?;

    // Assert
    let loaded: u64 = reports.iter().map(|r| r.rows_read).sum();
    assert_eq!(loaded, POSTS as u64);
    let target = Side::open(&target_db).await?;
    let rows: Vec<(i64, Option<String>, String, Option<String>)> =
        sqlx::query_as("SELECT id::bigint, author, team, reviewer FROM posts ORDER BY id")
            .fetch_all(target.pg()?)
            .await?;
    assert_eq!(rows.len(), POSTS as usize);
    for (id, author, team, reviewer) in rows {
        assert_eq!((author, team, reviewer), expected(id), "post {id}");
    }
    assert_eq!(report.status, VerifyStatus::Completed);
    assert_eq!(report.counts.matched, POSTS as u64, "{:?}", report.counts);
    Ok(())
}

#[tokio::test]
async fn a_lookup_of_an_unknown_table_or_column_is_named() -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::mariadb().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    arrange(&source).await?;
    let table = spec_text(
        &source_db,
        &target_db,
        &SPEC.replace(
            r#"lookup("members", "name", member_id)"#,
            r#"lookup("membres", "name", member_id)"#,
        ),
    );
    let column = spec_text(
        &source_db,
        &target_db,
        &SPEC.replace(
            r#"lookup("members", "name", member_id)"#,
            r#"lookup("members", "nme", member_id)"#,
        ),
    );

    // Act
    let table_err = load_all(&table, &TransformerRegistry::new())
        .await
        .err()
        .map(|e| e.to_string());
    let column_err = load_all(&column, &TransformerRegistry::new())
        .await
        .err()
        .map(|e| e.to_string());

    // Assert
    let table_err = table_err.unwrap_or_default();
    assert!(
        table_err.contains("lookup(\"membres\"") && table_err.contains("has no table membres"),
        "{table_err}"
    );
    let column_err = column_err.unwrap_or_default();
    assert!(
        column_err.contains("has no column nme") && column_err.contains("handle, team_id"),
        "{column_err}"
    );
    Ok(())
}
