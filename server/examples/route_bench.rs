//! The routing benchmark's tools (driven by `bench/route.sh`):
//!
//! - `route_bench setup DATA_DIR` — creates migration `bench` with client
//!   `svc` at a 25% read ramp in the SQLite store under DATA_DIR and prints
//!   an API token for it;
//! - `route_bench http URL TOKEN CONNECTIONS SECONDS` — a small HTTP/1.1
//!   keep-alive load generator: CONNECTIONS connections each send
//!   `GET /api/v1/route` for SECONDS and time every answer; prints
//!   `req_per_s=X p50_ms=Y p99_ms=Z errors=N`;
//! - `route_bench inproc SECONDS` — routing decisions in-process with
//!   `tern-client`; prints `decisions_per_s=X`.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The store records the tests seed too.
#[path = "../tests/it/seed.rs"]
mod seed;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("setup") => setup(args.get(1).context("setup DATA_DIR")?).await,
        Some("http") => {
            let url = args.get(1).context("http URL TOKEN CONNECTIONS SECONDS")?;
            let token = args.get(2).context("missing TOKEN")?;
            let conns: usize = args.get(3).map(|s| s.parse()).transpose()?.unwrap_or(32);
            let secs: f64 = args.get(4).map(|s| s.parse()).transpose()?.unwrap_or(10.0);
            http(url, token, conns, Duration::from_secs_f64(secs)).await
        }
        Some("inproc") => {
            let secs: f64 = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(3.0);
            inproc(Duration::from_secs_f64(secs));
            Ok(())
        }
        _ => bail!(
            "usage: route_bench setup DATA_DIR | http URL TOKEN CONNECTIONS SECONDS | inproc SECONDS"
        ),
    }
}

async fn setup(data: &str) -> anyhow::Result<()> {
    use tern_control::{Actor, Store};
    let store = Store::open_sqlite_file(&std::path::Path::new(data).join("tern.db")).await?;
    let sys = Actor::system();
    let m = seed::migration(&store, "bench", "x = 1".into(), 1).await?;
    let c = seed::clients(&store, m, &["svc"], "bench").await?[0];
    store
        .set_ramp(
            &sys,
            c,
            tern_ramp::Ramp::parse("25%")?,
            "bench",
            Some("benchmark data"),
        )
        .await?;
    let (_, token) = store.create_token(&sys, m, Some(c), "bench").await?;
    store.close().await;
    println!("{token}");
    Ok(())
}

/// Reads one HTTP/1.1 response with a Content-Length body; answers its status.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> anyhow::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end])?;
            let status: u16 = head.get(9..12).context("short status line")?.parse()?;
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("no content-length")?;
            while buf.len() < end + 4 + len {
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return Ok(status);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn http(url: &str, token: &str, conns: usize, duration: Duration) -> anyhow::Result<()> {
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("no host in URL")?
        .to_string();
    if !(addr.starts_with("127.") || addr.starts_with("localhost") || addr.starts_with("[::1]")) {
        bail!("the load generator only targets loopback addresses, not {addr}");
    }
    let start = Instant::now();
    let deadline = start + duration;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let addr = addr.clone();
        let token = token.to_string();
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(&addr).await?;
            stream.set_nodelay(true)?;
            let mut lat: Vec<u32> = Vec::with_capacity(400_000);
            let mut errors = 0u64;
            let mut buf = Vec::with_capacity(8192);
            let mut i: u64 = c as u64 * 1_000_003;
            while Instant::now() < deadline {
                i += 1;
                let req = format!(
                    "GET /api/v1/route?migration=bench&client=svc&key=member-{i} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\r\n"
                );
                let t = Instant::now();
                stream.write_all(req.as_bytes()).await?;
                let status = read_response(&mut stream, &mut buf).await?;
                lat.push(t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                if status != 200 {
                    errors += 1;
                }
            }
            anyhow::Ok((lat, errors))
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (lat, e) = t.await??;
        all.extend(lat);
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "req_per_s={:.0} p50_ms={:.3} p99_ms={:.3} errors={errors}",
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}

fn inproc(duration: Duration) {
    use tern_client::{ClientConfig, Route, TernClient};
    let client = TernClient::offline(ClientConfig::new(
        "http://127.0.0.1:1",
        "bench",
        "svc",
        "unused",
    ));
    client.set_ramp(tern_ramp::Ramp::parse("25%").unwrap_or_default());
    let keys: Vec<String> = (0..4096).map(|k| format!("member-{k}")).collect();
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut new = 0u64;
    while start.elapsed() < duration {
        for k in &keys {
            if client.route(k.as_bytes()) == Route::New {
                new += 1;
            }
        }
        n += keys.len() as u64;
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    eprintln!(
        "[bench] in-process: {n} decisions, {:.1}% new",
        new as f64 * 100.0 / n as f64
    );
    println!("decisions_per_s={rate:.0}");
}
