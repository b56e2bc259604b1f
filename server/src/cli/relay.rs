//! `tern relay --spec S --ramp 25%` (or `--buckets 1,2`): the dual-write
//! relay, applying source changes of ramped-on keys to the target until
//! Ctrl-C (or, with `--until-caught-up`, until it reaches the head of the
//! changelog). Prints progress and lag every second; a restart continues from
//! the position stored in the target.

use std::path::PathBuf;

use std::time::Duration;

use tern_engine::ramp::Ramp;
use tern_engine::{Link, Progress, RelayOptions, RelayRamp, run_relay};

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("which").required(true).args(["ramp", "buckets"])))]
pub struct RelayArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
    /// Dual-write this share of keys (sticky hash of the bucket column): `25%`, `0.5%`, `100%`.
    #[arg(long, value_parser = parse_ramp)]
    pub ramp: Option<Ramp>,
    /// Dual-write these buckets of the stored plan: `1,2,5`.
    #[arg(long, value_delimiter = ',')]
    pub buckets: Option<Vec<usize>>,
    /// With --buckets: only this table's buckets (default: every table's).
    #[arg(long)]
    pub table: Option<String>,
    /// The relay's name; its position is stored under it in the target.
    #[arg(long, default_value = "default")]
    pub name: String,
    /// Salt of the percentage ramp: the migration's name, to match the control plane's ramp.
    #[arg(long, default_value = "")]
    pub salt: String,
    /// Changelog retention: `7d`, `12h`, `30m`; older backlogs are warned about and applied rows pruned.
    #[arg(long, default_value = "7d", value_parser = parse_duration)]
    pub retention: Duration,
    /// Do not prune the changelog.
    #[arg(long)]
    pub no_prune: bool,
    #[command(flatten)]
    pub stream: super::StreamArgs,
}

/// `25%` → a ramp, refusing anything outside 0–100%.
pub fn parse_ramp(s: &str) -> Result<Ramp, String> {
    Ramp::parse(s).map_err(|e| e.to_string())
}

/// `7d`, `12h`, `30m`, `45s`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad =
        || format!("`{s}` is not a duration: write e.g. `7d`, `12h`, `30m`, `45s` or `500ms`");
    let split = t.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86400,
        _ => return Err(bad()),
    };
    Ok(Duration::from_secs(secs))
}

/// One progress line: applied, rate, lag.
pub fn render(p: &Progress) -> String {
    render_after(
        p,
        format!("{}: ramp {}", p.task, p.note.as_deref().unwrap_or("off")),
    )
}

/// A relay's progress line after `head` (what runs, and its ramp or set):
/// changes, keys, rate, lag, position, then a retry and any warnings. The
/// forward and the reverse relay print the same line.
pub fn render_after(p: &Progress, head: String) -> String {
    let mut s = format!(
        "{head} | changes={} keys={} rows={} deleted={} skipped={} | {:.0} changes/s | {}",
        p.done,
        p.tally.keys_applied,
        p.tally.rows_written,
        p.tally.keys_deleted,
        p.tally.keys_skipped,
        p.rate,
        super::lag_position(p)
    );
    if let Some(e) = &p.last_error {
        s.push_str(&format!(" | retrying ({} so far): {e}", p.retries));
    }
    for w in &p.warnings {
        s.push_str(&format!("\n  warning: {w}"));
    }
    s
}

pub async fn run(args: RelayArgs) -> anyhow::Result<()> {
    let spec = crate::cli::load_spec(&args.spec)?;
    let link = Link::connect(spec, &crate::transformers()).await?;
    let load = super::load_guard(&link);
    let ramp = match (&args.ramp, &args.buckets) {
        (Some(r), _) => RelayRamp::Percent(*r),
        (None, Some(b)) => {
            let tables: Vec<&str> = match &args.table {
                Some(t) => {
                    super::known_table(&link, "--table", t)?;
                    vec![t.as_str()]
                }
                None => link.tables(),
            };
            for t in &tables {
                let first = "bulk-load (or plan)";
                super::known_buckets(&link, "--buckets", first, t, b.iter().copied()).await?;
            }
            RelayRamp::buckets(tables, b.iter().copied())
        }
        (None, None) => anyhow::bail!("give --ramp 25% or --buckets 1,2"),
    };
    let mut opts = RelayOptions::fixed(ramp);
    opts.name = args.name.clone();
    opts.salt = args.salt.clone();
    args.stream
        .configure(&mut opts.stream, &mut opts.stop_at_head);
    opts.retention = args.retention;
    opts.prune = !args.no_prune;
    let control = args.stream.control(render, load.as_ref());
    let s = run_relay(&link, opts, &control).await?;
    println!(
        "relay stopped: name={} changes={} keys={} rows={} deleted={} skipped={} retries={} max_lag_s={:.3} seconds={:.3} position={}",
        s.name,
        s.changes,
        s.keys_applied,
        s.rows_written,
        s.keys_deleted,
        s.keys_skipped,
        s.retries,
        s.max_lag_seconds,
        s.elapsed.as_secs_f64(),
        s.position
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramps_outside_zero_to_a_hundred_are_refused() {
        assert!(parse_ramp("25%").is_ok());
        let e = parse_ramp("250%").err().unwrap_or_default();
        assert!(e.contains("250") && e.contains("0 to 100"), "{e}");
        assert!(parse_ramp("half").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("7").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
