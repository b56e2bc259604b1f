#![recursion_limit = "256"]
//! Tern's web UI: pages and components rendered on the server and hydrated in
//! the browser. Server functions here are thin: they take the shared state,
//! call one function of `tern-control`, and convert the answer into a UI type.

#[cfg(feature = "ssr")]
pub mod charts;
pub mod components;
#[cfg(feature = "ssr")]
pub mod convert;
pub mod error;
#[cfg(feature = "ssr")]
pub mod overview_cache;
pub mod pages;
#[cfg(feature = "ssr")]
pub mod server;
#[cfg(feature = "ssr")]
pub mod state;
#[cfg(feature = "ssr")]
pub mod status;
pub mod types;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Stylesheet, Title, provide_meta_context};
use leptos_router::components::{ParentRoute, Route, Router, Routes};
use leptos_router::{SsrMode, path};

use crate::components::guard::{Need, guarded};
use crate::components::layout::Shell;
use crate::pages::{
    audit::AuditLog, bucket::BucketPage, login::LoginPage, migration::MigrationPage,
    new_migration::NewMigration, not_found::NotFound, overview::Overview, users::Users,
};
use crate::pages::{
    client::ClientPage,
    clients::{ClientsPage, MigrationClientsPage},
    decommission::DecommissionPage,
    guide::GuidePage,
    offline::OfflinePage,
};

/// The HTML document around the app, rendered on the server for every page.
/// The sign-in page is plain HTML and loads no WebAssembly: nothing on it
/// needs it, and its form post would cut the download short.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    #[cfg(feature = "ssr")]
    let hydrate = use_context::<http::request::Parts>()
        .is_none_or(|req| !req.uri.path().starts_with("/login"));
    #[cfg(not(feature = "ssr"))]
    let hydrate = true;
    let scripts = hydrate.then(|| view! { <HydrationScripts options/> });
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <link rel="icon" href="/favicon.ico"/>
                {scripts}
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The app: routes and the layout they share. Pages render completely on the
/// server before they are sent (`SsrMode::Async`), so a page can answer with its
/// own status (403, 404).
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    view! {
        <Stylesheet id="tern" href="/pkg/tern.css"/>
        <Title formatter=|page: String| if page.is_empty() { "Tern".to_string() } else { format!("{page} · Tern") }/>
        <Router>
            <Routes fallback=NotFound>
                <Route path=path!("/login") view=LoginPage ssr=SsrMode::Async/>
                <ParentRoute path=path!("") view=Shell ssr=SsrMode::Async>
                    <Route path=path!("") view=Overview ssr=SsrMode::Async/>
                    <Route path=path!("migrations/new") view=guarded("New migration", Need::Operator, NewMigration) ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id") view=MigrationPage ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id/buckets/:idx") view=BucketPage ssr=SsrMode::Async/>
                    <Route path=path!("clients") view=ClientsPage ssr=SsrMode::Async/>
                    <Route path=path!("clients/:id") view=ClientPage ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id/clients") view=MigrationClientsPage ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id/guide") view=GuidePage ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id/offline") view=OfflinePage ssr=SsrMode::Async/>
                    <Route path=path!("migrations/:id/decommission") view=DecommissionPage ssr=SsrMode::Async/>
                    <Route path=path!("audit") view=guarded("Audit log", Need::Reader, AuditLog) ssr=SsrMode::Async/>
                    <Route path=path!("fixes") view=guarded("Data fixes", Need::Reader, pages::fixes::Fixes) ssr=SsrMode::Async/>
                    <Route path=path!("fixes/:id") view=guarded("Data fix", Need::Reader, pages::fixes::detail::FixDetail) ssr=SsrMode::Async/>
                    <Route path=path!("admin/users") view=guarded("Users", Need::Admin, Users) ssr=SsrMode::Async/>
                    <Route path=path!("admin/connections") view=guarded("Connections", Need::Admin, pages::connections::Connections) ssr=SsrMode::Async/>
                </ParentRoute>
            </Routes>
        </Router>
    }
}
