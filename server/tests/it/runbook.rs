//! The runbook over the JSON API: an engineer creates a migration from a spec
//! (SQLite source and target), bulk-loads buckets, and the workers inside
//! `tern serve` finish them; a viewer sees the same data but is refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::{DataDir, PASSWORD, Server, add_user, client};

async fn api_session(server: &Server, user: &str) -> anyhow::Result<(reqwest::Client, String)> {
    let http = client();
    let s: Value = http
        .post(server.url("/api/v1/session"))
        .json(&json!({ "username": user, "password": PASSWORD }))
        .send()
        .await?
        .json()
        .await?;
    let token = s["csrf_token"].as_str().unwrap_or_default().to_string();
    Ok((http, token))
}

async fn sqlite_source(dir: &std::path::Path) -> anyhow::Result<String> {
    let path = dir.join("source.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let mut c = sqlx::SqliteConnection::connect(&url).await?;
    sqlx::query(
        "CREATE TABLE people (id INTEGER PRIMARY KEY, team INTEGER NOT NULL, name TEXT NOT NULL)",
    )
    .execute(&mut c)
    .await?;
    sqlx::query("CREATE INDEX people_by_team ON people (team, id)")
        .execute(&mut c)
        .await?;
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000)
         INSERT INTO people SELECT i, i % 37, 'Name ' || i FROM n",
    )
    .execute(&mut c)
    .await?;
    Ok(format!("sqlite://{}", path.display()))
}

