//! Sign-in. A plain HTML form posted to `/auth/login`: the page loads no
//! WebAssembly at all (see [`crate::shell`]), so signing in is quick and no
//! download is cut short by the post.

use leptos::prelude::*;
use leptos_meta::Title;
use leptos_router::hooks::use_query_map;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let failed = move || query.with(|q| q.get("error").is_some_and(|e| e != "slow"));
    let slowed = move || query.with(|q| q.get("error").is_some_and(|e| e == "slow"));
    let wait = move || query.with(|q| q.get("wait").unwrap_or_else(|| "a few".into()));
    let signed_out = move || query.with(|q| q.get("signed_out").is_some());
    let next = move || query.with(|q| q.get("next").unwrap_or_default());
    view! {
        <Title text="Sign in"/>
        <div class="login-wrap">
            <form class="panel login" method="post" action="/auth/login">
                <h1><span class="brand-mark">"◤"</span>" Tern"</h1>
                <p class="muted">"Sign in to follow and drive your migrations."</p>
                <Show when=failed>
                    <p class="flash flash-error" role="alert" data-testid="login-error">
                        "Wrong username or password. Check both and try again; an admin can reset a forgotten password with "
                        <code>"tern user add"</code>"."
                    </p>
                </Show>
                <Show when=slowed>
                    <p class="flash flash-error" role="alert" data-testid="login-slowed">
                        "Too many sign-in attempts. Wait " {wait} " seconds, then try again."
                    </p>
                </Show>
                <Show when=signed_out>
                    <p class="flash flash-ok">"You are signed out."</p>
                </Show>
                // An attribute, not a property: the page works without wasm.
                <input type="hidden" name="next" value=next/>
                <label>"Username" <input name="username" autocomplete="username" required autofocus/></label>
                <label>"Password" <input name="password" type="password" autocomplete="current-password" required/></label>
                <button type="submit" class="button primary">"Sign in"</button>
            </form>
        </div>
    }
}
