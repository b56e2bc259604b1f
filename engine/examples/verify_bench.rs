//! The engine side of `bench/verify.sh`, built without the web server:
//! `verify_bench load SPEC` bulk-loads every bucket (4 at a time), and
//! `verify_bench verify SPEC [PARALLEL [row-by-row]]` runs a full diff of every table
//! through [`tern_engine::verify::verify`], the same call `tern verify`
//! makes, printing progress to stderr and one line
//! `verify done: rows=N compared=… missing=… extra=… different=… accuracy=…%`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::StreamExt;
use tern_engine::verify::{self, VerifyOptions};
use tern_engine::{Counts, Link, RunControl, Spec, TransformerRegistry, load_bucket};

/// The allocator of the `tern` binary, so the bench measures what
/// `tern verify` does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(cmd), Some(path)) = (args.get(1), args.get(2)) else {
        anyhow::bail!("usage: verify_bench load|verify SPEC [PARALLEL]");
    };
    let parallel: usize = args.get(3).map_or(Ok(4), |s| s.parse())?;
    let spec = Spec::from_file(std::path::Path::new(path))?;
    let link = Link::connect(spec, &TransformerRegistry::new()).await?;
    let tables: Vec<String> = link.tables().iter().map(|s| s.to_string()).collect();
    let started = Instant::now();
    match cmd.as_str() {
        "load" => {
            for t in &tables {
                let plan = link.plan_or_resume(t, None).await?;
                let control = RunControl::new();
                let mut loads = futures::stream::iter(
                    plan.buckets.iter().map(|b| load_bucket(&link, b, &control)),
                )
                .buffer_unordered(parallel);
                let mut rows = 0;
                while let Some(r) = loads.next().await {
                    rows += r?.rows_read;
                }
                eprintln!(
                    "loaded {t}: {rows} rows in {:.1}s",
                    started.elapsed().as_secs_f64()
                );
            }
        }
        "verify" => {
            let mut total = Counts::default();
            let mut rows = 0;
            for t in &tables {
                let done = Arc::new(AtomicU64::new(0));
                let mut opts = VerifyOptions::full(t);
                opts.parallelism = parallel;
                opts.row_by_row = args.get(4).is_some_and(|a| a == "row-by-row");
                let seen = done.clone();
                let control = RunControl::new().on_progress(move |p| {
                    let n = seen.fetch_add(1, Ordering::Relaxed);
                    if n.is_multiple_of(40) {
                        eprintln!(
                            "  {} bucket {}: {}/{} rows, {:.0} rows/s, eta {:?}",
                            p.task.table().unwrap_or_default(),
                            p.task.bucket().unwrap_or_default(),
                            p.done,
                            p.total.unwrap_or(p.done),
                            p.rate,
                            p.eta.map(|e| e.as_secs())
                        );
                    }
                });
                let r = verify::verify(&link, &opts, &control).await?;
                println!(
                    "{t} run {}: accuracy {}% ({} of {}), {} rows equal by chunk checksums",
                    r.run_id,
                    r.counts.accuracy_text(),
                    r.counts.matched,
                    r.counts.compared,
                    r.rows_by_checksum
                );
                if let Some(why) = &r.row_by_row_reason {
                    println!("compared row by row: {why}");
                }
                print!("{}", r.tree.render());
                rows += r.keys_read;
                total.add(&r.counts);
            }
            let secs = started.elapsed().as_secs_f64();
            println!(
                "verify done: rows={rows} compared={} matched={} missing={} extra={} different={} \
                 accuracy={}% seconds={secs:.3}",
                total.compared,
                total.matched,
                total.missing,
                total.extra,
                total.different,
                total.accuracy_text()
            );
        }
        other => anyhow::bail!("unknown command `{other}`: load or verify"),
    }
    Ok(())
}
