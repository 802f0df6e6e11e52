//! The command line: `serve`, the offline `compile` and `check`, the CA,
//! the apps' commands (`apps.rs`: `apps`, `explain`, `plan`) and a node's
//! maintenance (`node.rs`), staged rollouts (`rollout.rs`), the operator
//! ones through `client.rs`.

#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "the commands' output and diagnostics are for the terminal"
)]

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use drover_catalog::Facts;

mod apps;
mod client;
mod diff;
mod lookup;
mod node;
mod rollout;

pub use apps::{AppsArgs, ExplainArgs, PlanArgs};
pub use client::ServerArgs;
pub use node::{NodeArgs, NodeCommand, node};
pub use rollout::{RolloutArgs, RolloutCommand, rollout};

use crate::config::Overrides;
use crate::git::{self, GitDir, Tree};
use drover_catalog::{self, CompileRequest, Diagnostic, Repository};

#[derive(Debug, Parser)]
#[command(
    name = "drover-server",
    version,
    about = "drover's server: compiles catalogs from git, serves them, stores reports"
)]
pub struct Cli {
    /// Log lines as text, or as one JSON object per line [default: text, or `log_format` in the config]
    #[arg(long, value_name = "FORMAT", global = true)]
    pub log_format: Option<crate::config::LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve catalogs, files, reports, the dashboard and metrics.
    Serve(ServeArgs),
    /// Print one node's compiled catalog as JSON.
    Compile(CompileArgs),
    /// Validate the whole repository; exit 1 listing every error.
    Check(CheckArgs),
    /// The certificate authority: list, sign and revoke certificates, issue operator certificates.
    Ca(CaArgs),
    /// List the apps and where their replicas run (asks a running server).
    Apps(AppsArgs),
    /// Explain an app's placements: every node's verdict or scores (asks a running server).
    Explain(ExplainArgs),
    /// Print the placements a commit would produce against the known fleet, without applying them.
    Plan(PlanArgs),
    /// List, run, deactivate or purge nodes; cordon, uncordon or drain one (asks a running server).
    Node(NodeArgs),
    /// The value a node gets for a data key; --explain shows every hierarchy level tried.
    Lookup(lookup::LookupArgs),
    /// What a branch would change in every known node's catalog, before it is merged.
    Diff(diff::DiffArgs),
    /// The staged rollout of an environment's newest commit: status, resume, abort (asks a running server).
    Rollout(RolloutArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        #[arg(value_name = "SHELL")]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff), as the package installs it.
    #[command(hide = true)]
    Man,
}

/// `completions SHELL`: the script on stdout.
pub fn completions(shell: clap_complete::Shell) -> anyhow::Result<u8> {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    // Into a buffer: `generate` panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cmd, "drover-server", &mut script);
    std::io::Write::write_all(&mut std::io::stdout(), &script)?;
    Ok(0)
}

/// `man`: the man page on stdout.
pub fn man() -> anyhow::Result<u8> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
    Ok(0)
}

pub use apps::{apps, explain, plan};
pub use diff::diff;
pub use lookup::lookup;

#[derive(Debug, Args)]
pub struct CaArgs {
    /// Configuration file [default: /etc/drover/server.toml, may be missing]
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// Data directory holding the CA in ca/ [default: /var/lib/drover-server]
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// Database URL: on PostgreSQL, the CA the servers share [default: sqlite://DATA_DIR/drover.db]
    #[arg(long, value_name = "URL", global = true)]
    pub database: Option<String>,
    #[command(subcommand)]
    pub command: CaCommand,
}

