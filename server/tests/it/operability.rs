use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;

use crate::{DataDir, Server, client, tern_bin};

#[tokio::test]
async fn health_readiness_and_metrics_answer_without_a_session() -> anyhow::Result<()> {
    let data = DataDir::new();
    let server = Server::start(&data.0).await?;
    let http = client();

    let health = http.get(server.url("/healthz")).send().await?;
    let ready = http.get(server.url("/readyz")).send().await?;
    let metrics = http
        .get(server.url("/metrics"))
        .send()
        .await?
        .text()
        .await?;

    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(metrics.contains("tern_store_up 1"));
    assert!(
        metrics.contains(
            "tern_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"2xx\"} 1"
        )
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_the_server_cleanly() -> anyhow::Result<()> {
    let data = DataDir::new();
    let mut server = Server::start(&data.0).await?;
    let pid = server.child.id().ok_or_else(|| anyhow::anyhow!("no pid"))?;
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(15), server.child.wait()).await??;
    assert!(status.success(), "exit status after SIGTERM: {status}");
    Ok(())
}

async fn start_with_bad_settings(
    env: &[(&str, &str)],
    args: &[&str],
) -> anyhow::Result<(i32, String)> {
    let data = DataDir::new();
    let mut cmd = tokio::process::Command::new(tern_bin());
    cmd.args(args)
        .env("TERN_DATA_DIR", &data.0)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = tokio::time::timeout(Duration::from_secs(20), cmd.output()).await??;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
    ))
}

#[tokio::test]
async fn bad_settings_are_refused_at_start_up_naming_the_setting() -> anyhow::Result<()> {
    let (code, err) =
        start_with_bad_settings(&[("TERN_SESSION_IDLE_MINUTES", "0")], &["serve"]).await?;
    assert_eq!(code, 2);
    assert!(err.contains("session_idle_minutes"), "{err}");

    let (code, err) =
        start_with_bad_settings(&[("TERN_LISTEN", "not-an-address")], &["serve"]).await?;
    assert_eq!(code, 2);
    assert!(
        err.contains("TERN_LISTEN") && err.contains("listen"),
        "{err}"
    );

    let (code, err) = start_with_bad_settings(
        &[("TERN_DATABASE_URL", "mysql://root@127.0.0.1/tern")],
        &["serve"],
    )
    .await?;
    assert_eq!(code, 2);
    assert!(err.contains("database_url"), "{err}");

    let dir = DataDir::new();
    let file = dir.0.join("tern.toml");
    std::fs::write(&file, "lisen = \"127.0.0.1:1\"\n")?;
    let path = file.display().to_string();
    let (code, err) = start_with_bad_settings(&[], &["serve", "--config", &path]).await?;
    assert_eq!(code, 2);
    assert!(err.contains("lisen") && err.contains("tern.toml"), "{err}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_store_is_a_clear_error() -> anyhow::Result<()> {
    let (code, err) = start_with_bad_settings(
        &[("TERN_DATABASE_URL", "postgres://postgres@127.0.0.1:1/tern")],
        &["serve", "--listen", "127.0.0.1:0"],
    )
    .await?;
    assert_ne!(code, 0);
    assert!(err.contains("control store"), "{err}");
    Ok(())
}
