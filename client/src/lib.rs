//! `tern-client`: what a client service embeds to move its reads from the old
//! system to the new one under Tern's control.
//!
//! It polls the client's read ramp from Tern, decides each key's route
//! locally with the same sticky hash as Tern's routing API (no network call
//! per request), counts the requests it sends each way and reports them, and
//! sends a sampled share of (old answer, new answer) pairs for Tern's shadow
//! comparison.
//!
//! ```no_run
//! # async fn demo() -> Result<(), tern_client::ClientError> {
//! use tern_client::{ClientConfig, Route, TernClient};
//! let tern = TernClient::connect(ClientConfig::new(
//!     "http://tern.internal:3000", "contacts", "inbox-service", "tern_…token…",
//! )).await?;
//! match tern.route(b"member-42") {
//!     Route::New => { /* read from the new store */ }
//!     Route::Old => { /* read from the old store */ }
//! }
//! # Ok(()) }
//! ```
//!
//! If Tern cannot be reached the client keeps the last ramp it read; it never
//! routes to the new system a key Tern has not ramped.
//!
//! # Writes
//!
//! Once buckets switch their source of truth, writes ask Tern too. Turn on
//! [`ClientConfig::write_routing`] and take a permit per write; keep it until
//! the write has committed (see [`write`] for why):
//!
//! ```no_run
//! # async fn demo() -> Result<(), tern_client::ClientError> {
//! use tern_client::{ClientConfig, Primary, TernClient};
//! let mut cfg = ClientConfig::new("http://tern.internal:3000", "contacts", "inbox-service", "tern_…token…");
//! cfg.write_routing = true;
//! let tern = TernClient::connect(cfg).await?;
//! let permit = tern.write_permit("42").await?; // waits out a switch's short hold
//! match permit.primary() {
//!     Primary::New => { /* write the new store */ }
//!     _ => { /* write the old store */ }
//! }
//! drop(permit); // after the write committed
//! # Ok(()) }
//! ```

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
pub use tern_ramp::Ramp;

pub mod write;
pub use write::{Primary, WritePermit};
use write::{RoutingAnswer, WriteState};

/// Where a key's read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    Old,
    New,
}

/// What went wrong talking to Tern.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Tern could not be reached.
    #[error("cannot reach Tern at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The token is wrong or revoked.
    #[error("Tern refused the API token ({0}): create a new one on the client's page")]
    Unauthorized(String),
    /// Tern answered with an error.
    #[error("Tern answered {status}: {message}")]
    Refused { status: u16, message: String },
    /// Tern's answer was not what this client expects.
    #[error("unexpected answer from Tern: {0}")]
    Protocol(String),
    /// A switch held the key's writes longer than the client waits.
    #[error(
        "writes of key {key} are held (a switch of its bucket) after {waited_ms} ms: retry the write"
    )]
    Held { key: String, waited_ms: u64 },
}

/// How to reach Tern and who this client is.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Tern's base URL (`http://tern.internal:3000`).
    pub base_url: String,
    pub migration: String,
    pub client: String,
    /// The client's API token (created on its page in Tern).
    pub token: String,
    /// How often the ramp is read again (default 5 s).
    pub poll_every: Duration,
    /// How often traffic counts are reported (default 60 s).
    pub report_every: Duration,
    /// Follow the write routing (every bucket's write primary) with a long
    /// poll (default off).
    pub write_routing: bool,
    /// How long [`TernClient::write_permit`] waits out a hold (default 5 s).
    pub hold_wait: Duration,
    /// With no answer from Tern for this long every key holds (default
    /// 20 s; keep it below Tern's 30 s active window).
    pub stale_after: Duration,
}

