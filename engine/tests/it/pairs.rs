//! Source → target pairs: after the load the target equals the transformed
//! source, row for row, computed here from the source rows with plain code.

use chrono::NaiveDateTime;
use serde_json::json;
use sqlx::Row;
use tern_engine::TransformerRegistry;
use tern_testkit::{DbKind, TestDb};
use uuid::Uuid;

use crate::support::{Side, load_all, spec_text};

const BODY: &str = r#"
chunk_rows = 37

[[tables]]
name = "member_contacts"
key = ["contact_id"]
buckets = 4

[tables.source]
table = "contacts"
key = ["member_id", "id"]

[tables.columns]
contact_id = { uuid5 = ["member_id", "id"], namespace = "contacts" }
member_id = "member_id"
legacy_id = "id"
email = { from = "email", trim = true, lower = true }
display_name = "name"
starred = { from = "is_starred", cast = "bool" }
score = { from = "score", cast = "int" }
origin = { constant = "legacy" }
doc = { json = { name = "name", created = "created_at" } }
created_at = "created_at"
"#;

/// A source row.
#[derive(Debug, Clone)]
pub struct Contact {
    pub member_id: i64,
    pub id: i64,
    pub email: Option<String>,
    pub name: Option<String>,
    pub is_starred: i64,
    pub score: String,
    pub created_at: NaiveDateTime,
}

/// Skewed like real data: member 1 owns 40 contacts, member 40 one.
pub fn contacts() -> Vec<Contact> {
    let mut out = Vec::new();
    for m in 1..=40i64 {
        for i in 1..=(40 / m).max(1) {
            let n = out.len() as i64;
            out.push(Contact {
                member_id: m,
                id: 1000 * m + i,
                email: (n % 11 != 5).then(|| format!("  Contact{m}_{i}@Example.COM ")),
                name: match n % 7 {
                    0 => None,
                    3 => Some(format!("O'Brien\tTab\\Slash\nLine {n}")),
                    _ => Some(format!("Name {n}")),
                },
                is_starred: n % 3 % 2,
                score: format!(" {}", n * 7 - 100),
                created_at: chrono::DateTime::from_timestamp(1_600_000_000 + n * 3_601, 0)
                    .map(|d| d.naive_utc())
                    .unwrap_or_default(),
            });
        }
    }
    out
}

pub async fn create_source(side: &Side, rows: &[Contact]) -> anyhow::Result<()> {
    let ddl = match side {
        Side::Pg(_) => {
            "CREATE TABLE contacts (member_id BIGINT NOT NULL, id BIGINT NOT NULL, email TEXT, name TEXT, is_starred SMALLINT NOT NULL, score VARCHAR(20) NOT NULL, created_at TIMESTAMP NOT NULL, PRIMARY KEY (member_id, id))"
        }
        Side::My(_) => {
            "CREATE TABLE contacts (member_id BIGINT NOT NULL, id BIGINT NOT NULL, email VARCHAR(200), name VARCHAR(200), is_starred TINYINT NOT NULL, score VARCHAR(20) NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (member_id, id))"
        }
        Side::Lite(_) => {
            "CREATE TABLE contacts (member_id INTEGER NOT NULL, id INTEGER NOT NULL, email TEXT, name TEXT, is_starred INTEGER NOT NULL, score TEXT NOT NULL, created_at DATETIME NOT NULL, PRIMARY KEY (member_id, id))"
        }
    };
    side.exec(ddl).await?;
    let (pg, other) = (
        "INSERT INTO contacts VALUES ($1, $2, $3, $4, $5, $6, $7)",
        "INSERT INTO contacts VALUES (?, ?, ?, ?, ?, ?, ?)",
    );
    match side {
        Side::Pg(p) => insert(p, pg, rows, |c| c.is_starred as i16, |c| c.created_at).await,
        Side::My(p) => insert(p, other, rows, |c| c.is_starred, |c| c.created_at).await,
        // SQLite is given the timestamp as text.
        Side::Lite(p) => {
            let text = |c: &Contact| c.created_at.format("%Y-%m-%d %H:%M:%S").to_string();
            insert(p, other, rows, |c| c.is_starred, text).await
        }
    }
}

