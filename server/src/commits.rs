//! What the pages say of a commit: its subject, author and time, for any
//! commit a node ran, not only the environments' heads. Heads carry theirs
//! in their snapshot; any other commit is read from the mirror once
//! (`git log -1`, off the async runtime) and remembered, an unknown one too,
//! so a page of 100 nodes costs no git call after the first.

use std::collections::HashMap;

use crate::git::{CommitInfo, GitDir};

/// Commits remembered at most (each a few hundred bytes).
const REMEMBERED: usize = 4096;

pub struct CommitBook {
    /// The mirror; `None` in development mode, where a "commit" is a
    /// content hash of the directory and has no subject.
    dir: Option<GitDir>,
    known: quick_cache::sync::Cache<String, Option<CommitInfo>>,
}

impl CommitBook {
    pub fn new(dir: Option<GitDir>) -> CommitBook {
        CommitBook {
            dir,
            known: quick_cache::sync::Cache::new(REMEMBERED),
        }
    }

    /// The subject, author and time of each of `commits` that the mirror
    /// has (full 40-hex ids only: anything else is no git commit).
    pub async fn describe<'a>(
        &self,
        commits: impl IntoIterator<Item = &'a str>,
    ) -> HashMap<String, CommitInfo> {
        let mut found = HashMap::new();
        let mut unread = Vec::new();
        for commit in commits {
            if !is_commit_id(commit) || found.contains_key(commit) {
                continue;
            }
            match self.known.get(commit) {
                Some(Some(info)) => {
                    found.insert(commit.to_owned(), info);
                }
                Some(None) => {}
                None if !unread.iter().any(|c| c == commit) => unread.push(commit.to_owned()),
                None => {}
            }
        }
        let Some(dir) = self.dir.clone() else {
            return found;
        };
        if unread.is_empty() {
            return found;
        }
        let read = tokio::task::spawn_blocking(move || {
            unread
                .into_iter()
                .map(|commit| {
                    let info = dir.commit_info(&commit).ok();
                    (commit, info)
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (commit, info) in read.unwrap_or_default() {
            self.known.insert(commit.clone(), info.clone());
            if let Some(info) = info {
                found.insert(commit, info);
            }
        }
        found
    }
}

fn is_commit_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_full_commit_ids_are_looked_up() {
        assert!(is_commit_id(&"a".repeat(40)));
        assert!(!is_commit_id("c1"));
        assert!(!is_commit_id(&"g".repeat(40)));
    }

    #[tokio::test]
    async fn without_a_mirror_nothing_is_described() {
        let book = CommitBook::new(None);
        assert!(book.describe([&*"a".repeat(40)]).await.is_empty());
    }
}
