//! Content diffs for reports and output: unified for text, a hash line otherwise.

use similar::TextDiff;

/// Larger contents are summarised by hash: a diff of them helps nobody.
pub const MAX_DIFF_BYTES: usize = 1024 * 1024;

/// A unified diff of `old` -> `new` headed `--- PATH` / `+++ PATH`, or the
/// line `binary or large content: sha256 A -> B`.
pub fn content_diff(
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
    fn binary_content_is_summarised_by_hash() {
        let d = content_diff("/x", Some(&[0xff, 0xfe]), b"t", "aa", "bb");
        assert_eq!(d, "binary or large content: sha256 aa -> bb\n");
    }
}
