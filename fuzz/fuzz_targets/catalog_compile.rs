//! A catalog repository from arbitrary bytes: parse, compile for a few
//! nodes, check. None of it may panic; a compiled catalog must serialize,
//! parse back equal, and carry the version of its resources.
//!
//! Input: the test fixtures' format. Lines `//- PATH` start a file; what
//! comes before the first marker is `nodes.toml`.

#![no_main]

use drover_catalog::{Catalog, CompileRequest, Facts, RepoFiles, Repository};
use libfuzzer_sys::fuzz_target;

const NODES: [&str; 3] = ["web-1", "db-1", "x"];

fuzz_target!(|data: &[u8]| {
    let files = split_files(data);
    let facts = facts();
    if let Ok(repo) = Repository::parse(files.clone()) {
        for node in NODES {
            let req = CompileRequest {
                node,
                facts: &facts,
                environment: "production",
                commit: "c0ffee",
            };
            if let Ok(compiled) = repo.compile(&req) {
                round_trip(&compiled.catalog);
            }
        }
    }
    let _ = drover_catalog::check(files.clone(), "production", "c0ffee", &[]);
    let _ = drover_catalog::check(
        files,
        "production",
        "c0ffee",
        &[("web-1".to_owned(), facts)],
    );
});

fn split_files(data: &[u8]) -> RepoFiles {
    let mut files = RepoFiles::new();
    let mut path = "nodes.toml".to_owned();
    let mut body = Vec::new();
    for line in data.split_inclusive(|&b| b == b'\n') {
        if let Some(rest) = line.strip_prefix(b"//- ") {
            files.insert(std::mem::take(&mut path), std::mem::take(&mut body).into());
            path = String::from_utf8_lossy(rest).trim().to_owned();
        } else {
            body.extend_from_slice(line);
        }
    }
    files.insert(path, body.into());
    files
}

fn facts() -> Facts {
    let json = r#"{"hostname": "web-1", "os": {"id": "debian", "version_id": "12"}, "processors": {"count": 2}, "evil": "{{ 7*7 }}{% include '/etc/passwd' %}"}"#;
    serde_json::from_str(json).expect("fixed facts parse")
}

fn round_trip(catalog: &Catalog) {
    assert_eq!(
        catalog.version,
        Catalog::compute_version(&catalog.resources),
        "the version is the hash of the resources"
    );
    let json = serde_json::to_vec(catalog).expect("a catalog serializes");
    let back: Catalog = serde_json::from_slice(&json).expect("a catalog parses back");
    assert_eq!(&back, catalog, "catalog JSON round trip");
}
