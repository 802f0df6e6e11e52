//! The gate of a rollout's stage as a pure function of what the stage's
//! nodes last reported: it passes only when every node reported the new
//! commit with no failed resource (and, with `healthy_apps`, every replica
//! on it healthy) and `min_wait_secs` has passed. A node that has not
//! reported the new commit blocks the stage: no data is not success. More
//! failed nodes than `max_failed_nodes` fail the gate (the rollout pauses
//! for an operator); anything else short of passing only waits. A replica
//! `running` without a health check counts as healthy (Docker can say no
//! more of it); `unhealthy` and `exited` fail its node; any other state
//! (`missing`, starting) waits.

use super::Gate;

/// A node's newest (non-noop) run, as the reports table holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastRun {
    pub commit: String,
    /// Resources that failed in it.
    pub failed: u64,
}

/// What the gate reads of one node of the stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub node: String,
    pub last_run: Option<LastRun>,
    /// (container, state) of each replica its last report listed.
    pub replicas: Vec<(String, String)>,
}

/// The gate's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The stage passed: the next one may start.
    Pass,
    /// Not yet: what it waits for.
    Wait(Vec<String>),
    /// Too many nodes failed: the rollout pauses. Why.
    Fail(Vec<String>),
}

/// Decides the stage's gate for the rollout to `commit`, `waited_secs`
/// after the stage began.
pub fn decide(gate: &Gate, commit: &str, nodes: &[Observed], waited_secs: u64) -> Verdict {
    let short = &commit[..commit.len().min(12)];
    let mut failed = Vec::new();
    let mut waiting = Vec::new();
    for node in nodes {
        let name = &node.node;
        match &node.last_run {
            None => waiting.push(format!("{name} has not reported yet")),
            Some(run) if run.commit != commit => waiting.push(format!(
                "{name} has not reported commit {short} yet (its last run applied {})",
                &run.commit[..run.commit.len().min(12)]
            )),
            Some(run) if run.failed > 0 => failed.push(format!(
                "{name} reported {} failed resource{} at commit {short}",
                run.failed,
                if run.failed == 1 { "" } else { "s" }
            )),
            Some(_) if gate.healthy_apps => {
                let unhealthy: Vec<&str> = node
                    .replicas
                    .iter()
                    .filter(|(_, state)| state == "unhealthy" || state == "exited")
                    .map(|(c, _)| c.as_str())
                    .collect();
                let pending: Vec<&str> = node
                    .replicas
                    .iter()
                    .filter(|(_, state)| {
                        !matches!(
                            state.as_str(),
                            "healthy" | "running" | "unhealthy" | "exited"
                        )
                    })
                    .map(|(c, _)| c.as_str())
                    .collect();
                if !unhealthy.is_empty() {
                    failed.push(format!(
                        "{name} has unhealthy replicas: {}",
                        unhealthy.join(", ")
                    ));
                } else if !pending.is_empty() {
                    waiting.push(format!(
                        "{name} has replicas not healthy yet: {}",
                        pending.join(", ")
                    ));
                }
            }
            Some(_) => {}
        }
    }
    if failed.len() > gate.max_failed_nodes as usize {
        let mut why = vec![format!(
            "{} failed node{} (the gate allows {})",
            failed.len(),
            if failed.len() == 1 { "" } else { "s" },
            gate.max_failed_nodes
        )];
        why.extend(failed);
        return Verdict::Fail(why);
    }
    if waited_secs < gate.min_wait_secs {
        // Not a countdown: the reason is stored when it changes.
        waiting.push(format!(
            "min_wait_secs = {} has not passed since the stage began",
            gate.min_wait_secs
        ));
    }
    if waiting.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Wait(waiting)
    }
}
