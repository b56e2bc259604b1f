//! Who may reach which route: one table for every route of the router (pages,
//! JSON API, server functions, charts, sign-in), enforced by one middleware
//! before any handler runs, for reads as well as writes.
//!
//! The handlers and the control plane check again (a client-owner's own
//! client, an admin override), so this table is the outer wall, not the only
//! one. A route the table does not name is refused (deny by default), and
//! `tern access` and the route × role test list every route of the router and
//! fail when one has no row: adding a route means adding its row here.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tern_app::server::CurrentUser;
use tern_app::state::AppState;
use tern_control::{Actor, Role};

use crate::web::error::ApiError;

/// Who a route lets in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No session needed (sign-in, health, metrics, static pages).
    Anyone,
    /// A client's API token (`Authorization: Bearer …`), not a session.
    ClientToken,
    /// Every signed-in role, client-owners included (the overview).
    SignedIn,
    /// Viewers, engineers and admins read every client; client-owners read
    /// only their own (the handler checks which client it is).
    OwnClient,
    /// Engineers and admins; client-owners only for their own client (the
    /// control plane checks which client it is).
    OwnClientWrite,
    /// Viewers (program managers), engineers and admins: specs, fixes, jobs,
    /// audit, mismatched rows.
    Readers,
    /// Engineers and admins: everything that changes a migration or a fix.
    Operators,
    /// Admins: users and connections.
    Admins,
}

impl Who {
    /// Whether a signed-in user of `role` passes this wall.
    pub fn allows(self, role: Role) -> bool {
        match self {
            Who::Anyone | Who::SignedIn | Who::OwnClient => true,
            Who::OwnClientWrite => role.can_operate() || role == Role::ClientOwner,
            Who::ClientToken => false,
            Who::Readers => role.can_read_audit(),
            Who::Operators => role.can_operate(),
            Who::Admins => role.can_administer(),
        }
    }

    /// The short name `tern access` prints (`readers`, `own-client`…).
    pub fn key(self) -> &'static str {
        match self {
            Who::Anyone => "anyone",
            Who::ClientToken => "client-token",
            Who::SignedIn => "signed-in",
            Who::OwnClient => "own-client",
            Who::OwnClientWrite => "own-client-write",
            Who::Readers => "readers",
            Who::Operators => "operators",
            Who::Admins => "admins",
        }
    }

    /// The words `tern access` and refusals use.
    pub fn describe(self) -> &'static str {
        match self {
            Who::Anyone => "anyone",
            Who::ClientToken => "a client API token",
            Who::SignedIn => "every signed-in role",
            Who::OwnClient => "viewers, engineers and admins; client-owners for their own client",
            Who::OwnClientWrite => "engineers and admins; client-owners for their own client",
            Who::Readers => "the viewer, engineer or admin role",
            Who::Operators => "the engineer or admin role",
            Who::Admins => "the admin role",
        }
    }
}

/// One row: a method and a route pattern as the router spells it.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    pub method: &'static str,
    pub path: &'static str,
    pub who: Who,
}

const fn rule(method: &'static str, path: &'static str, who: Who) -> Rule {
    Rule { method, path, who }
}

use Who::*;

