//! HTTP routes, grouped by who calls them, and [`api`], the only place API
//! routes are registered (each with its OpenAPI description).

pub mod apps;
pub mod enroll;
pub mod lifecycle;
pub mod meta;
pub mod node;
pub mod operator;
pub mod rollout;
pub mod runs;
pub mod watch;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::state::AppState;

/// The API routes, each registered with its description, and
/// `GET /openapi.json` serving the document they add up to.
pub fn api() -> Router<AppState> {
    let (router, doc) = described_routes().split_for_parts();
    router.layer(Extension(meta::Document(Arc::new(doc))))
}

fn described_routes() -> OpenApiRouter<AppState> {
    let csr_limit = DefaultBodyLimit::max(enroll::CSR_BODY_LIMIT);
    // One `routes!` per path: utoipa-axum serves every handler of a call at
    // every path of that call.
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(operator::nodes))
        .routes(routes!(operator::node, lifecycle::purge))
        .routes(routes!(lifecycle::run))
        .routes(routes!(lifecycle::deactivate))
        .routes(routes!(node::catalog))
        .routes(routes!(watch::watch))
        .routes(routes!(node::file))
        .routes(routes!(node::report, operator::node_reports))
        .routes(routes!(enroll::renew).layer(csr_limit))
        .routes(routes!(enroll::ca))
        .routes(routes!(enroll::submit).layer(csr_limit))
        .routes(routes!(enroll::status))
        .routes(routes!(operator::report))
        .routes(routes!(runs::list))
        .routes(routes!(runs::events))
        .routes(routes!(operator::environments))
        .routes(routes!(operator::cluster))
        .routes(routes!(apps::list))
        .routes(routes!(apps::get))
        .routes(routes!(apps::capacity))
        .routes(routes!(apps::cordon))
        .routes(routes!(apps::uncordon))
        .routes(routes!(apps::drain))
        .routes(routes!(rollout::status))
        .routes(routes!(rollout::resume))
        .routes(routes!(rollout::abort))
        .routes(
            routes!(meta::git_hook).layer(DefaultBodyLimit::max(crate::webhook::HOOK_BODY_LIMIT)),
        )
        .routes(routes!(meta::healthz))
        .routes(routes!(meta::metrics))
        .routes(routes!(meta::openapi_json))
}
