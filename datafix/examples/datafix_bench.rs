//! The data-fix benchmark's driver (run by `bench/datafix.sh`, which sets up
//! the data): `datafix_bench throughput URL` fixes every row of `fixbench`
//! unthrottled and prints `records=N seconds=S records_per_s=X`;
//! `datafix_bench rate URL RATE SECONDS` runs throttled at RATE for SECONDS and
//! prints `configured_rate=R measured_rate=M rate_error_pct=E` (measured after
//! the first two seconds, from the progress the job reports).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tern_datafix::{FixJob, FixSpec, LiveSettings, PluginRegistry, RunOptions};
use tern_engine::{Progress, RunControl};

const JOB: &str = r#"
name = "bench-lowercase-emails"
key = ["id"]
[filter]
sql = "SELECT id, email, fixed FROM fixbench WHERE fixed = 0"
timeout_s = 120
[mapper]
kind = "update"
table = "fixbench"
set = { email = "lower(email)", fixed = "1" }
[settings]
concurrency = 4
batch_size = 1000
"#;

#[derive(Default)]
struct Samples(Mutex<Vec<(Instant, u64)>>);

impl Samples {
    fn progress(&self, p: &Progress) {
        if let Ok(mut s) = self.0.lock() {
            s.push((Instant::now(), p.tally.rows_written));
        }
        eprint!(
            "\r[bench] {} {} changed, {:.0}/s   ",
            p.task, p.tally.rows_written, p.rate
        );
    }

    /// A run control at `settings`' rate that reports here.
    fn control(self: &Arc<Self>, settings: &tern_datafix::Settings) -> RunControl {
        let me = Arc::clone(self);
        RunControl::new()
            .with_throttle(Arc::new(settings.throttle()))
            .on_progress(move |p| me.progress(p))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: datafix_bench throughput URL | rate URL RATE SECONDS";
    let mode = args.get(1).context(usage)?.clone();
    let mut spec = FixSpec::parse(JOB, "bench job")?;
    spec.url = args.get(2).context(usage)?.clone();
    let job = FixJob::connect(spec, &PluginRegistry::default()).await?;
    let samples = Arc::new(Samples::default());
    match mode.as_str() {
        "throughput" => {
            let mut opts = RunOptions::new(LiveSettings::new(job.spec().settings.clone()));
            opts.control = samples.control(&job.spec().settings);
            let started = Instant::now();
            let report = job.run(opts).await?;
            let secs = started.elapsed().as_secs_f64();
            eprintln!();
            println!(
                "records={} seconds={secs:.1} records_per_s={:.0} passes={}",
                report.changed,
                report.changed as f64 / secs,
                report.passes
            );
        }
        "rate" => {
            let rate: u64 = args.get(3).context(usage)?.parse()?;
            let seconds: u64 = args.get(4).context(usage)?.parse()?;
            let mut settings = job.spec().settings.clone();
            settings.rate = rate;
            settings.batch_size = (rate / 10).max(1) as usize;
            let mut opts = RunOptions::new(LiveSettings::new(settings.clone()));
            opts.control = samples.control(&settings);
            let cancel = opts.control.cancel.clone();
            let started = Instant::now();
            let run = tokio::spawn(async move { job.run(opts).await });
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            cancel.cancel();
            run.await??;
            eprintln!();
            let s = samples.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            let from = s
                .iter()
                .find(|(t, _)| t.duration_since(started) >= Duration::from_secs(2))
                .context("no progress after 2 s")?;
            let to = s.last().context("no progress")?;
            let measured = (to.1 - from.1) as f64 / to.0.duration_since(from.0).as_secs_f64();
            let err = (measured - rate as f64).abs() / rate as f64 * 100.0;
            println!("configured_rate={rate} measured_rate={measured:.1} rate_error_pct={err:.2}");
        }
        _ => anyhow::bail!(usage),
    }
    Ok(())
}
