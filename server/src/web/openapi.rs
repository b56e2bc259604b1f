//! `GET /api/v1/openapi.json`: the JSON API described as OpenAPI 3.1,
//! generated from the handlers themselves (utoipa's `#[utoipa::path]` on each
//! handler, `ToSchema` / `IntoParams` on their request types), so it cannot
//! drift from the routes. Responses are JSON objects (the domain's records);
//! every error is `{"error": "…", "status": N}`. `bench/api_fuzz.sh` runs
//! schemathesis against it.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::web::error::ErrorBody;
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
    modifiers(&Security)
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
