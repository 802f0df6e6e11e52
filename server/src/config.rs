//! Server configuration: `server.toml` merged with command-line overrides.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

/// Where `serve` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG: &str = "/etc/drover/server.toml";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8140";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/drover-server";
pub const DEFAULT_REFRESH_SECS: u64 = 60;
pub const DEFAULT_CERT_LIFETIME_DAYS: u32 = 365;
/// Three of the agent's default 30-minute intervals.
pub const DEFAULT_UNRESPONSIVE_SECS: u64 = 5400;
pub const DEFAULT_RETENTION_DAYS: u32 = 14;
/// Requests that may wait for a compile slot beyond those compiling.
pub const DEFAULT_COMPILE_QUEUE: usize = 64;
/// Largest report body stored (a report of a big catalog, diffs included,
/// stays well under it).
pub const DEFAULT_MAX_REPORT_BYTES: usize = 8 * 1024 * 1024;
/// Largest facts a catalog request may carry (stored per node).
pub const DEFAULT_MAX_FACTS_BYTES: usize = 1024 * 1024;
/// Connections of one address not (yet) proven certified: a browser holds
/// six, an enrolling fleet behind one NAT a few dozen for a moment each.
pub const DEFAULT_MAX_ANONYMOUS_PER_ADDRESS: usize = 64;
/// How long a request body may take: the largest report at about 1 Mbit/s.
pub const DEFAULT_BODY_DEADLINE: Duration = Duration::from_secs(120);

/// Compiles at once: two per core keeps both busy while one waits on the database.
pub fn default_max_compiles() -> usize {
    std::thread::available_parallelism().map_or(2, |n| 2 * n.get())
}

/// The keys `server.toml` may hold; an unknown key is an error that names it.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub repo: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub refresh_interval_secs: Option<u64>,
    pub default_environment: Option<String>,
    /// Serve plain HTTP instead of mutual TLS (loopback only).
    #[serde(default)]
    pub insecure_http: bool,
    /// Extra names and addresses for the server certificate (beyond localhost,
    /// 127.0.0.1, ::1 and the host name).
    #[serde(default)]
    pub server_names: Vec<String>,
    /// A file holding the shared enrollment token: a CSR that carries it is signed at once.
    pub enrollment_token_file: Option<PathBuf>,
    /// A policy command: gets the node name as its argument and the CSR (PEM)
    /// on stdin; exit 0 signs.
    pub autosign_command: Option<Vec<String>>,
    /// Operator tokens, one per line [default: DATA_DIR/operator-token, made at first start].
    pub operator_token_file: Option<PathBuf>,
    /// On PostgreSQL: the secret the shared CA's keys are sealed with in
    /// the database [default: DATA_DIR/cluster-secret, made by the first
    /// server; every other server needs a copy].
    pub cluster_secret_file: Option<PathBuf>,
    /// Lifetime of the certificates the CA signs for nodes and operators.
    pub cert_lifetime_days: Option<u32>,
    /// A second, plain-HTTP address serving only `/metrics` without a credential.
    pub metrics_listen: Option<String>,
    /// A node whose last report is older than this is `unresponsive`.
    pub unresponsive_after_secs: Option<u64>,
    /// Reports older than this many days are deleted in the background.
    pub report_retention_days: Option<u32>,
    /// Nodes silent this many days are deactivated (PuppetDB's node-ttl) [default: never].
    pub node_ttl_days: Option<u64>,
    /// A commit's page on the forge, `{commit}` replaced by its id
    /// (`https://git.example.com/ops/site/commit/{commit}`).
    pub commit_url: Option<String>,
    /// Catalog compiles running at once [default: 2 per core].
    pub max_concurrent_compiles: Option<usize>,
    /// Catalog requests waiting for a compile slot; beyond, 503 with Retry-After.
    pub compile_queue: Option<usize>,
    /// Connections the listener holds at once, idle and long-polling ones
    /// included (each watching daemon holds one) [default: 16,384, or what
    /// the open-file limit allows]; the soft open-file limit is raised to
    /// the hard one at start, and a number that does not fit is an error.
    pub max_connections: Option<usize>,
    /// Of those, connections without a client certificate (enrollment, the
    /// dashboard, operator tokens) [default: a quarter]; the rest stay for
    /// certified nodes and operators.
    pub max_anonymous_connections: Option<usize>,
    /// Connections one address holds before its handshake proves a
    /// certificate, or all along without one [default: 64]; more are closed at once.
    pub max_anonymous_per_address: Option<usize>,
    /// How long a request body may take from its headers to its end, in
    /// seconds [default: 120].
    pub body_deadline_secs: Option<u64>,
    /// Secrets (one per line) that sign forge webhooks to `POST /api/v1/hooks/git`
    /// (GitHub `X-Hub-Signature-256`, GitLab `X-Gitlab-Token`); they grant nothing else.
    pub hook_secret_file: Option<PathBuf>,
    /// How long a dashboard login session lasts [default: 12 hours].
    pub session_lifetime_secs: Option<u64>,
    /// `PRAGMA quick_check` of the database at start [default: true]; a
    /// corrupt database stops the start. False skips it (huge databases).
    pub db_quick_check: Option<bool>,
    /// Largest report body a node may post, in bytes; beyond, 413.
    pub max_report_bytes: Option<usize>,
    /// Largest facts (as JSON) a catalog request may carry, in bytes; beyond, 413.
    pub max_facts_bytes: Option<usize>,
    /// `text` (default) or `json`: one JSON object per log line.
    pub log_format: Option<LogFormat>,
}

