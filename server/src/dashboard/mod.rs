//! The dashboard: server-rendered pages for operators (askama templates,
//! escaping on, readable without JavaScript), a live feed of new reports
//! (server-sent events), and the sign-in form.
//!
//! Pages: `/` the fleet, `/nodes/{name}` one node, `/runs/{run_id}` one run,
//! `/runs` and `/changes` every node's runs and resource events (`runs.rs`),
//! `/apps` the apps and the fleet's capacity, `/apps/{name}` one app with
//! the scheduler's decisions, `/rollouts` each environment's staged
//! rollout (`rollouts.rs`), `/events` the live feed, `/static/*` the
//! stylesheet and the script, `/login` and `/logout` (see [`login`]);
//! `page` renders them. The node page's buttons post to
//! `/nodes/{name}/cordon`, `/uncordon` and `/drain` (see [`maintenance`]:
//! the only dashboard routes that change something, each checking the
//! session, a form token bound to it, and that the post is same-origin), as
//! do the rollouts page's `/rollouts/{env}/resume` and `/abort`.
//!
//! `dashboard/` renders askama templates (`server/templates/*.html`, checked
//! against their structs when the server compiles; HTML escaping on) with one
//! stylesheet and one script served from `server/static/` under a
//! Content-Security-Policy that allows nothing inline. Pages work without the
//! script; with it, a page listens to `/events` and, on a `report` event,
//! fetches itself and swaps `<main id="live">`. `overview.rs`, `node.rs`,
//! `run.rs` and `apps.rs` each build their pages' view structs; `chart.rs`
//! draws the inline SVG charts as escaped text; `events.rs` turns the
//! `live.rs` broadcast channel into server-sent events that end at shutdown
//! (so an open page never holds the graceful shutdown), and a lagging page
//! gets one catch-up event instead of a backlog.

mod apps;
mod certificates;
mod chart;
mod cluster;
mod commit;
mod events;
mod format;
mod forms;
mod impact;
pub mod login;
mod maintenance;
mod node;
mod overview;
mod page;
#[cfg(test)]
mod palette;
mod rollouts;
mod run;
mod runs;

use axum::Router;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::state::AppState;

/// The dashboard's pages and the sign-in form.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/", get(overview::show))
        .route("/nodes/{name}", get(node::page_of))
        .route("/nodes/{name}/{action}", post(maintenance::act))
        .route("/runs/{id}", get(run::page_of))
        .route("/runs", get(runs::list))
        .route("/changes", get(runs::changes))
        .route("/apps", get(apps::show))
        .route("/apps/{name}", get(apps::page_of))
        .route("/certificates", get(certificates::show))
        .route("/certificates/{name}/{action}", post(certificates::act))
        .route("/rollouts", get(rollouts::show))
        .route("/rollouts/{env}/{action}", post(rollouts::act))
        .route("/impact", get(impact::show))
        .route("/events", get(events::stream))
        .route("/static/dashboard.css", get(stylesheet))
        .route("/static/dashboard.js", get(script))
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .fallback(page::fallback)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn stylesheet() -> Response {
    asset(
        "text/css; charset=utf-8",
        include_str!("../../static/dashboard.css"),
    )
}

async fn script() -> Response {
    asset(
        "text/javascript; charset=utf-8",
        include_str!("../../static/dashboard.js"),
    )
}