#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Print pending certificate requests and every certificate issued.
    List {
        /// Only the pending requests
        #[arg(long)]
        pending: bool,
    },
    /// Sign NAME's pending certificate request.
    Sign {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Refuse NAME's pending certificate request: it is deleted, and the name is free for another request.
    Reject {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Revoke NAME's certificates and drop its pending request, so it may enroll afresh.
    Clean {
        #[arg(value_name = "NAME")]
        name: String,
    },
    /// Revoke every valid certificate named NAME, or the one with SERIAL (seen at the next handshake).
    Revoke {
        #[arg(value_name = "NAME_OR_SERIAL")]
        target: String,
    },
    /// Issue an operator key and certificate into DIR, with a copy of the CA (for curl or a browser).
    Operator {
        #[arg(value_name = "NAME")]
        name: String,
        /// Directory for NAME.key.pem (mode 0600), NAME.crt.pem and ca.pem
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// The configuration of the server whose data a command reads: its file
/// (may be missing), its data directory and its database.
pub(crate) fn server_config(
    config: &Option<PathBuf>,
    data_dir: &Option<PathBuf>,
    database: &Option<String>,
) -> anyhow::Result<crate::config::Config> {
    crate::config::Config::load_without_repo(Overrides {
        config: config.clone(),
        data_dir: data_dir.clone(),
        database: database.clone(),
        ..Overrides::default()
    })
}

/// Where a command finds the server's data (its stored facts, fleet and
/// placements): the configuration file, the data directory, the database.
#[derive(Debug, Default, Args)]
pub struct StoreArgs {
    /// The server's configuration file [default: /etc/drover/server.toml, may be missing]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The server's data directory [default: /var/lib/drover-server]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The server's database URL [default: sqlite://DATA_DIR/drover.db]
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
}

impl StoreArgs {
    /// The server's configuration as these name it.
    pub(crate) fn server_config(&self) -> anyhow::Result<crate::config::Config> {
        server_config(&self.config, &self.data_dir, &self.database)
    }

    /// Runs `read` on the server's database, opened as the server opens it
    /// (an SQLite file that is not there is an error, not a new database).
    pub(crate) fn read<T>(
        &self,
        read: impl AsyncFnOnce(&crate::db::Db) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let config = self.server_config()?;
        if let Some(path) = config.database_url.strip_prefix("sqlite://") {
            let path = Path::new(path.split('?').next().unwrap_or(path));
            if !path.exists() {
                bail!(
                    "no server database at {}\nhint: this reads a server's stored fleet: pass its --data-dir, --database or --config",
                    path.display()
                );
            }
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        runtime.block_on(async {
            let db = crate::db::open_with(
                &config.database_url,
                crate::db::OpenOptions { quick_check: false },
            )
            .await?;
            read(&db).await
        })
    }
}

/// `drover-server ca ...`: exit 0, or an error (exit 1).
pub fn ca(args: &CaArgs) -> anyhow::Result<u8> {
    use crate::tls::{Pki, admin};
    let config = server_config(&args.config, &args.data_dir, &args.database)?;
    // On PostgreSQL the CA is the one the servers share: this host's copy is
    // brought up to date first, and what the command changes reaches them.
    // The CA's calls block on the runtime from this thread, so a worker
    // thread must drive its I/O (a current-thread runtime's handle cannot).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let replica = match crate::db::Backend::of(&config.database_url) {
        crate::db::Backend::Sqlite => None,
        crate::db::Backend::Postgres => {
            let db = runtime.block_on(crate::db::open(&config.database_url))?;
            Some(std::sync::Arc::new(crate::tls::replica::Replica::new(
                db,
                runtime.handle().clone(),
                &config.data_dir.join("ca"),
                "ca-command",
                &config.cluster_secret_file,
            )?))
        }
    };
    let pki = Pki::open_ca(&config.data_dir, config.cert_lifetime, replica)?;
    let text = match &args.command {
        CaCommand::List { pending } => admin::list(&pki, *pending)?,
        CaCommand::Clean { name } => admin::clean(&pki, name)?,
        CaCommand::Sign { name } => admin::sign(&pki, name)?,
        CaCommand::Reject { name } => admin::reject(&pki, name)?,
        CaCommand::Revoke { target } => admin::revoke(&pki, target)?,
        CaCommand::Operator { name, out } => admin::operator(&pki, name, out)?,
    };
    print!("{text}");
    Ok(0)
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Configuration file [default: /etc/drover/server.toml, may be missing]
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Catalog repository: a git URL or path (mirrored), or a plain directory (development mode)
    #[arg(long, value_name = "PATH_OR_URL")]
    pub repo: Option<String>,
    /// Address to listen on [default: 127.0.0.1:8140]
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Data directory: database, git mirror [default: /var/lib/drover-server]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [default: sqlite://DATA_DIR/drover.db]
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Seconds between repository refreshes [default: 60]
    #[arg(long, value_name = "N")]
    pub refresh_interval_secs: Option<u64>,
    /// INSECURE: serve plain HTTP without certificates (loopback addresses only)
    #[arg(long)]
    pub insecure_http: bool,
    /// Start without `PRAGMA quick_check` of the database (it reads the whole file)
    #[arg(long)]
    pub skip_db_check: bool,
}

impl ServeArgs {
    pub fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            repo: self.repo.clone(),
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database: self.database.clone(),
            refresh_interval_secs: self.refresh_interval_secs,
            insecure_http: self.insecure_http,
            skip_db_check: self.skip_db_check,
        }
    }
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Catalog repository: a plain directory or a git repository (bare or not)
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// Branch to compile from git objects [default: the work tree of a checkout, HEAD's branch of a bare repository]
    #[arg(long = "env", value_name = "BRANCH")]
    pub env: Option<String>,
    /// Node name
    #[arg(long, value_name = "NAME")]
    pub node: String,
    /// The node's facts as a JSON object [default: {}]
    #[arg(long, value_name = "FILE.json")]
    pub facts: Option<PathBuf>,
    /// Leave out the embedded file contents
    #[arg(long)]
    pub no_contents: bool,
    /// Write the file contents to DIR/SHA256 instead of embedding them, for
    /// `drover-agent apply CATALOG --contents-dir DIR`
    #[arg(long, value_name = "DIR", conflicts_with = "no_contents")]
    pub contents_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Catalog repository: a plain directory or a git repository (bare or not)
    #[arg(long, value_name = "PATH")]
    pub repo: PathBuf,
    /// Branch to check from git objects [default: the work tree of a checkout, HEAD's branch of a bare repository]
    #[arg(long = "env", value_name = "BRANCH")]
    pub env: Option<String>,
    /// Directory of NODE.json facts files; each node is compiled too
    #[arg(long, value_name = "DIR")]
    pub facts_dir: Option<PathBuf>,
    /// Also compile every node the server knows, with the facts it last sent (read from the server's database)
    #[arg(long)]
    pub fleet: bool,
    /// With --fleet: where the server's database is
    #[command(flatten)]
    pub store: StoreArgs,
}

/// One snapshot of a local repository.
pub(crate) struct Local {
    pub(crate) environment: String,
    pub(crate) commit: String,
    pub(crate) tree: Tree,
}

pub(crate) fn load_local(repo: &Path, env: Option<&str>) -> anyhow::Result<Local> {
    if !repo.is_dir() {
        bail!("catalog repository {} is not a directory", repo.display());
    }
    // Without --env, a checkout is read as the user sees it (its work tree),
    // so `check` validates edits before they are committed. --env, or a bare
    // repository, reads a branch from git objects as the server does.
    let work_tree = env.is_none() && repo.join(".git").exists();
    let local = match GitDir::detect(repo).filter(|_| !work_tree) {
        Some(dir) => {
            let environment = match env {
                Some(env) => env.to_owned(),
                None => dir.head_branch().with_context(|| {
                    format!(
                        "HEAD of {} is not on a branch\nhint: pass --env BRANCH",
                        repo.display()
                    )
                })?,
            };
            let commit = dir.branch_commit(&environment)?;
            let tree = dir.read_tree(&commit)?;
            Local {
                environment,
                commit,
                tree,
            }
        }
        None => {
            let tree = git::read_dir_tree(repo)?;
            let branch = GitDir::detect(repo).and_then(|dir| dir.head_branch());
            Local {
                environment: env
                    .map(str::to_owned)
                    .or(branch)
                    .unwrap_or_else(|| "production".to_owned()),
                commit: git::content_id(&tree.files),
                tree,
            }
        }
    };
    for note in &local.tree.notes {
        eprintln!("note: {note}");
    }
    Ok(local)
}

fn read_facts(path: &Path) -> anyhow::Result<Facts> {
    let text = fs_err::read_to_string(path)?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("invalid facts file {}", path.display()))?;
    match value {
        serde_json::Value::Object(map) => Ok(map),
        _ => bail!("facts file {} must hold a JSON object", path.display()),
    }
}

fn print_diagnostics(diagnostics: &[Diagnostic]) {
    for d in diagnostics {
        eprintln!("{d}");
    }
}

/// `drover-server compile`: exit 0 with the catalog on stdout, 1 on errors.
pub fn compile(args: &CompileArgs) -> anyhow::Result<u8> {
    let facts = match &args.facts {
        Some(path) => read_facts(path)?,
        None => Facts::new(),
    };
    let mut local = load_local(&args.repo, args.env.as_deref())?;
    // Pins come from the default environment only, as on the server: a
    // pinned node is compiled in its pin, and refused another environment.
    let pin = match GitDir::detect(&args.repo) {
        Some(_) => default_pin(&args.repo, &args.node, &facts)?,
        None => None,
    };
    match (pin, args.env.as_deref()) {
        (Some(pin), Some(asked)) if pin != asked => {
            eprintln!(
                "error: node `{}` is pinned to environment `{pin}` by nodes.toml of the default \
                 environment, and --env asked for `{asked}`\n\
                 hint: leave out --env (the server serves it `{pin}`), or change the pin",
                args.node
            );
            return Ok(1);
        }
        (Some(pin), None) if pin != local.environment => {
            local = load_local(&args.repo, Some(&pin))?;
        }
        _ => {}
    }
    let repo = match Repository::parse(std::mem::take(&mut local.tree.files)) {
        Ok(repo) => repo,
        Err(d) => {
            print_diagnostics(&d.0);
            return Ok(1);
        }
    };
    let compiled = match repo.compile(&CompileRequest {
        node: &args.node,
        facts: &facts,
        environment: &local.environment,
        commit: &local.commit,
    }) {
        Ok(compiled) => compiled,
        Err(d) => {
            print_diagnostics(&d.0);
            return Ok(1);
        }
    };
    let mut catalog = compiled.catalog;
    if let Some(dir) = &args.contents_dir {
        write_contents(dir, &compiled.contents)?;
    } else if !args.no_contents {
        catalog.embed_contents(compiled.contents.iter().map(|(sha, b)| (sha, &b[..])));
    }
    println!("{}", serde_json::to_string_pretty(&catalog)?);
    Ok(0)
}

/// The pin of `node` in the default environment's nodes.toml (the work tree
/// of a checkout, else HEAD's branch), or none when no entry matches.
fn default_pin(repo: &Path, node: &str, facts: &Facts) -> anyhow::Result<Option<String>> {
    let local = load_local(repo, None)?;
    let parsed = Repository::parse(local.tree.files).map_err(|d| {
        anyhow::anyhow!(
            "the default environment `{}` does not parse, so its environment pins are unknown\n{d}",
            local.environment
        )
    })?;
    Ok(parsed
        .classify(node, facts)
        .ok()
        .and_then(|class| class.environment))
}

/// Each content as `dir/SHA256`, written to a temp file and renamed, so a
/// killed compile never leaves a file whose name lies about its bytes; one
/// already there is kept (its name is its hash).
fn write_contents<B: AsRef<[u8]>>(
    dir: &Path,
    contents: &std::collections::BTreeMap<String, B>,
) -> anyhow::Result<()> {
    fs_err::create_dir_all(dir)?;
    for (sha, bytes) in contents {
        let path = dir.join(sha);
        if path.exists() {
            continue;
        }
        let temp = dir.join(format!(".{sha}.tmp-{}", std::process::id()));
        fs_err::write(&temp, bytes.as_ref())?;
        fs_err::rename(&temp, &path)?;
    }
    Ok(())
}

/// The `NODE.json` facts files of `dir`, by node name.
pub(crate) fn facts_files(dir: &Path) -> anyhow::Result<Vec<(String, Facts)>> {
    let mut paths: Vec<PathBuf> = fs_err::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut nodes = Vec::new();
    for path in paths {
        if path.extension().is_some_and(|e| e == "json") {
            let node = path
                .file_stem()
                .and_then(|s| s.to_str())
                .with_context(|| format!("facts file {} has no UTF-8 node name", path.display()))?
                .to_owned();
            nodes.push((node, read_facts(&path)?));
        }
    }
    Ok(nodes)
}

/// `check --fleet`: every node the server knows, with the facts it last
/// sent, read from the server's database (opened as the server opens it).
fn fleet_facts(args: &CheckArgs) -> anyhow::Result<Vec<(String, Facts)>> {
    stored_facts(&args.store)
}

/// Every node a server's database knows, with the facts it last sent.
pub(crate) fn stored_facts(store: &StoreArgs) -> anyhow::Result<Vec<(String, Facts)>> {
    store.read(async |db| Ok(crate::db::known_facts(db).await?))
}

/// `drover-server check`: exit 0 clean, 1 with every error on stderr.
pub fn check(args: &CheckArgs) -> anyhow::Result<u8> {
    let mut nodes = match &args.facts_dir {
        Some(dir) => facts_files(dir)?,
        None => Vec::new(),
    };
    if args.fleet {
        nodes.extend(fleet_facts(args)?);
    }
    let local = load_local(&args.repo, args.env.as_deref())?;
    let apps = drover_catalog::Repository::parse(local.tree.files.clone())
        .map(|repo| repo.apps().count())
        .unwrap_or(0);
    let diagnostics =
        drover_catalog::check(local.tree.files, &local.environment, &local.commit, &nodes);
    if diagnostics.is_empty() {
        eprintln!(
            "ok: environment `{}` at {} ({} node(s) compiled, {apps} app(s) checked)",
            local.environment,
            local.commit,
            nodes.len()
        );
        Ok(0)
    } else {
        print_diagnostics(&diagnostics);
        eprintln!("{} error(s)", diagnostics.len());
        Ok(1)
    }
}
