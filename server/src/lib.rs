//! drover's server: mirrors the catalog repository, compiles one catalog per
//! node, serves catalogs and file contents, stores run reports.
//!
//! Invariant: the server never touches the local system beyond its data
//! directory; it reads the repository through git objects (or a plain
//! directory in development mode) and never follows a symlink out of it.

#![warn(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "a server logs through tracing; only the command line (`cli`) prints"
)]

pub mod apps;
pub mod auth;
pub mod background;
pub mod cli;
pub mod cluster;
pub mod commits;
pub mod compile;
pub mod config;
pub mod credentials;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod export;
pub mod fleet;
pub mod gate;
pub mod gc;
pub mod git;
pub mod impact;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod retention;
pub mod rollout;
pub mod routes;
pub mod runs;
pub mod served;
pub mod session;
pub mod shed;
pub mod snapshot;
pub mod state;
pub mod systemd;
pub mod tls;
pub mod watch;
pub mod webhook;

use std::io::Write;

use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::trace::TraceLayer;

pub use config::Config;
pub use state::AppState;

/// Largest accepted request body (a report of a big catalog stays well under it).
pub const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Every route of the server: the API (each route registered with its
/// OpenAPI description, see [`openapi`]) and the HTML dashboard.
pub fn app(state: AppState) -> Router {
    routes::api()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate::authenticate_first,
        ))
        .merge(dashboard::router())
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track_requests,
        ))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Only `GET /metrics`, without a credential, for the `metrics_listen` address.
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(routes::meta::metrics_open))
        .with_state(state)
}

/// Runs the server until `shutdown` is cancelled: opens state, binds, prints
/// `drover-server listening on https://ADDR` (`http://` with insecure_http)
/// on stdout once bound, serves, then waits for background tasks to stop.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let (listen, metrics_listen, insecure) =
        (config.listen, config.metrics_listen, config.insecure_http);
    // Before anything opens files: a limit that cannot be met stops the start.
    let max_connections = tls::listener::connection_budget(config.max_connections)?;
    let (max_anonymous_connections, max_anonymous_per_address, body_deadline) = (
        config.max_anonymous_connections,
        config.max_anonymous_per_address,
        config.body_deadline,
    );
    let state = AppState::open(config).await?;
    let tls = if insecure {
        tracing::warn!(
            "INSECURE: serving plain HTTP without certificates; every caller is trusted"
        );
        None
    } else {
        Some(tls::verifier::server_config(&state.pki)?)
    };
    let tracker = TaskTracker::new();
    background::spawn(&state, &shutdown, &tracker);
    let listener = bind(listen).await?;
    // Both bound before either is announced: a caller that read the lines
    // can connect to both.
    let metrics = match metrics_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let addr = listener.local_addr()?;
    let scheme = if insecure { "http" } else { "https" };
    state.cluster.set_listen(&format!("{scheme}://{addr}"));
    announce(&format!("drover-server listening on {scheme}://{addr}"))?;
    tracing::info!(%addr, scheme, "listening");
    systemd::ready(&format!("{scheme}://{addr}"));
    tracker.spawn(systemd::watchdog(state.clone(), shutdown.clone()));
    tracker.spawn(systemd::reload_on_sighup(state.clone(), shutdown.clone()));
    if let Some(metrics) = metrics {
        announce(&format!(
            "drover-server metrics on http://{}",
            metrics.local_addr()?
        ))?;
        let (app, token) = (metrics_app(state.clone()), shutdown.clone());
        tracker.spawn(async move {
            // A scraper or two.
            let limits = tls::listener::Limits {
                max_connections: 64,
                ..tls::listener::Limits::default()
            };
            if let Err(e) = tls::listener::serve(metrics, None, app, limits, token).await {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        });
    }
    let anonymous = tls::admission::AnonymousLimits {
        max: max_anonymous_connections
            .unwrap_or_else(|| tls::admission::default_anonymous_share(max_connections)),
        per_address: max_anonymous_per_address,
    };
    let limits = tls::listener::Limits {
        max_connections,
        body_deadline,
        anonymous: Some(anonymous),
        ..tls::listener::Limits::default()
    };
    tracing::info!(
        max_connections,
        max_anonymous_connections = anonymous.max,
        max_anonymous_per_address = anonymous.per_address,
        "connection limits"
    );
    let served = tls::listener::serve(listener, tls, app(state), limits, shutdown.clone()).await;
    systemd::stopping();
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    served.context("server failed")
}

async fn bind(addr: std::net::SocketAddr) -> anyhow::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))
}

/// One line on stdout, flushed (the tests and service managers read it).
fn announce(line: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
