//! `GET /rollouts`: each environment's staged rollout: its commits, state,
//! the stage being gated, what blocks it or why it paused, and the nodes
//! of every stage; with a session, **Resume** (a paused rollout) and
//! **Abort** (a rolling or paused one) buttons. Their
//! `POST /rollouts/{env}/resume|abort` is checked as the node page's
//! buttons are (`maintenance.rs`: same origin, the session, its form
//! token), then asks what the API route asks and goes back to the page.

use askama::Template;
use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};

use super::commit::CommitView;
use super::forms::{self, session_id, token};
use super::page::{SignedIn, page};
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::rollout::view::{self, Request};
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
    commit: CommitView,
    staged: bool,
    /// `none` before the leader first saw the environment.
    state: String,
    from: Option<CommitView>,
    to: Option<CommitView>,
    stage: String,
    reason: String,
    request: Option<String>,
    stages: Vec<StageView>,
    resume_action: Option<String>,
    abort_action: Option<String>,
}

#[derive(Template)]
#[template(path = "rollouts.html")]
struct RolloutsPage {
    rollouts: Vec<EnvRollout>,
    /// The form token; none without a session (the buttons could not work).
    token: Option<String>,
}

pub(super) async fn show(
    State(state): State<AppState>,
    _: SignedIn,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    let mut rollouts = Vec::new();
    for env in state.snapshots.names() {
        let status = view::status(&state, &env).await?;
        let mut shown = EnvRollout {
            environment: env.clone(),
            commit: CommitView::of(&state, &status.commit).await,
            staged: status.staged,
            state: "none".into(),
            from: None,
            to: None,
            stage: String::new(),
            reason: String::new(),
            request: None,
            stages: Vec::new(),
            resume_action: None,
            abort_action: None,
        };
        if let Some(r) = &status.rollout {
            let current = usize::try_from(r.stage).unwrap_or(0);
            shown.state.clone_from(&r.state);
            shown.from = Some(CommitView::of(&state, &r.from_commit).await);
            shown.to = Some(CommitView::of(&state, &r.to_commit).await);
            shown.stage = if r.stages.is_empty() || r.state == "done" {
                String::new()
            } else {
                format!("stage {} of {}", current + 1, r.stages.len())
            };
            shown.reason.clone_from(&r.reason);
            let base = format!("/rollouts/{}", urlencode(&env));
            let current_commit = r.to_commit == status.commit && r.request.is_none();
            shown.resume_action =
                (current_commit && r.state == "paused").then(|| format!("{base}/resume"));
            shown.abort_action = (current_commit && (r.state == "paused" || r.state == "rolling"))
                .then(|| format!("{base}/abort"));
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
    let token = session_id(&headers).map(token);
    page(&RolloutsPage { rollouts, token })
}

/// `POST /rollouts/{env}/resume|abort`: the origin, the session and its
/// token checked in that order, then the request as the API route makes it
/// (a 409 names why the state does not allow it), back to the page.
pub(super) async fn act(
    State(state): State<AppState>,
    Path((env, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<forms::TokenForm>, FormRejection>,
) -> Result<Response, AppError> {
    let request = match action.as_str() {
        "resume" => Request::Resume,
        "abort" => Request::Abort,
        _ => {
            return Err(AppError::NotFound(format!(
                "no action `{action}` on a rollout (resume or abort)"
            )));
        }
    };
    let token = form.as_ref().map(|f| f.token.as_str()).unwrap_or_default();
    if let Some(refused) = forms::guard(&state, &headers, &uri, token).await? {
        return Ok(refused);
    }
    view::request(&state, &env, request).await?;
    Ok(Redirect::to("/rollouts").into_response())
}
