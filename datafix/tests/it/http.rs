//! The HTTP mapper against a small service that owns the validation and
//! rejects some records: those are failures with the service's reason, the
//! rest are applied.

use axum::Json;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::{Value, json};
use tern_datafix::{LiveSettings, RunOptions, RunStatus};
use tern_testkit::{DbKind, TestDb};

use crate::support::{Recorder, exec, job, members, rows};

/// Uppercases first names, but refuses names ending in 3 (its rule), and
/// writes nothing on a dry run.
async fn validate(Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    let name = body["record"]["first_name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    if name.ends_with('3') {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(json!({"reason": format!("first name `{name}` ends in a forbidden digit")})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({"set": {"first_name": name.to_uppercase(), "fixed": 1}})),
    )
}

async fn http_mapper(kind: DbKind) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let app = axum::Router::new().route("/validate", post(validate));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let db = TestDb::new(kind).await?;
    members(&db, 40, 0).await?;
    exec(&db, "UPDATE members SET fixed = 1 WHERE id > 30").await?;
    let fix = job(
        &db,
        &format!(
            "[filter]\nsql = \"SELECT id, first_name FROM members WHERE fixed = 0\"\n\
             [mapper]\nkind = \"http\"\ntable = \"members\"\nendpoint = \"http://{addr}/validate\"\n\
             [settings]\nconcurrency = 4\nbatch_size = 8\n"
        ),
    )
    .await?;

    let dry = fix.dry_run(5).await?;
    assert_eq!(dry[2].action, "failure");
    assert!(
        dry[2]
            .reason
            .as_deref()
            .unwrap_or_default()
            .contains("forbidden digit")
    );
    assert_eq!(
        dry[0].changes[0],
        ("first_name".into(), "'name1'".into(), "'NAME1'".into())
    );

    let rec = Recorder::new();
    let mut opts = RunOptions::new(LiveSettings::new(fix.spec().settings.clone()));
    opts.observer = rec.clone();
    let report = fix.run(opts).await?;

    assert_eq!(report.status, RunStatus::Completed);
    // ids 1..=30 were selected; 3, 13, 23 end in 3.
    assert_eq!(report.failed, 3);
    assert_eq!(report.changed, 27);
    let mut failures = rec.failures.lock().expect("lock").clone();
    failures.sort_by(|a, b| a.key_text.cmp(&b.key_text));
    let keys: Vec<&str> = failures.iter().map(|f| f.key_text.as_str()).collect();
    assert_eq!(keys, vec!["(13)", "(23)", "(3)"]);
    assert_eq!(
        failures[0].reason,
        "service rejected (422): first name `name13` ends in a forbidden digit"
    );
    let after = rows(&db, "SELECT id, first_name FROM members ORDER BY id").await?;
    for (id, name) in after {
        let expected = if id <= 30 && id % 10 != 3 {
            format!("NAME{id}")
        } else {
            format!("name{id}")
        };
        assert_eq!(name, expected, "member {id}");
    }
    server.abort();
    Ok(())
}

#[tokio::test]
async fn http_mapper_postgres() -> anyhow::Result<()> {
    http_mapper(DbKind::Postgres).await
}

#[tokio::test]
async fn http_mapper_mariadb() -> anyhow::Result<()> {
    http_mapper(DbKind::MariaDb).await
}
