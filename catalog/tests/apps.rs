//! Node labels and taints from `nodes.toml`, and `labels` in templates.
//! Fixtures are multi-file strings with `//- path` markers, as in
//! `compile.rs`; errors are compared with snapshots.

use std::collections::BTreeMap;

use drover_catalog::{CompileRequest, Compiled, Facts, NodeProfile, RepoFiles, Repository};

/// Splits a fixture into files at lines `//- path`.
fn fixture(text: &str) -> RepoFiles {
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

fn debian() -> Facts {
    serde_json::from_str(r#"{"os": {"id": "debian"}, "networking": {"ip": "10.0.0.5"}}"#).unwrap()
}

fn repo(text: &str) -> Repository {
    Repository::parse(fixture(text)).expect("parses")
}

fn compile(repo: &Repository, node: &str) -> Result<Compiled, String> {
    let facts = debian();
    let req = CompileRequest {
        node,
        facts: &facts,
        environment: "production",
        commit: "c0ffee",
    };
    repo.compile(&req).map_err(|e| e.to_string())
}

const NODES: &str = r#"
//- drover.toml
[data]
hierarchy = ["zones/{{ labels.zone }}", "common"]
//- nodes.toml
[[node]]
match = "*"
roles = ["base"]
labels = { zone = "paris-1", tier = "app" }
taints = ["dedicated=edge"]

[[node]]
match = "web-*"
facts = { os.id = "debian" }
roles = ["docker-host"]
labels = { zone = "paris-2", ip = "10.0.0.5" }
taints = ["gpu", "dedicated=edge"]
//- roles/base.toml
[[file]]
path = "/etc/zone"
content = "{{ labels.zone }} {{ labels.tier }} {{ vars.dc }}\n"
//- roles/docker-host.toml
include = ["base"]
//- data/zones/paris-2.toml
dc = "p2"
//- data/common.toml
dc = "unknown"
"#;

#[test]
fn a_nodes_labels_and_taints_are_the_union_of_its_entries() {
    let repo = repo(NODES);
    let profile = repo.node_profile("web-1", &debian()).unwrap();
    assert_eq!(
        profile,
        NodeProfile {
            roles: vec!["base".into(), "docker-host".into()],
            labels: BTreeMap::from([
                ("ip".into(), "10.0.0.5".into()),
                ("tier".into(), "app".into()),
                ("zone".into(), "paris-2".into()),
            ]),
            taints: vec!["dedicated=edge".into(), "gpu".into()],
        }
    );
    let db = repo.node_profile("db-1", &debian()).unwrap();
    assert_eq!(db.labels["zone"], "paris-1");
    assert_eq!(db.taints, ["dedicated=edge"]);

    // templates and hierarchy levels see the labels
    let compiled = compile(&repo, "web-1").unwrap();
    let (sha, _) = compiled.contents.iter().next().unwrap();
    assert_eq!(&*compiled.contents[sha], b"paris-2 app p2\n");
}

#[test]
fn node_labels_are_strings_and_taints_are_checked() {
    let text = "//- nodes.toml\n[[node]]\nmatch = \"*\"\nlabels = { rack = 12, zone = \"a\" }\ntaints = [\"dedicated=edge\", \"no space=x\", \"k=\"]\n";
    let errors = Repository::parse(fixture(text)).unwrap_err();
    insta::assert_snapshot!("node_label_and_taint_errors", errors.to_string());
}
