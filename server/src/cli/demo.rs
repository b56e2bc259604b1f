//! `tern demo`: the control plane on a fresh embedded (SQLite) store, with one
//! user per role and a demo migration, ready to click through.

use std::net::SocketAddr;

use anyhow::Context;
use tern_control::buckets::BucketPlan;
use tern_control::migrations::NewMigration;
use tern_control::users::NewUser;
use tern_control::{Actor, Role, Store};

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
}

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

const DEMO_SPEC: &str = r#"# The demo migration: members' messages from the old store to the new one.
[source]
url = "sqlite://demo-source.db"

[target]
url = "sqlite://demo-target.db"

[[tables]]
name = "messages"
source = "messages"
key = ["id"]
bucket_column = "member_id"
"#;

pub async fn run(mut settings: Settings, args: Args) -> anyhow::Result<()> {
    if let Some(listen) = args.listen {
        settings.listen = listen;
    }
    // The demo always runs on its own embedded store, recreated at each start.
    let dir = settings.data_dir.join("demo");
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the demo directory {}", dir.display()))?;
    for name in ["tern.db", "tern.db-wal", "tern.db-shm"] {
        let path = dir.join(name);
        if path.exists() {
            std::fs::remove_file(&path)
                .with_context(|| format!("cannot remove the old demo store {}", path.display()))?;
        }
    }
    let store = Store::open_sqlite_file(&dir.join("tern.db"))
        .await
        .context("cannot create the demo store")?;

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
    create_demo_migration(&store).await?;

    serve(store, &settings, move |addr| {
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
        println!("Press Ctrl-C to stop.");
    })
    .await
}

async fn create_demo_migration(store: &Store) -> anyhow::Result<()> {
    // 16 buckets over member ids 1..=160,000 with their planned row counts.
    let buckets = (0..16)
        .map(|i| BucketPlan {
            idx: i,
            lo: Some((1 + i * 10_000).to_string()),
            hi: Some((1 + (i + 1) * 10_000).to_string()),
            planned_rows: 25_000,
            table_name: Some("messages".into()),
            table_bucket: Some(i),
        })
        .collect();
    store
        .create_migration(
            &Actor::system(),
            NewMigration {
                name: "messages-demo".into(),
                description: "Members' messages, from the old store to the new one".into(),
                spec: DEMO_SPEC.into(),
                buckets,
            },
        )
        .await?;
    Ok(())
}
