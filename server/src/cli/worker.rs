//! `tern worker`: job workers only, no web server. Run any number of them on
//! several machines against one PostgreSQL control store; each leases jobs
//! with `FOR UPDATE SKIP LOCKED`, and takes over jobs whose worker died.

use anyhow::Context;
use tern_control::Dialect;
use tokio_util::sync::CancellationToken;

use crate::cli::serve::{open_store, shutdown_signal};
use crate::settings::Settings;
use crate::workers;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many jobs this process runs at once.
    #[arg(long, default_value_t = 2)]
    concurrency: u32,
}

pub async fn run(settings: Settings, args: Args) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    if store.dialect() == Dialect::Sqlite {
        tracing::warn!(
            "the control store is SQLite: run workers inside `tern serve`, or point TERN_DATABASE_URL at PostgreSQL to share the work between processes"
        );
    }
    let shutdown = CancellationToken::new();
    let mut set = workers::start(
        &store,
        &settings,
        &crate::runner_context(),
        args.concurrency.max(1),
        &shutdown,
    );
    println!(
        "Tern worker running {} job slot(s) on {}",
        args.concurrency.max(1),
        store.display_url()
    );
    shutdown_signal().await;
    shutdown.cancel();
    while let Some(done) = set.join_next().await {
        done.context("a worker task ended abnormally")?;
    }
    store.close().await;
    Ok(())
}
