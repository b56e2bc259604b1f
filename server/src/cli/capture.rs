//! `tern capture install|remove --spec S`: installs the change-capture
//! triggers and changelog on every source table the spec reads, or removes
//! them all (leaving the source schema exactly as before).

use std::path::PathBuf;

use tern_engine::capture;
use tern_engine::connector::Connector;

#[derive(clap::Subcommand, Debug)]
pub enum CaptureCommand {
    /// Install (or re-install) triggers logging every insert, update and delete to `_tern_changelog`.
    Install(CaptureArgs),
    /// Remove every trigger, function and table capture installed.
    Remove(CaptureArgs),
}

#[derive(clap::Args, Debug)]
pub struct CaptureArgs {
    /// The migration spec (TOML).
    #[arg(long)]
    pub spec: PathBuf,
}

pub async fn run(cmd: CaptureCommand) -> anyhow::Result<()> {
    match cmd {
        CaptureCommand::Install(a) => {
            let spec = crate::cli::load_spec(&a.spec)?;
            let source = Connector::connect(&spec.source.url, "source").await?;
            let report = capture::install(&source, &spec).await?;
            for t in &report.tables {
                println!("capturing {} ({})", t.table, t.columns.join(", "));
            }
            println!(
                "capture installed: tables={} position={}",
                report.tables.len(),
                report.position
            );
        }
        CaptureCommand::Remove(a) => {
            let spec = crate::cli::load_spec(&a.spec)?;
            let source = Connector::connect(&spec.source.url, "source").await?;
            let report = capture::remove(&source).await?;
            for d in &report.dropped {
                println!("dropped {d}");
            }
            println!("capture removed: objects={}", report.dropped.len());
        }
    }
    Ok(())
}