impl ClientConfig {
    pub fn new(
        base_url: impl Into<String>,
        migration: impl Into<String>,
        client: impl Into<String>,
        token: impl Into<String>,
    ) -> ClientConfig {
        ClientConfig {
            base_url: base_url.into().trim_end_matches('/').to_string(),
            migration: migration.into(),
            client: client.into(),
            token: token.into(),
            poll_every: Duration::from_secs(5),
            report_every: Duration::from_secs(60),
            write_routing: false,
            hold_wait: Duration::from_secs(5),
            stale_after: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RampAnswer {
    ramp_millipercent: u32,
    salt: String,
    shadow_rate: f64,
}

struct Inner {
    cfg: ClientConfig,
    http: reqwest::Client,
    ramp: AtomicU32,
    /// `f64` bits of the shadow sampling rate.
    shadow_rate: AtomicU64,
    /// `migration/client`, the same salt Tern's routing API hashes with.
    salt: String,
    old: AtomicU64,
    new: AtomicU64,
    interval_start: AtomicU64,
    stopped: AtomicBool,
    writes: Arc<WriteState>,
}

/// A connected client; cheap to clone, shared by every request handler.
#[derive(Clone)]
pub struct TernClient {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl TernClient {
    /// Reads the ramp once (failing when Tern refuses or cannot be reached)
    /// and starts polling and reporting in the background.
    pub async fn connect(cfg: ClientConfig) -> Result<TernClient, ClientError> {
        let writes = cfg.write_routing;
        let client = TernClient::offline(cfg);
        client.refresh().await?;
        if writes {
            client.refresh_routing(Duration::ZERO).await?;
            tokio::spawn(follow_routing(Arc::downgrade(&client.inner)));
        }
        let weak = Arc::downgrade(&client.inner);
        tokio::spawn(background(weak));
        Ok(client)
    }

    /// A client that has not read its ramp yet (everything routes old) and
    /// runs no background task; call [`refresh`](Self::refresh) and
    /// [`report`](Self::report) yourself.
    pub fn offline(cfg: ClientConfig) -> TernClient {
        let salt = format!("{}/{}", cfg.migration, cfg.client);
        TernClient {
            inner: Arc::new(Inner {
                cfg,
                http: reqwest::Client::builder()
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap_or_default(),
                ramp: AtomicU32::new(0),
                shadow_rate: AtomicU64::new(0f64.to_bits()),
                salt,
                old: AtomicU64::new(0),
                new: AtomicU64::new(0),
                interval_start: AtomicU64::new(now_ms()),
                stopped: AtomicBool::new(false),
                writes: Arc::new(WriteState::new()),
            }),
        }
    }

    /// Sets the ramp by hand (tests, or a service that reads it elsewhere).
    pub fn set_ramp(&self, ramp: Ramp) {
        self.inner
            .ramp
            .store(ramp.millipercent(), Ordering::Relaxed);
    }

    /// The ramp in force.
    pub fn ramp(&self) -> Ramp {
        Ramp::from_millipercent(self.inner.ramp.load(Ordering::Relaxed))
    }

    /// The route of `key`, without counting it.
    #[inline]
    pub fn decide(&self, key: &[u8]) -> Route {
        let ramp = self.ramp();
        if ramp.is_on(&self.inner.salt, key) {
            Route::New
        } else {
            Route::Old
        }
    }

    /// The route of `key`, counted for the next traffic report.
    #[inline]
    pub fn route(&self, key: &[u8]) -> Route {
        let r = self.decide(key);
        match r {
            Route::Old => self.inner.old.fetch_add(1, Ordering::Relaxed),
            Route::New => self.inner.new.fetch_add(1, Ordering::Relaxed),
        };
        r
    }

    /// Where the writes of `key` (the bucket column's value as text) go now,
    /// in the migration's first table.
    pub fn primary(&self, key: &str) -> Primary {
        self.inner
            .writes
            .primary(None, key, self.inner.cfg.stale_after)
    }

    /// Where the writes of `key` go in `table`.
    pub fn primary_in(&self, table: &str, key: &str) -> Primary {
        self.inner
            .writes
            .primary(Some(table), key, self.inner.cfg.stale_after)
    }

    /// A permit to write `key` (in `table`, or the first table), or `None`
    /// while its writes are held. Keep it until the write has committed.
    pub fn begin_write(&self, table: Option<&str>, key: &str) -> Option<WritePermit> {
        self.inner
            .writes
            .begin(table, key, self.inner.cfg.stale_after)
    }

    /// A permit to write `key` in the first table, waiting out a hold for
    /// up to [`ClientConfig::hold_wait`].
    pub async fn write_permit(&self, key: &str) -> Result<WritePermit, ClientError> {
        self.write_permit_in(None, key).await
    }

    /// [`write_permit`](Self::write_permit) in `table`.
    pub async fn write_permit_in(
        &self,
        table: Option<&str>,
        key: &str,
    ) -> Result<WritePermit, ClientError> {
        let start = std::time::Instant::now();
        loop {
            let changed = self.inner.writes.changed.notified();
            if let Some(p) = self.begin_write(table, key) {
                return Ok(p);
            }
            let waited = start.elapsed();
            if waited >= self.inner.cfg.hold_wait {
                return Err(ClientError::Held {
                    key: key.to_string(),
                    waited_ms: waited.as_millis() as u64,
                });
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), changed).await;
        }
    }

    /// The write routing version in force (-1 before the first read).
    pub fn routing_version(&self) -> i64 {
        self.inner.writes.version()
    }

    /// Reads the write routing now, reporting the version applied; with a
    /// `wait`, Tern answers as soon as the version changes (a long poll).
    /// Answers the version read.
    pub async fn refresh_routing(&self, wait: Duration) -> Result<i64, ClientError> {
        let cfg = &self.inner.cfg;
        let applied = self.inner.writes.applied();
        let mut query = vec![
            ("migration", cfg.migration.clone()),
            ("client", cfg.client.clone()),
            ("wait_ms", wait.as_millis().to_string()),
        ];
        if applied >= 0 {
            query.push(("applied", applied.to_string()));
        }
        let body = self
            .send(
                self.inner
                    .http
                    .get(format!("{}/api/v1/write-routing", cfg.base_url))
                    .timeout(wait + Duration::from_secs(10))
                    .query(&query),
            )
            .await?;
        let a: RoutingAnswer =
            serde_json::from_value(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        let version = a.version;
        self.inner.writes.apply(a).await;
        Ok(version)
    }

    /// Requests counted since the last report: (old, new).
    pub fn pending_counts(&self) -> (u64, u64) {
        (
            self.inner.old.load(Ordering::Relaxed),
            self.inner.new.load(Ordering::Relaxed),
        )
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Value, ClientError> {
        let res = req
            .bearer_auth(&self.inner.cfg.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: self.inner.cfg.base_url.clone(),
                source,
            })?;
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let message = body["error"].as_str().unwrap_or_default().to_string();
        if status.as_u16() == 401 {
            return Err(ClientError::Unauthorized(message));
        }
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                message,
            });
        }
        Ok(body)
    }

    /// Reads the ramp (and shadow rate) from Tern now.
    pub async fn refresh(&self) -> Result<Ramp, ClientError> {
        let cfg = &self.inner.cfg;
        let body = self
            .send(
                self.inner
                    .http
                    .get(format!("{}/api/v1/ramp", cfg.base_url))
                    .query(&[("migration", &cfg.migration), ("client", &cfg.client)]),
            )
            .await?;
        let a: RampAnswer =
            serde_json::from_value(body).map_err(|e| ClientError::Protocol(e.to_string()))?;
        if a.salt != self.inner.salt {
            return Err(ClientError::Protocol(format!(
                "Tern hashes this client's keys with salt `{}`, this client with `{}`: upgrade tern-client",
                a.salt, self.inner.salt
            )));
        }
        self.inner
            .shadow_rate
            .store(a.shadow_rate.to_bits(), Ordering::Relaxed);
        let ramp = Ramp::from_millipercent(a.ramp_millipercent);
        let before = self.inner.ramp.swap(ramp.millipercent(), Ordering::Relaxed);
        if before != ramp.millipercent() {
            tracing::info!(client = %cfg.client, from = %Ramp::from_millipercent(before), to = %ramp, "read ramp changed");
        }
        Ok(ramp)
    }

    /// Reports the counts gathered since the last report.
    pub async fn report(&self) -> Result<(), ClientError> {
        let old = self.inner.old.swap(0, Ordering::Relaxed);
        let new = self.inner.new.swap(0, Ordering::Relaxed);
        let now = now_ms();
        let start = self.inner.interval_start.swap(now, Ordering::Relaxed);
        let cfg = &self.inner.cfg;
        let body = json!({
            "migration": cfg.migration,
            "reports": [{ "client": cfg.client, "at": start, "interval_ms": now.saturating_sub(start).max(1), "old": old, "new": new }],
        });
        let sent = self
            .send(
                self.inner
                    .http
                    .post(format!("{}/api/v1/traffic", cfg.base_url))
                    .json(&body),
            )
            .await;
        if sent.is_err() {
            // Keep the counts for the next report.
            self.inner.old.fetch_add(old, Ordering::Relaxed);
            self.inner.new.fetch_add(new, Ordering::Relaxed);
            self.inner.interval_start.store(start, Ordering::Relaxed);
        }
        sent.map(|_| ())
    }

    /// True for the sampled share of requests that should be shadowed.
    pub fn should_shadow(&self) -> bool {
        let rate = f64::from_bits(self.inner.shadow_rate.load(Ordering::Relaxed));
        rate > 0.0 && rand::random::<f64>() < rate
    }

    /// Sends a shadow pair when this request is sampled; answers whether the
    /// answers matched (`None` when not sampled).
    pub async fn shadow(
        &self,
        key: &str,
        old: &Value,
        new: &Value,
    ) -> Result<Option<bool>, ClientError> {
        if !self.should_shadow() {
            return Ok(None);
        }
        self.send_shadow(key, old, new).await.map(Some)
    }

    /// Sends a shadow pair unconditionally; answers whether they matched.
    pub async fn send_shadow(
        &self,
        key: &str,
        old: &Value,
        new: &Value,
    ) -> Result<bool, ClientError> {
        let cfg = &self.inner.cfg;
        let body = self
            .send(
                self.inner
                    .http
                    .post(format!("{}/api/v1/shadow", cfg.base_url))
                    .json(&json!({
                        "migration": cfg.migration, "client": cfg.client, "key": key,
                        "old": old, "new": new, "sampled": true,
                    })),
            )
            .await?;
        body["matched"]
            .as_bool()
            .ok_or_else(|| ClientError::Protocol("the shadow answer has no `matched`".into()))
    }

    /// Stops the background task and sends a last report.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.inner.stopped.store(true, Ordering::Relaxed);
        self.report().await
    }
}