#[tokio::test]
async fn an_engineer_creates_and_bulk_loads_a_migration_and_a_viewer_is_refused()
-> anyhow::Result<()> {
    // Arrange
    let data = DataDir::new();
    add_user(&data.0, "eng", "engineer", &[]).await?;
    add_user(&data.0, "pm", "viewer", &[]).await?;
    let source = sqlite_source(&data.0).await?;
    let target = format!("sqlite://{}?mode=rwc", data.0.join("target.db").display());
    let spec = format!(
        "[source]\nurl = \"{source}\"\n[target]\nurl = \"{target}\"\n\n[[tables]]\nname = \"people\"\nkey = [\"id\"]\nbuckets = 3\n\
         [tables.source]\ntable = \"people\"\nkey = [\"team\", \"id\"]\nbucket = \"team\"\n[tables.columns]\nid = \"id\"\nteam = \"team\"\nname = \"name\"\n"
    );
    let server = Server::start(&data.0).await?;
    let (eng, token) = api_session(&server, "eng").await?;

    // Act: preview, create, bulk-load every bucket.
    let preview: Value = eng
        .post(server.url("/api/v1/migrations/preview"))
        .header("X-CSRF-Token", &token)
        .json(&json!({ "name": "people", "spec": spec }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(preview[0]["total_rows"], 2000);
    let created = eng
        .post(server.url("/api/v1/migrations"))
        .header("X-CSRF-Token", &token)
        .json(&json!({ "name": "people", "description": "test", "spec": spec }))
        .send()
        .await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await?["id"]
        .as_i64()
        .unwrap_or_default();
    let board: Value = eng
        .get(server.url(&format!("/api/v1/migrations/{id}/board")))
        .send()
        .await?
        .json()
        .await?;
    let bucket_ids: Vec<i64> = board["buckets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["id"].as_i64())
        .collect();
    assert_eq!(bucket_ids.len(), 3);

    let (pm, pm_token) = api_session(&server, "pm").await?;
    let refused = pm
        .post(server.url(&format!("/api/v1/migrations/{id}/actions")))
        .header("X-CSRF-Token", &pm_token)
        .json(&json!({ "action": "bulk-load", "bucket_ids": bucket_ids }))
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let started = eng
        .post(server.url(&format!("/api/v1/migrations/{id}/actions")))
        .header("X-CSRF-Token", &token)
        .json(&json!({ "action": "bulk-load", "bucket_ids": bucket_ids, "reason": "go" }))
        .send()
        .await?;
    assert_eq!(started.status(), StatusCode::OK);
    let illegal = eng
        .post(server.url(&format!("/api/v1/migrations/{id}/actions")))
        .header("X-CSRF-Token", &token)
        .json(&json!({ "action": "verify-full", "bucket_ids": bucket_ids }))
        .send()
        .await?;
    assert_eq!(illegal.status(), StatusCode::CONFLICT);
    let msg = illegal.json::<Value>().await?["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("it can move to"), "{msg}");

    // Assert: the workers in `tern serve` load every bucket.
    let mut phases = Vec::new();
    for _ in 0..200 {
        let board: Value = pm
            .get(server.url(&format!("/api/v1/migrations/{id}/board")))
            .send()
            .await?
            .json()
            .await?;
        phases = board["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|b| b["phase"].as_str().unwrap_or_default().to_string())
            .collect();
        if phases.iter().all(|p| p == "loaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phases, vec!["loaded"; 3]);
    let mut t = sqlx::SqliteConnection::connect(&target).await?;
    let row = sqlx::query("SELECT COUNT(*) AS n, SUM(id) AS s FROM people")
        .fetch_one(&mut t)
        .await?;
    assert_eq!(
        (row.get::<i64, _>("n"), row.get::<i64, _>("s")),
        (2000, 2001 * 1000)
    );
    Ok(())
}

#[tokio::test]
async fn the_relay_ramp_is_set_and_repair_refused_over_the_api_bad_ramps_and_viewers_refused()
-> anyhow::Result<()> {
    let data = DataDir::new();
    add_user(&data.0, "eng", "engineer", &[]).await?;
    add_user(&data.0, "pm", "viewer", &[]).await?;
    let source = sqlite_source(&data.0).await?;
    let target = format!("sqlite://{}?mode=rwc", data.0.join("target.db").display());
    let spec = format!(
        "[source]\nurl = \"{source}\"\n[target]\nurl = \"{target}\"\n\n[[tables]]\nname = \"people\"\nkey = [\"id\"]\nbuckets = 2\n\
         [tables.source]\ntable = \"people\"\nkey = [\"team\", \"id\"]\nbucket = \"team\"\n[tables.columns]\nid = \"id\"\nteam = \"team\"\nname = \"name\"\n"
    );
    let server = Server::start(&data.0).await?;
    let (eng, token) = api_session(&server, "eng").await?;
    let created: Value = eng
        .post(server.url("/api/v1/migrations"))
        .header("X-CSRF-Token", &token)
        .json(&json!({ "name": "people", "spec": spec }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no id: {created}"))?;
    let relay = server.url(&format!("/api/v1/migrations/{id}/relay"));

    let bad = eng
        .put(&relay)
        .header("X-CSRF-Token", &token)
        .json(&json!({ "ramp": "250%" }))
        .send()
        .await?;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await?.contains("250%"));

    let (pm, pm_token) = api_session(&server, "pm").await?;
    let refused = pm
        .put(&relay)
        .header("X-CSRF-Token", &pm_token)
        .json(&json!({ "ramp": "25%" }))
        .send()
        .await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let set: Value = eng
        .put(&relay)
        .header("X-CSRF-Token", &token)
        .json(&json!({ "ramp": "25%", "reason": "first step" }))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(set["label"], "25%");
    let shown: Value = pm.get(&relay).send().await?.json().await?;
    assert_eq!(shown["label"], "25%");
    assert_eq!(shown["job"]["id"], set["job"]["id"]);

    // Repair needs a verification run that found something, and an engineer.
    let board: Value = pm
        .get(server.url(&format!("/api/v1/migrations/{id}/board")))
        .send()
        .await?
        .json()
        .await?;
    let bucket = board["buckets"][0]["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no bucket: {board}"))?;
    let repair = server.url(&format!("/api/v1/buckets/{bucket}/repair"));
    let viewer = pm
        .post(&repair)
        .header("X-CSRF-Token", &pm_token)
        .send()
        .await?;
    assert_eq!(viewer.status(), StatusCode::FORBIDDEN);
    let unverified = eng
        .post(&repair)
        .header("X-CSRF-Token", &token)
        .json(&json!({}))
        .send()
        .await?;
    assert_eq!(unverified.status(), StatusCode::CONFLICT);
    assert!(
        unverified
            .text()
            .await?
            .contains("has not been verified yet"),
        "the refusal says what to do first"
    );
    Ok(())
}
