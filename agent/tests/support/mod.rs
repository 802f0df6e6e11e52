//! Shared by the CLI tests: the agent binary, catalogs, and a fake
//! drover-server over HTTPS with its own CA.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support code"
)]

pub(crate) mod ca;
pub(crate) mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use drover_catalog::model::{FileSpec, sha256_hex};
use drover_catalog::{Catalog, Resource, Spec};

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_drover-agent");

pub(crate) fn agent(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub(crate) fn file_resource(path: &Path, content: &[u8]) -> Resource {
    Resource::new(Spec::File(FileSpec::with_content(
        &path.to_string_lossy(),
        content,
    )))
}

pub(crate) fn catalog(
    node: &str,
    files: &[(&Path, &[u8])],
) -> (Catalog, BTreeMap<String, Vec<u8>>) {
    let resources: Vec<Resource> = files.iter().map(|(p, c)| file_resource(p, c)).collect();
    let contents = files
        .iter()
        .map(|(_, c)| (sha256_hex(c), c.to_vec()))
        .collect();
    let catalog = Catalog {
        node: node.into(),
        environment: "production".into(),
        commit: "abc".into(),
        version: Catalog::compute_version(&resources),
        resources,
        contents: BTreeMap::new(),
    };
    (catalog, contents)
}

/// A node `n1` with its own state directory in a temporary directory.
pub(crate) struct Node {
    pub dir: tempfile::TempDir,
    pub state: PathBuf,
}

impl Node {
    pub(crate) fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        Node { dir, state }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn tls(&self, name: &str) -> PathBuf {
        self.state.join("tls").join(name)
    }

    /// Writes `content` to a file in the node's directory; returns its path.
    pub(crate) fn write(&self, name: &str, content: &str) -> String {
        let path = self.path(name);
        fs_err::write(&path, content).unwrap();
        path.to_string_lossy().into_owned()
    }

    /// `run --once --detailed-exitcodes` against `server`.
    pub(crate) fn run(&self, server: &str, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--once",
            "--detailed-exitcodes",
            "--server",
            server,
            "--node",
            "n1",
            "--state-dir",
            self.state.to_str().unwrap(),
        ];
        args.extend(extra);
        agent(&args)
    }
}

/// The samples of a Prometheus textfile: `name{labels}` (as written) -> value.
pub(crate) fn prom_samples(path: &Path) -> BTreeMap<String, f64> {
    let text = fs_err::read_to_string(path).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_owned(), value.parse().unwrap())
        })
        .collect()
}

/// `promtool check metrics` accepts the file, lint included.
pub(crate) fn promtool_check(path: &Path) {
    let input = fs_err::File::open(path).unwrap().into_file();
    let out = match Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(input)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed, and the metrics textfile must be checked with it\nhint: apt-get install prometheus (scripts/test installs it)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    assert!(
        out.status.success(),
        "promtool check metrics refused {}:\n{}\n{}",
        path.display(),
        text(&out),
        fs_err::read_to_string(path).unwrap()
    );
}
