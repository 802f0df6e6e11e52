//! The shared state of a running server and its background refresh loop.

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Tokens;
use crate::compile::{self, Cache};
use crate::config::Config;
use crate::db::{self, Db};
use crate::fleet;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::served::Served;
use crate::snapshot::{Snapshots, Source};
use crate::tls::Pki;
use crate::tls::policy::Autosign;
use crate::watch::Watches;

/// Everything handlers share; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub snapshots: Arc<Snapshots>,
    pub cache: Arc<Cache>,
    /// Admission to compiles: beyond capacity, 503 with Retry-After.
    pub shed: Arc<crate::shed::Shed>,
    pub metrics: Arc<Metrics>,
    pub operators: Arc<Tokens>,
    /// The CA, the server certificate and the catalog signing key.
    pub pki: Arc<Pki>,
    /// When certificate requests are signed without an operator.
    pub autosign: Arc<Autosign>,
    /// Stored reports, announced to the dashboard's open pages.
    pub live: Arc<Live>,
    /// Each node's current catalog version, and the watches waiting on it.
    pub watches: Arc<Watches>,
    /// The contents each node may fetch, and content bytes at hand.
    pub served: Arc<Served>,
    /// The secrets of `hook_secret_file`, for signed webhooks to the git hook.
    pub hook_secrets: Option<Arc<crate::webhook::HookSecrets>>,
}

impl AppState {
    /// Opens the database, prepares the repository source (cloning the
    /// mirror at first start) and loads every environment once.
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        db::files::secure_dir(&config.data_dir)?;
        let db = db::open_with(
            &config.database_url,
            db::OpenOptions {
                quick_check: config.db_quick_check,
            },
        )
        .await?;
        let operators = Tokens::load_or_create(&config.operator_token_file)?;
        let pki = Pki::open_or_create(&config.data_dir, &config)?;
        let autosign = Autosign::from_config(&config)?;
        let hook_secrets = config
            .hook_secret_file
            .as_deref()
            .map(crate::webhook::HookSecrets::read)
            .transpose()?
            .map(Arc::new);
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
            shed: Arc::new(crate::shed::Shed::new(
                config.max_concurrent_compiles,
                config.compile_queue,
            )),
            config: Arc::new(config),
            db,
            cache: Arc::default(),
            metrics: Arc::default(),
            operators: Arc::new(operators),
            pki: Arc::new(pki),
            autosign: Arc::new(autosign),
            live: Arc::default(),
            watches: Arc::default(),
            served: Arc::default(),
            hook_secrets,
        };
        // Loaded, not yet recompiled: the known nodes are recompiled in the
        // background once the server listens (see `refresh_loop`), so a
        // big fleet does not keep it from starting.
        let (ticket, _) = fetch(&state).await;
        state.snapshots.finish(ticket);
        Ok(state)
    }

    /// Spawns the refresh loop and report retention on `tracker`; they stop,
    /// and the live feed and the catalog watches close, when `shutdown` is
    /// cancelled.
    pub fn spawn_background(&self, shutdown: &CancellationToken, tracker: &TaskTracker) {
        let (state, token) = (self.clone(), shutdown.clone());
        tracker.spawn(async move { refresh_loop(state, token).await });
        let (db, retention, token) = (
            self.db.clone(),
            self.config.report_retention,
            shutdown.clone(),
        );
        tracker.spawn(crate::retention::prune_loop(db, retention, token));
        tracker.spawn(self.collector().run(shutdown.clone()));
        let (live, watches, token) = (self.live.clone(), self.watches.clone(), shutdown.clone());
        tracker.spawn(async move {
            token.cancelled().await;
            live.close();
            watches.close();
        });
    }

    /// The collector of unreferenced contents (see `crate::gc`).
    pub fn collector(&self) -> crate::gc::Collector {
        let cache = self.cache.clone();
        crate::gc::Collector {
            db: self.db.clone(),
            served: self.served.clone(),
            live: Arc::new(move || cache.referenced()),
        }
    }

    /// What node states are measured against now: the unresponsive cutoff
    /// and each environment's head commit.
    pub fn fleet_context(&self) -> fleet::Context {
        let window = i64::try_from(self.config.unresponsive_after.as_micros()).unwrap_or(i64::MAX);
        fleet::Context {
            unresponsive_before_us: jiff::Timestamp::now()
                .as_microsecond()
                .saturating_sub(window),
            heads: self
                .snapshots
                .list()
                .iter()
                .map(|snap| (snap.name.clone(), snap.commit.clone()))
                .collect(),
        }
    }
}

/// One refresh: fetch, reparse moved environments, drop stale cache entries,
/// recompile known nodes of moved environments, then mark requests served.
pub async fn refresh(state: &AppState) {
    let (ticket, changed) = fetch(state).await;
    if !changed.is_empty() {
        state.cache.clear();
        recompile(state, &changed).await;
    }
    state.snapshots.finish(ticket);
}

/// Fetches and reparses; the refresh's ticket and the environments that moved.
async fn fetch(state: &AppState) -> (u64, Vec<String>) {
    let started = std::time::Instant::now();
    let (ticket, outcome) = state.snapshots.refresh().await;
    state
        .metrics
        .refresh_finished(started.elapsed(), outcome.is_ok());
    (ticket, outcome.map(|o| o.changed).unwrap_or_default())
}

async fn recompile(state: &AppState, environments: &[String]) {
    if let Err(e) = compile::recompile_known(state, environments).await {
        tracing::warn!(error = %e, "recompiling known nodes failed");
    }
}

async fn refresh_loop(state: AppState, shutdown: CancellationToken) {
    // First the nodes known from before the start: their compile errors
    // show and their watches hear of the commits loaded at start.
    let loaded: Vec<String> = state
        .snapshots
        .list()
        .iter()
        .map(|s| s.name.clone())
        .collect();
    tokio::select! {
        () = shutdown.cancelled() => return,
        () = recompile(&state, &loaded) => {}
    }
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
