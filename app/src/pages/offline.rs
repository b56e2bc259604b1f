//! A migration's offline jobs and the old datasets they read: CSV import,
//! job status, and the dataset lifecycle active → locked → deleted.

use leptos::prelude::*;
use leptos_meta::Title;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::loaded;
use crate::components::layout::{can_operate, use_me};
use crate::error::AppError;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub schedule: String,
    pub status: String,
    pub datasets: String,
    pub last_old_read: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetView {
    pub id: i64,
    pub name: String,
    pub replacement: String,
    pub status: String,
    pub readers: String,
    pub last_access: String,
    pub locked_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfflineData {
    pub migration: String,
    pub jobs: Vec<JobView>,
    pub datasets: Vec<DatasetView>,
}

#[server]
pub async fn offline_view(id: i64) -> Result<OfflineData, AppError> {
    use tern_control::clock::format_ms;
    let store = crate::server::signed_in_store()?;
    let m = store.migration(id).await?;
    Ok(OfflineData {
        migration: m.name,
        jobs: store
            .list_offline_jobs(id)
            .await?
            .into_iter()
            .map(|j| JobView {
                id: j.id,
                name: j.name,
                owner: j.owner,
                schedule: j.schedule,
                status: j.status,
                datasets: j.datasets.join(", "),
                last_old_read: j.last_old_read.map(format_ms).unwrap_or_else(|| "—".into()),
            })
            .collect(),
        datasets: store
            .list_datasets(id)
            .await?
            .into_iter()
            .map(|d| DatasetView {
                id: d.id,
                name: d.name,
                replacement: d.replacement,
                status: d.status,
                readers: d.readers.join(", "),
                last_access: d
                    .last_access
                    .map(|(j, at)| format!("{j} at {}", format_ms(at)))
                    .unwrap_or_else(|| "—".into()),
                locked_at: d.locked_at.map(format_ms).unwrap_or_default(),
            })
            .collect(),
    })
}

#[server]
pub async fn import_jobs(id: i64, csv: String) -> Result<String, AppError> {
    let (store, me) = crate::server::acting()?;
    let r = store.import_offline_csv(&me, id, &csv).await?;
    Ok(format!(
        "Imported {} jobs ({} new datasets).",
        r.jobs, r.datasets
    ))
}

#[server]
pub async fn set_job_status(job: i64, status: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.set_job_status(&me, job, &status, "").await?;
    Ok(())
}

#[server]
pub async fn lock_dataset(dataset: i64, force: Option<String>) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.lock_dataset(&me, dataset, force.as_deref()).await?;
    Ok(())
}

#[server]
pub async fn delete_dataset(dataset: i64) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.delete_dataset(&me, dataset).await?;
    Ok(())
}

#[component]
pub fn OfflinePage() -> impl IntoView {
    let id = crate::pages::id_param();
    let import = ServerAction::<ImportJobs>::new();
    let status = ServerAction::<SetJobStatus>::new();
    let lock = ServerAction::<LockDataset>::new();
    let delete = ServerAction::<DeleteDataset>::new();
    let reloads = [
        import.version(),
        status.version(),
        lock.version(),
        delete.version(),
    ];
    let data = Resource::new_blocking(
        move || (id(), crate::pages::finished(&reloads)),
        |(id, _)| offline_view(id),
    );
    let me = use_me();
    view! {
        <Title text="Offline jobs"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                let operate = can_operate(me).await;
                loaded(data.await, |v| view! {
                    <div class="page-head">
                        <h1>{format!("Offline jobs and datasets: {}", v.migration)}</h1>
                        <p class="muted">"Jobs report reads with " <code>"POST /api/v1/access-log"</code> "; a dataset is locked only when no job still reads it, and deleted after its lock period."</p>
                    </div>
                    <section class="panel">
                        <h2>"Jobs"</h2>
                        <Grid head=&["Job", "Owner", "Schedule", "Reads (old)", "Last old read", "Status"] testid="jobs-table">
                            {v.jobs.into_iter().map(|j| {
                                let job = j.id;
                                view! {
                                    <tr data-testid="job-row">
                                        <td>{j.name}</td><td>{j.owner}</td><td class="mono">{j.schedule}</td>
                                        <td class="mono">{j.datasets}</td><td class="mono">{j.last_old_read}</td>
                                        <td>{if operate {
                                            let current = j.status.clone();
                                            view! {
                                                <select on:change=move |ev| { status.dispatch(SetJobStatus { job, status: event_target_value(&ev) }); }>
                                                    {["not-started", "in-progress", "migrated"].into_iter().map(|s| view! { <option value=s selected=current == s>{s}</option> }).collect_view()}
                                                </select>
                                            }.into_any()
                                        } else { view! { <span class=format!("status status-{}", j.status)>{j.status.clone()}</span> }.into_any() }}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </Grid>
                    </section>
                    <section class="panel">
                        <h2>"Old datasets"</h2>
                        <Grid head=&["Dataset", "Replaced by", "Status", "Still read by", "Last read", ""] testid="datasets-table">
                            {v.datasets.into_iter().map(|d| {
                                let ds = d.id;
                                let (force, set_force) = signal(String::new());
                                view! {
                                    <tr data-testid="dataset-row">
                                        <td class="mono">{d.name}</td><td class="mono">{d.replacement}</td>
                                        <td><span class=format!("status status-{}", d.status)>{d.status.clone()}</span>{(!d.locked_at.is_empty()).then(|| format!(" since {}", d.locked_at))}</td>
                                        <td>{d.readers}</td><td class="mono small">{d.last_access}</td>
                                        <td>{(operate && d.status == "active").then(|| view! {
                                            <input placeholder="force: why" size="14" on:input=move |ev| set_force.set(event_target_value(&ev))/>
                                            <button class="button small" on:click=move |_| {
                                                let f = force.get_untracked();
                                                lock.dispatch(LockDataset { dataset: ds, force: (!f.trim().is_empty()).then_some(f) });
                                            }>"Lock"</button>
                                        })}
                                        {(operate && d.status == "locked").then(|| view! {
                                            <button class="button small danger" on:click=move |_| { delete.dispatch(DeleteDataset { dataset: ds }); }>"Delete"</button>
                                        })}</td>
                                    </tr>
                                }
                            }).collect_view()}
                        </Grid>
                        {move || lock.value().get().and_then(Result::err).or_else(|| delete.value().get().and_then(Result::err)).or_else(|| status.value().get().and_then(Result::err))
                            .map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
                    </section>
                    {operate.then(|| view! {
                        <section class="panel">
                            <h2>"Import jobs from CSV"</h2>
                            <ActionForm action=import>
                                <input type="hidden" name="id" value=id().to_string()/>
                                <textarea name="csv" rows="6" class="wide mono" placeholder="job,owner,schedule,old_dataset,new_dataset,status\nnightly-export,Data team,0 2 * * *,contacts_v1,contacts_v2,not-started"></textarea>
                                <button type="submit" class="button">"Import"</button>
                            </ActionForm>
                            {move || import.value().get().map(|r| match r {
                                Ok(m) => view! { <p class="flash flash-ok">{m}</p> }.into_any(),
                                Err(e) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
                            })}
                        </section>
                    })}
                })
            })}
        </Suspense>
    }
}
