//! Engine work the web layer cannot await directly: the compiler cannot prove
//! some engine futures `Send` for every lifetime of their sqlx executors, which
//! axum's and the server functions' futures need. Such work runs on a
//! single-threaded runtime of its own, on a blocking thread.

use std::future::Future;

use crate::error::{ControlError, Result};

/// Runs the future `make` builds on a runtime of its own; `what` names the
/// work in errors ("installing change capture").
pub(crate) async fn on_own_runtime<T, Fut>(
    what: &'static str,
    make: impl FnOnce() -> Fut + Send + 'static,
) -> Result<T>
where
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ControlError::Internal(format!("a runtime for {what}: {e}")))?;
        runtime.block_on(make())
    })
    .await
    .map_err(|e| ControlError::Internal(format!("{what} stopped: {e}")))?
}
