//! Page-level role checks. They decide what the page *shows*; every server
//! function checks the role again on the server, which is what protects data.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::components::layout::use_me;
use crate::error::AppError;
use crate::types::Me;

/// What a page needs of its user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Any signed-in user.
    SignedIn,
    /// Program managers, engineers and admins (not client-owners).
    Reader,
    /// Engineers and admins.
    Operator,
    /// Admins.
    Admin,
}

impl Need {
    fn allows(self, me: &Me) -> bool {
        match self {
            Need::SignedIn => true,
            Need::Reader => me.can_read_audit,
            Need::Operator => me.can_operate,
            Need::Admin => me.can_administer,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Need::SignedIn => "a signed-in user",
            Need::Reader => "the viewer, engineer or admin role",
            Need::Operator => "the engineer or admin role",
            Need::Admin => "the admin role",
        }
    }
}

/// A page behind a role wall, as the route table names it: the page's
/// `title`, what it `need`s of the user, and the page itself.
pub fn guarded<V: IntoView + 'static>(
    title: &'static str,
    need: Need,
    page: fn() -> V,
) -> impl Fn() -> AnyView + Clone + Send + 'static {
    move || {
        view! {
            <Title text=title/>
            <RequireRole need=need>{page()}</RequireRole>
        }
        .into_any()
    }
}

/// Shows its children when the signed-in user's role allows `need`, and a
/// 403 page (with HTTP status 403) otherwise.
#[component]
pub fn RequireRole(need: Need, children: ChildrenFn) -> impl IntoView {
    let me = use_me();
    let children = StoredValue::new(children);
    view! {
        <Suspense fallback=|| view! { <p class="muted">"Loading…"</p> }>
            {move || Suspend::new(async move {
                match me.await {
                    Ok(Some(me)) if need.allows(&me) => children.read_value()().into_any(),
                    Ok(Some(me)) => view! {
                        <Forbidden message=format!(
                            "This page needs {}. You are signed in as {} ({}).",
                            need.describe(), me.username, me.role
                        )/>
                    }.into_any(),
                    Ok(None) => view! {
                        <Forbidden message="Sign in to see this page.".to_string()/>
                    }.into_any(),
                    Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
                }
            })}
        </Suspense>
    }
}

/// The 403 page.
#[component]
pub fn Forbidden(message: String) -> impl IntoView {
    #[cfg(feature = "ssr")]
    crate::server::set_status(403);
    view! {
        <section class="panel error-page" data-testid="forbidden">
            <h1>"403 — not allowed"</h1>
            <p>{message}</p>
            <p><a href="/">"Back to the overview"</a></p>
        </section>
    }
}

/// A page's load error: a missing record answers 404 (its message says what
/// to look for), anything else the error panel.
#[component]
pub fn LoadError(error: AppError) -> impl IntoView {
    match error {
        AppError::NotFound(m) => {
            #[cfg(feature = "ssr")]
            crate::server::set_status(404);
            view! { <ErrorPanel error=m/> }.into_any()
        }
        e => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
    }
}

/// What a part of a page shows once it has loaded: `show` of the value, or
/// the error panel when loading failed.
pub fn loaded<T, V: IntoView + 'static>(
    result: Result<T, AppError>,
    show: impl FnOnce(T) -> V,
) -> AnyView {
    match result {
        Ok(value) => show(value).into_any(),
        Err(e) => view! { <ErrorPanel error=e.to_string()/> }.into_any(),
    }
}

/// As `loaded`, for a page's own record: a missing one answers 404
/// (`LoadError`).
pub fn found<T, V: IntoView + 'static>(
    result: Result<T, AppError>,
    show: impl FnOnce(T) -> V,
) -> AnyView {
    match result {
        Err(e) => view! { <LoadError error=e/> }.into_any(),
        loaded_ok => loaded(loaded_ok, show),
    }
}

/// As `loaded`, for a list: `empty` in an empty panel when it has no row.
pub fn loaded_list<T, V: IntoView + 'static>(
    result: Result<Vec<T>, AppError>,
    empty: &'static str,
    show: impl FnOnce(Vec<T>) -> V,
) -> AnyView {
    loaded(result, |rows| {
        if rows.is_empty() {
            view! { <section class="panel empty"><p>{empty}</p></section> }.into_any()
        } else {
            show(rows).into_any()
        }
    })
}

/// Both of two loads, or the first error.
pub fn both<A, B>(a: Result<A, AppError>, b: Result<B, AppError>) -> Result<(A, B), AppError> {
    Ok((a?, b?))
}

/// An error that stopped a page from loading, said plainly.
#[component]
pub fn ErrorPanel(error: String) -> impl IntoView {
    view! {
        <section class="panel error-page" role="alert">
            <h1>"Something went wrong"</h1>
            <p>{error}</p>
            <p class="muted">"Reload the page to try again. If it keeps failing, the server log says more."</p>
        </section>
    }
}
