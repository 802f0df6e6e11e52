//! Environments: one parsed snapshot per branch (or the one directory), and
//! the refresh that replaces them when commits move. Earlier commits a
//! staged rollout still serves (see `crate::rollout`) are kept beside them:
//! the snapshot a refresh replaces stays at hand, and after a restart one
//! is read again from the mirror (in development mode a directory has no
//! history: an earlier commit is only at hand until the server restarts).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{Mutex, Notify, watch};

use crate::git::{self, GitDir, GitError, Tree};
use drover_catalog::Repository;

/// Where snapshots come from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A `git clone --mirror` in the data dir: every branch is an environment.
    Mirror(GitDir),
    /// Development mode: a plain directory, one environment.
    Directory { path: PathBuf, environment: String },
}

impl Source {
    /// Prepares the source for `repo`: a plain directory is used in place;
    /// anything else is mirrored into `DATA/mirror.git` (cloned at first start).
    pub fn prepare(
        repo: &str,
        data_dir: &Path,
        default_environment: Option<&str>,
    ) -> Result<Source, GitError> {
        let path = Path::new(repo);
        if path.is_dir() && GitDir::detect(path).is_none() {
            return Ok(Source::Directory {
                path: path.to_owned(),
                environment: default_environment.unwrap_or("production").to_owned(),
            });
        }
        let mirror = data_dir.join("mirror.git");
        if mirror.join("HEAD").exists() {
            let dir = GitDir::new(mirror);
            dir.set_origin(repo)?;
            Ok(Source::Mirror(dir))
        } else {
            // A local repository is cloned by absolute path so the mirror's
            // origin stays valid whatever the working directory.
            let src = if path.exists() {
                std::path::absolute(path)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|_| repo.to_owned())
            } else {
                repo.to_owned()
            };
            Ok(Source::Mirror(git::clone_mirror(&src, &mirror)?))
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Source::Mirror(_) => "git",
            Source::Directory { .. } => "directory",
        }
    }
}

/// One environment at one commit: the parsed repository or why it does not parse.
#[derive(Debug)]
pub struct EnvSnapshot {
    pub name: String,
    pub commit: String,
    /// The parsed repository, or its parse diagnostics (`file:line:col: msg`).
    pub repo: Result<Arc<Repository>, Vec<String>>,
    /// Entries that were skipped (symlinks, submodules).
    pub notes: Vec<String>,
    /// When this commit was loaded.
    pub loaded_at: Timestamp,
    /// Its subject, author and time (none in development mode).
    pub info: Option<crate::git::CommitInfo>,
}

#[derive(Debug, Default)]
struct State {
    envs: BTreeMap<String, Arc<EnvSnapshot>>,
    head_branch: Option<String>,
    last_success: Option<Timestamp>,
    last_error: Option<String>,
}

/// What became of a requested refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requested {
    /// A refresh that began after the request finished and succeeded.
    Refreshed,
    /// It finished and failed (fetch or read error); the previous snapshots stay.
    Failed(String),
    /// It did not finish within the wait (it still runs).
    Pending,
}

/// What a refresh did.
#[derive(Debug, Default)]
pub struct RefreshOutcome {
    /// Environments that are new or whose commit changed.
    pub changed: Vec<String>,
}

pub struct Snapshots {
    source: Source,
    default_environment: Option<String>,
    state: RwLock<State>,
    /// One refresh at a time.
    refresh_lock: Mutex<()>,
    /// Refresh requests handed out (by the hook) and the last one a finished
    /// refresh covered: a refresh covers the requests made before it began.
    requested: AtomicU64,
    /// The last request served, and the error of the refresh that served it.
    completed: watch::Sender<(u64, Option<String>)>,
    wake: Notify,
    /// Earlier commits a rollout still serves, by (environment, commit).
    older: RwLock<BTreeMap<(String, String), Arc<EnvSnapshot>>>,
    /// Subjects, authors and times of any commit, for the pages.
    pub commits: crate::commits::CommitBook,
}

