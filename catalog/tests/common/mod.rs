//! What the catalog's test files share: repositories written as one
//! multi-file string.

use drover_catalog::RepoFiles;

/// Splits a fixture into files at lines `//- path`.
pub(crate) fn fixture(text: &str) -> RepoFiles {
    let mut files = RepoFiles::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines() {
        if let Some(path) = line.strip_prefix("//- ") {
            if let Some((p, body)) = current.take() {
                files.insert(p, body.into_bytes().into());
            }
            current = Some((path.trim().to_owned(), String::new()));
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    if let Some((p, body)) = current {
        files.insert(p, body.into_bytes().into());
    }
    files
}
