//! `tern user …`: manage who can sign in, from the machine Tern runs on.

use std::io::BufRead;

use anyhow::Context;
use rand::Rng;
use tern_control::users::NewUser;
use tern_control::{Actor, Role};

use crate::cli::serve::open_store;
use crate::settings::Settings;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Create a user. Prints a generated password unless one is given.
    Add {
        /// Login name: 2 to 64 characters from a-z, 0-9, `.`, `_`, `-`.
        username: String,
        /// viewer (program manager), engineer, client-owner or admin.
        #[arg(long)]
        role: String,
        /// Name shown in the UI (defaults to the username).
        #[arg(long, default_value = "")]
        name: String,
        /// A client this client-owner owns; repeat for several.
        #[arg(long = "client", value_name = "CLIENT")]
        clients: Vec<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users.
    List,
    /// Stop a user from signing in (their sessions end at their next request).
    Disable { username: String },
    /// Let a disabled user sign in again.
    Enable { username: String },
}

/// The actor for changes made from the command line.
pub fn cli_actor() -> Actor {
    let who = std::env::var("USER").unwrap_or_else(|_| "operator".into());
    Actor {
        name: format!("cli:{who}"),
        role: Role::Admin,
        clients: Vec::new(),
    }
}

/// A random password of 16 characters without look-alikes.
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

pub async fn run(settings: Settings, cmd: Command) -> anyhow::Result<()> {
    let store = open_store(&settings).await?;
    match cmd {
        Command::Add {
            username,
            role,
            name,
            clients,
            password_stdin,
        } => {
            let role = Role::parse(&role)?;
            let (password, generated) = if password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                (line.trim_end_matches(['\r', '\n']).to_string(), false)
            } else {
                (generate_password(), true)
            };
            let user = store
                .create_user(
                    &cli_actor(),
                    NewUser {
                        username,
                        display_name: name,
                        role,
                        password: password.clone(),
                        clients,
                    },
                )
                .await?;
            println!("created {} ({})", user.username, user.role);
            if generated {
                println!("password: {password}");
            }
        }
        Command::List => {
            for u in store.list_users().await? {
                println!(
                    "{:<24} {:<13} {}{}",
                    u.username,
                    u.role.as_str(),
                    u.clients.join(","),
                    if u.disabled { " (disabled)" } else { "" }
                );
            }
        }
        Command::Disable { username } => {
            store
                .set_user_disabled(&cli_actor(), &username, true)
                .await?;
            println!("disabled {username}");
        }
        Command::Enable { username } => {
            store
                .set_user_disabled(&cli_actor(), &username, false)
                .await?;
            println!("enabled {username}");
        }
    }
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::generate_password;

    #[test]
    fn generated_passwords_are_long_and_different() {
        let a = generate_password();
        let b = generate_password();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}