/// How the server writes its log lines (stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines; colour only on a terminal.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `fields`, `target`.
    Json,
}

/// Command-line values that override the file.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    pub repo: Option<String>,
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database: Option<String>,
    pub refresh_interval_secs: Option<u64>,
    pub insecure_http: bool,
    /// `--skip-db-check`: no `PRAGMA quick_check` at start.
    pub skip_db_check: bool,
}

/// The resolved configuration of a running server.
#[derive(Debug, Clone)]
pub struct Config {
    /// A local path or a git URL; a plain directory (no git) is development mode.
    pub repo: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// sqlx URL, `sqlite://DATA/drover.db` by default.
    pub database_url: String,
    pub refresh_interval: Duration,
    /// Environment of nodes that ask for none and have no pin.
    pub default_environment: Option<String>,
    /// Plain HTTP on a loopback address, no certificates (development only).
    pub insecure_http: bool,
    pub server_names: Vec<String>,
    pub enrollment_token_file: Option<PathBuf>,
    pub autosign_command: Option<Vec<String>>,
    /// Where operator tokens are read from (made with one random token when missing).
    pub operator_token_file: PathBuf,
    /// The secret the shared CA's keys are sealed with (PostgreSQL only).
    pub cluster_secret_file: PathBuf,
    pub cert_lifetime: Duration,
    pub metrics_listen: Option<SocketAddr>,
    pub unresponsive_after: Duration,
    pub report_retention: Duration,
    /// Deactivate nodes silent this many days (`None`: never).
    pub node_ttl_days: Option<u64>,
    /// A commit's forge page, with `{commit}` where its id goes.
    pub commit_url: Option<String>,
    /// Compile slots and the queue in front of them (see `crate::shed`).
    pub max_concurrent_compiles: usize,
    pub compile_queue: usize,
    /// The `max_connections` key; `None` fits the default to the open-file
    /// limit (see `crate::tls::listener::connection_budget`).
    pub max_connections: Option<usize>,
    /// The `max_anonymous_connections` key; `None` is a quarter of the
    /// connection budget (see `crate::tls::admission`).
    pub max_anonymous_connections: Option<usize>,
    pub max_anonymous_per_address: usize,
    pub body_deadline: Duration,
    /// The `hook_secret_file` key: webhook secrets for the git hook.
    pub hook_secret_file: Option<PathBuf>,
    /// How long a dashboard login session lasts.
    pub session_lifetime: Duration,
    /// Whether the database is checked (`PRAGMA quick_check`) at start.
    pub db_quick_check: bool,
    pub max_report_bytes: usize,
    pub max_facts_bytes: usize,
    pub log_format: LogFormat,
}

/// A dashboard session lasts a working day.
pub const DEFAULT_SESSION_LIFETIME_SECS: u64 = 12 * 3600;

