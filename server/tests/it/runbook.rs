//! The runbook over the JSON API: an engineer creates a migration from a spec
//! (SQLite source and target), bulk-loads buckets, and the workers inside
//! `tern serve` finish them; a viewer sees the same data but is refused.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, Row};

use crate::{ApiSession, DataDir, Server, add_user};

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

/// `tern serve` with an engineer `eng` and a viewer `pm` signed in over the
/// API, and the spec of `people` (2,000 rows in a SQLite source) in
/// `buckets` buckets into a SQLite target.
struct People {
    server: Server,
    eng: ApiSession,
    pm: ApiSession,
    spec: String,
    target: String,
    _data: DataDir,
}

impl People {
    async fn start(buckets: u32) -> anyhow::Result<People> {
        let data = DataDir::new();
        add_user(&data.0, "eng", "engineer", &[]).await?;
        add_user(&data.0, "pm", "viewer", &[]).await?;
        let source = sqlite_source(&data.0).await?;
        let target = format!("sqlite://{}?mode=rwc", data.0.join("target.db").display());
        let spec = format!(
            "[source]\nurl = \"{source}\"\n[target]\nurl = \"{target}\"\n\n[[tables]]\nname = \"people\"\nkey = [\"id\"]\nbuckets = {buckets}\n\
             [tables.source]\ntable = \"people\"\nkey = [\"team\", \"id\"]\nbucket = \"team\"\n[tables.columns]\nid = \"id\"\nteam = \"team\"\nname = \"name\"\n"
        );
        let server = Server::start(&data.0).await?;
        let eng = ApiSession::sign_in(&server, "eng").await?;
        let pm = ApiSession::sign_in(&server, "pm").await?;
        Ok(People {
            server,
            eng,
            pm,
            spec,
            target,
            _data: data,
        })
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The engineer creates migration `people` from the spec.
    async fn create(&self, description: Option<&str>) -> anyhow::Result<reqwest::Response> {
        let mut body = json!({ "name": "people", "spec": self.spec });
        if let Some(d) = description {
            body["description"] = d.into();
        }
        self.eng
            .post_json(&self.url("/api/v1/migrations"), &body)
            .await
    }

    /// The buckets on the migration's board, as the viewer reads it.
    async fn buckets(&self, id: i64) -> anyhow::Result<Vec<Value>> {
        let url = self.url(&format!("/api/v1/migrations/{id}/board"));
        let board: Value = self.pm.get(&url).send().await?.json().await?;
        Ok(board["buckets"].as_array().cloned().unwrap_or_default())
    }
}

#[tokio::test]
async fn an_engineer_creates_and_bulk_loads_a_migration_and_a_viewer_is_refused()
-> anyhow::Result<()> {
    // Arrange
    let p = People::start(3).await?;
    let (eng, pm) = (&p.eng, &p.pm);

    // Act: preview, create, bulk-load every bucket.
    let preview = json!({ "name": "people", "spec": p.spec });
    let preview: Value = eng
        .post_json(&p.url("/api/v1/migrations/preview"), &preview)
        .await?
        .json()
        .await?;
    assert_eq!(preview[0]["total_rows"], 2000);
    let created = p.create(Some("test")).await?;
    assert_eq!(created.status(), StatusCode::CREATED);
    let id = created.json::<Value>().await?["id"]
        .as_i64()
        .unwrap_or_default();
    let bucket_ids: Vec<i64> = p
        .buckets(id)
        .await?
        .iter()
        .filter_map(|b| b["id"].as_i64())
        .collect();
    assert_eq!(bucket_ids.len(), 3);

    let actions = p.url(&format!("/api/v1/migrations/{id}/actions"));
    let by_viewer = json!({ "action": "bulk-load", "bucket_ids": bucket_ids });
    let refused = pm.post_json(&actions, &by_viewer).await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let load = json!({ "action": "bulk-load", "bucket_ids": bucket_ids, "reason": "go" });
    let started = eng.post_json(&actions, &load).await?;
    assert_eq!(started.status(), StatusCode::OK);
    let verify = json!({ "action": "verify-full", "bucket_ids": bucket_ids });
    let illegal = eng.post_json(&actions, &verify).await?;
    assert_eq!(illegal.status(), StatusCode::CONFLICT);
    let msg = illegal.json::<Value>().await?["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(msg.contains("it can move to"), "{msg}");

    // Assert: the workers in `tern serve` load every bucket.
    let mut phases = Vec::new();
    for _ in 0..200 {
        phases = p
            .buckets(id)
            .await?
            .iter()
            .map(|b| b["phase"].as_str().unwrap_or_default().to_string())
            .collect();
        if phases.iter().all(|p| p == "loaded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(phases, vec!["loaded"; 3]);
    let mut t = sqlx::SqliteConnection::connect(&p.target).await?;
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
    let p = People::start(2).await?;
    let (eng, pm) = (&p.eng, &p.pm);
    let created: Value = p.create(None).await?.json().await?;
    let id = created["id"]
        .as_i64()
        .ok_or_else(|| anyhow::anyhow!("no id: {created}"))?;
    let relay = p.url(&format!("/api/v1/migrations/{id}/relay"));

    let bad = eng.put_json(&relay, &json!({ "ramp": "250%" })).await?;
    assert_eq!(bad.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(bad.text().await?.contains("250%"));

    let refused = pm.put_json(&relay, &json!({ "ramp": "25%" })).await?;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);

    let set: Value = eng
        .put_json(&relay, &json!({ "ramp": "25%", "reason": "first step" }))
        .await?
        .json()
        .await?;
    assert_eq!(set["label"], "25%");
    let shown: Value = pm.get(&relay).send().await?.json().await?;
    assert_eq!(shown["label"], "25%");
    assert_eq!(shown["job"]["id"], set["job"]["id"]);

    // Repair needs a verification run that found something, and an engineer.
    let buckets = p.buckets(id).await?;
    let bucket = buckets
        .first()
        .and_then(|b| b["id"].as_i64())
        .ok_or_else(|| anyhow::anyhow!("no bucket: {buckets:?}"))?;
    let repair = p.url(&format!("/api/v1/buckets/{bucket}/repair"));
    let viewer = pm.post(&repair).send().await?;
    assert_eq!(viewer.status(), StatusCode::FORBIDDEN);
    let unverified = eng.post_json(&repair, &json!({})).await?;
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
