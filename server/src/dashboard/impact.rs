//! `GET /impact?env=BRANCH&against=ENV`: what merging a branch would do,
//! as `drover-server diff` says it (`crate::impact`, analysed by
//! `impact::served`: off the async runtime, one at a time, cached). A form
//! picks the branch and the target among the environments the server
//! knows (every branch of its mirror); the answer shows a summary, the
//! nodes the branch does not compile for with their `file:line:col`
//! errors, each changed node's resources in a `<details>` with its file
//! diffs (sensitive values only as hashes), and the replicas that would
//! move. Without `env` it is the form alone; an unknown branch is a 404
//! that names the known ones. No script needed.

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::page::{SignedIn, render};
use crate::error::AppError;
use crate::fleet::urlencode;
use crate::impact::Impact;
use crate::impact::placements::Fate;
use crate::impact::served::{Answer, Done, impact_of};
use crate::state::AppState;

/// Changed nodes shown in full; the rest are counted (`diff --json` has all).
const SHOWN: usize = 200;

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    env: String,
    #[serde(default)]
    against: String,
}

struct Choice {
    name: String,
    selected: bool,
}

struct DiffLine {
    /// `add`, `del`, `hunk` or `ctx`.
    class: &'static str,
    text: String,
}

struct ChangeView {
    id: String,
    fields: Vec<(String, String, String)>,
    diff: Vec<DiffLine>,
}

struct ChangedNode {
    node: String,
    href: String,
    summary: String,
    /// It does not compile on the target: the branch fixes it.
    fixes: bool,
    added: Vec<String>,
    removed: Vec<String>,
    changed: Vec<ChangeView>,
}

struct BrokenNode {
    node: String,
    href: String,
    errors: Vec<String>,
}

struct MoveView {
    replica: String,
    fate: &'static str,
    from: String,
    to: String,
    reason: String,
}

struct Analysis {
    branch: String,
    against: String,
    nodes: usize,
    changed: usize,
    unchanged: usize,
    broken: Vec<BrokenNode>,
    shown: Vec<ChangedNode>,
    /// Changed nodes not shown.
    more: usize,
    moves: Vec<MoveView>,
    /// When the fleet's facts and placements it stands on were read.
    read_at: String,
}

#[derive(Template)]
#[template(path = "impact.html")]
struct ImpactPage {
    branches: Vec<Choice>,
    targets: Vec<Choice>,
    /// Why there is no analysis (unknown branch).
    error: Option<String>,
    /// The side that does not parse, and its diagnostics.
    unparsed: Option<(String, Vec<String>)>,
    analysis: Option<Analysis>,
}

pub(super) async fn show(
    State(state): State<AppState>,
    _: SignedIn,
    Query(params): Query<Params>,
) -> Result<Response, AppError> {
    let names = state.snapshots.names();
    let against = if params.against.is_empty() {
        state.snapshots.default_environment()
    } else {
        params.against.clone()
    };
    let choices = |chosen: &str| -> Vec<Choice> {
        names
            .iter()
            .map(|n| Choice {
                name: n.clone(),
                selected: n == chosen,
            })
            .collect()
    };
    let mut page = ImpactPage {
        branches: choices(&params.env),
        targets: choices(&against),
        error: None,
        unparsed: None,
        analysis: None,
    };
    if params.env.is_empty() {
        return render(StatusCode::OK, &page);
    }
    match impact_of(&state, &params.env, &against).await {
        Ok(Answer::Done(done)) => page.analysis = Some(view(&done)),
        Ok(Answer::Unparsed {
            environment,
            errors,
        }) => page.unparsed = Some((environment, errors)),
        Err(AppError::NotFound(message)) => {
            page.error = Some(message);
            return render(StatusCode::NOT_FOUND, &page);
        }
        Err(e) => return Err(e),
    }
    render(StatusCode::OK, &page)
}

fn view(done: &Done) -> Analysis {
    let impact: &Impact = &done.impact;
    let href = |node: &str| format!("/nodes/{}", urlencode(node));
    let broken = impact
        .impacts
        .iter()
        .filter(|i| !i.errors.is_empty())
        .map(|i| BrokenNode {
            node: i.node.clone(),
            href: href(&i.node),
            errors: i.errors.clone(),
        })
        .collect();
    let changed: Vec<_> = impact
        .impacts
        .iter()
        .filter(|i| i.errors.is_empty())
        .collect();
    let shown = changed
        .iter()
        .take(SHOWN)
        .map(|i| {
            let d = &i.diff;
            ChangedNode {
                node: i.node.clone(),
                href: href(&i.node),
                summary: format!(
                    "{} changed, {} added, {} removed",
                    d.changed.len(),
                    d.added.len(),
                    d.removed.len()
                ),
                fixes: !i.errors_before.is_empty(),
                added: d.added.clone(),
                removed: d.removed.clone(),
                changed: d
                    .changed
                    .iter()
                    .map(|c| ChangeView {
                        id: c.id.clone(),
                        fields: c.fields.clone(),
                        diff: c
                            .content_diff
                            .as_deref()
                            .map(diff_lines)
                            .unwrap_or_default(),
                    })
                    .collect(),
            }
        })
        .collect();
    Analysis {
        branch: impact.branch.clone(),
        against: impact.against.clone(),
        nodes: impact.nodes,
        changed: impact.changed(),
        unchanged: impact.nodes.saturating_sub(impact.impacts.len()),
        broken,
        shown,
        more: changed.len().saturating_sub(SHOWN),
        moves: impact.placements.iter().map(move_view).collect(),
        read_at: super::format::when(&done.read_at.to_string()),
    }
}

/// A unified diff's lines, each with the class that colours it.
fn diff_lines(diff: &str) -> Vec<DiffLine> {
    diff.lines()
        .map(|line| DiffLine {
            class: match line.as_bytes().first() {
                _ if line.starts_with("+++") || line.starts_with("---") => "ctx",
                Some(b'+') => "add",
                Some(b'-') => "del",
                Some(b'@') => "hunk",
                _ => "ctx",
            },
            text: line.to_owned(),
        })
        .collect()
}

fn move_view(r: &crate::impact::placements::ReplicaMove) -> MoveView {
    MoveView {
        replica: format!("{}#{}", r.app, r.replica),
        fate: match r.fate {
            Fate::Stays => "stays",
            Fate::Placed => "placed",
            Fate::Moved => "moved",
            Fate::Removed => "removed",
            Fate::Pending => "pending",
        },
        from: r.from.clone().unwrap_or_default(),
        to: r.to.clone().unwrap_or_default(),
        reason: r.reason.clone().unwrap_or_default(),
    }
}
