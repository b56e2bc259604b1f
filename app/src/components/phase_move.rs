//! Moving a bucket's phase by hand, on the bucket page. A move to `loaded`,
//! `caught-up` or `verified` needs the job or verification run that earns it;
//! without, the server refuses and says what is missing. An admin may
//! override with a reason (audited with what was missing).

use leptos::prelude::*;

use crate::error::AppError;

/// Moves bucket `bucket_id` to `to`; `override_evidence` (admins only, with a
/// reason) moves it without the evidence the phase needs.
#[server]
pub async fn move_bucket_phase(
    bucket_id: i64,
    to: String,
    reason: String,
    override_evidence: bool,
) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let to = tern_control::buckets::Phase::parse(&to)?;
    let b = if override_evidence {
        store
            .override_bucket_move(&me, bucket_id, to, &reason)
            .await?
    } else {
        store.move_bucket(&me, bucket_id, to, &reason).await?
    };
    Ok(format!("bucket {} is now {to}", b.idx))
}

/// The move control: the phases the bucket may move to, a reason, and for
/// admins the override. `action` lives with the page so its answer stays
/// when the board refreshes.
#[component]
pub fn PhaseMove(
    bucket_id: i64,
    next: Vec<String>,
    is_admin: bool,
    action: ServerAction<MoveBucketPhase>,
) -> impl IntoView {
    let first = next.first().cloned().unwrap_or_default();
    let to = RwSignal::new(first);
    let reason = RwSignal::new(String::new());
    let override_evidence = RwSignal::new(false);
    let empty = next.is_empty();
    view! {
        <section class="panel" data-testid="phase-move">
            <h2>"Move by hand"</h2>
            <p class="muted small">"Loaded, caught-up and verified need the job or verification run that earns them."</p>
            {if empty {
                view! { <p class="muted">"This bucket is finished: it moves nowhere."</p> }.into_any()
            } else {
                view! {
                    <div class="toolbar">
                        <label class="inline-label">"To "
                            <select data-testid="phase-move-to" prop:value=move || to.get()
                                on:change=move |ev| to.set(event_target_value(&ev))>
                                {next.into_iter().map(|p| view! { <option value=p.clone()>{p.clone()}</option> }).collect_view()}
                            </select>
                        </label>
                        <input class="reason" placeholder="reason (for the audit log)" data-testid="phase-move-reason"
                            prop:value=move || reason.get() on:input=move |ev| reason.set(event_target_value(&ev))/>
                        {is_admin.then(|| view! {
                            <label class="inline-label small">
                                <input type="checkbox" data-testid="phase-move-override"
                                    prop:checked=move || override_evidence.get()
                                    on:change=move |ev| override_evidence.set(event_target_checked(&ev))/>
                                " override missing evidence (admin; needs a reason)"
                            </label>
                        })}
                        <button class="button small" data-testid="phase-move-submit"
                            disabled=move || action.pending().get()
                            on:click=move |_| {
                                action.dispatch(MoveBucketPhase {
                                    bucket_id,
                                    to: to.get_untracked(),
                                    reason: reason.get_untracked(),
                                    override_evidence: override_evidence.get_untracked(),
                                });
                            }>"Move"</button>
                    </div>
                }.into_any()
            }}
            <div class="action-feedback">
                {move || match action.value().get() {
                    Some(Ok(m)) => view! { <p class="flash flash-ok" data-testid="phase-move-result">{m}</p> }.into_any(),
                    Some(Err(e)) => view! { <p class="flash flash-error" role="alert" data-testid="phase-move-error">{e.to_string()}</p> }.into_any(),
                    None => ().into_any(),
                }}
            </div>
        </section>
    }
}
