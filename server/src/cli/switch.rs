//! `tern switch --migration M --buckets 1,2 [--batch B] --reason …` and
//! `tern rollback --migration M --buckets 2 --reason …`: move buckets'
//! source of truth on the configured control store, through the same gates,
//! hold and drain as the migration page, and print the hold time. Clients
//! follow the write routing of whichever `tern` process they poll.

use std::time::Duration;

use anyhow::Context;
use tern_control::switch::{Direction, RelayDrain, SwitchOptions};

use crate::cli::serve::open_store;
use crate::cli::user::cli_actor;
use crate::settings::Settings;

#[derive(clap::Args, Debug)]
pub struct SwitchArgs {
    /// The migration's name.
    #[arg(long)]
    pub migration: String,
    /// The buckets (their index in the migration): `1,2,5`.
    #[arg(long, value_delimiter = ',')]
    pub buckets: Vec<i64>,
    /// Every bucket of this batch as well.
    #[arg(long)]
    pub batch: Option<i64>,
    /// Why (kept in the audit log).
    #[arg(long, default_value = "")]
    pub reason: String,
    /// How long every active client has to apply the hold, in ms.
    #[arg(long, default_value_t = 5000)]
    pub ack_timeout_ms: u64,
    /// How long the relay has to drain, in ms.
    #[arg(long, default_value_t = 30_000)]
    pub drain_timeout_ms: u64,
}

pub async fn run(settings: Settings, args: SwitchArgs, direction: Direction) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let migration = store
        .migration_summaries()
        .await?
        .into_iter()
        .find(|m| m.migration.name == args.migration)
        .with_context(|| format!("there is no migration `{}`", args.migration))?
        .migration;
    let idxs = store
        .switch_targets(migration.id, &args.buckets, args.batch)
        .await?;
    let drain = RelayDrain {
        store: store.clone(),
        ctx: crate::runner_context(),
    };
    let opts = SwitchOptions {
        ack_timeout: Duration::from_millis(args.ack_timeout_ms),
        drain_timeout: Duration::from_millis(args.drain_timeout_ms),
        ..SwitchOptions::default()
    };
    let r = store
        .switch_buckets(
            &cli_actor(),
            migration.id,
            &idxs,
            direction,
            &args.reason,
            &drain,
            opts,
        )
        .await?;
    println!(
        "{} buckets={} clients={}/{} hold_ms={}",
        r.direction,
        r.buckets
            .iter()
            .map(i64::to_string)
            .collect::<Vec<_>>()
            .join(","),
        r.clients_acked,
        r.clients_expected,
        r.hold_ms.unwrap_or(0)
    );
    Ok(())
}
