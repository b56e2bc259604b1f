//! Live pages: a tick that advances every few seconds in the browser, so a
//! resource that depends on it refetches and the page shows progress without
//! reloading. On the server (and before hydration) it stays at zero.

use std::time::Duration;

use leptos::prelude::*;

/// A signal that counts up every `period` once the page is hydrated.
pub fn use_tick(period: Duration) -> ReadSignal<u64> {
    let (tick, set_tick) = signal(0u64);
    Effect::new(move |_| {
        if let Ok(handle) = set_interval_with_handle(move || set_tick.update(|t| *t += 1), period) {
            on_cleanup(move || handle.clear());
        }
    });
    tick
}
