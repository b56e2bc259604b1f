//! A migration's guide for client owners: Markdown with code samples,
//! rendered safely on the server; engineers edit it here.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::guard::{both, loaded};
use crate::components::layout::{can_operate, use_me};
use crate::components::page_head::PageHead;
use crate::error::AppError;
use crate::pages::clients::{SaveGuide, migration_clients};

/// The guide as HTML (safe to insert) and as Markdown (for the editor).
#[server]
pub async fn guide_html(id: i64) -> Result<(String, String), AppError> {
    let md = crate::server::signed_in_store()?.guide(id).await?;
    // `{{client}}` names the reader's client on a client's page; here, any.
    let shown = md.replace("{{client}}", "your-service");
    Ok((tern_control::guides::render_markdown(&shown), md))
}

#[component]
pub fn GuidePage() -> impl IntoView {
    let id = crate::pages::id_param();
    let save = ServerAction::<SaveGuide>::new();
    let guide = Resource::new_blocking(
        move || (id(), save.version().get()),
        |(id, _)| guide_html(id),
    );
    let info = Resource::new_blocking(id, migration_clients);
    let me = use_me();
    view! {
        <Title text="Migration guide"/>
        <Suspense fallback=|| view! { <p class="muted">"Loading the guide…"</p> }>
            {move || Suspend::new(async move {
                let operate = can_operate(me).await;
                loaded(both(info.await, guide.await), |(m, (html, md))| view! {
                    <PageHead title=format!("Migration guide: {}", m.name)><a href=format!("/migrations/{}/clients", m.id)>"Clients of this migration"</a></PageHead>
                    <section class="panel guide" data-testid="guide">
                        {if html.is_empty() { view! { <p class="muted">"No guide written yet."</p> }.into_any() }
                         else { view! { <div class="markdown" inner_html=html></div> }.into_any() }}
                    </section>
                    {operate.then(|| view! {
                        <section class="panel">
                            <h2>"Edit the guide (Markdown)"</h2>
                            <p class="muted small">"Write " <code>"{{client}}"</code> " where a client's name belongs: each client's page shows its own name there."</p>
                            <ActionForm action=save>
                                <input type="hidden" name="id" value=m.id.to_string()/>
                                <textarea name="markdown" rows="16" class="wide mono" data-testid="guide-editor">{md}</textarea>
                                <button type="submit" class="button primary">"Save guide"</button>
                            </ActionForm>
                            {move || save.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
                        </section>
                    })}
                })
            })}
        </Suspense>
    }
}
