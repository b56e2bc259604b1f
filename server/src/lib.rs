//! `tern`: the control plane for zero-downtime data migrations.
//!
//! One binary: the web control plane (`serve`, `demo`), user management, and
//! the engines' commands for scripts and operators. The binary is this
//! library's [`Tern`] with nothing added; a team whose specs name their own
//! transformers builds its own `tern` from it, with no fork:
//!
//! ```no_run
//! use tern_server::Tern;
//! use tern_server::engine::{Emitted, Record};
//!
//! fn shout(_: &Record<'_>, out: &mut Emitted<'_>) -> Result<(), String> {
//!     for row in &mut out.rows {
//!         if let Some(tern_server::engine::Value::Text(t)) = row.get("body").cloned() {
//!             row.set("body", tern_server::engine::Value::Text(t.to_uppercase()))?;
//!         }
//!     }
//!     Ok(())
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     Tern::new().transformer("shout", shout).run()
//! }
//! ```
//!
//! Every command of that binary (`plan`, `bulk-load`, `relay`, `catch-up`,
//! `verify`, `repair`) and every worker of `serve`, `worker` and `demo` then
//! knows the transformers (see `examples/custom-transformer/`).

#![recursion_limit = "256"]

mod cli;
mod settings;
mod telemetry;
mod web;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};

use clap::{Parser, Subcommand};
use tern_control::runners::RunnerContext;
use tern_engine::{Transformer, TransformerRegistry};

/// The engine's plug-in API, for the transformers a custom `tern` registers.
pub use tern_engine as engine;

/// The transformers of this process, set once by [`Tern::run`].
static TRANSFORMERS: OnceLock<Arc<TransformerRegistry>> = OnceLock::new();

/// The transformers the specs of this process may name (none in the plain
/// `tern` binary).
pub(crate) fn transformers() -> Arc<TransformerRegistry> {
    TRANSFORMERS.get().cloned().unwrap_or_default()
}

/// What the control plane's job runners share: the transformers.
pub(crate) fn runner_context() -> RunnerContext {
    RunnerContext {
        registry: transformers(),
    }
}

/// The `tern` program with the transformers a team adds to it.
#[derive(Debug, Default)]
pub struct Tern {
    registry: TransformerRegistry,
}

impl Tern {
    /// The plain `tern`: no transformers.
    pub fn new() -> Tern {
        Tern::default()
    }

    /// Adds a transformer that specs name in `transformers = ["name"]`; a
    /// closure `Fn(&Record, &mut Emitted) -> Result<(), String>` or a type
    /// implementing [`Transformer`]. A later one of the same name replaces it.
    pub fn transformer(mut self, name: impl Into<String>, t: impl Transformer + 'static) -> Tern {
        self.registry.register(name, t);
        self
    }

    /// Adds every transformer of a registry.
    pub fn transformers(mut self, registry: &TransformerRegistry) -> Tern {
        for name in registry.names() {
            if let Some(t) = registry.get(name) {
                self.registry.register(name, SharedTransformer(t));
            }
        }
        self
    }

    /// Parses the command line and runs the command, like the `tern` binary.
    pub fn run(self) -> ExitCode {
        if TRANSFORMERS.set(Arc::new(self.registry)).is_err() {
            eprintln!("tern: Tern::run was called twice in one process");
            return ExitCode::FAILURE;
        }
        run_cli()
    }
}

/// A transformer already shared by another registry.
struct SharedTransformer(Arc<dyn Transformer>);

impl Transformer for SharedTransformer {
    fn transform(
        &self,
        record: &tern_engine::Record<'_>,
        out: &mut tern_engine::Emitted<'_>,
    ) -> Result<(), String> {
        self.0.transform(record, out)
    }
}

