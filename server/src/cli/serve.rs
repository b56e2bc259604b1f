//! `tern serve`: the control plane on the configured store.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use tern_control::Store;
use tern_control::runners::RunnerContext;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;
use crate::{web, workers};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (overrides the `listen` setting); port 0 picks a free port.
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
}

pub async fn run(mut settings: Settings, args: Args) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    let store = open_store(&settings).await?;
    serve(store, &settings, |addr| {
        println!("Tern listening on http://{addr}");
    })
    .await
}

/// Opens the configured control store (creating the SQLite file when needed).
pub async fn open_store(settings: &Settings) -> anyhow::Result<Store> {
    let store = if settings.database_url.trim().is_empty() {
        Store::open_sqlite_file(&settings.data_dir.join("tern.db")).await
    } else {
        Store::open(settings.database_url.trim()).await
    };
    let store = store
        .context("cannot open the control store")?
        .with_secret_key(settings.secret_key()?);
    tracing::info!(store = %store.display_url(), "control store ready");
    Ok(store)
}

/// Serves the control plane until SIGTERM or Ctrl-C, then drains in-flight
/// requests and closes the store. `on_ready` gets the bound address.
pub async fn serve(
    store: Store,
    settings: &Settings,
    on_ready: impl FnOnce(SocketAddr),
) -> anyhow::Result<()> {
    let pkg = settings.site_root.join("pkg").join("tern.js");
    if !pkg.exists() {
        tracing::warn!(
            site_root = %settings.site_root.display(),
            "the front end is not built: pages will render but not hydrate; run `cargo xtask demo` or set site_root"
        );
    }
    let listener = tokio::net::TcpListener::bind(settings.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {}: is another tern running there? choose another with --listen or TERN_LISTEN",
                settings.listen
            )
        })?;
    let addr = listener.local_addr().context("reading the bound address")?;
    let runners = RunnerContext::default();
    let state = web::app_state(store.clone(), settings, runners.clone());
    let app = web::router(state, settings);
    let stop_workers = CancellationToken::new();
    let mut background =
        workers::start(&store, settings, &runners, settings.workers, &stop_workers);

    let sweeper = tokio::spawn({
        let store = store.clone();
        async move {
            let mut tick = tokio::time::interval(Duration::from_secs(600));
            loop {
                tick.tick().await;
                match store.delete_expired_sessions().await {
                    Ok(0) => {}
                    Ok(n) => tracing::debug!(sessions = n, "expired sessions deleted"),
                    Err(e) => tracing::warn!(error = %e, "could not delete expired sessions"),
                }
            }
        }
    });

    // Install the signal handlers before saying we are ready (see shutdown_signal).
    let shutdown = shutdown_signal();
    tracing::info!(%addr, "serving");
    on_ready(addr);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("the web server stopped")?;
    // Running jobs stop at their next checkpoint and go back to the queue.
    stop_workers.cancel();
    while background.join_next().await.is_some() {}
    sweeper.abort();
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
///
/// The handlers are installed when this is called, not when the future is
/// first polled: `serve` announces readiness before axum polls its shutdown
/// future, and a SIGTERM arriving in between must still stop the server
/// cleanly rather than kill it with the default action.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let (interrupt, terminate) = handlers;
            let (mut interrupt, mut terminate) = match (interrupt, terminate) {
                (Ok(i), Ok(t)) => (i, t),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::warn!(error = %e, "cannot listen for Ctrl-C or SIGTERM");
                    return std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!("Ctrl-C: shutting down"),
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::warn!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C: shutting down");
        }
    }
}
