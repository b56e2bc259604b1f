//! Bench-only driver for `bench/relay.sh` (not part of the library): seeds a
//! MariaDB `items` table, installs capture, bulk-loads it into PostgreSQL,
//! runs the relay at 100% while paced writers (4 connections) change
//! WRITES_PER_S rows a second (inserts, updates, deletes, in 25 ms ticks) for `--seconds`, then
//! waits for the relay to reach the head and prints one line:
//! `writes=N writes_per_s=W applied=A applied_per_s=R max_lag_s=L`.
//! The script compares source and target itself.
//!
//! cargo run --example relay_bench -- SOURCE_URL TARGET_URL WRITES_PER_S SECONDS

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::Rng;
use sqlx::MySqlPool;
use tern_engine::{
    Link, RelayOptions, RelayRamp, RunControl, Spec, TransformerRegistry, capture, load_bucket,
    run_relay,
};
use tokio_util::sync::CancellationToken;

const SEED_ROWS: i64 = 50_000;
/// Writer connections.
const WRITERS: u64 = 4;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, source_url, target_url, wps, secs] = args.as_slice() else {
        anyhow::bail!("usage: relay_bench SOURCE_URL TARGET_URL WRITES_PER_S SECONDS");
    };
    let wps: u64 = wps.parse().context("WRITES_PER_S")?;
    let secs: u64 = secs.parse().context("SECONDS")?;
    let source = MySqlPool::connect(source_url).await?;
    sqlx::query(
        "CREATE TABLE items (id BIGINT NOT NULL PRIMARY KEY, member_id BIGINT NOT NULL, \
                 body VARCHAR(200) NOT NULL, KEY member_id (member_id, id))",
    )
    .execute(&source)
    .await?;
    for start in (1..=SEED_ROWS).step_by(5000) {
        let values: Vec<String> = (start..start + 5000)
            .map(|id| format!("({id}, {}, 'seed {id}')", id % 5000))
            .collect();
        sqlx::query(&format!("INSERT INTO items VALUES {}", values.join(",")))
            .execute(&source)
            .await?;
    }
    let text = format!(
        "chunk_rows = 5000\n[source]\nurl = \"{source_url}\"\n[target]\nurl = \"{target_url}\"\n\
         [[tables]]\nname = \"items\"\nkey = [\"id\"]\nbuckets = 4\n\
         [tables.source]\ntable = \"items\"\nbucket = \"member_id\"\n\
         [tables.columns]\nid = \"id\"\nmember_id = \"member_id\"\nbody = \"body\"\n"
    );
    let spec = Spec::parse(&text, "bench.toml")?;
    let link = Arc::new(Link::connect(spec.clone(), &TransformerRegistry::new()).await?);
    capture::install(link.source(), &spec).await?;
    let plan = link.plan_or_resume("items", None).await?;
    for b in &plan.buckets {
        load_bucket(&link, b, &RunControl::new()).await?;
    }
    eprintln!(
        "[relay_bench] seeded and loaded {SEED_ROWS} rows; relay at 100%, writer at {wps}/s for {secs}s"
    );

    // The relay, tracking the highest lag it reports.
    let cancel = CancellationToken::new();
    let max_lag_ms = Arc::new(AtomicU64::new(0));
    let applied = Arc::new(AtomicU64::new(0));
    let low = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let opts = RelayOptions::fixed(RelayRamp::full());
    let control = RunControl::new().with_cancel(cancel.clone()).on_progress({
        let (max_lag_ms, applied, low, measuring) = (
            max_lag_ms.clone(),
            applied.clone(),
            low.clone(),
            measuring.clone(),
        );
        let last_print = std::sync::Mutex::new(Instant::now());
        move |p: &tern_engine::Progress| {
            let lag = p.lag.unwrap_or_default();
            if measuring.load(Ordering::Relaxed) {
                max_lag_ms.fetch_max((lag.seconds * 1000.0) as u64, Ordering::Relaxed);
            }
            applied.store(p.done, Ordering::Relaxed);
            let low_seq = p.position.as_ref().map_or(0, |p| p.low());
            low.store(u64::try_from(low_seq).unwrap_or(0), Ordering::Relaxed);
            if let Ok(mut at) = last_print.lock()
                && at.elapsed() >= Duration::from_secs(2)
            {
                *at = Instant::now();
                eprintln!(
                    "[relay_bench] applied={} rate={:.0}/s lag={} changes {:.2}s",
                    p.done, p.rate, lag.changes, lag.seconds
                );
            }
        }
    });
    let relay = {
        let link = link.clone();
        tokio::spawn(async move { run_relay(&link, opts, &control).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // The paced writers: WRITERS connections, each every 25 ms one
    // transaction of inserts, updates and deletes, together `wps` rows a second.
    let applied_before = applied.load(Ordering::Relaxed);
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let until = started + Duration::from_secs(secs);
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let source = source.clone();
        // Shares of wps per tick, the remainder to the first writers.
        let share = wps / WRITERS + u64::from(w < wps % WRITERS);
        writers.push(tokio::spawn(paced_writer(source, w, share, until)));
    }
    let mut writes = 0u64;
    for w in writers {
        writes += w.await??;
    }
    let write_secs = started.elapsed().as_secs_f64();
    // Wait for the relay to pass every change the writer made.
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM _tern_changelog")
        .fetch_one(&source)
        .await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while (low.load(Ordering::Relaxed) as i64) < head {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the relay did not catch up within 2 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let total_secs = started.elapsed().as_secs_f64();
    measuring.store(false, Ordering::Relaxed);
    cancel.cancel();
    let summary = relay.await??;
    let changes = summary.changes.saturating_sub(applied_before);
    println!(
        "writes={writes} writes_per_s={:.0} applied={changes} applied_per_s={:.0} max_lag_s={:.2} drain_s={:.2}",
        writes as f64 / write_secs,
        changes as f64 / total_secs,
        max_lag_ms.load(Ordering::Relaxed) as f64 / 1000.0,
        total_secs - write_secs
    );
    Ok(())
}

/// Changes `per_s` rows a second until `until`, in 25 ms ticks (30% inserts
/// of new ids of its own, 50% updates, 20% deletes of random ids); returns
/// the rows changed. Rows not changed in a tick (an id deleted before) are
/// made up in the next.
async fn paced_writer(
    source: MySqlPool,
    w: u64,
    per_s: u64,
    until: Instant,
) -> anyhow::Result<u64> {
    let mut tick = tokio::time::interval(Duration::from_millis(25));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let per_tick = per_s as f64 / 40.0;
    let mut owed = 0.0f64;
    // New ids: SEED_ROWS + 1 + w, stepping by WRITERS, so writers never collide.
    let mut next_id = SEED_ROWS + 1 + w as i64;
    let mut writes = 0u64;
    while Instant::now() < until {
        tick.tick().await;
        owed += per_tick;
        let n = owed.floor() as u64;
        if n == 0 {
            continue;
        }
        let (ins, upd) = (n * 3 / 10, n * 5 / 10);
        let del = n - ins - upd;
        let top = next_id.max(SEED_ROWS);
        let (upd_ids, del_ids, members): (Vec<i64>, Vec<i64>, Vec<i64>) = {
            let mut rng = rand::thread_rng();
            (
                (0..upd).map(|_| rng.gen_range(1..top)).collect(),
                (0..del).map(|_| rng.gen_range(1..top)).collect(),
                (0..ins).map(|_| rng.gen_range(0..5000)).collect(),
            )
        };
        let mut statements = Vec::with_capacity(3);
        if ins > 0 {
            let mut values = Vec::with_capacity(members.len());
            for m in &members {
                values.push(format!("({next_id}, {m}, 'new {next_id}')"));
                next_id += WRITERS as i64;
            }
            statements.push(format!("INSERT INTO items VALUES {}", values.join(",")));
        }
        let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        if upd > 0 {
            statements.push(format!(
                "UPDATE items SET body = CONCAT('changed ', id, ' ', {writes}) WHERE id IN ({})",
                list(&upd_ids)
            ));
        }
        if del > 0 {
            statements.push(format!(
                "DELETE FROM items WHERE id IN ({})",
                list(&del_ids)
            ));
        }
        let done = write_retrying(&source, &statements).await?;
        owed -= done as f64;
        writes += done;
    }
    Ok(writes)
}

/// Runs `statements` in one transaction, again when InnoDB picks it as a
/// deadlock's victim (two writers' updates and deletes of random ids), as
/// an application would. The rows they affected.
async fn write_retrying(source: &MySqlPool, statements: &[String]) -> anyhow::Result<u64> {
    let mut attempt = 0;
    loop {
        let mut tx = source.begin().await?;
        let mut done = 0u64;
        let mut failed = None;
        for st in statements {
            match sqlx::query(st).execute(&mut *tx).await {
                Ok(r) => done += r.rows_affected(),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let result = match failed {
            None => tx.commit().await.map(|()| done),
            Some(e) => Err(e),
        };
        match result {
            Err(e)
                if attempt < 5
                    && e.as_database_error().and_then(|d| d.code()).as_deref() == Some("40001") =>
            {
                attempt += 1;
            }
            other => return Ok(other?),
        }
    }
}
