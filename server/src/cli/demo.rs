//! `tern demo`: the control plane on a fresh embedded (SQLite) store, with one
//! user per role and a demo migration, ready to click through.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tern_control::connections::SecretKey;
use tern_control::users::NewUser;
use tern_control::{Actor, Role, Store};
use tern_engine::{Link, Spec};

use tokio_util::sync::CancellationToken;

use crate::cli::demo_data;
use crate::cli::serve::serve;
use crate::cli::user::generate_password;
use crate::settings::Settings;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Address to listen on (overrides the `listen` setting).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// One password for every demo user (default: a new random one each, printed).
    #[arg(long, env = "TERN_DEMO_PASSWORD", hide_env_values = true)]
    password: Option<String>,
    /// Run the control plane on this PostgreSQL database instead of the
    /// demo's embedded SQLite store (to try the demo on the store a team
    /// runs). It must be empty: the demo creates its users and migration.
    #[arg(
        long,
        value_name = "URL",
        env = "TERN_DEMO_STORE",
        hide_env_values = true
    )]
    store: Option<String>,
}

/// The demo client whose writes the live writer makes.
const WRITER_CLIENT: &str = "inbox-service";

/// The demo's users: (username, display name, role, clients).
const DEMO_USERS: [(&str, &str, Role, &[&str]); 4] = [
    ("admin", "Ada Admin", Role::Admin, &[]),
    ("engineer", "Eli Engineer", Role::Engineer, &[]),
    ("pm", "Pat Program-Manager", Role::Viewer, &[]),
    (
        "owner",
        "Olu Client-Owner",
        Role::ClientOwner,
        &["inbox-service"],
    ),
];

pub async fn run(mut settings: Settings, args: Args) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    // The demo runs on its own embedded store (unless --store names an empty
    // PostgreSQL one) and its own source and target databases, all recreated
    // at each start.
    let dir = settings.data_dir.join("demo");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the demo directory {}", dir.display()))?;
    for db in ["tern.db", "source.db", "target.db"] {
        for suffix in ["", "-wal", "-shm"] {
            let path = dir.join(format!("{db}{suffix}"));
            if path.exists() {
                std::fs::remove_file(&path).with_context(|| {
                    format!("cannot remove the old demo file {}", path.display())
                })?;
            }
        }
    }
    let (source, target) = (dir.join("source.db"), dir.join("target.db"));
    // Connection secrets need a key; the demo's store is remade at each start,
    // so without a configured key it makes one for this run.
    let key = match settings.secret_key()? {
        Some(key) => key,
        None => SecretKey::parse(&SecretKey::generate(), None)?,
    };
    let store = match args.store.as_deref() {
        None => Store::open_sqlite_file(&dir.join("tern.db"))
            .await
            .context("cannot create the demo store")?,
        Some(url) => empty_store(url).await?,
    }
    .with_secret_key(Some(key));
    // The store first: a refused `--store` says so before the source is made.
    println!(
        "Preparing the demo: {} contacts and {} messages in a SQLite source…",
        demo_data::DEMO.contacts,
        demo_data::DEMO.messages
    );
    demo_data::create_source(&source, demo_data::DEMO).await?;

    let mut credentials = Vec::new();
    for (username, name, role, clients) in DEMO_USERS {
        let password = args.password.clone().unwrap_or_else(generate_password);
        store
            .create_user(
                &Actor::system(),
                NewUser {
                    username: username.into(),
                    display_name: name.into(),
                    role,
                    password: password.clone(),
                    clients: clients.iter().map(|c| c.to_string()).collect(),
                },
            )
            .await?;
        credentials.push((username, role, password));
    }
    let runners = crate::runner_context();
    let spec_text = demo_data::spec(&source, &target);
    let migration = store
        .create_migration_from_spec(
            &Actor::system(),
            "messages-demo",
            "Members' contacts and messages, from the old store to the new one",
            &spec_text,
            &runners.registry,
        )
        .await
        .context("cannot create the demo migration")?;
    super::demo_clients::seed(&store, migration.id)
        .await
        .context("cannot seed the demo clients")?;
    // The live writer is the demo's inbox service: it asks Tern (in this
    // process) where each key's writes go, so switching a bucket in the
    // browser moves its writes to the new store without drift.
    let client = store
        .client_by_name(&migration.name, WRITER_CLIENT)
        .await
        .context("cannot find the demo writer's client")?;
    let spec = Spec::parse(&spec_text, "messages-demo.toml")?;
    // Inspected, not prepared: the target's tables are the bulk load's to create.
    let link = Link::inspect(spec, &runners.registry)
        .await
        .context("cannot read the demo migration for its writer")?;
    let routed = demo_data::Routed {
        router: Arc::new(demo_data::StoreRouter {
            store: store.clone(),
            migration_id: migration.id,
            client_id: client.id,
        }),
        link: Arc::new(link),
    };
    let stop_writer = CancellationToken::new();
    let writer =
        demo_data::start_writer(&source, demo_data::DEMO, stop_writer.clone(), Some(routed));

    let served = serve(store, &settings, move |addr| {
        println!();
        println!("Tern demo running at http://{addr}");
        println!();
        println!("Sign in as:");
        for (username, role, password) in &credentials {
            println!(
                "  {username:<10} {:<14} password: {password}",
                role.as_str()
            );
        }
        println!();
        println!("A live writer changes the source about 20 times a second. Press Ctrl-C to stop.");
    })
    .await;
    stop_writer.cancel();
    let _ = writer.await;
    served
}

/// The PostgreSQL control store `--store` names, refused unless it is empty
/// (the demo makes its own users and migration; it never mixes them with a
/// team's).
async fn empty_store(url: &str) -> anyhow::Result<Store> {
    let shown = tern_engine::connector::redact(url);
    if !url.starts_with("postgres://") && !url.starts_with("postgresql://") {
        anyhow::bail!(
            "the demo's --store must be a PostgreSQL URL (postgres://…), not {shown}; \
             without --store the demo uses its embedded SQLite store"
        );
    }
    let store = Store::open(url)
        .await
        .with_context(|| format!("cannot open the demo's control store {shown}"))?;
    let users = store.list_users().await?.len();
    let migrations = store.migration_summaries().await?.len();
    if users + migrations > 0 {
        anyhow::bail!(
            "the demo needs an empty control store, and {shown} holds {users} users and \
             {migrations} migrations: create a new database for it (createdb tern_demo) \
             or run the demo without --store"
        );
    }
    Ok(store)
}
