//! A commit as the pages show it wherever one appears: short, with its
//! subject, author and time (the environment's head from its snapshot, any
//! other commit from the mirror through `crate::commits`) and its forge
//! link when `commit_url` is set.

use super::format;
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

/// `subject (author, time)` of a commit, when the mirror has it.
pub(super) async fn said(state: &AppState, commit: Option<&str>) -> String {
    let Some(commit) = commit else {
        return String::new();
    };
    let head = state
        .snapshots
        .list()
        .into_iter()
        .find(|s| s.commit == commit)
        .and_then(|snap| snap.info.clone());
    let info = match head {
        Some(info) => Some(info),
        None => state
            .snapshots
            .commits
            .describe([commit])
            .await
            .remove(commit),
    };
    info.map(|i| format!("{} ({}, {})", i.subject, i.author, format::when(&i.time)))
        .unwrap_or_default()
}