/// Inserts `rows` one by one with `sql`, binding the columns in table order;
/// `starred` and `created` give those two as the database takes them.
async fn insert<DB, S, C>(
    pool: &sqlx::Pool<DB>,
    sql: &str,
    rows: &[Contact],
    starred: impl Fn(&Contact) -> S,
    created: impl Fn(&Contact) -> C,
) -> anyhow::Result<()>
where
    DB: sqlx::Database,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<String>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> S: sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send + 'q,
    for<'q> C: sqlx::Encode<'q, DB> + sqlx::Type<DB> + Send + 'q,
{
    for c in rows {
        sqlx::query(sql)
            .bind(c.member_id)
            .bind(c.id)
            .bind(c.email.clone())
            .bind(c.name.clone())
            .bind(starred(c))
            .bind(c.score.clone())
            .bind(created(c))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// A target row, normalized across databases.
#[derive(Debug, Clone, PartialEq)]
struct Target {
    contact_id: String,
    member_id: i64,
    legacy_id: i64,
    email: Option<String>,
    display_name: Option<String>,
    starred: bool,
    score: i64,
    origin: String,
    doc: serde_json::Value,
    created_at: String,
}

/// What the spec says each source row becomes, computed by hand.
fn expected(rows: &[Contact], source: DbKind) -> Vec<Target> {
    let ns = Uuid::new_v5(&Uuid::NAMESPACE_URL, b"contacts");
    let mut out: Vec<Target> = rows
        .iter()
        .map(|c| {
            let created_plain = c.created_at.format("%Y-%m-%d %H:%M:%S").to_string();
            // SQLite keeps the timestamp as the text it was given; the others
            // hold a DATETIME whose canonical text has microseconds.
            let created_doc = if source == DbKind::Sqlite {
                created_plain.clone()
            } else {
                format!("{created_plain}.000000")
            };
            Target {
                contact_id: Uuid::new_v5(&ns, format!("{}\u{1f}{}", c.member_id, c.id).as_bytes())
                    .to_string(),
                member_id: c.member_id,
                legacy_id: c.id,
                email: c.email.as_ref().map(|e| e.trim().to_lowercase()),
                display_name: c.name.clone(),
                starred: c.is_starred != 0,
                score: c.score.trim().parse().unwrap_or(i64::MIN),
                origin: "legacy".into(),
                doc: json!({ "name": c.name, "created": created_doc }),
                created_at: created_plain,
            }
        })
        .collect();
    out.sort_by_key(|t| (t.member_id, t.legacy_id));
    out
}

async fn read_target(side: &Side) -> anyhow::Result<Vec<Target>> {
    let sql = "SELECT contact_id, member_id, legacy_id, email, display_name, starred, score, origin, doc, created_at, _tern_version \
               FROM member_contacts ORDER BY member_id, legacy_id";
    let plain = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut out = Vec::new();
    match side {
        Side::Pg(p) => {
            for r in sqlx::query(sql).fetch_all(p).await? {
                let id = r.try_get::<Uuid, _>("contact_id")?.to_string();
                let created = plain(r.try_get("created_at")?);
                out.push(target(
                    &r,
                    id,
                    r.try_get("starred")?,
                    r.try_get("doc")?,
                    created,
                )?);
            }
        }
        Side::Lite(p) => {
            for r in sqlx::query(sql).fetch_all(p).await? {
                let starred = r.try_get::<i64, _>("starred")? != 0;
                let doc = serde_json::from_str(&r.try_get::<String, _>("doc")?)?;
                let created = r
                    .try_get::<String, _>("created_at")?
                    .chars()
                    .take(19)
                    .collect();
                out.push(target(&r, r.try_get("contact_id")?, starred, doc, created)?);
            }
        }
        Side::My(p) => {
            for r in sqlx::query(sql).fetch_all(p).await? {
                // MariaDB's JSON is a LONGTEXT in a binary collation.
                let doc = serde_json::from_slice(&r.try_get::<Vec<u8>, _>("doc")?)?;
                let created = plain(r.try_get("created_at")?);
                let (id, starred) = (r.try_get("contact_id")?, r.try_get("starred")?);
                out.push(target(&r, id, starred, doc, created)?);
            }
        }
    }
    Ok(out)
}

/// A target row from the columns every database returns alike, and the
/// others as read from each database; its version must be set.
fn target<R: Row>(
    r: &R,
    contact_id: String,
    starred: bool,
    doc: serde_json::Value,
    created_at: String,
) -> anyhow::Result<Target>
where
    for<'a> &'a str: sqlx::ColumnIndex<R>,
    for<'a> i64: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
    for<'a> String: sqlx::Decode<'a, R::Database> + sqlx::Type<R::Database>,
{
    anyhow::ensure!(r.try_get::<i64, _>("_tern_version")? > 0, "version missing");
    Ok(Target {
        contact_id,
        member_id: r.try_get("member_id")?,
        legacy_id: r.try_get("legacy_id")?,
        email: r.try_get("email")?,
        display_name: r.try_get("display_name")?,
        starred,
        score: r.try_get("score")?,
        origin: r.try_get("origin")?,
        doc,
        created_at,
    })
}

async fn check_pair(source_kind: DbKind, target_kind: DbKind) -> anyhow::Result<()> {
    // Arrange
    let source_db = TestDb::new(source_kind).await?;
    let target_db = TestDb::new(target_kind).await?;
    let source = Side::open(&source_db).await?;
    let rows = contacts();
    create_source(&source, &rows).await?;
    let text = spec_text(&source_db, &target_db, BODY);

    // Act
    let (_loader, reports) = load_all(&text, &TransformerRegistry::new()).await?;

    // Assert
    let read: u64 = reports.iter().map(|r| r.rows_read).sum();
    assert_eq!(read, rows.len() as u64);
    assert_eq!(reports.len(), 4, "four buckets planned");
    let target = Side::open(&target_db).await?;
    let got = read_target(&target).await?;
    let want = expected(&rows, source_kind);
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    Ok(())
}

#[tokio::test]
async fn mariadb_to_postgres_target_equals_transformed_source() -> anyhow::Result<()> {
    check_pair(DbKind::MariaDb, DbKind::Postgres).await
}

#[tokio::test]
async fn postgres_to_postgres_target_equals_transformed_source() -> anyhow::Result<()> {
    check_pair(DbKind::Postgres, DbKind::Postgres).await
}

#[tokio::test]
async fn postgres_to_mariadb_target_equals_transformed_source() -> anyhow::Result<()> {
    check_pair(DbKind::Postgres, DbKind::MariaDb).await
}

#[tokio::test]
async fn sqlite_to_sqlite_target_equals_transformed_source() -> anyhow::Result<()> {
    check_pair(DbKind::Sqlite, DbKind::Sqlite).await
}

#[tokio::test]
async fn a_second_run_of_a_finished_load_writes_nothing_and_changes_nothing() -> anyhow::Result<()>
{
    // Arrange
    let source_db = TestDb::postgres().await?;
    let target_db = TestDb::postgres().await?;
    let source = Side::open(&source_db).await?;
    create_source(&source, &contacts()).await?;
    let text = spec_text(&source_db, &target_db, BODY);
    load_all(&text, &TransformerRegistry::new()).await?;
    let target = Side::open(&target_db).await?;
    let before = read_target(&target).await?;

    // Act
    let (_, reports) = load_all(&text, &TransformerRegistry::new()).await?;

    // Assert
    assert!(
        reports
            .iter()
            .all(|r| r.status == tern_engine::LoadStatus::AlreadyDone)
    );
    assert_eq!(read_target(&target).await?, before);
    Ok(())
}
