//! `tern reverse-relay --spec S --switched items:0,1,2`: the reverse relay,
//! for those who run engines by hand. Installs change capture on the target
//! tables of the switched ones (again is harmless), then applies target
//! changes of the switched buckets to the source, new → old, until Ctrl-C
//! (or, with `--until-caught-up`, until it reaches the head of the target's
//! changelog). A table that cannot be replicated back is refused with the
//! reason. Prints progress and lag every second; a restart continues from
//! the position stored in the source.
//!
//! The forward relay must skip the same buckets; run by hand, that is
//! `tern relay … --buckets` with the buckets that are *not* switched.

use std::path::PathBuf;

use tern_engine::reverse::{self, DEFAULT_REVERSE_RELAY};
use tern_engine::{Link, Progress, ReverseOptions, SwitchedBuckets, run_reverse_relay};
use tokio::sync::watch;

#[derive(clap::Args, Debug)]
pub struct ReverseRelayArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// The switched buckets, whose changes in the target go back to the
    /// source: `items:0,1,2` (ranges `items:0-3`; repeat for more tables).
    #[arg(long, required = true, value_parser = parse_switched)]
    pub switched: Vec<SwitchedBuckets>,
    /// The relay's name; its position is stored under it in the source.
    #[arg(long, default_value = DEFAULT_REVERSE_RELAY)]
    pub name: String,
    #[command(flatten)]
    pub stream: super::StreamArgs,
}

fn parse_switched(s: &str) -> Result<SwitchedBuckets, String> {
    s.parse()
}

/// One progress line, as the forward relay's.
fn render(p: &Progress) -> String {
    super::relay::render_after(
        p,
        format!("reverse {}: {}", p.task, p.note.as_deref().unwrap_or("-")),
    )
}

pub async fn run(args: ReverseRelayArgs) -> anyhow::Result<()> {
    let spec = crate::cli::load_spec(&args.spec)?;
    let link = Link::connect(spec, &crate::transformers()).await?;
    let mut switched = SwitchedBuckets::none();
    for s in &args.switched {
        for (table, buckets) in s.iter() {
            super::known_table(&link, "--switched", table)?;
            let indexes = buckets.iter().copied();
            super::known_buckets(&link, "--switched", "bulk-load", table, indexes).await?;
            for b in buckets {
                switched.insert(table, *b);
            }
        }
    }
    for (table, why) in reverse::check(&link).await? {
        if let Some(why) = why
            && switched.iter().any(|(t, _)| t == table)
        {
            anyhow::bail!("table {table} cannot be switched: {why}");
        }
    }
    let installed = reverse::install_capture(&link).await?;
    eprintln!(
        "change capture on the target: {} table(s), from position {}",
        installed.installed.tables.len(),
        installed.installed.position
    );
    // The sender lives as long as the run: the set stays as given.
    let (_tx, rx) = watch::channel(switched);
    let mut opts = ReverseOptions::new(rx);
    opts.name = args.name.clone();
    args.stream
        .configure(&mut opts.stream, &mut opts.stop_at_head);
    let load = super::load_guard(&link);
    let control = args.stream.control(render, load.as_ref());
    let s = run_reverse_relay(&link, opts, &control).await?;
    println!(
        "reverse relay stopped: name={} changes={} keys={} rows={} deleted={} skipped={} retries={} max_lag_s={:.3} seconds={:.3} position={}",
        s.name,
        s.changes,
        s.applied.keys,
        s.applied.rows_written,
        s.applied.rows_deleted,
        s.applied.skipped,
        s.retries,
        s.max_lag_seconds,
        s.elapsed.as_secs_f64(),
        s.position
    );
    Ok(())
}
