//! The tree stays readable (as rust-analyzer's tidy test keeps its own):
//! every Rust file says what it is in a `//!` doc, no product source file
//! grows past 600 lines, every path ARCHITECTURE.md names exists, and no
//! two files of a crate import each other, however indirectly (the layers
//! of ARCHITECTURE.md: imports go down).

use std::collections::{BTreeMap, BTreeSet};
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

/// A crate's files by module path (`["tls", "listener"]`), as
/// `../shared/tools/cycles.py` maps them.
fn modules(src: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    for file in files_under(src) {
        if file.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = file.strip_prefix(src).unwrap().with_extension("");
        let mut parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts == ["main"] {
            parts.clear();
        }
        out.insert(parts, file);
    }
    out
}

/// Every `crate::a::b` path of `text` (comments skipped), braced groups
/// expanded one level: `crate::a::{b, c::d}` is `a::b` and `a::c::d`.
fn crate_paths(text: &str) -> Vec<Vec<String>> {
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut out = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(ident) {
            continue;
        }
        let mut base = Vec::new();
        loop {
            let end = rest.find(|c: char| !ident(c)).unwrap_or(rest.len());
            if end == 0 {
                break;
            }
            base.push(rest[..end].to_owned());
            rest = &rest[end..];
            if let Some(next) = rest.strip_prefix("::") {
                rest = next;
            } else {
                break;
            }
        }
        if let Some(group) = rest.strip_prefix('{') {
            let close = group.find('}').unwrap_or(group.len());
            for item in group[..close].split(',') {
                let mut path = base.clone();
                path.extend(
                    item.split("::")
                        .map(|s| s.trim().split(' ').next().unwrap_or("").to_owned())
                        .filter(|s| !s.is_empty() && s != "self"),
                );
                out.push(path);
            }
        } else if !base.is_empty() {
            out.push(base);
        }
    }
    out
}

/// Files that import each other, directly or through others (Tarjan's
/// strongly connected components of more than one file).
fn import_cycles(src: &Path) -> Vec<Vec<String>> {
    let modules = modules(src);
    let files: Vec<&PathBuf> = modules.values().collect();
    let index: BTreeMap<&PathBuf, usize> = files.iter().enumerate().map(|(i, f)| (*f, i)).collect();
    let edges: Vec<BTreeSet<usize>> = files
        .iter()
        .map(|file| {
            let text = fs_err::read_to_string(file).unwrap();
            crate_paths(&text)
                .into_iter()
                .filter_map(|path| {
                    (1..=path.len())
                        .rev()
                        .find_map(|k| modules.get(&path[..k]))
                        .filter(|target| target != file)
                        .map(|target| index[target])
                })
                .collect()
        })
        .collect();
    tarjan(&edges)
        .into_iter()
        .filter(|c| c.len() > 1)
        .map(|c| c.into_iter().map(|i| shown(files[i])).collect())
        .collect()
}

fn tarjan(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct State {
        next: usize,
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        stack: Vec<usize>,
        on_stack: Vec<bool>,
        components: Vec<Vec<usize>>,
    }
    fn visit(v: usize, edges: &[BTreeSet<usize>], s: &mut State) {
        s.index[v] = Some(s.next);
        s.low[v] = s.next;
        s.next += 1;
        s.stack.push(v);
        s.on_stack[v] = true;
        for &w in &edges[v] {
            match s.index[w] {
                None => {
                    visit(w, edges, s);
                    s.low[v] = s.low[v].min(s.low[w]);
                }
                Some(i) if s.on_stack[w] => s.low[v] = s.low[v].min(i),
                Some(_) => {}
            }
        }
        if Some(s.low[v]) == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack[w] = false;
                component.push(w);
                if w == v {
                    break;
                }
            }
            s.components.push(component);
        }
    }
    let n = edges.len();
    let mut s = State {
        next: 0,
        index: vec![None; n],
        low: vec![0; n],
        stack: Vec::new(),
        on_stack: vec![false; n],
        components: Vec::new(),
    };
    for v in 0..n {
        if s.index[v].is_none() {
            visit(v, edges, &mut s);
        }
    }
    s.components
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let cycles: Vec<Vec<String>> = PRODUCT
        .iter()
        .flat_map(|src| import_cycles(&root().join(src)))
        .collect();
    assert!(
        cycles.is_empty(),
        "these files import each other in a circle; move what they share to a module below both:\n{cycles:#?}"
    );
}

#[test]
fn the_cycle_finder_finds_a_cycle() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| fs_err::write(dir.path().join(name), text).unwrap();
    write("lib.rs", "//! root\nmod a;\nmod b;\nmod c;\n");
    write("a.rs", "//! a\nuse crate::b::{self, Thing};\n");
    write(
        "b.rs",
        "//! b\n// crate::c::Nope is a comment\nfn f() { crate::a::g(); }\n",
    );
    write("c.rs", "//! c\nuse crate::a;\n");
    let cycles = import_cycles(dir.path());
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let mut names: Vec<&str> = cycles[0]
        .iter()
        .map(|f| f.rsplit('/').next().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a.rs", "b.rs"]);
}
