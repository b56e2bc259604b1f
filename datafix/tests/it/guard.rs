//! A filter that tries to write is refused and changes nothing.

use tern_datafix::{DatafixError, LiveSettings, RunOptions};
use tern_testkit::{DbKind, TestDb};

use crate::support::{exec, job, members, rows};

fn filter(sql: &str) -> String {
    format!(
        "[filter]\nsql = \"\"\"{sql}\"\"\"\n[mapper]\nkind = \"update\"\ntable = \"members\"\nset = {{ first_name = \"'x'\" }}\n"
    )
}

async fn writing_filters_are_refused(kind: DbKind) -> anyhow::Result<()> {
    let db = TestDb::new(kind).await?;
    members(&db, 20, 0).await?;
    let before = rows(&db, "SELECT id, first_name FROM members ORDER BY id").await?;

    // Statements that are not a SELECT are refused before they reach the database.
    for sql in [
        "UPDATE members SET first_name = 'gone'",
        "DELETE FROM members",
        "DROP TABLE members",
        "SELECT id, first_name FROM members; DELETE FROM members",
    ] {
        let e = job(&db, &filter(sql)).await.expect_err("refused");
        assert!(e.to_string().contains("filter refused"), "{sql}: {e}");
    }

    // A SELECT with side effects passes the text check; the read-only
    // transaction refuses it.
    let side_effects = match kind {
        DbKind::Postgres => {
            exec(
                &db,
                "CREATE FUNCTION wipe_members() RETURNS int LANGUAGE sql VOLATILE AS \
                 'DELETE FROM members; SELECT 1'",
            )
            .await?;
            vec![
                "SELECT id, first_name FROM members WHERE wipe_members() = 1".to_string(),
                "WITH d AS (DELETE FROM members RETURNING id, first_name) SELECT id, first_name FROM d"
                    .to_string(),
                "WITH u AS (UPDATE members SET first_name = 'gone' RETURNING id, first_name) \
                 SELECT id, first_name FROM u"
                    .to_string(),
                "SELECT id, first_name FROM members FOR UPDATE".to_string(),
            ]
        }
        // SQLite has no writing functions and no data-modifying CTE in a
        // SELECT; a WITH … DELETE … RETURNING passes the text check and is
        // refused by the database.
        DbKind::Sqlite => {
            vec!["WITH x AS (SELECT 1) DELETE FROM members RETURNING id, first_name".to_string()]
        }
        DbKind::MariaDb => {
            exec(
                &db,
                "CREATE FUNCTION wipe_members() RETURNS INT MODIFIES SQL DATA \
                 BEGIN DELETE FROM members; RETURN 1; END",
            )
            .await?;
            vec!["SELECT id, first_name FROM members WHERE wipe_members() = 1".to_string()]
        }
    };
    for sql in side_effects {
        let fix = job(&db, &filter(&sql)).await?;
        let e = fix.dry_run(5).await.expect_err("dry run refused");
        assert!(matches!(e, DatafixError::Filter { .. }), "{sql}: {e}");
        let e = fix
            .run(RunOptions::new(LiveSettings::new(
                fix.spec().settings.clone(),
            )))
            .await
            .expect_err("run refused");
        assert!(matches!(e, DatafixError::Filter { .. }), "{sql}: {e}");
        if sql.contains("wipe_members") {
            assert!(
                e.to_string().contains("read-only transaction")
                    || e.to_string().contains("READ ONLY"),
                "says read-only: {e}"
            );
        }
    }
    assert_eq!(
        rows(&db, "SELECT id, first_name FROM members ORDER BY id").await?,
        before
    );
    Ok(())
}

#[tokio::test]
async fn writing_filters_are_refused_postgres() -> anyhow::Result<()> {
    writing_filters_are_refused(DbKind::Postgres).await
}

#[tokio::test]
async fn writing_filters_are_refused_mariadb() -> anyhow::Result<()> {
    writing_filters_are_refused(DbKind::MariaDb).await
}

#[tokio::test]
async fn writing_filters_are_refused_sqlite() -> anyhow::Result<()> {
    writing_filters_are_refused(DbKind::Sqlite).await
}

#[tokio::test]
async fn a_filter_that_runs_too_long_times_out() -> anyhow::Result<()> {
    let db = TestDb::new(DbKind::Postgres).await?;
    members(&db, 5, 0).await?;
    let body = filter("SELECT id, first_name FROM members WHERE pg_sleep(3) IS NOT NULL")
        .replace("[mapper]", "timeout_s = 1\n[mapper]");
    let fix = job(&db, &body).await?;
    let e = fix.dry_run(5).await.expect_err("timed out");
    assert!(e.to_string().contains("statement timeout"), "{e}");
    Ok(())
}
