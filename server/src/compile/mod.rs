//! Compiling a node's catalog: environment choice, the in-memory cache
//! (its types in `cache`), and the last-good rule (a commit that fails to
//! compile never reaches a node).

pub mod cache;

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use drover_catalog::model::sha256_hex;
use drover_catalog::{Catalog, CatalogRequest, Facts};

use crate::db::{self, CompileError};
use crate::error::AppError;
use crate::shed::Admission;
use crate::state::AppState;
use cache::{CacheKey, Compiled, Outcome};
use drover_catalog::{CompileRequest, Diagnostics};

fn failure(environment: &str, commit: &str, diagnostics: Vec<String>) -> CompileError {
    CompileError {
        environment: environment.to_owned(),
        commit: commit.to_owned(),
        diagnostics,
        at: jiff::Timestamp::now(),
    }
}

fn lines(d: &Diagnostics) -> Vec<String> {
    d.0.iter().map(ToString::to_string).collect()
}

/// The environment `node` is compiled in. A pin is read only from the
/// default environment's `nodes.toml`, a source the node cannot choose (a
/// branch it asks for could drop or move the pin): a pinned node is served
/// its pinned environment, and refused (an error naming both) when it asks
/// for another. An unpinned node gets the environment it asks for, else the
/// default. Roles are then read from the chosen environment's own
/// `nodes.toml`.
pub fn choose_environment(
    snapshots: &crate::snapshot::Snapshots,
    node: &str,
    facts: &Facts,
    requested: Option<&str>,
) -> Result<String, CompileError> {
    let default = snapshots.default_environment();
    let pin = match snapshots.get(&default) {
        // Without a default environment there is no pin to read.
        None => None,
        Some(snap) => match &snap.repo {
            // Pins cannot be known: fail closed for another environment
            // (the last good catalog still applies).
            Err(diagnostics) if requested.is_some_and(|r| r != default) => {
                let mut lines = vec![format!(
                    "the default environment `{default}` does not parse, so the environment                      pins in its nodes.toml are unknown and `{}` is not served
                     hint: fix the default environment first",
                    requested.unwrap_or_default()
                )];
                lines.extend(diagnostics.iter().cloned());
                return Err(failure(&default, &snap.commit, lines));
            }
            Err(_) => None,
            // A node no entry matches has no pin.
            Ok(repo) => repo
                .classify(node, facts)
                .ok()
                .and_then(|class| class.environment),
        },
    };
    match (pin, requested) {
        (Some(pin), Some(asked)) if pin != asked => Err(pin_refusal(&default, node, &pin, asked)),
        (Some(pin), _) => Ok(pin),
        (None, Some(asked)) => Ok(asked.to_owned()),
        (None, None) => Ok(default),
    }
}

/// Marks a [`CompileError`] as a refused pin: never answered with the last
/// good catalog, which may come from before the pin.
const PIN_REFUSED: &str = "refused: node `";

fn pin_refusal(default: &str, node: &str, pin: &str, asked: &str) -> CompileError {
    failure(
        asked,
        "",
        vec![format!(
            "{PIN_REFUSED}{node}` is pinned to environment `{pin}` by nodes.toml of the \
             default environment `{default}`, and asked for environment `{asked}`\n\
             hint: run the agent without an environment (it is served `{pin}`), or change \
             the pin in `{default}`'s nodes.toml"
        )],
    )
}

fn is_pin_refusal(error: &CompileError) -> bool {
    error
        .diagnostics
        .first()
        .is_some_and(|d| d.starts_with(PIN_REFUSED))
}

/// Compiles `node` for `facts` in the environment [`choose_environment`]
/// picks. Contents of a good
/// compile are stored in the database before the catalog can be served.
/// Waits for a compile slot (background work: never shed).
pub async fn compile_node(
    state: &AppState,
    node: &str,
    facts: &Facts,
    requested: Option<&str>,
) -> Result<Outcome, AppError> {
    compile_admitted(state, node, facts, requested, Admission::Wait).await
}