/// Every route of the router but the server functions (see [`SERVER_FNS`]).
pub const ROUTES: &[Rule] = &[
    // Health, metrics, sign-in.
    rule("GET", "/healthz", Anyone),
    rule("GET", "/readyz", Anyone),
    rule("GET", "/metrics", Anyone),
    rule("POST", "/auth/login", Anyone),
    rule("POST", "/auth/logout", SignedIn),
    rule("POST", "/api/v1/session", Anyone),
    rule("DELETE", "/api/v1/session", Anyone),
    // Pages.
    rule("GET", "/login", Anyone),
    rule("GET", "/", SignedIn),
    rule("GET", "/clients", SignedIn),
    rule("GET", "/clients/{id}", OwnClient),
    rule("GET", "/migrations/{id}/guide", SignedIn),
    rule("GET", "/migrations/new", Operators),
    rule("GET", "/migrations/{id}", Readers),
    rule("GET", "/migrations/{id}/buckets/{idx}", Readers),
    rule("GET", "/migrations/{id}/clients", Readers),
    rule("GET", "/migrations/{id}/offline", Readers),
    rule("GET", "/migrations/{id}/decommission", Readers),
    rule("GET", "/audit", Readers),
    rule("GET", "/fixes", Readers),
    rule("GET", "/fixes/{id}", Readers),
    rule("GET", "/admin/users", Admins),
    rule("GET", "/admin/connections", Admins),
    // Charts.
    rule("GET", "/charts/clients/{id}/traffic.svg", OwnClient),
    rule("GET", "/charts/clients/{id}/mismatch.svg", OwnClient),
    rule("GET", "/charts/migrations/{id}/share.svg", SignedIn),
    // JSON API: who am I, the overview, users, audit.
    rule("GET", "/api/v1/openapi.json", Anyone),
    rule("GET", "/api/v1/me", SignedIn),
    rule("GET", "/api/v1/migrations", SignedIn),
    rule("GET", "/api/v1/audit", Readers),
    rule("GET", "/api/v1/users", Admins),
    rule("POST", "/api/v1/users", Admins),
    // Runbook.
    rule("POST", "/api/v1/migrations", Operators),
    rule("GET", "/api/v1/migrations/{id}", Readers),
    rule("POST", "/api/v1/migrations/preview", Operators),
    rule("GET", "/api/v1/migrations/{id}/board", Readers),
    rule("GET", "/api/v1/migrations/{id}/buckets/{idx}", Readers),
    rule("POST", "/api/v1/migrations/{id}/actions", Operators),
    rule("PUT", "/api/v1/migrations/{id}/settings", Operators),
    rule("POST", "/api/v1/migrations/{id}/archive", Operators),
    rule("GET", "/api/v1/migrations/{id}/relay", Readers),
    rule("PUT", "/api/v1/migrations/{id}/relay", Operators),
    rule("POST", "/api/v1/migrations/{id}/batches", Operators),
    rule("GET", "/api/v1/migrations/{id}/switches", Readers),
    rule("POST", "/api/v1/migrations/{id}/switch", Operators),
    rule("POST", "/api/v1/migrations/{id}/rollback", Operators),
    rule("POST", "/api/v1/migrations/{id}/reverse-relay", Operators),
    rule("GET", "/api/v1/migrations/{id}/decommission", Readers),
    rule(
        "POST",
        "/api/v1/migrations/{id}/decommission/{step}",
        Admins,
    ),
    rule("GET", "/api/v1/jobs", Readers),
    rule("GET", "/api/v1/jobs/{id}", Readers),
    rule("POST", "/api/v1/jobs/{id}/{action}", Operators),
    rule("PUT", "/api/v1/jobs/{id}/rate", Operators),
    rule("POST", "/api/v1/buckets/{id}/phase", Operators),
    rule("POST", "/api/v1/buckets/{id}/repair", Operators),
    // Data fixes.
    rule("GET", "/api/v1/fixes", Readers),
    rule("POST", "/api/v1/fixes", Operators),
    rule("GET", "/api/v1/fixes/template", Readers),
    rule("GET", "/api/v1/fixes/{id}", Readers),
    rule("POST", "/api/v1/fixes/{id}/dry-run", Operators),
    rule("POST", "/api/v1/fixes/{id}/runs", Operators),
    rule("PUT", "/api/v1/fixes/{id}/settings", Operators),
    rule("GET", "/api/v1/fixes/{id}/runs/{run}/failures", Readers),
    // Connections: engineers read the names specs use; admins change them.
    rule("GET", "/api/v1/connections", Operators),
    rule("POST", "/api/v1/connections", Admins),
    rule("GET", "/api/v1/connections/{name}", Operators),
    rule("PUT", "/api/v1/connections/{name}", Admins),
    rule("DELETE", "/api/v1/connections/{name}", Admins),
    // Clients, with a session.
    rule("GET", "/api/v1/clients", SignedIn),
    rule("GET", "/api/v1/clients/{id}", OwnClient),
    rule("POST", "/api/v1/clients/{id}/ramp", Operators),
    rule("POST", "/api/v1/clients/{id}/rollback", Operators),
    rule("POST", "/api/v1/clients/{id}/tokens", OwnClientWrite),
    rule("DELETE", "/api/v1/tokens/{id}", OwnClientWrite),
    // Clients, with their API token (outside the session layers).
    rule("GET", "/api/v1/ramp", ClientToken),
    rule("GET", "/api/v1/route", ClientToken),
    rule("POST", "/api/v1/route", ClientToken),
    rule("POST", "/api/v1/traffic", ClientToken),
    rule("POST", "/api/v1/shadow", ClientToken),
    rule("POST", "/api/v1/access-log", ClientToken),
    rule("GET", "/api/v1/write-routing", ClientToken),
    rule("GET", "/api/v1/primary", ClientToken),
];

