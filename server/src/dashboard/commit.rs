//! A commit as the pages show it wherever one appears: short, with its
//! subject, author and time (the environment's head from its snapshot, any
//! other commit from the mirror through `crate::commits`) and its forge
//! link when `commit_url` is set.

use std::collections::HashMap;

use super::format;
use crate::git::CommitInfo;
use crate::state::AppState;

pub(super) struct CommitView {
    pub(super) short: String,
    /// `subject (author, time)`, empty when unknown.
    pub(super) said: String,
    pub(super) href: Option<String>,
}

impl CommitView {
    pub(super) async fn of(state: &AppState, commit: &str) -> CommitView {
        CommitView {
            short: format::short(commit),
            said: said(state, Some(commit)).await,
            href: state.config.commit_link(commit),
        }
    }
}

/// What the mirror says of each of `commits`: the environments' heads
/// from their snapshots, any other commit through the commit book.
pub(super) async fn infos<'a>(
    state: &AppState,
    commits: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, CommitInfo> {
    let mut known = HashMap::new();
    let mut others = Vec::new();
    let heads = state.snapshots.list();
    for commit in commits {
        match heads
            .iter()
            .find(|s| s.commit == commit)
            .and_then(|s| s.info.as_ref())
        {
            Some(info) => {
                known.insert(commit.to_owned(), info.clone());
            }
            None => others.push(commit),
        }
    }
    known.extend(state.snapshots.commits.describe(others).await);
    known
}

/// `subject (author, time)` of each of `commits` the mirror has.
pub(super) async fn said_of_all<'a>(
    state: &AppState,
    commits: impl IntoIterator<Item = &'a str>,
) -> HashMap<String, String> {
    infos(state, commits)
        .await
        .into_iter()
        .map(|(commit, info)| (commit, text(&info)))
        .collect()
}

pub(super) fn text(info: &CommitInfo) -> String {
    format!(
        "{} ({}, {})",
        info.subject,
        info.author,
        format::when(&info.time)
    )
}

/// `subject (author, time)` of a commit, when the mirror has it.
pub(super) async fn said(state: &AppState, commit: Option<&str>) -> String {
    let Some(commit) = commit else {
        return String::new();
    };
    said_of_all(state, [commit])
        .await
        .remove(commit)
        .unwrap_or_default()
}