/// Follows the write routing with long polls until the client stops; after
/// applying a change it polls again at once, which tells Tern it applied it.
async fn follow_routing(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        let wait = inner.cfg.poll_every.min(Duration::from_secs(8));
        let client = TernClient { inner };
        if let Err(e) = client.refresh_routing(wait).await {
            tracing::warn!(error = %e, "tern-client: keeping the last write routing");
            drop(client);
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

async fn background(weak: Weak<Inner>) {
    let (poll, report) = match weak.upgrade() {
        Some(i) => (i.cfg.poll_every, i.cfg.report_every),
        None => return,
    };
    let mut poll_tick = tokio::time::interval(poll);
    let mut report_tick = tokio::time::interval(report);
    poll_tick.tick().await;
    report_tick.tick().await;
    loop {
        let which = tokio::select! {
            _ = poll_tick.tick() => 0,
            _ = report_tick.tick() => 1,
        };
        let Some(inner) = weak.upgrade() else { return };
        if inner.stopped.load(Ordering::Relaxed) {
            return;
        }
        let client = TernClient { inner };
        let result = if which == 0 {
            client.refresh().await.map(|_| ())
        } else {
            client.report().await
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "tern-client: keeping the last ramp and counts");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client(ramp: &str) -> TernClient {
        let c = TernClient::offline(ClientConfig::new(
            "http://127.0.0.1:9",
            "contacts",
            "inbox",
            "t",
        ));
        c.set_ramp(Ramp::parse(ramp).expect("a ramp"));
        c
    }

    #[test]
    fn an_unread_ramp_routes_everything_old() {
        let c = TernClient::offline(ClientConfig::new("http://x", "m", "c", "t"));
        assert!((0..1000).all(|k| c.decide(k.to_string().as_bytes()) == Route::Old));
    }

    #[test]
    fn decisions_match_the_ramp_crate_and_are_counted() {
        let c = client("30%");
        for k in 0..1000 {
            let key = format!("member-{k}");
            let expect = if Ramp::parse("30%")
                .expect("ramp")
                .is_on("contacts/inbox", key.as_bytes())
            {
                Route::New
            } else {
                Route::Old
            };
            assert_eq!(c.route(key.as_bytes()), expect);
        }
        let (old, new) = c.pending_counts();
        assert_eq!(old + new, 1000);
        assert!((220..380).contains(&new), "{new}");
    }

    proptest! {
        /// Raising the ramp never sends a key from new back to old.
        #[test]
        fn raising_the_ramp_is_sticky(key in "[a-z0-9]{1,20}", a in 0u32..=100_000, b in 0u32..=100_000) {
            let c = client("0%");
            c.set_ramp(Ramp::from_millipercent(a.min(b)));
            let before = c.decide(key.as_bytes());
            c.set_ramp(Ramp::from_millipercent(a.max(b)));
            if before == Route::New {
                prop_assert_eq!(c.decide(key.as_bytes()), Route::New);
            }
        }
    }
}
