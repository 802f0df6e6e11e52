//! The tree stays readable (as rust-analyzer's tidy test keeps its own):
//! every Rust file says what it is in a `//!` doc, no product source file
//! grows past 600 lines, and every path ARCHITECTURE.md names exists.

use std::path::{Path, PathBuf};

/// The workspace root (this crate is `tests/`).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The crates whose sources are the product.
const PRODUCT: &[&str] = &["catalog/src", "server/src", "agent/src"];

/// Every directory holding Rust sources of ours.
const SOURCES: &[&str] = &[
    "catalog",
    "server",
    "agent",
    "tests/src",
    "tests/tests",
    "fuzz/fuzz_targets",
];

const MAX_LINES: usize = 600;

/// Every file under `dir` (build output and fuzz corpora skipped).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs_err::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if path.is_dir() {
                if !matches!(name.as_str(), "target" | "corpus" | "artifacts" | ".git") {
                    stack.push(path);
                }
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rust_files(dirs: &[&str]) -> Vec<PathBuf> {
    dirs.iter()
        .flat_map(|dir| files_under(&root().join(dir)))
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect()
}

fn shown(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let undocumented: Vec<String> = rust_files(SOURCES)
        .into_iter()
        .filter(|path| {
            let text = fs_err::read_to_string(path).unwrap();
            !text.trim_start().starts_with("//!")
        })
        .map(|p| shown(&p))
        .collect();
    assert!(
        undocumented.is_empty(),
        "these files do not open with a `//!` doc saying what they are:\n{}",
        undocumented.join("\n")
    );
}

#[test]
fn no_product_source_file_is_longer_than_600_lines() {
    let long: Vec<String> = rust_files(PRODUCT)
        .into_iter()
        .filter_map(|path| {
            let lines = fs_err::read_to_string(&path).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{}: {lines} lines", shown(&path)))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these along their seams (at most {MAX_LINES} lines):\n{}",
        long.join("\n")
    );
}

/// The backticked words of `text` that name a file or a directory.
fn named_paths(text: &str) -> Vec<&str> {
    let suffixes = [
        ".rs", "/", ".toml", ".md", ".html", ".py", ".sh", ".css", ".js",
    ];
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter(|word| !word.contains(char::is_whitespace))
        .filter(|word| suffixes.iter().any(|s| word.ends_with(s)))
        // Not repository paths: absolute ones, URLs, placeholders, globs.
        .filter(|word| !word.starts_with('/') && !word.contains("://"))
        // Outside this repository (`../shared/`): not there in every clone.
        .filter(|word| !word.starts_with("../"))
        .filter(|word| !word.contains(['{', '*', '$', '<']))
        .filter(|word| !word.starts_with("DATA") && !word.starts_with("STATE"))
        .collect()
}

#[test]
fn every_path_architecture_md_names_exists() {
    let root = root();
    let text = fs_err::read_to_string(root.join("ARCHITECTURE.md")).unwrap();
    let all_files: Vec<String> = files_under(&root).iter().map(|p| shown(p)).collect();
    // A path is written from the repository root, or from the crate or
    // source directory its section is about; a bare file name is enough
    // inside a directory's own description.
    let bases = [
        "",
        "catalog/",
        "server/",
        "agent/",
        "tests/",
        "catalog/src/",
        "server/src/",
        "agent/src/",
        "tests/src/",
        "tests/tests/",
    ];
    let missing: Vec<&str> = named_paths(&text)
        .into_iter()
        .filter(|word| {
            let exists = bases
                .iter()
                .any(|base| root.join(format!("{base}{word}")).exists());
            let bare = !word.trim_end_matches('/').contains('/');
            let somewhere = bare
                && all_files
                    .iter()
                    .any(|f| f.ends_with(&format!("/{word}")) || f.contains(&format!("/{word}")));
            !exists && !somewhere
        })
        .collect();
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names paths that do not exist: {missing:?}"
    );
}
