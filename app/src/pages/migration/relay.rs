//! The dual-write relay: its ramp (a sticky share of keys, or the selected
//! buckets), what it reports (changes applied, lag, retries), and the control
//! to raise it, and the button that installs change capture on the source
//! (buckets loaded after it get a watermark). Buckets may catch up only while
//! the relay covers them.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::RelayView;

/// Starts the relay, or changes the running relay's ramp: `25%`, `100%`,
/// `off`, or `buckets` (the selected ones).
#[server]
pub async fn set_relay_ramp(
    migration_id: i64,
    ramp: String,
    // An empty list is sent as no field at all.
    #[server(default)] bucket_ids: Vec<i64>,
    reason: String,
) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let spec = tern_control::relay::RelayRampSpec::parse(&ramp, &bucket_ids)?;
    let job = store
        .set_relay_ramp(&me, migration_id, spec.clone(), &reason)
        .await?;
    Ok(format!("relay ramp set to {spec} (job {})", job.id))
}

/// Installs change capture on the migration's source tables.
#[server]
pub async fn install_capture(migration_id: i64, reason: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    Ok(store.install_capture(&me, migration_id, &reason).await?)
}

#[component]
pub fn RelayPanel(migration_id: i64, relay: RelayView, can_operate: bool) -> impl IntoView {
    let ui = expect_context::<super::BoardUi>();
    let submit = move |buckets: bool| {
        let ramp = if buckets {
            "buckets".to_string()
        } else {
            ui.relay_draft.get_untracked()
        };
        let bucket_ids = if buckets {
            ui.selected.get_untracked().into_iter().collect()
        } else {
            Vec::new()
        };
        ui.set_relay.dispatch(SetRelayRamp {
            migration_id,
            ramp,
            bucket_ids,
            reason: ui.reason.get_untracked(),
        });
    };
    view! {
        <section class="panel" data-testid="relay-panel">
            <h2>"Dual-write relay"</h2>
            <dl class="stats">
                <div><dt>"Ramp"</dt><dd data-testid="relay-ramp">{relay.ramp.clone()}</dd></div>
                <div><dt>"Job"</dt><dd>{relay.state.clone().map(|s| format!("{s} (#{})", relay.job_id.unwrap_or_default())).unwrap_or_else(|| "not running".into())}</dd></div>
            </dl>
            {relay.message.clone().map(|m| view! { <p class="muted small" data-testid="relay-message">{m}</p> })}
            <p class="muted small">"The relay re-reads each changed source row through the spec and writes it version-guarded. A share of keys is sticky (a key on at 10% stays on at 25%). A bucket counts as dual-written once the ramp covers all of it, and only then may it catch up."</p>
            {can_operate.then(|| view! {
                <div class="row">
                    <label>"Ramp "
                        <input type="text" placeholder="10%, 100% or off" data-testid="relay-input"
                            prop:value=move || ui.relay_draft.get()
                            on:input=move |ev| ui.relay_draft.set(event_target_value(&ev))/>
                    </label>
                    <button class="button small" data-testid="relay-set" on:click=move |_| submit(false)>"Set ramp"</button>
                    <button class="button small" on:click=move |_| submit(true)
                        disabled=move || ui.selected.with(|s| s.is_empty())>"Ramp the selected buckets"</button>
                    <button class="button small" data-testid="install-capture"
                        on:click=move |_| { ui.install_capture.dispatch(InstallCapture { migration_id, reason: ui.reason.get_untracked() }); }>
                        "Install change capture"</button>
                </div>
            })}
            {move || ui.install_capture.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok" data-testid="capture-result">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
            {move || ui.set_relay.value().get().map(|r| match r {
                Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
            })}
        </section>
    }
}
