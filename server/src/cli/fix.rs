//! `tern fix run job.toml` and `tern fix dry-run job.toml`: a data fix from a
//! script. `run` prints progress (records, rate, ETA) on the terminal and the
//! failures at the end; Ctrl-C stops after the page in hand.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::Mutex;

use indicatif::{ProgressBar, ProgressStyle};
use tern_datafix::{
    FixFailure, FixJob, FixObserver, FixSpec, LiveSettings, PluginRegistry, RunOptions, RunStatus,
};
use tern_engine::{Progress, RunControl};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the fix until its filter selects nothing (progress on the terminal).
    Run(RunArgs),
    /// Show the first records the filter selects and the change each would get; writes nothing.
    DryRun(DryRunArgs),
}

#[derive(Debug, clap::Args)]
pub struct Common {
    /// The job spec (TOML), e.g. examples/truncate_first_names.toml.
    pub job: PathBuf,
    /// The database to fix, when the job file names none (or to override it).
    #[arg(long, env = "TERN_FIX_URL")]
    pub url: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    /// Records per second at most (0: unthrottled); default: the job's.
    #[arg(long)]
    pub rate: Option<u64>,
    /// Records mapped at once; default: the job's.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Records per page and write transaction; default: the job's.
    #[arg(long)]
    pub batch_size: Option<usize>,
}

#[derive(Debug, clap::Args)]
pub struct DryRunArgs {
    #[command(flatten)]
    pub common: Common,
    /// How many records to show.
    #[arg(long, short = 'n', default_value_t = 10)]
    pub limit: usize,
}

fn load(c: &Common) -> anyhow::Result<FixSpec> {
    let text = crate::cli::read_interpolated(&c.job)?;
    let mut spec = FixSpec::parse(&text, &c.job.display().to_string())?;
    if let Some(url) = &c.url {
        spec.url = url.clone();
    }
    tern_control::own_store::refuse(&spec.url, &format!("{}: url", c.job.display()))?;
    Ok(spec)
}

pub async fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::DryRun(args) => dry_run(args).await,
        Command::Run(args) => run_fix(args).await,
    }
}

async fn dry_run(args: DryRunArgs) -> anyhow::Result<()> {
    let spec = load(&args.common)?;
    let job = FixJob::connect(spec, &PluginRegistry::default()).await?;
    let total = job.count().await?;
    let records = job.dry_run(args.limit).await?;
    println!(
        "{} selects {total} records now; the first {} and their changes (nothing written):",
        job.spec().name,
        records.len()
    );
    for r in &records {
        match r.action.as_str() {
            "set" => {
                for (col, before, after) in &r.changes {
                    println!("  {} {col}: {before} -> {after}", r.key_text);
                }
            }
            "failure" => println!(
                "  {} fails: {}",
                r.key_text,
                r.reason.as_deref().unwrap_or("")
            ),
            other => println!("  {} {}", r.key_text, other.replace('_', " ")),
        }
    }
    Ok(())
}

struct Terminal {
    bar: ProgressBar,
    failures: Mutex<Vec<FixFailure>>,
}

/// Shows a run's progress on the bar: this pass's records, what this run
/// changed, the rate and the time left.
fn show(bar: &ProgressBar, p: &Progress) {
    if let Some(t) = p.total {
        bar.set_length(t);
    }
    bar.set_position(p.done);
    let eta = p
        .eta
        .map_or_else(|| "?".to_string(), |d| format!("{:.0}s", d.as_secs_f64()));
    bar.set_message(format!(
        "{}: {} changed, {} failed, {} stale, {:.0}/s, ETA {eta}",
        p.task, p.tally.rows_written, p.tally.failed, p.tally.stale, p.rate
    ));
}

#[async_trait::async_trait]
impl FixObserver for Terminal {
    async fn failures(&self, f: &[FixFailure]) -> Result<(), String> {
        for x in f {
            self.bar
                .println(format!("failed {}: {}", x.key_text, x.reason));
        }
        if let Ok(mut all) = self.failures.lock() {
            all.extend_from_slice(f);
        }
        Ok(())
    }
}

async fn run_fix(args: RunArgs) -> anyhow::Result<()> {
    let mut spec = load(&args.common)?;
    if let Some(r) = args.rate {
        spec.settings.rate = r;
    }
    if let Some(c) = args.concurrency {
        spec.settings.concurrency = c;
    }
    if let Some(b) = args.batch_size {
        spec.settings.batch_size = b;
    }
    spec.settings.check("command line")?;
    let job = FixJob::connect(spec, &PluginRegistry::default()).await?;
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let term = Arc::new(Terminal {
        bar: bar.clone(),
        failures: Mutex::new(Vec::new()),
    });
    let mut opts = RunOptions::new(LiveSettings::new(job.spec().settings.clone()));
    opts.observer = term.clone();
    let shown = bar.clone();
    let load = job.load_guard().and_then(super::announced);
    opts.control = RunControl::new()
        .with_throttle(Arc::new(job.spec().settings.throttle()))
        .with_cancel(super::stop_on_ctrl_c("stopping after the current page"))
        .on_progress(move |p| show(&shown, p))
        .guarded(load.as_ref());
    let report = job.run(opts).await;
    bar.finish_and_clear();
    let report = report?;
    let what = match report.status {
        RunStatus::Completed => "done: the filter selects nothing more",
        RunStatus::Cancelled => "stopped",
    };
    println!(
        "{}: {what}; {} passes, {} records changed, {} failed, {} stale, {:.1}s ({:.0} records/s)",
        job.spec().name,
        report.passes,
        report.changed,
        report.failed,
        report.stale,
        report.elapsed_seconds,
        report.changed as f64 / report.elapsed_seconds.max(1e-9)
    );
    let failures = term.failures.lock().map(|f| f.len()).unwrap_or(0);
    if failures > 0 {
        anyhow::bail!("{failures} records failed (listed above)");
    }
    Ok(())
}
