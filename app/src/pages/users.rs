//! User administration (admins only): who can sign in, with which role.

use leptos::prelude::*;

use crate::components::grid::Grid;
use crate::components::guard::loaded;
use crate::components::page_head::PageHead;
use crate::error::AppError;
use crate::types::UserRow;

/// Every user.
#[server]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    let (store, me) = crate::server::acting()?;
    me.require_admin("listing users")?;
    let users = store.list_users().await?;
    Ok(users
        .into_iter()
        .map(|u| UserRow {
            username: u.username,
            display_name: u.display_name,
            role: u.role.as_str().to_string(),
            clients: u.clients,
            disabled: u.disabled,
            created_at: tern_control::clock::format_ms(u.created_at),
        })
        .collect())
}

/// Creates a user; `clients` is a comma-separated list for client-owners.
#[server]
pub async fn create_user(
    username: String,
    display_name: String,
    role: String,
    password: String,
    clients: String,
) -> Result<String, AppError> {
    use tern_control::users::NewUser;
    let (store, me) = crate::server::acting()?;
    let new = NewUser {
        username: username.trim().to_string(),
        display_name,
        role: tern_control::Role::parse(&role)?,
        password,
        clients: clients
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect(),
    };
    let user = store.create_user(&me, new).await?;
    Ok(user.username)
}

/// Disables or re-enables a user.
#[server]
pub async fn set_user_disabled(username: String, disabled: bool) -> Result<(), AppError> {
    let (store, me) = crate::server::acting()?;
    store.set_user_disabled(&me, &username, disabled).await?;
    Ok(())
}

#[component]
pub fn Users() -> impl IntoView {
    let create = ServerAction::<CreateUser>::new();
    let toggle = ServerAction::<SetUserDisabled>::new();
    let users = Resource::new_blocking(
        move || (create.version().get(), toggle.version().get()),
        |_| list_users(),
    );
    let created = move || create.value().get();
    view! {
        <PageHead title="Users">"Viewers (program managers) read; engineers also operate; client-owners see their clients; admins manage users."</PageHead>
        <section class="panel">
            <h2>"Add a user"</h2>
            <ActionForm action=create attr:class="form-grid">
                <label>"Username" <input name="username" required placeholder="pm.alice"/></label>
                <label>"Display name" <input name="display_name" placeholder="Alice Martin"/></label>
                <label>"Role"
                    <select name="role">
                        <option value="viewer">"viewer (program manager)"</option>
                        <option value="engineer">"engineer"</option>
                        <option value="client-owner">"client-owner"</option>
                        <option value="admin">"admin"</option>
                    </select>
                </label>
                <label>"Password" <input name="password" type="password" required minlength="8" autocomplete="new-password"/></label>
                <label>"Clients (client-owners)" <input name="clients" placeholder="inbox-service, search-api"/></label>
                <button type="submit" class="button primary">"Add user"</button>
            </ActionForm>
            {move || match created() {
                Some(Ok(name)) => view! { <p class="flash flash-ok" data-testid="user-created">{format!("Added {name}.")}</p> }.into_any(),
                Some(Err(e)) => view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> }.into_any(),
                None => ().into_any(),
            }}
        </section>
        <Suspense fallback=|| view! { <p class="muted">"Loading users…"</p> }>
            {move || Suspend::new(async move {
                loaded(users.await, |list| view! {
                    <section class="panel">
                        <Grid head=&["Username", "Name", "Role", "Clients", "Created", ""]>
                            {list.into_iter().map(|u| {
                                let name = u.username.clone();
                                let disabled = u.disabled;
                                view! {
                                    <tr data-testid="user-row" class:disabled=disabled>
                                        <td class="mono">{u.username.clone()}</td>
                                        <td>{u.display_name}</td>
                                        <td><span class=format!("role-badge role-{}", u.role)>{u.role.clone()}</span></td>
                                        <td>{u.clients.join(", ")}</td>
                                        <td class="mono muted">{u.created_at}</td>
                                        <td>
                                            <button class="button small" on:click=move |_| {
                                                toggle.dispatch(SetUserDisabled { username: name.clone(), disabled: !disabled });
                                            }>{if disabled { "Enable" } else { "Disable" }}</button>
                                        </td>
                                    </tr>
                                }
                            }).collect_view()}
                        </Grid>
                    </section>
                })
            })}
        </Suspense>
        {move || toggle.value().get().and_then(Result::err).map(|e| view! { <p class="flash flash-error" role="alert">{e.to_string()}</p> })}
    }
}