/// Every server function of the UI, by its function name (the router mounts
/// each at `/api/<name><hash>`).
pub const SERVER_FNS: &[(&str, Who)] = &[
    // The shell and the overview.
    ("whoami", SignedIn),
    ("list_migrations", SignedIn),
    ("still_on_old", SignedIn),
    ("sources_of_truth", SignedIn),
    ("guide_html", SignedIn),
    // Clients: lists are cut to a client-owner's own clients.
    ("list_clients", SignedIn),
    ("migration_names", SignedIn),
    ("client_view", OwnClient),
    ("tick_item", OwnClientWrite),
    ("set_status", OwnClientWrite),
    ("save_notes", OwnClientWrite),
    ("create_client_token", OwnClientWrite),
    ("revoke_client_token", OwnClientWrite),
    ("save_shadow", Operators),
    ("set_client_ramp", Operators),
    ("rollback_client", Operators),
    ("register_client", Operators),
    ("migration_clients", Readers),
    ("save_gates", Operators),
    ("save_guide", Operators),
    // Migrations.
    ("preview_migration", Operators),
    ("create_migration", Operators),
    ("migration_board", Readers),
    ("migration_settings", Readers),
    ("bucket_board", Readers),
    ("run_mismatches", Readers),
    ("repair_mismatches", Operators),
    ("move_bucket_phase", Operators),
    ("run_bucket_action", Operators),
    ("start_batch", Operators),
    ("control_job", Operators),
    ("set_job_rate", Operators),
    ("set_relay_ramp", Operators),
    ("install_capture", Operators),
    ("switch_panel", Readers),
    ("move_source_of_truth", Operators),
    ("start_reverse_relay", Operators),
    ("decommission_steps_view", Readers),
    ("run_decommission_step", Admins),
    ("save_settings", Operators),
    ("plan_batches", Operators),
    ("archive_migration", Operators),
    ("decommission_view", Readers),
    ("offline_view", Readers),
    ("import_jobs", Operators),
    ("set_job_status", Operators),
    ("lock_dataset", Operators),
    ("delete_dataset", Operators),
    // Data fixes.
    ("list_fixes", Readers),
    ("fix_template", Readers),
    ("load_fix", Readers),
    ("create_fix", Operators),
    ("dry_run_fix", Operators),
    ("start_fix_run", Operators),
    ("set_fix_rate", Operators),
    ("control_fix_job", Operators),
    // Audit and users.
    ("list_audit", Readers),
    ("list_users", Admins),
    ("create_user", Admins),
    ("set_user_disabled", Admins),
    ("list_connections", Admins),
    ("save_connection", Admins),
    ("remove_connection", Admins),
];

