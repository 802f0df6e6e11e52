//! What the API, the CLI and the dashboard show of an environment's
//! rollout, and an operator's `resume` or `abort` checked against its state
//! before it is recorded for the leader's loop to apply.

use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::db::rollouts::{self, ABORTED, DONE, PAUSED, ROLLING, Rollout};
use crate::error::AppError;
use crate::state::AppState;

/// An environment's staged rollout.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RolloutStatus {
    pub environment: String,
    /// The environment's newest commit.
    pub commit: String,
    /// Whether that commit has a `[rollout]` in its drover.toml.
    pub staged: bool,
    /// Its rollout; none until the leader has seen the environment. A
    /// commit without `[rollout]` shows as a `done` rollout without stages.
    #[schema(nullable = true)]
    pub rollout: Option<Rollout>,
}

/// An operator's request to a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Pass a paused rollout's stage anyway: the next stage begins.
    Resume,
    /// Send the nodes of a rolling or paused rollout back to its `from` commit.
    Abort,
}

impl Request {
    pub fn as_str(self) -> &'static str {
        match self {
            Request::Resume => "resume",
            Request::Abort => "abort",
        }
    }
}

/// The rollout of `environment`; 404 for an environment that does not exist.
pub async fn status(state: &AppState, environment: &str) -> Result<RolloutStatus, AppError> {
    let Some(snap) = state.snapshots.get(environment) else {
        return Err(AppError::NotFound(format!(
            "environment `{environment}` does not exist (known: {})",
            state.snapshots.names().join(", ")
        )));
    };
    Ok(RolloutStatus {
        environment: environment.to_owned(),
        commit: snap.commit.clone(),
        staged: matches!(&snap.repo, Ok(repo) if repo.rollout().is_some()),
        rollout: rollouts::rollout(&state.db, environment).await?,
    })
}

/// Records `request` for the leader's loop when the rollout's state allows
/// it (409 naming the state when not), and wakes the loop.
pub async fn request(
    state: &AppState,
    environment: &str,
    request: Request,
) -> Result<RolloutStatus, AppError> {
    let current = status(state, environment).await?;
    let conflict = |why: String| Err(AppError::Status(StatusCode::CONFLICT, why));
    let what = request.as_str();
    let Some(rollout) = &current.rollout else {
        return conflict(format!(
            "environment `{environment}` has no rollout to {what}: none has started"
        ));
    };
    let allowed = match request {
        Request::Resume => rollout.state == PAUSED,
        Request::Abort => rollout.state == ROLLING || rollout.state == PAUSED,
    };
    if !allowed || rollout.to_commit != current.commit {
        let why = match (request, rollout.state.as_str()) {
            _ if rollout.to_commit != current.commit => format!(
                "a rollout of commit {} is about to start; ask again in a moment",
                super::control::short(&current.commit)
            ),
            (Request::Resume, ROLLING) => {
                "it is rolling, not paused: its gate has not failed".to_owned()
            }
            (_, DONE) => "it is done: every node is served its commit".to_owned(),
            (_, ABORTED) => "it was aborted: a new commit starts the next rollout".to_owned(),
            (_, other) => format!("it is {other}"),
        };
        return conflict(format!(
            "cannot {what} the rollout of `{environment}`: {why}"
        ));
    }
    rollouts::request(&state.db, environment, what).await?;
    state.rollouts.wake.notify_one();
    if let Err(e) = crate::cluster::notify::announce(
        &state.db,
        state.cluster.id(),
        crate::cluster::notify::Event::Rollouts,
    )
    .await
    {
        tracing::warn!(error = %e, "telling the leader of a rollout request failed");
    }
    status(state, environment).await
}
