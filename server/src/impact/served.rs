//! The impact analysis as a running server answers it (the dashboard's
//! `/impact`): both sides are the environments' parsed snapshots (every
//! branch of the mirror is one), the nodes and their facts, the fleet and
//! the placements come from the database.
//!
//! A fleet-wide compile is seconds of CPU, so: it runs on the blocking
//! pool (the async runtime keeps serving), one at a time in this process
//! (a second request waits for the first, then usually finds its answer
//! cached), and the last few answers are kept by (branch commit, target
//! commit) with a digest of the facts, fleet and placements they were
//! computed from. Within [`FRESH`] of being computed or checked, an answer
//! is given for its commits without reading the database (a reload costs
//! nothing); after it, the inputs are read again and the answer is kept if
//! their digest is the same (a read, no compile), else computed anew.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use super::{Fleet, Impact, Question, Side, analyse};
use crate::db::apps::{FleetNode, PlacementRow};
use crate::error::AppError;
use crate::state::AppState;
use drover_catalog::Facts;

/// Answers kept.
const KEPT: usize = 8;
/// How long an answer is given for its commits without reading its inputs.
pub const FRESH: Duration = Duration::from_secs(60);

/// One analysis at a time.
static RUNNING: Semaphore = Semaphore::const_new(1);
/// The last answers, newest last.
static ANSWERS: Mutex<Vec<Kept>> = Mutex::new(Vec::new());

struct Kept {
    /// `SERVER BRANCH BRANCH_COMMIT TARGET TARGET_COMMIT` (this server's
    /// id: tests run several servers in one process).
    commits: String,
    /// The digest of the facts, fleet and placements it was computed from.
    inputs: String,
    /// When it was computed, or its inputs last found the same.
    checked: Instant,
    /// The same moment by the clock, for the page to say.
    read_at: jiff::Timestamp,
    impact: Arc<Impact>,
}

/// What the server says of `branch` merged into `against`.
#[derive(Debug, Clone)]
pub enum Answer {
    Done(Done),
    /// A side does not parse: which, and its diagnostics.
    Unparsed {
        environment: String,
        errors: Vec<String>,
    },
}

/// An analysis, and when the facts, fleet and placements it stands on were
/// read (up to [`FRESH`] ago: a new node or new facts show after that).
#[derive(Debug, Clone)]
pub struct Done {
    pub impact: Arc<Impact>,
    pub read_at: jiff::Timestamp,
}

/// The analysis of `branch` against `against` (both environments this
/// server knows; a 404 names the ones it does).
pub async fn impact_of(state: &AppState, branch: &str, against: &str) -> Result<Answer, AppError> {
    let known = |name: &str| {
        state.snapshots.get(name).ok_or_else(|| {
            AppError::NotFound(format!(
                "no branch `{name}`: the server knows {}",
                state.snapshots.names().join(", ")
            ))
        })
    };
    let (new, old) = (known(branch)?, known(against)?);
    let parsed = |snap: &crate::snapshot::EnvSnapshot| match &snap.repo {
        Ok(repo) => Ok(repo.clone()),
        Err(errors) => Err(Answer::Unparsed {
            environment: snap.name.clone(),
            errors: errors.clone(),
        }),
    };
    let (new_repo, old_repo) = match (parsed(&new), parsed(&old)) {
        (Ok(n), Ok(o)) => (n, o),
        (Err(unparsed), _) | (_, Err(unparsed)) => return Ok(unparsed),
    };
    let commits = format!(
        "{} {branch} {} {against} {}",
        state.cluster.id(),
        new.commit,
        old.commit
    );
    if let Some(hit) = fresh(&commits) {
        return Ok(hit);
    }
    let _turn = RUNNING
        .acquire()
        .await
        .map_err(|e| AppError::Internal(format!("the impact analysis is closed: {e}")))?;
    // The request this one waited for may have answered it.
    if let Some(hit) = fresh(&commits) {
        return Ok(hit);
    }
    let nodes = crate::db::known_facts(&state.db).await?;
    let fleet = crate::db::apps::fleet(&state.db).await?;
    let rows = crate::db::apps::placements(&state.db).await?;
    let inputs = digest(&nodes, &fleet, &rows);
    if let Some(hit) = same_inputs(&commits, &inputs) {
        return Ok(hit);
    }
    let (branch, against) = (branch.to_owned(), against.to_owned());
    let read_at = jiff::Timestamp::now();
    let now_us = read_at.as_microsecond();
    let impact = tokio::task::spawn_blocking(move || {
        analyse(&Question {
            branch: &branch,
            against: &against,
            old: Side {
                repo: &old_repo,
                commit: &old.commit,
            },
            new: Side {
                repo: &new_repo,
                commit: &new.commit,
            },
            nodes: &nodes,
            fleet: Fleet::Stored {
                fleet: &fleet,
                rows: &rows,
            },
            now_us,
        })
    })
    .await
    .map_err(|e| AppError::Internal(format!("the impact analysis failed: {e}")))?;
    let impact = Arc::new(impact);
    keep(Kept {
        commits,
        inputs,
        checked: Instant::now(),
        read_at,
        impact: impact.clone(),
    });
    Ok(Answer::Done(Done { impact, read_at }))
}

/// What an answer depends on besides its commits: every node's facts,
/// the fleet's environments, cordons and last runs, and the placements (a
/// node's liveness moves every few seconds and is left out: a node lost
/// since is seen once the answer is computed again).
fn digest(nodes: &[(String, Facts)], fleet: &[FleetNode], rows: &[PlacementRow]) -> String {
    let mut h = Sha256::new();
    for (name, facts) in nodes {
        h.update(name.as_bytes());
        h.update([0]);
        // A map of JSON values always serialises.
        h.update(serde_json::to_vec(facts).unwrap_or_default());
        h.update([0]);
    }
    for n in fleet {
        let line = format!(
            "{}\0{:?}\0{}\0{:?}\0",
            n.name, n.environment, n.cordoned, n.last_status
        );
        h.update(line.as_bytes());
    }
    for r in rows {
        let line = format!(
            "{}\0{}\0{}\0{:?}\0{:?}\0{}\0",
            r.environment, r.app, r.replica, r.node, r.placement_id, r.spec_hash
        );
        h.update(line.as_bytes());
    }
    hex::encode(h.finalize())
}

fn answers() -> std::sync::MutexGuard<'static, Vec<Kept>> {
    ANSWERS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The answer for `commits` computed or checked within [`FRESH`].
fn fresh(commits: &str) -> Option<Answer> {
    answers()
        .iter()
        .find(|k| k.commits == commits && k.checked.elapsed() < FRESH)
        .map(Kept::answer)
}

/// The answer for `commits` computed from the same inputs (checked anew).
fn same_inputs(commits: &str, inputs: &str) -> Option<Answer> {
    let mut kept = answers();
    let k = kept
        .iter_mut()
        .find(|k| k.commits == commits && k.inputs == inputs)?;
    k.checked = Instant::now();
    k.read_at = jiff::Timestamp::now();
    Some(k.answer())
}

impl Kept {
    fn answer(&self) -> Answer {
        Answer::Done(Done {
            impact: self.impact.clone(),
            read_at: self.read_at,
        })
    }
}

fn keep(new: Kept) {
    let mut kept = answers();
    kept.retain(|k| k.commits != new.commits);
    kept.push(new);
    let over = kept.len().saturating_sub(KEPT);
    kept.drain(..over);
}
