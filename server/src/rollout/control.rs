//! The rollout loop, on the leader only (`cluster::while_leading`): each
//! round, per environment, it reads the rollout row, the environment's
//! newest commit and, for the stage being gated, its nodes' newest reports
//! and replica states, all afresh from the database and the snapshots, and
//! takes at most one step: start a rollout for a new commit, apply an
//! operator's request, pass a stage, pause on a failed gate, or note what
//! blocks. Each step is one fenced write (`Cluster::write_as_leader`) made
//! only if the row is still the version the round read, so a restarted
//! server or a new leader continues from the database, neither repeating
//! nor skipping a step. A step that changes which commit nodes are served
//! is followed by this server's reload (which recompiles them, waking
//! their watches) and a notification to the others.

use std::time::Duration;

use drover_catalog::rollout::gate::{self, Observed, Verdict};
use drover_catalog::rollout::{self as policy, RolloutPolicy};
use tokio_util::sync::CancellationToken;

use crate::cluster::notify;
use crate::db::rollouts::{self, ABORTED, DONE, PAUSED, ROLLING, Rollout, StageRow};
use crate::error::AppError;
use crate::snapshot::EnvSnapshot;
use crate::state::AppState;

/// How often the loop runs without being woken.
pub const TICK: Duration = Duration::from_secs(1);

/// Runs rounds until `stop` (the end of this server's leadership).
pub async fn run(state: AppState, stop: CancellationToken) {
    tracing::info!("this server runs the rollout loop");
    loop {
        match round(&state).await {
            Ok(true) => announce(&state).await,
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "a round of the rollout loop failed"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = state.rollouts.wake.notified() => {}
            () = tokio::time::sleep(TICK) => {}
        }
    }
}

async fn announce(state: &AppState) {
    super::reload(state).await;
    if let Err(e) = notify::announce(&state.db, state.cluster.id(), notify::Event::Rollouts).await {
        tracing::warn!(error = %e, "telling the other servers of a rollout's step failed");
    }
}

/// One round over every environment; whether a step changed what a node is
/// served.
async fn round(state: &AppState) -> Result<bool, AppError> {
    let mut moved = false;
    for snap in state.snapshots.list() {
        let row = rollouts::rollout(&state.db, &snap.name).await?;
        let Some((next, serves_other)) = step(state, &snap, row.as_ref()).await? else {
            continue;
        };
        let request = row.as_ref().and_then(|r| r.request.clone());
        let write = rollouts::write(next.clone(), row.is_none(), request);
        if state.cluster.write_as_leader(write).await? {
            if next.state != row.as_ref().map_or("", |r| r.state.as_str()) {
                tracing::info!(environment = %next.environment, state = %next.state, stage = next.stage, reason = %next.reason, "rollout");
            }
            moved |= serves_other;
        }
    }
    Ok(moved)
}

fn now() -> (String, i64) {
    let now = jiff::Timestamp::now();
    (now.to_string(), now.as_microsecond())
}

/// The next version of the row, and whether it serves some node another
/// commit; none when nothing changes.
async fn step(
    state: &AppState,
    snap: &EnvSnapshot,
    row: Option<&Rollout>,
) -> Result<Option<(Rollout, bool)>, AppError> {
    let (at, at_us) = now();
    let staged = snap.repo.as_ref().ok().and_then(|r| r.rollout().cloned());
    let Some(row) = row else {
        // First sight: the commit every node runs, the base of the next.
        let first = settled(
            &snap.name,
            &snap.commit,
            &at,
            0,
            "the environment's first commit seen",
        );
        return Ok(Some((first, false)));
    };
    let mut next = row.clone();
    next.updated_at.clone_from(&at);
    if row.to_commit != snap.commit {
        let base = if row.state == DONE {
            &row.to_commit
        } else {
            &row.from_commit
        };
        let Some(policy) = staged.filter(|_| *base != snap.commit) else {
            let why = "no [rollout] in this commit: served to every node at once";
            // After a settled row `pick` served every node the head already.
            let moves = !(row.state == DONE && row.stages.is_empty());
            return Ok(Some((
                settled(&snap.name, &snap.commit, &at, row.version, why),
                moves,
            )));
        };
        next = start(state, &snap.name, base, &snap.commit, &policy, &at, at_us).await?;
        next.version = row.version;
        return Ok(Some((next, true)));
    }
    match (row.request.as_deref(), row.state.as_str()) {
        (Some("abort"), ROLLING | PAUSED) => {
            next.state = ABORTED.into();
            next.reason = format!(
                "aborted by an operator at stage {}: every node is served commit {} again",
                row.stage + 1,
                short(&row.from_commit)
            );
            return Ok(Some((next, true)));
        }
        (Some("resume"), PAUSED) => {
            pass(
                &mut next,
                &at,
                at_us,
                "resumed by an operator past the failed gate",
            );
            return Ok(Some((next, true)));
        }
        (Some(other), _) => {
            // A request that no longer applies (the state moved on) is dropped.
            next.reason = format!(
                "{} (a `{other}` request did not apply: the rollout is {})",
                row.reason, row.state
            );
            return Ok(Some((next, false)));
        }
        (None, ROLLING) => {}
        (None, _) => return Ok(None),
    }
    let stage = usize::try_from(row.stage).unwrap_or(0);
    let Some(current) = row.stages.get(stage) else {
        next.state = DONE.into();
        return Ok(Some((next, true)));
    };
    if current.nodes.is_empty() {
        pass(&mut next, &at, at_us, "its stage has no nodes");
        return Ok(Some((next, true)));
    }
    let gate_policy: policy::Gate = row
        .gate
        .clone()
        .and_then(|g| serde_json::from_value(g).ok())
        .unwrap_or_default();
    let mut observed = Vec::with_capacity(current.nodes.len());
    for node in &current.nodes {
        observed.push(Observed {
            node: node.clone(),
            last_run: rollouts::last_run(&state.db, node).await?,
            replicas: rollouts::replicas_of(&state.db, node).await?,
        });
    }
    let waited =
        u64::try_from(at_us.saturating_sub(current.started_us.unwrap_or(at_us)) / 1_000_000)
            .unwrap_or(0);
    match gate::decide(&gate_policy, &row.to_commit, &observed, waited) {
        Verdict::Pass => {
            pass(&mut next, &at, at_us, "");
            Ok(Some((next, true)))
        }
        Verdict::Wait(why) => {
            let reason = format!("stage {} waits: {}", stage + 1, why.join("; "));
            Ok((reason != row.reason).then(|| {
                next.reason = reason;
                (next, false)
            }))
        }
        Verdict::Fail(why) => {
            next.state = PAUSED.into();
            next.reason = format!(
                "paused at stage {}: {}\nhint: `drover-server rollout abort {}` sends its nodes back to commit {}; `resume` passes the stage anyway",
                stage + 1,
                why.join("; "),
                row.environment,
                short(&row.from_commit)
            );
            Ok(Some((next, false)))
        }
    }
}

