//! Data fixes (seed 004): the list and the create form (the seed's example as
//! a template), and one fix's page: dry run, run, live progress, rate change
//! while it runs, failures. Server functions are thin: one call into
//! `tern_control::fixes` each.

pub mod detail;

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::loaded_list;
use crate::components::page_head::PageHead;
use crate::error::AppError;

/// A fix in the list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FixRow {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub database: String,
    pub target: String,
    pub mapper: String,
    pub rate: String,
}

/// Every fix, newest first.
#[server]
pub async fn list_fixes() -> Result<Vec<FixRow>, AppError> {
    let fixes = crate::server::signed_in_store()?.list_fixes().await?;
    Ok(fixes
        .into_iter()
        .map(|f| FixRow {
            id: f.id,
            name: f.name,
            description: f.description,
            database: tern_control::redact::secrets_in(&f.db_url),
            target: f.target,
            mapper: f.mapper_kind,
            rate: f
                .settings
                .rate
                .map_or_else(|| "unthrottled".into(), |r| format!("{r}/s")),
        })
        .collect())
}

/// The seed's example job spec, the create form's template.
#[server]
pub async fn fix_template() -> Result<String, AppError> {
    Ok(tern_datafix::EXAMPLE.to_string())
}

/// Creates a fix from its job spec; answers its id.
#[server]
pub async fn create_fix(spec: String) -> Result<i64, AppError> {
    let (store, me) = crate::server::acting()?;
    let fix = store.create_fix(&me, &spec).await?;
    Ok(fix.id)
}

/// The data fixes and the form that creates one.
#[component]
pub fn Fixes() -> impl IntoView {
    view! {
        <FixList/>
        <NewFix/>
    }
}

#[component]
fn FixList() -> impl IntoView {
    let fixes = Resource::new_blocking(|| (), |_| list_fixes());
    view! {
        <PageHead title="Data fixes">"A filter selects the records that need a change; a mapper changes one record; Tern runs it throttled, pass after pass, until the filter selects nothing."</PageHead>
        <Suspense fallback=|| view! { <p class="muted">"Loading fixes…"</p> }>
            {move || Suspend::new(async move {
                loaded_list(fixes.await, "No fixes yet. Create one below from the template.", |rows| view! {
                    <section class="panel">
                        <Grid head=&["Fix", "Database", "Table", "Mapper", "Rate"] testid="fix-list">
                            {rows.into_iter().map(|f| view! {
                                <tr data-testid="fix-row">
                                    <td><a href=format!("/fixes/{}", f.id)>{f.name}</a><div class="muted">{f.description}</div></td>
                                    <td class="mono">{f.database}</td>
                                    <td class="mono">{f.target}</td>
                                    <td>{f.mapper}</td>
                                    <td>{f.rate}</td>
                                </tr>
                            }).collect_view()}
                        </Grid>
                    </section>
                })
            })}
        </Suspense>
    }
}

#[component]
fn NewFix() -> impl IntoView {
    let template = Resource::new_blocking(|| (), |_| fix_template());
    let create = ServerAction::<CreateFix>::new();
    let (spec, set_spec) = signal(String::new());
    Effect::new(move |_| {
        if let Some(Ok(id)) = create.value().get() {
            let navigate = leptos_router::hooks::use_navigate();
            navigate(&format!("/fixes/{id}"), Default::default());
        }
    });
    view! {
        <section class="panel">
            <h2>"New fix"</h2>
            <p class="muted">"The template is seed 004's example: truncate first names longer than 1,000 characters. Set its url to the database to fix."</p>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    let text = template.await.unwrap_or_default();
                    if spec.get_untracked().is_empty() {
                        set_spec.set(text);
                    }
                    view! {
                        <textarea
                            class="spec"
                            rows="22"
                            data-testid="fix-spec"
                            prop:value=spec
                            on:input=move |ev| set_spec.set(event_target_value(&ev))
                        ></textarea>
                    }
                })}
            </Suspense>
            <div class="actions">
                <button class="button" data-testid="fix-create" on:click=move |_| { create.dispatch(CreateFix { spec: spec.get() }); }>
                    "Create fix"
                </button>
            </div>
            {move || match create.value().get() {
                Some(Err(e)) => view! { <p class="error" data-testid="fix-error">{e.to_string()}</p> }.into_any(),
                _ => ().into_any(),
            }}
        </section>
    }
}