impl Config {
    /// The forge page of `commit`, when `commit_url` is set and the id is a
    /// git one (development mode's content ids have no page).
    pub fn commit_link(&self, commit: &str) -> Option<String> {
        let is_git = commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit());
        self.commit_url
            .as_ref()
            .filter(|_| is_git)
            .map(|url| url.replace("{commit}", commit))
    }

    /// A configuration with every default, for tests and embedding.
    pub fn new(repo: impl Into<String>, data_dir: impl Into<PathBuf>) -> Config {
        let data_dir: PathBuf = data_dir.into();
        Config {
            operator_token_file: data_dir.join("operator-token"),
            cluster_secret_file: data_dir.join("cluster-secret"),
            repo: repo.into(),
            listen: DEFAULT_LISTEN
                .parse()
                .expect("default listen address parses"),
            database_url: default_database_url(&data_dir),
            data_dir,
            refresh_interval: Duration::from_secs(DEFAULT_REFRESH_SECS),
            default_environment: None,
            insecure_http: false,
            server_names: Vec::new(),
            enrollment_token_file: None,
            autosign_command: None,
            cert_lifetime: days(DEFAULT_CERT_LIFETIME_DAYS),
            metrics_listen: None,
            unresponsive_after: Duration::from_secs(DEFAULT_UNRESPONSIVE_SECS),
            report_retention: days(DEFAULT_RETENTION_DAYS),
            node_ttl_days: None,
            commit_url: None,
            max_concurrent_compiles: default_max_compiles(),
            compile_queue: DEFAULT_COMPILE_QUEUE,
            max_connections: None,
            max_anonymous_connections: None,
            max_anonymous_per_address: DEFAULT_MAX_ANONYMOUS_PER_ADDRESS,
            body_deadline: DEFAULT_BODY_DEADLINE,
            hook_secret_file: None,
            session_lifetime: Duration::from_secs(DEFAULT_SESSION_LIFETIME_SECS),
            db_quick_check: true,
            max_report_bytes: DEFAULT_MAX_REPORT_BYTES,
            max_facts_bytes: DEFAULT_MAX_FACTS_BYTES,
            log_format: LogFormat::Text,
        }
    }

    /// Reads the config file (the default one may be missing) and applies overrides.
    pub fn load(overrides: Overrides) -> anyhow::Result<Config> {
        let file = FileConfig::find(&overrides)?;
        Config::merge(file, overrides)
    }

    /// Like [`Config::load`] for commands that never read the repository
    /// (`drover-server ca`): `repo` may be missing.
    pub fn load_without_repo(overrides: Overrides) -> anyhow::Result<Config> {
        let mut file = FileConfig::find(&overrides)?;
        file.repo.get_or_insert_with(String::new);
        Config::merge(file, overrides)
    }

    fn merge(file: FileConfig, o: Overrides) -> anyhow::Result<Config> {
        let Some(repo) = o.repo.or(file.repo) else {
            bail!(
                "no catalog repository configured\nhint: pass --repo PATH_OR_URL or set `repo` in the config file"
            );
        };
        let listen_text = o
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen: SocketAddr = listen_text.parse().with_context(|| {
            format!(
                "invalid listen address `{listen_text}`\nhint: use HOST:PORT, e.g. 127.0.0.1:8140"
            )
        })?;
        let data_dir = o
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
        let insecure_http = o.insecure_http || file.insecure_http;
        if insecure_http && !listen.ip().is_loopback() {
            bail!(
                "insecure plain HTTP is refused on {listen}: it is allowed only on a loopback address\nhint: listen on 127.0.0.1, or drop --insecure-http to serve mutual TLS"
            );
        }
        let metrics_listen = file
            .metrics_listen
            .as_deref()
            .map(|text| {
                text.parse::<SocketAddr>().with_context(|| {
                    format!("invalid metrics_listen address `{text}`\nhint: use HOST:PORT")
                })
            })
            .transpose()?;
        let lifetime_days = file
            .cert_lifetime_days
            .unwrap_or(DEFAULT_CERT_LIFETIME_DAYS);
        if lifetime_days == 0 {
            bail!("cert_lifetime_days must be at least 1");
        }
        let database_url = o
            .database
            .or(file.database)
            .unwrap_or_else(|| default_database_url(&data_dir));
        check_database_url(&database_url)?;
        let operator_token_file = file
            .operator_token_file
            .unwrap_or_else(|| data_dir.join("operator-token"));
        let cluster_secret_file = file
            .cluster_secret_file
            .unwrap_or_else(|| data_dir.join("cluster-secret"));
        let secs = o
            .refresh_interval_secs
            .or(file.refresh_interval_secs)
            .unwrap_or(DEFAULT_REFRESH_SECS);
        if secs == 0 {
            bail!("refresh_interval_secs must be at least 1");
        }
        let unresponsive_secs = file
            .unresponsive_after_secs
            .unwrap_or(DEFAULT_UNRESPONSIVE_SECS);
        if unresponsive_secs == 0 {
            bail!("unresponsive_after_secs must be at least 1");
        }
        let retention_days = file.report_retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if retention_days == 0 {
            bail!(
                "report_retention_days must be at least 1\nhint: reports are the dashboard's history; keep at least a day"
            );
        }
        let max_concurrent_compiles = file
            .max_concurrent_compiles
            .unwrap_or_else(default_max_compiles);
        if max_concurrent_compiles == 0 {
            bail!("max_concurrent_compiles must be at least 1");
        }
        if file.max_connections == Some(0) {
            bail!(
                "max_connections must be at least 1\nhint: leave it out to hold as many connections as the open-file limit allows (up to 16384)"
            );
        }
        for (key, value) in [
            ("max_anonymous_connections", file.max_anonymous_connections),
            ("max_anonymous_per_address", file.max_anonymous_per_address),
        ] {
            if value == Some(0) {
                bail!("{key} must be at least 1\nhint: leave it out for the default");
            }
        }
        if let (Some(anonymous), Some(max)) = (file.max_anonymous_connections, file.max_connections)
            && anonymous > max
        {
            bail!(
                "max_anonymous_connections = {anonymous} is more than max_connections = {max}\nhint: it is the share of max_connections that clients without a certificate may hold"
            );
        }
        let body_deadline = match file.body_deadline_secs {
            Some(0) => bail!("body_deadline_secs must be at least 1\nhint: leave it out for 120 s"),
            Some(secs) => Duration::from_secs(secs),
            None => DEFAULT_BODY_DEADLINE,
        };
        let session_secs = file
            .session_lifetime_secs
            .unwrap_or(DEFAULT_SESSION_LIFETIME_SECS);
        if session_secs == 0 {
            bail!("session_lifetime_secs must be at least 1\nhint: leave it out for 12 hours");
        }
        let max_report_bytes = size_limit(
            "max_report_bytes",
            file.max_report_bytes,
            DEFAULT_MAX_REPORT_BYTES,
        )?;
        let max_facts_bytes = size_limit(
            "max_facts_bytes",
            file.max_facts_bytes,
            DEFAULT_MAX_FACTS_BYTES,
        )?;
        Ok(Config {
            repo,
            listen,
            data_dir,
            database_url,
            refresh_interval: Duration::from_secs(secs),
            default_environment: file.default_environment,
            insecure_http,
            server_names: file.server_names,
            enrollment_token_file: file.enrollment_token_file,
            autosign_command: file.autosign_command,
            operator_token_file,
            cluster_secret_file,
            cert_lifetime: days(lifetime_days),
            metrics_listen,
            unresponsive_after: Duration::from_secs(unresponsive_secs),
            report_retention: days(retention_days),
            node_ttl_days: match file.node_ttl_days {
                Some(0) => bail!(
                    "node_ttl_days must be at least 1\nhint: leave it out to never deactivate silent nodes"
                ),
                other => other,
            },
            commit_url: match file.commit_url {
                Some(url) if !url.contains("{commit}") => bail!(
                    "commit_url `{url}` has no {{commit}}\nhint: e.g. commit_url = \"https://git.example.com/ops/site/commit/{{commit}}\""
                ),
                other => other,
            },
            max_concurrent_compiles,
            compile_queue: file.compile_queue.unwrap_or(DEFAULT_COMPILE_QUEUE),
            max_connections: file.max_connections,
            max_anonymous_connections: file.max_anonymous_connections,
            max_anonymous_per_address: file
                .max_anonymous_per_address
                .unwrap_or(DEFAULT_MAX_ANONYMOUS_PER_ADDRESS),
            body_deadline,
            hook_secret_file: file.hook_secret_file,
            session_lifetime: Duration::from_secs(session_secs),
            db_quick_check: !o.skip_db_check && file.db_quick_check.unwrap_or(true),
            max_report_bytes,
            max_facts_bytes,
            log_format: file.log_format.unwrap_or_default(),
        })
    }
}