/// The current stage passed: the next begins, or the rollout is done.
fn pass(next: &mut Rollout, at: &str, at_us: i64, why: &str) {
    let stage = usize::try_from(next.stage).unwrap_or(0);
    if let Some(s) = next.stages.get_mut(stage) {
        s.passed_at = Some(at.to_owned());
    }
    next.stage += 1;
    next.state = ROLLING.into();
    let suffix = if why.is_empty() {
        String::new()
    } else {
        format!(" ({why})")
    };
    match next.stages.get_mut(stage + 1) {
        Some(s) => {
            s.started_at = Some(at.to_owned());
            s.started_us = Some(at_us);
            next.reason = format!(
                "stage {} passed{suffix}; stage {} began",
                stage + 1,
                stage + 2
            );
        }
        None => {
            next.state = DONE.into();
            next.reason = format!(
                "stage {} passed{suffix}: every node is served commit {}",
                stage + 1,
                short(&next.to_commit)
            );
        }
    }
}

/// A row at rest: every node served `commit`.
fn settled(env: &str, commit: &str, at: &str, version: i64, why: &str) -> Rollout {
    Rollout {
        environment: env.to_owned(),
        from_commit: commit.to_owned(),
        to_commit: commit.to_owned(),
        state: DONE.into(),
        stage: 0,
        stages: Vec::new(),
        gate: None,
        reason: why.to_owned(),
        request: None,
        version,
        started_at: at.to_owned(),
        updated_at: at.to_owned(),
    }
}

/// A new rollout from `from` to `to`: the environment's nodes assigned to
/// the stages, the first begun.
async fn start(
    state: &AppState,
    env: &str,
    from: &str,
    to: &str,
    policy: &RolloutPolicy,
    at: &str,
    at_us: i64,
) -> Result<Rollout, AppError> {
    let nodes = environment_nodes(state, env).await?;
    let stages: Vec<StageRow> = policy::assign(&policy.stages, &nodes)
        .into_iter()
        .zip(&policy.stages)
        .enumerate()
        .map(|(i, (nodes, spec))| StageRow {
            spec: spec.describe(),
            nodes,
            started_at: (i == 0).then(|| at.to_owned()),
            started_us: (i == 0).then_some(at_us),
            passed_at: None,
        })
        .collect();
    Ok(Rollout {
        environment: env.to_owned(),
        from_commit: from.to_owned(),
        to_commit: to.to_owned(),
        state: ROLLING.into(),
        stage: 0,
        stages,
        gate: serde_json::to_value(policy.gate).ok(),
        reason: format!(
            "stage 1 began: commit {} rolls out from {}",
            short(to),
            short(from)
        ),
        request: None,
        version: 0,
        started_at: at.to_owned(),
        updated_at: at.to_owned(),
    })
}

/// The nodes served in `env` (as the recompile of known nodes reckons it).
async fn environment_nodes(state: &AppState, env: &str) -> Result<Vec<String>, AppError> {
    let default_env = state.snapshots.default_environment();
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let page = crate::db::known_nodes(&state.db, &after, 500).await?;
        let Some(last) = page.last() else { break };
        after.clone_from(&last.name);
        for node in page {
            let served = node
                .environment
                .as_deref()
                .or(node.requested_environment.as_deref())
                .unwrap_or(&default_env);
            if served == env {
                out.push(node.name);
            }
        }
    }
    Ok(out)
}

pub fn short(commit: &str) -> &str {
    &commit[..commit.len().min(12)]
}
