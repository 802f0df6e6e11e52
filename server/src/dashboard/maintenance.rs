//! The node page's operator buttons: `POST /nodes/{name}/cordon`,
//! `/uncordon` and `/drain`, HTML forms that act with the dashboard
//! session and go back to the node page (303), each checked by
//! `forms::guard` (same origin, an open session, its token).

use axum::Form;
use axum::extract::rejection::FormRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::forms::{self, token};
use crate::apps::view::NodeReplica;
use crate::db::drains::Drain;
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::state::AppState;

/// A button's form.
#[derive(Debug, Default, Deserialize)]
pub(super) struct ActionForm {
    #[serde(default)]
    token: String,
    /// Drain only: seconds until what is left stops; empty for none.
    #[serde(default)]
    deadline_secs: String,
}

/// What a node page's form asks for: the last segment of its route.
enum Action {
    Cordon,
    Uncordon,
    Drain,
}

impl Action {
    fn parse(segment: &str) -> Option<Action> {
        match segment {
            "cordon" => Some(Action::Cordon),
            "uncordon" => Some(Action::Uncordon),
            "drain" => Some(Action::Drain),
            _ => None,
        }
    }
}

/// `POST /nodes/{name}/cordon|uncordon|drain`: checks the origin, the
/// session and its token, in that order, then does the action as the API
/// route would and goes back to the node page.
pub(super) async fn act(
    State(state): State<AppState>,
    Path((name, action)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    form: Result<Form<ActionForm>, FormRejection>,
) -> Result<Response, AppError> {
    let Some(action) = Action::parse(&action) else {
        return Err(AppError::NotFound(format!(
            "no action `{action}` on a node (cordon, uncordon or drain)"
        )));
    };
    let form = form.map_err(|e| AppError::BadRequest(format!("invalid form: {e}")));
    let token = form.as_ref().map(|f| f.token.as_str()).unwrap_or_default();
    if let Some(refused) = forms::guard(&state, &headers, &uri, token).await? {
        return Ok(refused);
    }
    let Form(form) = form?;
    let found = match action {
        Action::Cordon => crate::db::drains::set_cordon(&state.db, &name, true).await?,
        Action::Uncordon => crate::db::drains::set_cordon(&state.db, &name, false).await?,
        Action::Drain => {
            let deadline = deadline_at_us(&form.deadline_secs)?;
            crate::db::drains::start(&state.db, &name, deadline).await?
        }
    };
    if !found {
        return Err(AppError::NotFound(format!("unknown node `{name}`")));
    }
    state.apps.wake_control.notify_one();
    Ok(Redirect::to(&format!("/nodes/{}", urlencode(&name))).into_response())
}

/// The drain deadline of the form's `deadline_secs` (empty: none), in
/// microseconds since the epoch.
fn deadline_at_us(text: &str) -> Result<Option<i64>, AppError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let secs: u64 = text.parse().map_err(|_| {
        AppError::BadRequest(format!(
            "invalid drain deadline `{text}` (hint: a whole number of seconds, or empty for none)"
        ))
    })?;
    Ok(Some(crate::db::drains::deadline_in(secs)))
}

/// The node page's maintenance section.
pub(super) struct MaintenanceView {
    pub cordoned: bool,
    pub drain: Option<DrainView>,
    pub replicas: Vec<ReplicaRow>,
    /// The form token; none when the page was opened without a session
    /// (an operator certificate or token), whose buttons could not work.
    pub token: Option<String>,
    pub cordon_action: String,
    pub uncordon_action: String,
    pub drain_action: String,
}

pub(super) struct DrainView {
    pub state: String,
    pub status: String,
    pub started_at: String,
    pub deadline: String,
    /// Whether it still moves replicas (a Drain button would start it again).
    pub active: bool,
}

pub(super) struct ReplicaRow {
    pub app: String,
    pub app_href: String,
    pub environment: String,
    pub index: u32,
    pub container: String,
    pub state: String,
}

impl MaintenanceView {
    pub(super) fn new(
        name: &str,
        cordoned: bool,
        drain: Option<&Drain>,
        replicas: &[NodeReplica],
        session_id: Option<&str>,
    ) -> MaintenanceView {
        let base = format!("/nodes/{}", urlencode(name));
        MaintenanceView {
            cordoned,
            drain: drain.map(|d| DrainView {
                state: d.state.clone(),
                status: d.status.clone(),
                started_at: super::format::when(&d.started_at),
                deadline: d
                    .deadline_at_us
                    .and_then(|us| jiff::Timestamp::from_microsecond(us).ok())
                    .map_or_else(
                        || "none".to_owned(),
                        |t| super::format::when(&t.to_string()),
                    ),
                active: d.state == crate::db::drains::DRAINING,
            }),
            replicas: replicas
                .iter()
                .map(|r| ReplicaRow {
                    app_href: format!(
                        "/apps/{}?environment={}",
                        urlencode(&r.app),
                        urlencode(&r.environment)
                    ),
                    app: r.app.clone(),
                    environment: r.environment.clone(),
                    index: r.index,
                    container: r.container.clone(),
                    state: r.state.clone(),
                })
                .collect(),
            token: session_id.map(token),
            cordon_action: format!("{base}/cordon"),
            uncordon_action: format!("{base}/uncordon"),
            drain_action: format!("{base}/drain"),
        }
    }

    /// Cordoned or drained: "in maintenance" until uncordoned.
    pub(super) fn in_maintenance(&self) -> bool {
        self.cordoned || self.drain.is_some()
    }

    pub(super) fn drain_active(&self) -> bool {
        self.drain.as_ref().is_some_and(|d| d.active)
    }
}
