//! The `tern` binary. On this branch it carries only the engine's CLI
//! commands; the web server's `serve` joins them on main.

mod cli;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "tern", version, about = "Zero-downtime data migrations")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Show the buckets a spec's tables split into, and their sizes.
    Plan(cli::plan::PlanArgs),
    /// Copy buckets from source to target, resumable and version-guarded.
    BulkLoad(cli::bulk_load::BulkLoadArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TERN_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Plan(args) => cli::plan::run(args).await,
        Command::BulkLoad(args) => cli::bulk_load::run(args).await,
    }
}