/// A body size limit: at least 1 KiB, at most the server's body limit.
fn size_limit(key: &str, value: Option<usize>, default: usize) -> anyhow::Result<usize> {
    let n = value.unwrap_or(default);
    if !(1024..=crate::BODY_LIMIT).contains(&n) {
        bail!(
            "{key} must be between 1024 and {} (bytes), not {n}",
            crate::BODY_LIMIT
        );
    }
    Ok(n)
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 24 * 3600)
}

/// The database is SQLite (a `sqlite:` URL or a file's path) or
/// PostgreSQL (`postgres://` or `postgresql://`). A URL of another scheme
/// is refused here, naming only its scheme (its password stays out of the
/// log), rather than by SQLite failing to open a file named like a URL.
fn check_database_url(url: &str) -> anyhow::Result<()> {
    match url.split_once("://") {
        Some((scheme, _)) if !matches!(scheme, "sqlite" | "postgres" | "postgresql") => bail!(
            "database: a `{scheme}://` URL is not a database this server can use: it stores its data in SQLite or PostgreSQL\nhint: write sqlite:///PATH/drover.db or postgres://USER@HOST/DATABASE, or leave `database` out for DATA_DIR/drover.db"
        ),
        _ => Ok(()),
    }
}

fn default_database_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("drover.db").display())
}

impl FileConfig {
    /// `--config FILE`, else the default file when it exists, else nothing.
    fn find(overrides: &Overrides) -> anyhow::Result<FileConfig> {
        match &overrides.config {
            Some(path) => read_file(path),
            None if Path::new(DEFAULT_CONFIG).exists() => read_file(Path::new(DEFAULT_CONFIG)),
            None => Ok(FileConfig::default()),
        }
    }
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = fs_err::read_to_string(path)?;
    toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
}

#[cfg(test)]
mod tests;
