//! `tern connection …`: register the databases specs and data fixes name, from
//! the machine Tern runs on. A secret is read from standard input (never from
//! the command line, where `ps` and shell history would keep it) and stored
//! encrypted, or referenced with `--secret-ref env:NAME` / `file:/path`.

use std::io::BufRead;

use anyhow::Context;
use tern_control::connections::{ConnectionInput, SecretInput, SecretKey};

use crate::cli::serve::open_store;
use crate::cli::user::cli_actor;
use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Register a connection (or change one with --replace).
    Add(AddArgs),
    /// List connections (secrets are shown as set or not set).
    List,
    /// Remove a connection.
    Remove { name: String },
    /// Print a fresh secret key for TERN_SECRET_KEY.
    NewKey,
    /// Re-encrypt every stored secret with the current key (after setting a new
    /// TERN_SECRET_KEY with the old one in TERN_PREVIOUS_SECRET_KEY).
    Rekey,
}

/// `tern connection add`'s arguments.
#[derive(Debug, clap::Args)]
pub struct AddArgs {
    /// The name specs use: `source = "NAME"`.
    pub name: String,
    /// postgres, mysql or sqlite.
    #[arg(long)]
    pub kind: String,
    #[arg(long, default_value = "")]
    pub host: String,
    #[arg(long)]
    pub port: Option<i64>,
    /// Database name (the file's path for sqlite).
    #[arg(long, default_value = "")]
    pub database: String,
    #[arg(long = "user", default_value = "")]
    pub username: String,
    /// A URL option, `key=value`; repeat for several.
    #[arg(long = "option", value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Read the password from the first line of standard input (stored encrypted).
    #[arg(long, conflicts_with = "secret_ref")]
    pub secret_stdin: bool,
    /// Where the password lives instead: env:NAME or file:/path (read when a job connects).
    #[arg(long, value_name = "REF")]
    pub secret_ref: Option<String>,
    /// Change the connection of that name (its secret only if one is given).
    #[arg(long)]
    pub replace: bool,
}

pub async fn run(settings: Settings, cmd: Command) -> anyhow::Result<()> {
    if let Command::NewKey = cmd {
        println!("{}", SecretKey::generate());
        return Ok(());
    }
    let store = open_store(&settings).await?;
    let actor = cli_actor();
    match cmd {
        Command::Add(a) => {
            let secret = if a.secret_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the secret from standard input")?;
                SecretInput::Value(line.trim_end_matches(['\r', '\n']).to_string())
            } else if let Some(r) = a.secret_ref {
                SecretInput::Reference(r)
            } else {
                SecretInput::Keep
            };
            let input = ConnectionInput {
                name: a.name,
                kind: a.kind,
                host: a.host,
                port: a.port,
                database: a.database,
                username: a.username,
                options: a.options.join("&"),
                secret,
            };
            let c = if a.replace {
                store.update_connection(&actor, input).await?
            } else {
                store.create_connection(&actor, input).await?
            };
            println!(
                "connection {} ({}) saved; secret: {}",
                c.name,
                c.kind,
                secret_state(&c)
            );
        }
        Command::List => {
            for c in store.list_connections(&actor).await? {
                println!(
                    "{:<24} {:<9} {:<28} {:<20} {:<14} secret {}",
                    c.name,
                    c.kind,
                    format!(
                        "{}{}",
                        c.host,
                        c.port.map(|p| format!(":{p}")).unwrap_or_default()
                    ),
                    c.database,
                    c.username,
                    secret_state(&c)
                );
            }
        }
        Command::Remove { name } => {
            store.remove_connection(&actor, &name).await?;
            println!("connection {name} removed");
        }
        Command::Rekey => {
            let n = store.rekey_connections(&actor).await?;
            println!("{n} secret(s) re-encrypted with the current key");
        }
        Command::NewKey => {}
    }
    store.close().await;
    Ok(())
}

/// `set (env:NAME)` or `not set`: a connection's secret as the CLI shows it.
fn secret_state(c: &tern_control::connections::Connection) -> String {
    if c.secret_set {
        format!("set ({})", c.secret_source)
    } else {
        "not set".into()
    }
}