/// The name of the server function mounted at `path` (`/api/<name><digits>`),
/// when `path` is one.
fn server_fn_name(path: &str) -> Option<&str> {
    let rest = path.strip_prefix("/api/")?;
    if rest.contains('/') {
        return None;
    }
    let name = rest.trim_end_matches(|c: char| c.is_ascii_digit());
    (name.len() < rest.len()).then_some(name)
}

/// What the table says of a routed `method` + `path` pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Rule(Who),
    /// The path has rules, but not for this method.
    OtherMethod,
    /// The table does not know the path.
    Unknown,
}

/// Looks a routed request up in the table (HEAD is read as GET).
pub fn lookup(method: &str, path: &str) -> Verdict {
    let method = if method == "HEAD" { "GET" } else { method };
    if let Some(name) = server_fn_name(path) {
        if let Some((_, who)) = SERVER_FNS.iter().find(|(n, _)| *n == name) {
            return Verdict::Rule(*who);
        }
    }
    let mut known = false;
    for r in ROUTES.iter().filter(|r| r.path == path) {
        if r.method == method {
            return Verdict::Rule(r.who);
        }
        known = true;
    }
    if known {
        Verdict::OtherMethod
    } else {
        Verdict::Unknown
    }
}

/// The client id in a request for one client's route (`/clients/{id}`,
/// `/api/v1/clients/{id}`, `/charts/clients/{id}/…`).
fn client_id(pattern: &str, path: &str) -> Option<i64> {
    let at = pattern
        .split('/')
        .collect::<Vec<_>>()
        .windows(2)
        .position(|w| w == ["clients", "{id}"])?;
    path.split('/').nth(at + 1)?.parse().ok()
}

/// The middleware: refuses a request whose user's role the route's row does
/// not allow, before any handler (or server function) runs; a client-owner
/// reaches a client's page, API or charts only for their own client. Requests
/// the router matched to no route (static files, the 404 page) pass.
pub async fn enforce(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
    else {
        return next.run(req).await;
    };
    let user = req.extensions().get::<CurrentUser>().map(|u| u.0.clone());
    match lookup(req.method().as_str(), &path) {
        Verdict::Rule(Who::Anyone) => next.run(req).await,
        Verdict::Rule(who) => match user {
            Some(user)
                if matches!(who, Who::OwnClient | Who::OwnClientWrite)
                    && !user.role.can_read_audit() =>
            {
                match client_id(&path, req.uri().path()) {
                    None => next.run(req).await,
                    Some(id) => match state.store.client(id).await {
                        Ok(c) if Actor::from(&user).sees_client(&c.name) => next.run(req).await,
                        Ok(c) => refuse(
                            &path,
                            StatusCode::FORBIDDEN,
                            format!(
                                "client `{}` is not one of {}'s clients; a client-owner sees only their own",
                                c.name, user.username
                            ),
                        ),
                        Err(e) => ApiError::from(e).into_response(),
                    },
                }
            }
            Some(user) if who.allows(user.role) => next.run(req).await,
            Some(user) => refuse(
                &path,
                StatusCode::FORBIDDEN,
                format!(
                    "this needs {}; {} is signed in as {}",
                    who.describe(),
                    user.username,
                    user.role
                ),
            ),
            None => ApiError::unauthorized().into_response(),
        },
        Verdict::OtherMethod => refuse(
            &path,
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not answered at {path}", req.method()),
        ),
        Verdict::Unknown => {
            tracing::error!(method = %req.method(), path, "route without an access rule refused");
            refuse(
                &path,
                StatusCode::FORBIDDEN,
                format!(
                    "{} {path} has no access rule: add one to server/src/web/access.rs",
                    req.method()
                ),
            )
        }
    }
}

