//! The migration's settings (chunk size, throttle, verification gate,
//! progressive schedule), its batches, and archiving.

use leptos::prelude::*;

use crate::error::AppError;
use crate::types::MigrationSettingsView;

/// The migration's settings and spec.
#[server]
pub async fn migration_settings(id: i64) -> Result<MigrationSettingsView, AppError> {
    let (store, me) = crate::server::acting()?;
    let m = store.migration(id).await?;
    Ok(MigrationSettingsView {
        id: m.id,
        status: m.status.clone(),
        can_operate: me.role.can_operate(),
        settings: crate::types::SettingsView {
            chunk_size: m.settings.chunk_size,
            rate_limit: m.settings.rate_limit,
            verify_min_accuracy: m.settings.verify_min_accuracy,
            schedule_every_hours: m.settings.schedule_every_hours,
            next_batch_at: m
                .next_batch_at
                .map(tern_control::clock::format_ms)
                .unwrap_or_default(),
        },
        spec: tern_control::redact::secrets_in(&m.spec),
    })
}

#[cfg(feature = "ssr")]
fn optional_number(what: &str, s: &str) -> Result<Option<f64>, AppError> {
    match s.trim() {
        "" => Ok(None),
        t => t
            .replace([',', '_'], "")
            .parse::<f64>()
            .map(Some)
            .map_err(|_| {
                AppError::Invalid(format!(
                    "{what}: `{t}` is not a number; leave it blank for none"
                ))
            }),
    }
}

/// Saves the settings form.
#[server]
pub async fn save_settings(
    migration_id: i64,
    chunk_size: String,
    rate_limit: String,
    verify_min_accuracy: String,
    schedule_every_hours: String,
    reason: String,
) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    let settings = tern_control::migrations::MigrationSettings {
        chunk_size: chunk_size
            .trim()
            .replace([',', '_'], "")
            .parse()
            .map_err(|_| {
                AppError::Invalid(format!(
                    "chunk size: `{chunk_size}` is not a whole number of rows"
                ))
            })?,
        rate_limit: optional_number("rate limit", &rate_limit)?,
        verify_min_accuracy: optional_number("verification gate", &verify_min_accuracy)?
            .unwrap_or(100.0),
        schedule_every_hours: optional_number("schedule", &schedule_every_hours)?,
    };
    store
        .update_migration_settings(&me, migration_id, &settings, &reason)
        .await?;
    Ok(())
}

/// Groups the planned buckets not yet in a batch into `count` batches.
#[server]
pub async fn plan_batches(migration_id: i64, count: u32) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let batches = store
        .plan_batches(&me, migration_id, &[], count as usize)
        .await?;
    Ok(format!("{} batch(es) planned", batches.len()))
}

/// Archives the migration.
#[server]
pub async fn archive_migration(migration_id: i64, reason: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.archive_migration(&me, migration_id, &reason).await?;
    Ok(())
}

#[component]
pub fn SettingsPanel(s: MigrationSettingsView) -> impl IntoView {
    let (migration_id, settings, can_operate) = (s.id, s.settings.clone(), s.can_operate);
    let archived = s.status == "archived";
    let save = ServerAction::<SaveSettings>::new();
    let plan = ServerAction::<PlanBatches>::new();
    let archive = ServerAction::<ArchiveMigration>::new();
    let changed = use_context::<RwSignal<u64>>();
    Effect::new(move |_| {
        if save.version().get() + plan.version().get() + archive.version().get() > 0 {
            if let Some(c) = changed {
                c.update(|c| *c += 1);
            }
        }
    });
    let fmt = |v: Option<f64>| v.map(|v| format!("{v}")).unwrap_or_default();
    view! {
        <div class="two-col">
            <section class="panel">
                <h2>"Settings"</h2>
                <ActionForm action=save attr:class="form-grid">
                    <input type="hidden" name="migration_id" value=migration_id/>
                    <label>"Chunk size (rows)" <input name="chunk_size" value=settings.chunk_size disabled=!can_operate/></label>
                    <label>"Rate limit for new jobs (rows/s, blank = none)" <input name="rate_limit" value=fmt(settings.rate_limit) disabled=!can_operate/></label>
                    <label>"Verified at or above (%)" <input name="verify_min_accuracy" value=settings.verify_min_accuracy disabled=!can_operate/></label>
                    <label>"Next batch every (hours, blank = off)" <input name="schedule_every_hours" value=fmt(settings.schedule_every_hours) disabled=!can_operate/></label>
                    <Show when=move || can_operate>
                        <label>"Reason" <input name="reason" placeholder="why (audit log)"/></label>
                        <button type="submit" class="button primary">"Save settings"</button>
                    </Show>
                </ActionForm>
                {(!settings.next_batch_at.is_empty()).then(|| view! { <p class="muted small">{format!("next batch at {}", settings.next_batch_at)}</p> })}
                {move || save.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
            </section>
            <section class="panel">
                <h2>"Plan and archive"</h2>
                <Show when=move || can_operate && !archived fallback=|| view! { <p class="muted">"Engineers plan batches and archive migrations here."</p> }>
                    <ActionForm action=plan attr:class="inline-form">
                        <input type="hidden" name="migration_id" value=migration_id/>
                        <label>"Batches" <input name="count" type="number" min="1" value="4"/></label>
                        <button type="submit" class="button">"Plan batches of planned buckets"</button>
                    </ActionForm>
                    {move || plan.value().get().map(|r| match r {
                        Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                        Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
                    })}
                    <ActionForm action=archive attr:class="inline-form">
                        <input type="hidden" name="migration_id" value=migration_id/>
                        <input name="reason" placeholder="why archive"/>
                        <button type="submit" class="button danger">"Archive migration"</button>
                    </ActionForm>
                    {move || archive.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
                </Show>
            </section>
        </div>
        <details class="panel">
            <summary>"Spec"</summary>
            <pre class="code">{s.spec.clone()}</pre>
        </details>
    }
    .into_any()
}
