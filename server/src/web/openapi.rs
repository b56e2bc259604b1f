//! `GET /api/v1/openapi.json`: the JSON API described as OpenAPI 3.1,
//! generated from the handlers themselves (utoipa's `#[utoipa::path]` on each
//! handler, `ToSchema` / `IntoParams` on their request types), so it cannot
//! drift from the routes. Responses are JSON objects (the domain's records);
//! every error is `{"error": "…", "status": N}` (`error.rs` has one response
//! type a status). What the handlers share is said once here: the way in, 401
//! and 403 from the access table (`Walls`), a path's `{id}` (`PathIds`).
//! `bench/api_fuzz.sh` runs schemathesis against it.

use axum::Json;
use utoipa::openapi::path::{Operation, ParameterIn, PathItem};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::{IntoParams, IntoResponses, Modify, OpenApi};

use crate::web::access::{ROUTES, Who};
use crate::web::error::{ErrorBody, Forbidden, Unauthorized};
use crate::web::{api, api_clients, api_connections, api_fixes, api_runbook, api_switch, auth};

/// The two ways in: a session cookie (people and scripts, after
/// `POST /api/v1/session`; state-changing requests also send
/// `X-CSRF-Token`), and a client's API token (`Authorization: Bearer …`).
struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(super::SESSION_COOKIE))),
        );
        components.add_security_scheme(
            "token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Who may call each operation, from the access table (`access::ROUTES`):
/// the way in it needs (`security`), 401 without it, and 403 where the wall
/// refuses some roles (every wall but "every signed-in role"). Routes open
/// to anyone say their own.
struct Walls;

impl Modify for Walls {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for rule in ROUTES.iter().filter(|r| r.who != Who::Anyone) {
            let Some(op) = openapi
                .paths
                .paths
                .get_mut(rule.path)
                .and_then(|item| operation(item, rule.method))
            else {
                continue;
            };
            let scheme = if rule.who == Who::ClientToken {
                "token"
            } else {
                "session"
            };
            op.security = Some(vec![SecurityRequirement::new(scheme, Vec::<String>::new())]);
            op.responses.responses.extend(Unauthorized::responses());
            if rule.who != Who::SignedIn {
                op.responses.responses.extend(Forbidden::responses());
            }
        }
    }
}

/// The `{id}` of a path.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)] // only documented: the handlers take `Path<i64>`
struct IdPath {
    /// its id
    id: i64,
}

/// The `{id}` of a path, documented once: every operation on such a path
/// that does not describe its `id` itself gets `IdPath`, first.
struct PathIds;

impl Modify for PathIds {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let id = IdPath::into_params(|| Some(ParameterIn::Path));
        for (_, item) in openapi
            .paths
            .paths
            .iter_mut()
            .filter(|(p, _)| p.contains("{id}"))
        {
            for method in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
                let Some(op) = operation(item, method) else {
                    continue;
                };
                let params = op.parameters.get_or_insert_with(Vec::new);
                if !params.iter().any(|p| p.name == "id") {
                    params.splice(0..0, id.iter().cloned());
                }
            }
        }
    }
}

fn operation<'a>(item: &'a mut PathItem, method: &str) -> Option<&'a mut Operation> {
    match method {
        "GET" => item.get.as_mut(),
        "POST" => item.post.as_mut(),
        "PUT" => item.put.as_mut(),
        "DELETE" => item.delete.as_mut(),
        "PATCH" => item.patch.as_mut(),
        _ => None,
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Tern",
        description = "Tern's JSON API: migrations, buckets, jobs, relay, data fixes, clients, \
                       connections, users and audit, with the same role checks as the pages."
    ),
    paths(
        openapi_json,
        api::me, api::migrations, api::migration, api::audit, api::users, api::create_user,
        auth::login_json, auth::logout_json,
        api_clients::ramp, api_clients::route_one, api_clients::route_batch,
        api_clients::traffic, api_clients::shadow, api_clients::access_log,
        api_clients::list_clients, api_clients::client_detail, api_clients::set_ramp,
        api_clients::rollback, api_clients::create_token, api_clients::revoke_token,
        api_connections::list, api_connections::show, api_connections::create,
        api_connections::update, api_connections::remove,
        api_fixes::list, api_fixes::template, api_fixes::create, api_fixes::show,
        api_fixes::dry_run, api_fixes::start_run, api_fixes::settings, api_fixes::failures,
        api_runbook::create, api_runbook::preview, api_runbook::board, api_runbook::bucket,
        api_runbook::bucket_action, api_runbook::settings, api_runbook::archive,
        api_runbook::relay, api_runbook::set_relay, api_runbook::batches, api_runbook::jobs,
        api_runbook::job, api_runbook::job_action, api_runbook::job_rate,
        api_runbook::bucket_phase, api_runbook::repair,
        api_switch::write_routing, api_switch::primary, api_switch::switches, api_switch::switch,
        api_switch::rollback, api_switch::reverse_relay, api_switch::decommission,
        api_switch::decommission_step,
    ),
    components(schemas(ErrorBody)),
    modifiers(&Security, &Walls, &PathIds)
)]
pub struct ApiDoc;

/// The OpenAPI document of the JSON API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "meta",
    responses((status = 200, description = "this document", body = serde_json::Value)),
)]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every JSON route of the access table is in the document, with its
    /// method: a handler added without `#[utoipa::path]` and a line in
    /// `paths(…)` fails here.
    #[test]
    fn the_document_describes_every_json_route() {
        let doc = serde_json::to_value(ApiDoc::openapi()).expect("serializes");
        let paths = &doc["paths"];
        let missing: Vec<String> = crate::web::access::ROUTES
            .iter()
            .filter(|r| r.path.starts_with("/api/v1/"))
            .filter(|r| paths[r.path][r.method.to_ascii_lowercase()].is_null())
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert!(missing.is_empty(), "not in openapi.json: {missing:?}");
    }
}
