//! The shared state of a running server and its background refresh loop.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::compile::{self, Cache};
use crate::config::Config;
use crate::db::{self, Db};
use crate::metrics::Metrics;
use crate::snapshot::{Snapshots, Source};
use crate::tls::Pki;
use crate::tls::policy::Autosign;

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub snapshots: Arc<Snapshots>,
    pub cache: Arc<Cache>,
    pub metrics: Arc<Metrics>,
    pub operators: Arc<Tokens>,
    /// The CA, the server certificate and the catalog signing key.
    pub pki: Arc<Pki>,
    /// When certificate requests are signed without an operator.
    pub autosign: Arc<Autosign>,
}

impl AppState {
    /// Opens the database, prepares the repository source (cloning the
    /// mirror at first start) and loads every environment once.
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        fs_err::create_dir_all(&config.data_dir)?;
        let db = db::open(&config.database_url).await?;
        let operators = Tokens::load_or_create(&config.operator_token_file)?;
        let pki = Pki::open_or_create(&config.data_dir, &config)?;
        let autosign = Autosign::from_config(&config)?;
        let (repo, data_dir, default_env) = (
            config.repo.clone(),
            config.data_dir.clone(),
            config.default_environment.clone(),
        );
        let source = tokio::task::spawn_blocking(move || {
            Source::prepare(&repo, &data_dir, default_env.as_deref())
        })
        .await?
        .with_context(|| format!("cannot use the catalog repository `{}`", config.repo))?;
        tracing::info!(repo = %config.repo, source = source.kind(), "catalog repository ready");
        let state = AppState {
            snapshots: Arc::new(Snapshots::new(source, config.default_environment.clone())),
            config: Arc::new(config),
            db,
            cache: Arc::default(),
            metrics: Arc::default(),
            operators: Arc::new(operators),
            pki: Arc::new(pki),
            autosign: Arc::new(autosign),
        };
        refresh(&state).await;
        Ok(state)
    }

    /// Spawns the refresh loop on `tracker`; it stops when `shutdown` is cancelled.
    pub fn spawn_background(&self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        let (state, shutdown) = (self.clone(), shutdown.clone());
        tracker.spawn(async move { refresh_loop(state, shutdown).await });
    }
}

/// One refresh: fetch, reparse moved environments, drop stale cache entries,
/// recompile known nodes of moved environments, then mark requests served.
pub async fn refresh(state: &AppState) {
    let (ticket, outcome) = state.snapshots.refresh().await;
    let changed = outcome.map(|o| o.changed).unwrap_or_default();
    if !changed.is_empty() {
        state.cache.clear();
        if let Err(e) = compile::recompile_known(state, &changed).await {
            tracing::warn!(error = %e, "recompiling known nodes failed");
        }
    }
    state.snapshots.finish(ticket);
}

async fn refresh_loop(state: AppState, shutdown: CancellationToken) {
    let interval = state.config.refresh_interval;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
            () = state.snapshots.woken() => {}
        }
        refresh(&state).await;
    }
}