impl Snapshots {
    pub fn new(source: Source, default_environment: Option<String>) -> Snapshots {
        let mirror = match &source {
            Source::Mirror(dir) => Some(dir.clone()),
            Source::Directory { .. } => None,
        };
        Snapshots {
            commits: crate::commits::CommitBook::new(mirror),
            source,
            default_environment,
            state: RwLock::default(),
            refresh_lock: Mutex::new(()),
            requested: AtomicU64::new(0),
            completed: watch::Sender::new((0, None)),
            wake: Notify::new(),
            older: RwLock::default(),
        }
    }

    pub fn source(&self) -> &Source {
        &self.source
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, env: &str) -> Option<Arc<EnvSnapshot>> {
        self.read().envs.get(env).cloned()
    }

    /// `environment` at `commit`: its newest snapshot, or an earlier one
    /// kept for a rollout.
    pub fn at(&self, environment: &str, commit: &str) -> Option<Arc<EnvSnapshot>> {
        if let Some(snap) = self.get(environment).filter(|s| s.commit == commit) {
            return Some(snap);
        }
        self.older
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(environment.to_owned(), commit.to_owned()))
            .cloned()
    }

    /// Keeps exactly the earlier commits in `wanted` (environment, commit),
    /// reading from the mirror those not at hand. A commit that cannot be
    /// read is logged and left out: its nodes keep their last good catalog.
    pub async fn keep_commits(&self, wanted: &[(String, String)]) {
        for (env, commit) in wanted {
            if commit.is_empty() || self.at(env, commit).is_some() {
                continue;
            }
            let Source::Mirror(dir) = &self.source else {
                continue;
            };
            let (dir, name, id) = (dir.clone(), env.clone(), commit.clone());
            let read = tokio::task::spawn_blocking(move || {
                dir.read_tree(&id).map(|tree| {
                    let info = dir.commit_info(&id).ok();
                    snapshot(name, id, tree, info)
                })
            })
            .await;
            match read {
                Ok(Ok(snap)) => {
                    self.older
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert((env.clone(), commit.clone()), Arc::new(snap));
                }
                Ok(Err(e)) => {
                    tracing::warn!(environment = %env, commit = %commit, error = %e, "cannot read an earlier commit a rollout serves")
                }
                Err(e) => tracing::warn!(error = %e, "reading an earlier commit failed"),
            }
        }
        self.older
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|key, _| wanted.contains(key));
    }

    pub fn list(&self) -> Vec<Arc<EnvSnapshot>> {
        self.read().envs.values().cloned().collect()
    }

    /// The environments' names.
    pub fn names(&self) -> Vec<String> {
        self.read().envs.keys().cloned().collect()
    }

    /// The environment of a node that asks for none and has no pin.
    pub fn default_environment(&self) -> String {
        if let Some(env) = &self.default_environment {
            return env.clone();
        }
        match &self.source {
            Source::Directory { environment, .. } => environment.clone(),
            Source::Mirror(_) => self
                .read()
                .head_branch
                .clone()
                .unwrap_or_else(|| "production".to_owned()),
        }
    }

    /// When the last refresh succeeded, and the error of the last one if it failed.
    pub fn status(&self) -> (Option<Timestamp>, Option<String>) {
        let s = self.read();
        (s.last_success, s.last_error.clone())
    }

    /// Fetches (or re-reads the directory) and reparses environments whose commit moved.
    /// The caller must publish completion with [`Snapshots::finish`].
    pub async fn refresh(&self) -> (u64, Result<RefreshOutcome, String>) {
        let _guard = self.refresh_lock.lock().await;
        let ticket = self.requested.load(Ordering::SeqCst);
        let known: BTreeMap<String, String> = self
            .read()
            .envs
            .iter()
            .map(|(k, v)| (k.clone(), v.commit.clone()))
            .collect();
        let source = self.source.clone();
        let loaded = tokio::task::spawn_blocking(move || load(&source, &known))
            .await
            .map_err(|e| format!("refresh task failed: {e}"))
            .and_then(|r| r.map_err(|e| e.to_string()));
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        let result = match loaded {
            Ok(Loaded {
                fresh,
                keep,
                head_branch,
            }) => {
                let mut envs = BTreeMap::new();
                // Replaced snapshots stay at hand for a rollout (pruned by
                // `keep_commits` once no rollout serves them).
                let mut older = self.older.write().unwrap_or_else(|e| e.into_inner());
                for snap in &fresh {
                    if let Some(old) = state.envs.get(&snap.name) {
                        older.insert((old.name.clone(), old.commit.clone()), old.clone());
                    }
                }
                drop(older);
                for name in keep {
                    if let Some(old) = state.envs.get(&name) {
                        envs.insert(name, old.clone());
                    }
                }
                let changed = fresh.iter().map(|s| s.name.clone()).collect();
                for snap in fresh {
                    match &snap.repo {
                        Ok(_) => {
                            tracing::info!(environment = %snap.name, commit = %snap.commit, "environment loaded")
                        }
                        Err(d) => {
                            tracing::warn!(environment = %snap.name, commit = %snap.commit, errors = d.len(), "environment does not parse")
                        }
                    }
                    envs.insert(snap.name.clone(), Arc::new(snap));
                }
                state.envs = envs;
                state.head_branch = head_branch;
                state.last_success = Some(Timestamp::now());
                state.last_error = None;
                Ok(RefreshOutcome { changed })
            }
            Err(e) => {
                tracing::warn!(error = %e, "repository refresh failed; keeping the previous snapshots");
                state.last_error = Some(e.clone());
                Err(e)
            }
        };
        (ticket, result)
    }

    /// Marks refresh requests up to `ticket` as served by the refresh that
    /// just ended (its error, if it failed, goes to the waiting requests).
    pub fn finish(&self, ticket: u64) {
        let error = self.read().last_error.clone();
        self.completed.send_modify(|(done, last)| {
            if ticket >= *done {
                *done = ticket;
                *last = error;
            }
        });
    }

    /// Asks the refresh loop for a refresh and waits up to `wait` for one
    /// that began after this call to finish.
    pub async fn request_refresh(&self, wait: Duration) -> Requested {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let mut rx = self.completed.subscribe();
        self.wake.notify_one();
        match tokio::time::timeout(wait, rx.wait_for(|(done, _)| *done >= ticket)).await {
            Ok(Ok(served)) => match &served.1 {
                None => Requested::Refreshed,
                Some(error) => Requested::Failed(error.clone()),
            },
            Ok(Err(_)) | Err(_) => Requested::Pending,
        }
    }

    /// Asks the refresh loop for a refresh, without waiting for it.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Resolves when a refresh is requested.
    pub async fn woken(&self) {
        self.wake.notified().await;
    }
}