/// [`compile_node`] for a node's request: a cache miss beyond the compile
/// capacity is shed (503, see [`crate::shed`]); a cache hit never is.
pub async fn compile_admitted(
    state: &AppState,
    node: &str,
    facts: &Facts,
    requested: Option<&str>,
    admission: Admission,
) -> Result<Outcome, AppError> {
    let (snap, repo) = match snapshot_for(state, node, facts, requested) {
        Ok(found) => found,
        // Failures found before compiling are not cached, so they count at
        // every request: an alert on the error rate sees a broken commit at once.
        Err(error) => {
            state.metrics.compile_failed_early();
            return Ok(Err(error));
        }
    };
    let (apps, apps_digest) = state.apps.placements.current().input(&snap.name, node);
    let key = CacheKey {
        environment: snap.name.clone(),
        commit: snap.commit.clone(),
        node: node.to_owned(),
        facts: sha256_hex(&serde_json::to_vec(facts).unwrap_or_default()),
        placed: sha256_hex(&serde_json::to_vec(&apps.placed).unwrap_or_default()),
    };
    if let Some(outcome) = state.cache.get(&key, &apps_digest) {
        if let Ok(compiled) = &outcome {
            state.served.touch(&compiled.catalog);
        }
        return Ok(outcome);
    }
    let apps = (apps, apps_digest);
    let outcome = compile_in_slot(state, &snap, repo, node, facts, apps, admission).await?;
    if let Ok(compiled) = &outcome {
        state
            .apps
            .placements
            .read_apps(node, compiled.apps_digest.is_some());
    }
    state.cache.put(key, outcome.clone());
    Ok(outcome)
}

/// The snapshot a node's catalog is compiled from, and its parsed
/// repository; a compile error naming why when there is none (the
/// environment is refused, missing, or does not parse).
fn snapshot_for(
    state: &AppState,
    node: &str,
    facts: &Facts,
    requested: Option<&str>,
) -> Result<
    (
        Arc<crate::snapshot::EnvSnapshot>,
        Arc<drover_catalog::Repository>,
    ),
    CompileError,
> {
    let snapshots = &state.snapshots;
    let env = choose_environment(snapshots, node, facts, requested)?;
    let Some(snap) = snapshots.get(&env) else {
        let known: Vec<String> = snapshots.list().iter().map(|s| s.name.clone()).collect();
        return Err(failure(
            &env,
            "",
            vec![format!(
                "environment `{env}` does not exist (known: {})",
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            )],
        ));
    };
    // A staged rollout that has not reached the node serves it an earlier
    // commit: the one place a node's commit is chosen.
    let staged = matches!(&snap.repo, Ok(repo) if repo.rollout().is_some());
    let rollout = state.rollouts.get(&env);
    let snap = match crate::rollout::pick::pick(node, &snap.commit, staged, rollout.as_deref()) {
        crate::rollout::pick::Pick::Head => snap,
        crate::rollout::pick::Pick::Commit(commit) => match snapshots.at(&env, &commit) {
            Some(earlier) => earlier,
            None => {
                return Err(failure(
                    &env,
                    &commit,
                    vec![format!(
                        "the staged rollout of `{env}` serves this node commit {commit}, which \
                         is not at hand (a development directory keeps no history)\n\
                         hint: `drover-server rollout abort {env}` or a new commit ends the wait"
                    )],
                ));
            }
        },
    };
    // Roles come from the chosen environment's own nodes.toml (so a branch
    // can try a role change); its pins, if any, are not read.
    match &snap.repo {
        Ok(repo) => {
            let repo = repo.clone();
            Ok((snap, repo))
        }
        Err(diagnostics) => Err(failure(&env, &snap.commit, diagnostics.clone())),
    }
}