/// Tern: plan, run and verify zero-downtime data migrations.
#[derive(Debug, Parser)]
#[command(name = "tern", version, about, long_about = None)]
struct Cli {
    /// Settings file (TOML). Every setting can also be given as a TERN_… variable.
    #[arg(long, global = true, env = "TERN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,

    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the control plane: web UI, JSON API and workers, on the configured store.
    Serve(cli::serve::Args),
    /// Run the control plane on a fresh embedded store with a demo migration and one user per role.
    Demo(cli::demo::Args),
    /// Run job workers only (no web server); any number of them on a PostgreSQL control store.
    Worker(cli::worker::Args),
    /// List every route of the web server and the roles its access rule lets in.
    Access,
    /// Manage the named database connections specs and data fixes use.
    #[command(subcommand)]
    Connection(cli::connection::Command),
    /// Manage the users who can sign in.
    #[command(subcommand)]
    User(cli::user::Command),
    /// Show the buckets a spec's tables split into, and their sizes, before anything is copied.
    Plan(cli::plan::PlanArgs),
    /// Copy buckets from source to target: resumable, throttled, version-guarded.
    BulkLoad(cli::bulk_load::BulkLoadArgs),
    /// Install or remove change capture (triggers and changelog) on the spec's source tables.
    #[command(subcommand)]
    Capture(cli::capture::CaptureCommand),
    /// Dual-write: apply source changes of ramped-on keys to the target, with retries, until stopped.
    Relay(cli::relay::RelayArgs),
    /// Reverse replication: apply target changes of switched buckets back to the source, new → old.
    ReverseRelay(cli::reverse_relay::ReverseRelayArgs),
    /// Replay what a bucket missed since its watermark (or re-copy a time window) until its lag is zero.
    CatchUp(cli::catch_up::CatchUpArgs),
    /// Compare target with source: full diff, sample by strata, or keys changed since the last run.
    Verify(cli::verify::VerifyArgs),
    /// Re-copy the mismatched keys of a verification run, then re-verify them.
    Repair(cli::verify::RepairArgs),
    /// Data fixes: a read-only filter, a throttled mapper, until nothing is left.
    #[command(subcommand)]
    Fix(cli::fix::Command),
    /// Make the new store the source of truth for buckets: gated, a short measured hold, drained, audited.
    Switch(cli::switch::SwitchArgs),
    /// Make the old store the source of truth again for switched buckets, the same way.
    Rollback(cli::switch::SwitchArgs),
}

fn run_cli() -> ExitCode {
    let cli = Cli::parse();
    let env = std::env::vars();
    let mut settings = match settings::Settings::load(cli.config.as_deref(), env) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tern: {e}");
            return ExitCode::from(2);
        }
    };
    if cli.log_json {
        settings.log_format = settings::LogFormat::Json;
    }
    telemetry::init(settings.log_format, &settings.log);
    // No command may point an engine at the control store the settings name.
    tern_control::own_store::register(&match settings.database_url.trim() {
        "" => format!("sqlite://{}", settings.data_dir.join("tern.db").display()),
        url => url.to_string(),
    });

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tern: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => cli::serve::run(settings, args).await,
            Command::Demo(args) => cli::demo::run(settings, args).await,
            Command::Access => cli::access::run(settings).await,
            Command::Connection(cmd) => cli::connection::run(settings, cmd).await,
            Command::User(cmd) => cli::user::run(settings, cmd).await,
            Command::Worker(args) => cli::worker::run(settings, args).await,
            Command::Plan(args) => cli::plan::run(args).await,
            Command::BulkLoad(args) => cli::bulk_load::run(args).await,
            Command::Capture(cmd) => cli::capture::run(cmd).await,
            Command::Relay(args) => cli::relay::run(args).await,
            Command::ReverseRelay(args) => cli::reverse_relay::run(args).await,
            Command::CatchUp(args) => cli::catch_up::run(args).await,
            Command::Verify(args) => cli::verify::run(args).await,
            Command::Repair(args) => cli::verify::repair(args).await,
            Command::Fix(cmd) => cli::fix::run(cmd).await,
            Command::Switch(args) => {
                cli::switch::run(settings, args, tern_control::switch::Direction::Switch).await
            }
            Command::Rollback(args) => {
                cli::switch::run(settings, args, tern_control::switch::Direction::Rollback).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tern: {e:#}");
            ExitCode::FAILURE
        }
    }
}