/// A refusal in the shape the caller reads: JSON for the API, the UI's error
/// JSON for a server function, a small page for a page.
fn refuse(path: &str, status: StatusCode, message: String) -> Response {
    if server_fn_name(path).is_some() {
        let body = match status {
            StatusCode::FORBIDDEN => serde_json::json!({ "Forbidden": message }),
            _ => serde_json::json!({ "Invalid": message }),
        };
        (status, axum::Json(body)).into_response()
    } else if path.starts_with("/api/")
        || path.starts_with("/charts/")
        || path.starts_with("/auth/")
    {
        ApiError::new(status, message).into_response()
    } else {
        let html = format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"/>\
             <title>Not allowed · Tern</title><link rel=\"stylesheet\" href=\"/pkg/tern.css\"/></head>\
             <body><main class=\"page\"><section class=\"panel error-page\" data-testid=\"forbidden\">\
             <h1>{} — not allowed</h1><p>{}</p><p><a href=\"/\">Back to the overview</a></p>\
             </section></main></body></html>",
            status.as_u16(),
            escape(&message)
        );
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response()
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The route patterns of a built router, read from its debug form (axum has
/// no other way to list them): what `tern access` and the route × role test
/// check the table against.
pub fn router_paths<S>(router: &axum::Router<S>) -> Vec<String> {
    let text = format!("{router:?}");
    let mut paths = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("RouteId(") {
        rest = &rest[i + "RouteId(".len()..];
        let Some(open) = rest.find("): \"") else {
            continue;
        };
        if !rest[..open].chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let after = &rest[open + 4..];
        if let Some(close) = after.find('"') {
            // axum's own catch-all for the fallback is not a route.
            if !after[..close].contains("__private__axum") {
                paths.push(after[..close].to_string());
            }
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The table's lines for one routed path, or `None` when it has no row.
pub fn rules_for(path: &str) -> Option<Vec<(String, Who)>> {
    if let Some(name) = server_fn_name(path) {
        return SERVER_FNS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, who)| vec![("POST".to_string(), *who)]);
    }
    let rows: Vec<(String, Who)> = ROUTES
        .iter()
        .filter(|r| r.path == path)
        .map(|r| (r.method.to_string(), r.who))
        .collect();
    (!rows.is_empty()).then_some(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_route_names_its_client() {
        assert_eq!(client_id("/clients/{id}", "/clients/7"), Some(7));
        assert_eq!(
            client_id(
                "/charts/clients/{id}/traffic.svg",
                "/charts/clients/12/traffic.svg"
            ),
            Some(12)
        );
        assert_eq!(client_id("/api/v1/clients/{id}", "/api/v1/clients/x"), None);
        assert_eq!(client_id("/api/v1/tokens/{id}", "/api/v1/tokens/3"), None);
    }

    #[test]
    fn server_functions_are_named_by_their_path() {
        assert_eq!(server_fn_name("/api/list_fixes1234567"), Some("list_fixes"));
        assert_eq!(server_fn_name("/api/v1/fixes"), None);
        assert_eq!(server_fn_name("/api/list_fixes"), None);
    }

    #[test]
    fn the_table_has_one_row_per_route_and_method() {
        for (i, a) in ROUTES.iter().enumerate() {
            for b in &ROUTES[i + 1..] {
                assert!(
                    !(a.method == b.method && a.path == b.path),
                    "{} {} has two rows",
                    a.method,
                    a.path
                );
            }
        }
        assert_eq!(lookup("GET", "/api/v1/fixes"), Verdict::Rule(Who::Readers));
        assert_eq!(lookup("HEAD", "/fixes"), Verdict::Rule(Who::Readers));
        assert_eq!(lookup("PATCH", "/api/v1/fixes"), Verdict::OtherMethod);
        assert_eq!(lookup("GET", "/api/v1/nothing"), Verdict::Unknown);
        assert!(!Who::Readers.allows(Role::ClientOwner));
        assert!(Who::Readers.allows(Role::Viewer));
        assert!(!Who::Operators.allows(Role::Viewer));
        assert!(!Who::Admins.allows(Role::Engineer));
    }
}
