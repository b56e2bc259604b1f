//! The layout every signed-in page shares: the navigation for the three kinds
//! of users, who is signed in, and the sign-out button.

use leptos::prelude::*;
use leptos_router::components::{A, Outlet};

use crate::error::AppError;
use crate::types::Me;

/// The signed-in user (on the server: from the session).
#[server]
pub async fn whoami() -> Result<Option<Me>, AppError> {
    Ok(crate::server::current_user().map(|u| Me::from(&u)))
}

/// The signed-in user, loaded once per page and shared through context.
pub type MeResource = Resource<Result<Option<Me>, AppError>>;

/// Reads the signed-in user resource that [`Shell`] provides.
pub fn use_me() -> MeResource {
    expect_context::<MeResource>()
}

/// Whether the signed-in user may operate (engineers and admins), once `me`
/// has loaded.
pub async fn can_operate(me: MeResource) -> bool {
    me.await.ok().flatten().is_some_and(|m| m.can_operate)
}

/// Layout of every page but sign-in.
#[component]
pub fn Shell() -> impl IntoView {
    let me: MeResource = Resource::new_blocking(|| (), |_| whoami());
    provide_context(me);
    view! {
        <div class="app">
            <header class="topbar">
                <a class="brand" href="/">
                    <span class="brand-mark">"◤"</span>
                    " Tern"
                </a>
                <Suspense fallback=|| ()>
                    {move || Suspend::new(async move {
                        match me.await {
                            Ok(Some(me)) => view! { <Nav me/> }.into_any(),
                            _ => view! { <a class="nav-link" href="/login">"Sign in"</a> }.into_any(),
                        }
                    })}
                </Suspense>
            </header>
            <main class="content">
                <Outlet/>
            </main>
            <footer class="footer">"Tern — zero-downtime data migrations"</footer>
        </div>
    }
}

#[component]
fn Nav(me: Me) -> impl IntoView {
    let role_class = format!("role-badge role-{}", me.role);
    view! {
        <nav class="nav" aria-label="main">
            <A href="/" exact=true>"Overview"</A>
            <Show when={let a = me.can_read_audit; move || a}>
                <A href="/fixes">"Data fixes"</A>
            </Show>
            <A href="/clients">"Clients"</A>
            <Show when={let a = me.can_read_audit; move || a}>
                <A href="/audit">"Audit log"</A>
            </Show>
            <Show when={let a = me.can_administer; move || a}>
                <A href="/admin/users">"Users"</A>
                <A href="/admin/connections">"Connections"</A>
            </Show>
        </nav>
        <div class="whoami">
            <span class="user-name" data-testid="user-name">{me.display_name.clone()}</span>
            <span class=role_class data-testid="user-role">{me.role.clone()}</span>
            <form method="post" action="/auth/logout" class="inline">
                <button type="submit" class="button-link">"Sign out"</button>
            </form>
        </div>
    }
}
