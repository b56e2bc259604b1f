//! Named connections (admins): the databases specs and data fixes name. A
//! secret can be set or replaced here but is never shown: the page says only
//! whether one is set and where it comes from.

use leptos::prelude::*;
use serde::{Deserialize, Serialize};

use crate::components::grid::Grid;
use crate::components::guard::loaded;
use crate::components::page_head::PageHead;
use crate::error::AppError;

/// One connection as the page shows it (no secret).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConnectionRow {
    pub name: String,
    pub kind: String,
    pub address: String,
    pub database: String,
    pub username: String,
    pub options: String,
    pub secret: String,
    pub updated: String,
}

/// Every connection.
#[server]
pub async fn list_connections() -> Result<Vec<ConnectionRow>, AppError> {
    let (store, me) = crate::server::acting()?;
    me.require_admin("managing connections")?;
    let list = store.list_connections(&me).await?;
    Ok(list
        .into_iter()
        .map(|c| ConnectionRow {
            address: format!(
                "{}{}",
                c.host,
                c.port.map(|p| format!(":{p}")).unwrap_or_default()
            ),
            secret: if c.secret_set {
                format!("set ({})", c.secret_source)
            } else {
                "not set".into()
            },
            updated: tern_control::clock::format_ms(c.updated_at),
            name: c.name,
            kind: c.kind,
            database: c.database,
            username: c.username,
            options: c.options,
        })
        .collect())
}

/// Registers a connection, or changes the one of that name when `replace`
/// is on. An empty `secret` keeps the stored one; `secret_ref` is
/// `env:NAME` or `file:/path`.
#[server]
#[allow(clippy::too_many_arguments)]
pub async fn save_connection(
    name: String,
    kind: String,
    host: String,
    port: String,
    database: String,
    username: String,
    options: String,
    secret: String,
    secret_ref: String,
    #[server(default)] replace: Option<String>,
) -> Result<String, AppError> {
    use tern_control::connections::{ConnectionInput, SecretInput};
    let (store, me) = crate::server::acting()?;
    let port = match port.trim() {
        "" => None,
        p => Some(p.parse::<i64>().map_err(|_| {
            AppError::Invalid(format!(
                "port `{p}` is not a number; leave it blank for the default"
            ))
        })?),
    };
    let secret = match (secret.is_empty(), secret_ref.trim()) {
        (false, "") => SecretInput::Value(secret),
        (true, "") => SecretInput::Keep,
        (true, r) => SecretInput::Reference(r.to_string()),
        (false, _) => {
            return Err(AppError::Invalid(
                "give a password or a reference (env:NAME, file:/path), not both".into(),
            ));
        }
    };
    let input = ConnectionInput {
        name: name.trim().to_string(),
        kind,
        host,
        port,
        database,
        username,
        options,
        secret,
    };
    let c = if replace.is_some_and(|r| !r.is_empty()) {
        store.update_connection(&me, input).await?
    } else {
        store.create_connection(&me, input).await?
    };
    Ok(c.name)
}

/// Removes a connection.
#[server]
pub async fn remove_connection(name: String) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.remove_connection(&me, &name).await?;
    Ok(())
}

#[component]
pub fn Connections() -> impl IntoView {
    let save = ServerAction::<SaveConnection>::new();
    let remove = ServerAction::<RemoveConnection>::new();
    let list = Resource::new_blocking(
        move || (save.version().get(), remove.version().get()),
        |_| list_connections(),
    );
    view! {
        <PageHead title="Connections">
            "Databases that specs and data fixes name, e.g. " <code>"source = \"legacy-inbox\""</code>
            ". A password is stored encrypted with the server's secret key, or read from "
            <code>"env:NAME"</code> " or " <code>"file:/path"</code>
            " when a job connects. It is never shown again."
        </PageHead>
        <section class="panel">
            <h2>"Register or change a connection"</h2>
            <ActionForm action=save attr:class="form-grid">
                <label>"Name" <input name="name" required placeholder="legacy-inbox" data-testid="connection-name"/></label>
                <label>"Kind"
                    <select name="kind">
                        <option value="postgres">"postgres"</option>
                        <option value="mysql">"mysql / mariadb"</option>
                        <option value="sqlite">"sqlite"</option>
                    </select>
                </label>
                <label>"Host" <input name="host" placeholder="db.internal"/></label>
                <label>"Port" <input name="port" inputmode="numeric" placeholder="5432"/></label>
                <label>"Database (file path for sqlite)" <input name="database" placeholder="inbox"/></label>
                <label>"User" <input name="username" placeholder="app"/></label>
                <label>"Options" <input name="options" placeholder="sslmode=require"/></label>
                <label>"Password (stored encrypted)" <input name="secret" type="password" autocomplete="new-password" data-testid="connection-secret"/></label>
                <label>"…or a reference" <input name="secret_ref" placeholder="env:INBOX_DB_PASSWORD"/></label>
                <label class="check"><input type="checkbox" name="replace" value="on"/>" Change the existing connection of this name (an empty password keeps the stored one)"</label>
                <button type="submit" class="button primary" data-testid="connection-save">"Save connection"</button>
            </ActionForm>
            {move || match save.value().get() {
                Some(Ok(name)) => view! { <p class="flash flash-ok" data-testid="connection-saved">{format!("Saved {name}.")}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="flash flash-error" role="alert" data-testid="connection-error">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading connections…"</p> }>
            {move || Suspend::new(async move {
                loaded(list.await, |v| match v {
                    rows if rows.is_empty() => view! {
                        <section class="panel"><p class="muted">"No connection yet."</p></section>
                    }.into_any(),
                    rows => view! {
                        <section class="panel">
                            <Grid head=&["Name", "Kind", "Host", "Database", "User", "Options", "Secret", "Changed", ""]>
                                {rows.into_iter().map(|c| {
                                    let name = c.name.clone();
                                    view! {
                                        <tr data-testid="connection-row">
                                            <td class="mono">{c.name}</td>
                                            <td>{c.kind}</td>
                                            <td class="mono">{c.address}</td>
                                            <td class="mono">{c.database}</td>
                                            <td class="mono">{c.username}</td>
                                            <td class="mono">{c.options}</td>
                                            <td data-testid="connection-secret-state">{c.secret}</td>
                                            <td class="mono muted">{c.updated}</td>
                                            <td>
                                                <button class="button small" on:click=move |_| {
                                                    remove.dispatch(RemoveConnection { name: name.clone() });
                                                }>"Remove"</button>
                                            </td>
                                        </tr>
                                    }
                                }).collect_view()}
                            </Grid>
                        </section>
                    }.into_any(),
                })
            })}
        </Suspense>
        {move || remove.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
    }
}