/// Compiles in a compile slot (shed with 503 when the queue is full), off
/// the async workers, then stores the catalog's contents.
async fn compile_in_slot(
    state: &AppState,
    snap: &crate::snapshot::EnvSnapshot,
    repo: Arc<drover_catalog::Repository>,
    node: &str,
    facts: &Facts,
    apps: (drover_catalog::AppsInput, String),
    admission: Admission,
) -> Result<Outcome, AppError> {
    let slot = state.shed.admit(admission).await?;
    let (environment, commit) = (snap.name.clone(), snap.commit.clone());
    let (node_owned, facts_owned) = (node.to_owned(), facts.clone());
    let (result, took) = tokio::task::spawn_blocking(move || {
        // Timed in the task so the metric is the compile, not the wait for a thread.
        let started = std::time::Instant::now();
        let request = CompileRequest {
            node: &node_owned,
            facts: &facts_owned,
            environment: &environment,
            commit: &commit,
        };
        let result = repo.compile_with(&request, &apps.0);
        (result, started.elapsed())
    })
    .await
    .map_err(|e| AppError::Internal(format!("compile task failed: {e}")))?;
    // The slot bounds the CPU of compiles; storing contents waits on the
    // database like any other write, so it does not hold one.
    drop(slot);
    state.metrics.compile_finished(took, result.is_ok());
    Ok(match result {
        Ok(compiled) => {
            store_contents(state, compiled.contents).await?;
            let mut catalog = compiled.catalog;
            catalog.contents.clear();
            Ok(Arc::new(Compiled {
                catalog,
                roles: compiled.roles,
                apps_digest: compiled.reads_apps.then_some(apps.1),
            }))
        }
        Err(d) => Err(failure(&snap.name, &snap.commit, lines(&d))),
    })
}

/// Stores a compile's contents (those not known to be stored already) and
/// keeps them at hand for the file route, which the node calls next.
async fn store_contents(
    state: &AppState,
    contents: impl IntoIterator<Item = (String, Arc<[u8]>)>,
) -> Result<(), AppError> {
    let contents: Vec<([u8; 32], String, Arc<[u8]>)> = contents
        .into_iter()
        .filter_map(|(hex, bytes)| Some((crate::served::parse_sha(&hex)?, hex, bytes)))
        .collect();
    // Marked in use, under the collector's lock (see `crate::gc`).
    let shas: Vec<[u8; 32]> = contents.iter().map(|(sha, _, _)| *sha).collect();
    let stored = state.served.produced(&shas);
    let new: Vec<([u8; 32], String, Bytes)> = contents
        .into_iter()
        .zip(stored)
        // An owner, not a copy: the compile's bytes are the cache's.
        .filter_map(|((sha, hex, bytes), stored)| {
            (!stored).then(|| (sha, hex, Bytes::from_owner(bytes)))
        })
        .collect();
    if new.is_empty() {
        return Ok(());
    }
    db::store_contents(
        &state.db,
        new.iter()
            .map(|(_, hex, bytes)| (hex.clone(), bytes.clone()))
            .collect(),
    )
    .await?;
    for (sha, _, bytes) in new {
        state.served.keep(sha, bytes);
    }
    Ok(())
}

/// The catalog route: compile, record, and fall back to the last good catalog.
pub async fn serve_catalog(
    state: &AppState,
    node: &str,
    request: &CatalogRequest,
) -> Result<(Catalog, Option<CompileError>), AppError> {
    let requested = request.environment.as_deref();
    let record =
        |answer| db::record_catalog_request(&state.db, node, &request.facts, requested, answer);
    let outcome =
        match compile_admitted(state, node, &request.facts, requested, Admission::Shed).await {
            Err(shed @ AppError::Overloaded { .. }) => {
                // Shed, the node still checked in.
                record(db::Answer::Shed).await?;
                return Err(shed);
            }
            other => other?,
        };
    match outcome {
        Ok(compiled) => {
            record(db::Answer::Served(&compiled.catalog, &compiled.roles)).await?;
            state.served.record(&compiled.catalog);
            state.watches.publish(node, &compiled.catalog.version);
            Ok((compiled.catalog.clone(), None))
        }
        Err(error) => {
            tracing::warn!(
                node,
                environment = %error.environment,
                commit = %error.commit,
                errors = %error.diagnostics.join("; "),
                "catalog does not compile"
            );
            record(db::Answer::Failed(&error)).await?;
            let refused = is_pin_refusal(&error);
            let last_good = if refused {
                None
            } else {
                db::last_good(&state.db, node).await?
            };
            match last_good {
                Some(catalog) => {
                    state.served.record(&catalog);
                    // After a restart this is the first the watches hear of it.
                    state.watches.publish(node, &catalog.version);
                    Ok((catalog, Some(error)))
                }
                None if refused => Err(AppError::Compile {
                    message: format!(
                        "node `{node}` is refused environment `{}`: it is pinned to another",
                        error.environment
                    ),
                    diagnostics: error.diagnostics,
                }),
                None => Err(AppError::Compile {
                    message: format!(
                        "the catalog of node `{node}` does not compile in environment `{}`{}",
                        error.environment,
                        if error.commit.is_empty() {
                            String::new()
                        } else {
                            format!(" at commit {}", error.commit)
                        }
                    ),
                    diagnostics: error.diagnostics,
                }),
            }
        }
    }
}

