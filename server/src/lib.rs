//! drover's server: mirrors the catalog repository, compiles one catalog per
//! node, serves catalogs and file contents, stores run reports.
//!
//! Invariant: the server never touches the local system beyond its data
//! directory; it reads the repository through git objects (or a plain
//! directory in development mode) and never follows a symlink out of it.

pub mod auth;
pub mod cli;
pub mod compile;
pub mod config;
pub mod db;
pub mod error;
pub mod git;
pub mod html;
pub mod metrics;
pub mod routes;
pub mod snapshot;
pub mod state;
pub mod tls;

use std::io::Write;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

pub use config::Config;
pub use state::AppState;

/// Largest accepted request body (a report of a big catalog stays well under it).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Every route of the server.
pub fn app(state: AppState) -> Router {
    use routes::{meta, node, operator};
    Router::new()
        .route("/api/v1/nodes", get(operator::nodes))
        .route("/api/v1/nodes/{name}", get(operator::node))
        .route("/api/v1/nodes/{name}/catalog", post(node::catalog))
        .route("/api/v1/nodes/{name}/files/{sha256}", get(node::file))
        .route(
            "/api/v1/nodes/{name}/reports",
            post(node::report).get(operator::node_reports),
        )
        .route("/api/v1/reports/{id}", get(operator::report))
        .route("/api/v1/environments", get(operator::environments))
        .route("/api/v1/hooks/git", post(meta::git_hook))
        .route("/healthz", get(meta::healthz))
        .route("/metrics", get(meta::metrics))
        .route("/", get(html::index))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Runs the server until `shutdown` is cancelled: opens state, binds, prints
/// `drover-server listening on http://ADDR` on stdout once bound, serves,
/// then waits for background tasks to stop.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let listen = config.listen;
    let state = AppState::open(config).await?;
    let tracker = TaskTracker::new();
    state.spawn_background(&shutdown, &tracker);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "drover-server listening on http://{addr}")?;
        out.flush()?;
    }
    tracing::info!(%addr, "listening");
    let token = shutdown.clone();
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async move { token.cancelled().await })
        .await
        .context("server failed")?;
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    Ok(())
}
