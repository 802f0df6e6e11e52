//! The shared state of a running server (its background work is `background`).

use std::sync::Arc;

use anyhow::Context;

use crate::cluster::Cluster;
use crate::compile::cache::Cache;
use crate::config::Config;
use crate::credentials::Tokens;
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
    /// Placements, heartbeats and the control loop's wake-up.
    pub apps: Arc<crate::apps::Apps>,
    /// Every environment's staged rollout, as this server serves it.
    pub rollouts: Arc<crate::rollout::pick::Rollouts>,
    /// This server among the others on its database, and whether it leads.
    pub cluster: Arc<Cluster>,
    /// The secrets of `hook_secret_file`, for signed webhooks to the git hook.
    pub hook_secrets: Option<Arc<crate::webhook::HookSecrets>>,
    /// This server's hold on a SQLite database (see [`db::files::ServeLock`]);
    /// none on PostgreSQL, which several servers share.
    _serve_lock: Option<Arc<db::files::ServeLock>>,
}

impl AppState {
    /// Opens the database, prepares the repository source (cloning the
    /// mirror at first start) and loads every environment once.
    pub async fn open(config: Config) -> anyhow::Result<AppState> {
        db::files::secure_dir(&config.data_dir)?;
        let serve_lock = match db::Backend::of(&config.database_url) {
            db::Backend::Sqlite => Some(Arc::new(db::files::ServeLock::take(&db::sqlite_file(
                &config.database_url,
            )?)?)),
            db::Backend::Postgres => None,
        };
        let db = db::open_with(
            &config.database_url,
            db::OpenOptions {
                quick_check: config.db_quick_check,
            },
        )
        .await?;
        let operators = Tokens::load_or_create(&config.operator_token_file)?;
        let cluster = Arc::new(Cluster::new(db.clone()));
        // On PostgreSQL the CA is the servers' shared one (see `tls::replica`);
        // its calls block, as the CA's always do, so off the runtime's threads.
        let replica = match db.backend() {
            db::Backend::Sqlite => None,
            db::Backend::Postgres => {
                let (db, dir, id, secret) = (
                    db.clone(),
                    config.data_dir.join("ca"),
                    cluster.id().to_owned(),
                    config.cluster_secret_file.clone(),
                );
                let runtime = tokio::runtime::Handle::current();
                Some(Arc::new(
                    tokio::task::spawn_blocking(move || {
                        crate::tls::replica::Replica::new(db, runtime, &dir, &id, &secret)
                    })
                    .await??,
                ))
            }
        };
        let pki = {
            let (data_dir, config) = (config.data_dir.clone(), config.clone());
            tokio::task::spawn_blocking(move || Pki::open_or_create(&data_dir, &config, replica))
                .await??
        };
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
            cluster,
            db,
            cache: Arc::default(),
            metrics: Arc::default(),
            operators: Arc::new(operators),
            pki: Arc::new(pki),
            autosign: Arc::new(autosign),
            live: Arc::default(),
            watches: Arc::default(),
            served: Arc::default(),
            apps: Arc::default(),
            rollouts: Arc::default(),
            hook_secrets,
            _serve_lock: serve_lock,
        };
        // Loaded, not yet recompiled: the known nodes are recompiled in the
        // background once the server listens (see `crate::background`), so a
        // big fleet does not keep it from starting.
        let (ticket, _) = state.fetch().await;
        state.snapshots.finish(ticket);
        // Before the first catalog is served: a catalog compiled without
        // the node's replicas would have its agent remove them.
        state
            .apps
            .placements
            .reload(&state.db, &state.snapshots)
            .await?;
        // Likewise: a node a rollout has not reached must not be served
        // the newest commit in the meantime.
        state.rollouts.load(&state.db, &state.snapshots).await?;
        Ok(state)
    }

    /// Fetches and reparses; the refresh's ticket and the environments that moved.
    pub async fn fetch(&self) -> (u64, Vec<String>) {
        let started = std::time::Instant::now();
        let (ticket, outcome) = self.snapshots.refresh().await;
        self.metrics
            .refresh_finished(started.elapsed(), outcome.is_ok());
        (ticket, outcome.map(|o| o.changed).unwrap_or_default())
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
            held: self.rollouts.held(),
        }
    }
}
