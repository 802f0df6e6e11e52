//! `GET /rollouts`: each environment's staged rollout: its commits, state,
//! the stage being gated, what blocks it or why it paused, and the nodes
//! of every stage (read only; `drover-server rollout resume|abort` acts).

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::page::{page, sign_in_first};
use crate::auth::Caller;
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::rollout::control::short;
use crate::rollout::view;
use crate::state::AppState;

struct NodeLink {
    name: String,
    href: String,
}

struct StageView {
    number: usize,
    spec: String,
    /// `passed`, `current` or `waiting`.
    mark: &'static str,
    nodes: Vec<NodeLink>,
}

struct EnvRollout {
    environment: String,
    commit: String,
    staged: bool,
    /// `none` before the leader first saw the environment.
    state: String,
    from: String,
    to: String,
    stage: String,
    reason: String,
    request: Option<String>,
    stages: Vec<StageView>,
}

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    rollouts: Vec<EnvRollout>,
}

pub(super) async fn show(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Response, AppError> {
    if let Some(login) = sign_in_first(&caller) {
        return Ok(login);
    }
    let mut rollouts = Vec::new();
    for env in state.snapshots.names() {
        let status = view::status(&state, &env).await?;
        let mut shown = EnvRollout {
            environment: env.clone(),
            commit: short(&status.commit).to_owned(),
            staged: status.staged,
            state: "none".into(),
            from: String::new(),
            to: String::new(),
            stage: String::new(),
            reason: String::new(),
            request: None,
            stages: Vec::new(),
        };
        if let Some(r) = &status.rollout {
            let current = usize::try_from(r.stage).unwrap_or(0);
            shown.state.clone_from(&r.state);
            shown.from = short(&r.from_commit).to_owned();
            shown.to = short(&r.to_commit).to_owned();
            shown.stage = if r.stages.is_empty() || r.state == "done" {
                String::new()
            } else {
                format!("stage {} of {}", current + 1, r.stages.len())
            };
            shown.reason.clone_from(&r.reason);
            shown.request.clone_from(&r.request);
            shown.stages = r
                .stages
                .iter()
                .enumerate()
                .map(|(i, s)| StageView {
                    number: i + 1,
                    spec: s.spec.clone(),
                    mark: if s.passed_at.is_some() {
                        "passed"
                    } else if s.started_at.is_some() {
                        "current"
                    } else {
                        "waiting"
                    },
                    nodes: s
                        .nodes
                        .iter()
                        .map(|n| NodeLink {
                            href: format!("/nodes/{}", urlencode(n)),
                            name: n.clone(),
                        })
                        .collect(),
                })
                .collect();
        }
        rollouts.push(shown);
    }
    page(&RolloutsPage { rollouts })
}
