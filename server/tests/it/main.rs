//! HTTP tests against the real `tern` binary, started on port 0 with its own
//! data directory (a fresh SQLite control store) and reached over HTTP.

mod access;
mod auth;
mod cli_bulk_load;
mod cli_fix;
mod cli_plan;
mod cli_reverse_relay;
mod clients;
mod operability;
mod overview_cache;
mod runbook;
mod seed;
mod support;
mod switch_drift;
mod switch_journey;
mod workers;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::{Method, RequestBuilder};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

pub const PASSWORD: &str = "correct horse battery";

/// The path of the built `tern` binary.
pub fn tern_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tern")
}

/// A fresh data directory, removed on drop.
pub struct DataDir(pub PathBuf);

impl DataDir {
    pub fn new() -> DataDir {
        let dir = std::env::temp_dir().join(format!("tern-it-{}", uuid_like()));
        std::fs::create_dir_all(&dir).ok();
        DataDir(dir)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("{}-{nanos}", std::process::id())
}

/// `tern user add NAME --role ROLE` with the test password.
pub async fn add_user(data: &Path, name: &str, role: &str, clients: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new(tern_bin());
    cmd.args(["user", "add", name, "--role", role, "--password-stdin"])
        .env("TERN_DATA_DIR", data)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for c in clients {
        cmd.args(["--client", c]);
    }
    let mut child = cmd.spawn().context("starting tern user add")?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(format!("{PASSWORD}\n").as_bytes()).await?;
    }
    let out = child.wait_with_output().await?;
    if !out.status.success() {
        bail!(
            "tern user add failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A running `tern serve`, killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
}

impl Server {
    /// Starts `tern serve` on a free port with `data` as its data directory.
    pub async fn start(data: &Path) -> anyhow::Result<Server> {
        Server::start_with(data, &[]).await
    }

    pub async fn start_with(data: &Path, env: &[(&str, &str)]) -> anyhow::Result<Server> {
        let mut cmd = Command::new(tern_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0"])
            .env("TERN_DATA_DIR", data)
            .env("TERN_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting tern serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let base = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                if let Some(addr) = line.strip_prefix("Tern listening on ") {
                    return Ok::<_, anyhow::Error>(addr.trim().to_string());
                }
            }
            bail!("tern serve exited before listening")
        })
        .await
        .context("tern serve did not start within 30 s")??;
        // Keep draining stdout so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Server { child, base })
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The host:port the server is reached at (for Origin headers).
    pub fn origin(&self) -> String {
        self.base.clone()
    }
}

/// An HTTP client with a cookie jar that does not follow redirects.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("http client")
}

/// Signs in through the sign-in form, as a browser would.
pub async fn sign_in(
    server: &Server,
    http: &reqwest::Client,
    user: &str,
) -> anyhow::Result<reqwest::Response> {
    Ok(http
        .post(server.url("/auth/login"))
        .header("Origin", server.origin())
        .form(&[("username", user), ("password", PASSWORD), ("next", "/")])
        .send()
        .await?)
}

/// A session signed in over the JSON API: its cookie jar and CSRF token.
pub struct ApiSession {
    pub http: reqwest::Client,
    pub csrf: String,
}

impl ApiSession {
    /// Signs `user` in with `POST /api/v1/session`, as a script would.
    pub async fn sign_in(server: &Server, user: &str) -> anyhow::Result<ApiSession> {
        let http = client();
        let session: serde_json::Value = http
            .post(server.url("/api/v1/session"))
            .json(&json!({ "username": user, "password": PASSWORD }))
            .send()
            .await?
            .json()
            .await?;
        let csrf = session["csrf_token"]
            .as_str()
            .with_context(|| format!("a session with a CSRF token: {session}"))?
            .to_string();
        Ok(ApiSession { http, csrf })
    }

    /// A request that carries the session's CSRF token.
    pub fn request(&self, method: Method, url: &str) -> RequestBuilder {
        self.http
            .request(method, url)
            .header("X-CSRF-Token", &self.csrf)
    }

    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// POSTs `body` as JSON.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self.post(url).json(body).send().await?)
    }

    /// PUTs `body` as JSON.
    pub async fn put_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> anyhow::Result<reqwest::Response> {
        Ok(self.put(url).json(body).send().await?)
    }

    /// A read; it needs no CSRF token.
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.http.get(url)
    }
}
