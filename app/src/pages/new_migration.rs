//! Create a migration from a spec: paste or upload the TOML, see its planned
//! buckets and their sizes (the source is read, nothing is written), then
//! create it. The engine's errors name the spec line; the page shows that line.

use leptos::prelude::*;

use crate::components::page_head::PageHead;
use crate::error::AppError;
use crate::types::{TablePlanView, thousands};

/// Checks a spec and plans its buckets without creating anything.
#[server]
pub async fn preview_migration(name: String, spec: String) -> Result<Vec<TablePlanView>, AppError> {
    let me = crate::server::actor()?;
    me.require_operate("planning a migration")?;
    let state = crate::server::state()?;
    let plans = state
        .store
        .preview_spec(&spec, name.trim(), &state.runners.registry)
        .await?;
    Ok(plans
        .into_iter()
        .map(|p| TablePlanView {
            table: p.table,
            bucket_column: p.bucket_column,
            total_rows: p.total_rows,
            skew: p.skew,
            buckets: p
                .buckets
                .into_iter()
                .map(|b| {
                    let range = format!(
                        "[{}, {})",
                        b.lo.as_deref().unwrap_or("−∞"),
                        b.hi.as_deref().unwrap_or("+∞")
                    );
                    (b.idx, range, b.planned_rows)
                })
                .collect(),
        })
        .collect())
}

/// Creates the migration; answers its id.
#[server]
pub async fn create_migration(
    name: String,
    description: String,
    spec: String,
) -> Result<i64, AppError> {
    let me = crate::server::actor()?;
    let state = crate::server::state()?;
    let m = state
        .store
        .create_migration_from_spec(
            &me,
            name.trim(),
            &description,
            &spec,
            &state.runners.registry,
        )
        .await?;
    Ok(m.id)
}

/// The spec line an engine error names (`… line 14, …`), if any.
fn error_line(message: &str) -> Option<usize> {
    let at = message.find("line ")? + 5;
    let digits: String = message[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[component]
pub fn NewMigration() -> impl IntoView {
    let name = RwSignal::new(String::new());
    let description = RwSignal::new(String::new());
    let spec = RwSignal::new(String::new());
    let preview = ServerAction::<PreviewMigration>::new();
    let create = ServerAction::<CreateMigration>::new();
    let navigate = leptos_router::hooks::use_navigate();
    Effect::new(move |_| {
        if let Some(Ok(id)) = create.value().get() {
            navigate(&format!("/migrations/{id}"), Default::default());
        }
    });
    let error = move || {
        create
            .value()
            .get()
            .and_then(Result::err)
            .or_else(|| preview.value().get().and_then(Result::err))
    };
    let on_file = move |ev: leptos::ev::Event| {
        #[cfg(feature = "hydrate")]
        {
            use leptos::wasm_bindgen::JsCast;
            let input: Option<leptos::web_sys::HtmlInputElement> =
                ev.target().and_then(|t| t.dyn_into().ok());
            if let Some(file) = input.and_then(|i| i.files()).and_then(|f| f.get(0)) {
                if name.get_untracked().is_empty() {
                    name.set(file.name().trim_end_matches(".toml").to_string());
                }
                leptos::task::spawn_local(async move {
                    if let Ok(text) = wasm_bindgen_futures::JsFuture::from(file.text()).await {
                        spec.set(text.as_string().unwrap_or_default());
                    }
                });
            }
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = ev;
    };
    view! {
        <PageHead title="New migration">"Paste or upload a spec. Preview reads the source to plan buckets of about equal row count; nothing is written until you create the migration."</PageHead>
        <section class="panel">
            <div class="form-grid">
                <label>"Name" <input data-testid="migration-name-input" placeholder="messages-2026" prop:value=name on:input=move |ev| name.set(event_target_value(&ev))/></label>
                <label>"Description" <input prop:value=description on:input=move |ev| description.set(event_target_value(&ev))/></label>
                <label>"Upload a spec file" <input type="file" accept=".toml,text/plain" on:change=on_file/></label>
            </div>
            <label class="spec-label">"Spec (TOML)"
                <textarea class="spec" data-testid="spec-input" rows="18" spellcheck="false"
                    prop:value=spec on:input=move |ev| spec.set(event_target_value(&ev))></textarea>
            </label>
            {move || error().map(|e| {
                let msg = e.to_string();
                let line = error_line(&msg).and_then(|n| spec.with_untracked(|s| s.lines().nth(n.saturating_sub(1)).map(|l| (n, l.to_string()))));
                view! {
                    <div class="flash flash-error" role="alert" data-testid="spec-error">
                        <p>{msg}</p>
                        {line.map(|(n, text)| view! { <pre class="code error-line">{format!("{n:>4} │ {text}")}</pre> })}
                    </div>
                }
            })}
            <div class="toolbar">
                <button class="button" data-testid="preview" disabled=move || preview.pending().get()
                    on:click=move |_| { preview.dispatch(PreviewMigration { name: name.get_untracked(), spec: spec.get_untracked() }); }>
                    {move || if preview.pending().get() { "Planning…" } else { "Preview buckets" }}
                </button>
                <button class="button primary" data-testid="create" disabled=move || create.pending().get()
                    on:click=move |_| { create.dispatch(CreateMigration { name: name.get_untracked(), description: description.get_untracked(), spec: spec.get_untracked() }); }>
                    "Create migration"
                </button>
            </div>
        </section>
        {move || preview.value().get().and_then(Result::ok).map(|plans| view! {
            <section class="panel" data-testid="plan-preview">
                <h2>"Planned buckets"</h2>
                {plans.into_iter().map(|p| view! {
                    <h3>{format!("{} — {} rows by {}, skew {:.2}", p.table, thousands(p.total_rows), p.bucket_column, p.skew)}</h3>
                    <table class="grid"><thead><tr><th>"#"</th><th>"Key range"</th><th>"Rows"</th></tr></thead>
                    <tbody>{p.buckets.into_iter().map(|(i, range, rows)| view! {
                        <tr data-testid="planned-bucket"><td class="num">{i}</td><td class="mono small">{range}</td><td class="num">{thousands(rows)}</td></tr>
                    }).collect_view()}</tbody></table>
                }).collect_view()}
            </section>
        })}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::error_line;

    #[test]
    fn finds_the_line_an_error_names() {
        assert_eq!(
            error_line("m.toml line 14, tables[x].columns.body: unknown column"),
            Some(14)
        );
        assert_eq!(error_line("no line here"), None);
    }
}