struct Loaded {
    fresh: Vec<EnvSnapshot>,
    /// Environments whose commit did not move.
    keep: Vec<String>,
    head_branch: Option<String>,
}

/// Blocking: reads every environment whose commit differs from `known`.
fn load(source: &Source, known: &BTreeMap<String, String>) -> Result<Loaded, GitError> {
    let mut loaded = Loaded {
        fresh: Vec::new(),
        keep: Vec::new(),
        head_branch: None,
    };
    match source {
        Source::Mirror(dir) => {
            dir.fetch()?;
            loaded.head_branch = dir.head_branch();
            for (branch, commit) in dir.branches()? {
                if known.get(&branch) == Some(&commit) {
                    loaded.keep.push(branch);
                    continue;
                }
                let tree = dir.read_tree(&commit)?;
                let info = dir.commit_info(&commit).ok();
                loaded.fresh.push(snapshot(branch, commit, tree, info));
            }
        }
        Source::Directory { path, environment } => {
            let tree = git::read_dir_tree(path)?;
            let commit = git::content_id(&tree.files);
            if known.get(environment) == Some(&commit) {
                loaded.keep.push(environment.clone());
            } else {
                loaded
                    .fresh
                    .push(snapshot(environment.clone(), commit, tree, None));
            }
        }
    }
    Ok(loaded)
}

fn snapshot(
    name: String,
    commit: String,
    tree: Tree,
    info: Option<crate::git::CommitInfo>,
) -> EnvSnapshot {
    let repo = Repository::parse(tree.files)
        .map(Arc::new)
        .map_err(|d| d.0.iter().map(ToString::to_string).collect());
    EnvSnapshot {
        name,
        commit,
        repo,
        notes: tree.notes,
        loaded_at: Timestamp::now(),
        info,
    }
}