/// After a refresh moved `changed` environments: recompiles every known node
/// of those environments with its stored facts, so compile errors show
/// without waiting for the node, and a good compile's version reaches the
/// node's watch (a push converges in seconds). Nothing is served here; a
/// compile error leaves the watch at the last good version.
///
/// As many nodes at once as there are compile slots, each told as soon as
/// its own compile is done: the first nodes of a big fleet converge while
/// the last still compile. Node requests that need a compile meanwhile
/// queue for the slots like any other.
pub async fn recompile_known(
    state: &AppState,
    changed: &[String],
    scope: Recompile,
) -> Result<(), AppError> {
    let changed: BTreeSet<&str> = changed.iter().map(String::as_str).collect();
    let default_env = state.snapshots.default_environment();
    let width = state.shed.capacity();
    let mut running = tokio::task::JoinSet::new();
    let mut first_error = None;
    let mut note = |done: Result<Result<(), AppError>, tokio::task::JoinError>| {
        let error = match done {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e,
            Err(e) => AppError::Internal(format!("a recompile task failed: {e}")),
        };
        first_error.get_or_insert(error);
    };
    // A page of nodes at a time: a fleet's facts never sit in memory at once.
    let mut after = String::new();
    loop {
        let page = db::known_nodes(&state.db, &after, RECOMPILE_PAGE).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.name);
        for node in page {
            if let Recompile::Watched(only) | Recompile::Placed(only) = &scope
                && !only.contains(&node.name)
            {
                continue;
            }
            let wanted = node
                .requested_environment
                .as_deref()
                .unwrap_or(&default_env);
            let served = node.environment.as_deref().unwrap_or(wanted);
            // The default environment holds every node's pin.
            if !changed.contains(wanted)
                && !changed.contains(served)
                && !changed.contains(default_env.as_str())
            {
                continue;
            }
            while running.len() >= width {
                if let Some(done) = running.join_next().await {
                    note(done);
                }
            }
            running.spawn(recompile_one(state.clone(), node, scope.is_leader()));
        }
    }
    while let Some(done) = running.join_next().await {
        note(done);
    }
    first_error.map_or(Ok(()), Err)
}

/// Which known nodes a recompile covers, and whether it writes their
/// compile errors.
#[derive(Debug, Clone)]
pub enum Recompile {
    /// Every known node, their compile errors written (the leader).
    Known,
    /// Every known node, to learn their versions (a follower starting: the
    /// nodes that will watch it), compile errors left to the leader.
    KnownVersions,
    /// Only these (a follower: the nodes that talk to it), to wake their
    /// watches; the leader writes the compile errors.
    Watched(std::collections::BTreeSet<String>),
    /// Only these (the leader: nodes whose placements, or the replicas
    /// their templates read, changed), their compile errors written.
    Placed(std::collections::BTreeSet<String>),
}

impl Recompile {
    fn is_leader(&self) -> bool {
        matches!(self, Recompile::Known | Recompile::Placed(_))
    }
}

async fn recompile_one(
    state: AppState,
    node: db::KnownNode,
    as_leader: bool,
) -> Result<(), AppError> {
    let requested = node.requested_environment.as_deref();
    let outcome = compile_node(&state, &node.name, &node.facts, requested).await?;
    if let Ok(compiled) = &outcome {
        state.watches.publish(&node.name, &compiled.catalog.version);
    }
    // Most recompiles leave a good node good: nothing to write.
    let error = outcome.err();
    if as_leader && (error.is_some() || node.has_compile_error) {
        let write = db::set_compile_error(&node.name, error.as_ref())?;
        state.cluster.write_as_leader(write).await?;
    }
    Ok(())
}

/// Nodes read per query while recompiling.
const RECOMPILE_PAGE: u32 = 500;
