//! Content diffs for reports and output: unified for text, a hash line otherwise.

use similar::TextDiff;

/// Larger contents are summarised by hash: a diff of them helps nobody.
pub(crate) const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// A unified diff of `old` -> `new` headed `--- PATH` / `+++ PATH`, or the
/// line `binary or large content: sha256 A -> B`.
pub(crate) fn content_diff(
    path: &str,
    old: Option<&[u8]>,
    new: &[u8],
    old_sha: &str,
    new_sha: &str,
) -> String {
    let old = old.unwrap_or_default();
    match (text(old), text(new)) {
        (Some(old), Some(new)) => TextDiff::from_lines(old, new)
            .unified_diff()
            .context_radius(3)
            .header(path, path)
            .to_string(),
        _ => format!("binary or large content: sha256 {old_sha} -> {new_sha}\n"),
    }
}

/// How much diff text one run's report (and output) carries: a first run
/// of 10,000 files would otherwise hold every file's whole content twice in
/// memory and send a report far over the server's 16 MiB body limit.
pub(crate) const RUN_DIFF_BUDGET: usize = 4 * 1024 * 1024;

/// What is left of [`RUN_DIFF_BUDGET`] in this run. Once a diff does not
/// fit, it and every later one are summarised by hash, without being made.
#[derive(Debug)]
pub(crate) struct DiffBudget {
    left: usize,
}

impl Default for DiffBudget {
    fn default() -> DiffBudget {
        DiffBudget {
            left: RUN_DIFF_BUDGET,
        }
    }
}

impl DiffBudget {
    /// [`content_diff`] while the budget lasts, then the hash line.
    pub(crate) fn diff(
        &mut self,
        path: &str,
        old: Option<&[u8]>,
        new: &[u8],
        old_sha: &str,
        new_sha: &str,
    ) -> String {
        // A diff holds at least the lines the new content adds.
        if self.left > new.len().min(MAX_DIFF_BYTES) {
            let mut diff = content_diff(path, old, new, old_sha, new_sha);
            if diff.len() <= self.left {
                // Kept in the report to the end of the run: no spare capacity.
                diff.shrink_to_fit();
                self.left -= diff.len();
                return diff;
            }
        }
        self.left = 0;
        format!(
            "diff left out: this run's diffs reached {} MiB; sha256 {old_sha} -> {new_sha}\n",
            RUN_DIFF_BUDGET >> 20
        )
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() < MAX_DIFF_BYTES {
        std::str::from_utf8(bytes).ok()
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_diff_is_unified_with_path_headers() {
        let d = content_diff("/etc/x", Some(b"a\nb\n"), b"a\nc\n", "1", "2");
        assert!(d.starts_with("--- /etc/x\n+++ /etc/x\n@@"), "{d}");
        assert!(d.contains("-b\n+c\n"), "{d}");
    }

    #[test]
    fn diffs_past_the_run_budget_are_summarised_by_hash() {
        let mut budget = DiffBudget::default();
        let line = "x".repeat(99) + "\n";
        // A fifth of the budget each, under the 1 MiB of a diffable content.
        let big = line.repeat(RUN_DIFF_BUDGET / 100 / 5);
        for name in ["/a", "/b", "/c", "/d"] {
            let diff = budget.diff(name, None, big.as_bytes(), "none", "1");
            assert!(diff.starts_with(&format!("--- {name}\n+++ {name}\n@@")));
        }
        let fifth = budget.diff("/e", Some(b"old\n"), big.as_bytes(), "0", "3");
        assert_eq!(
            fifth,
            "diff left out: this run's diffs reached 4 MiB; sha256 0 -> 3\n"
        );
        let small = budget.diff("/f", Some(b"a\n"), b"b\n", "4", "5");
        assert!(
            small.starts_with("diff left out"),
            "the budget is spent: {small}"
        );
    }

    #[test]
    fn binary_content_is_summarised_by_hash() {
        let d = content_diff("/x", Some(&[0xff, 0xfe]), b"t", "aa", "bb");
        assert_eq!(d, "binary or large content: sha256 aa -> bb\n");
    }
}
