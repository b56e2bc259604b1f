//! `tern access`: who may reach each route of the web server, read from the
//! router itself and the access table (`web/access.rs`). Fails when a route
//! has no row, so a route cannot be added without saying who may use it.

use anyhow::bail;
use tern_control::runners::RunnerContext;

use crate::cli::serve::open_store;
use crate::settings::Settings;
use crate::web::{self, access};

pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    let router = web::router(
        web::app_state(store.clone(), &settings, RunnerContext::default()),
        &settings,
    );
    let mut missing = Vec::new();
    for path in access::router_paths(&router) {
        match access::rules_for(&path) {
            Some(rows) => {
                for (method, who) in rows {
                    println!(
                        "{method:<7} {path:<52} {:<17} {}",
                        who.key(),
                        who.describe()
                    );
                }
            }
            None => {
                println!("{:<7} {path:<52} NO-RULE", "?");
                missing.push(path);
            }
        }
    }
    store.close().await;
    if !missing.is_empty() {
        bail!(
            "{} route(s) have no access rule and are refused: {}; add a row for each to server/src/web/access.rs",
            missing.len(),
            missing.join(", ")
        );
    }
    Ok(())
}
