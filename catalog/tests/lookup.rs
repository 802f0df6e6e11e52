//! `Repository::lookup`: the value a node gets for a data key, and every
//! hierarchy level tried, most specific first, with which one was used.

mod common;

use common::fixture;
use drover_catalog::{CompileRequest, Facts, Lookup, Repository};

const SITE: &str = r#"
//- nodes.toml
[[node]]
match = "web-*"
roles = ["web"]
//- roles/base.toml
[vars]
workers = 1
//- roles/web.toml
include = ["base"]
[vars]
token = { sensitive = "s3cret" }
//- data/common.toml
workers = 2
ntp = { servers = ["a.example"], iburst = true }
//- data/nodes/web-1.toml
workers = 8
ntp = { servers = ["b.example"] }
"#;

fn lookup(key: &str) -> Lookup {
    let repo = Repository::parse(fixture(SITE)).unwrap();
    let facts: Facts = serde_json::from_value(serde_json::json!({"os": {"id": "debian"}})).unwrap();
    repo.lookup(
        &CompileRequest {
            node: "web-1",
            facts: &facts,
            environment: "production",
            commit: "c",
        },
        key,
    )
    .unwrap()
}

/// (file, found, used) of each step.
fn steps(l: &Lookup) -> Vec<(String, Option<String>, bool)> {
    l.steps
        .iter()
        .map(|s| {
            (
                s.file.clone(),
                s.found.as_ref().map(ToString::to_string),
                s.used,
            )
        })
        .collect()
}

#[test]
fn a_plain_value_comes_from_the_most_specific_level_that_has_it() {
    let l = lookup("workers");
    assert_eq!(l.value, Some(toml::Value::Integer(8)));
    let s = steps(&l);
    let used: Vec<&str> = s.iter().filter(|s| s.2).map(|s| s.0.as_str()).collect();
    assert_eq!(used, ["data/nodes/web-1.toml"]);
    // every level tried, most specific first, then the roles' vars
    let files: Vec<&str> = s.iter().map(|s| s.0.as_str()).collect();
    assert_eq!(files.first(), Some(&"data/nodes/web-1.toml"));
    assert!(files.contains(&"data/os/debian.toml"), "{files:?}");
    assert_eq!(
        &files[files.len() - 3..],
        [
            "data/common.toml",
            "roles/web.toml [vars]",
            "roles/base.toml [vars]"
        ]
    );
    let os = l
        .steps
        .iter()
        .find(|s| s.file == "data/os/debian.toml")
        .unwrap();
    assert!(!os.exists && os.found.is_none());
    assert_eq!(os.level.as_deref(), Some("os/{{ facts.os.id }}"));
}

#[test]
fn a_table_merges_from_every_level_that_has_it() {
    let l = lookup("ntp");
    assert_eq!(
        l.value.as_ref().unwrap().to_string(),
        r#"{ iburst = true, servers = ["b.example"] }"#
    );
    let used: Vec<String> = steps(&l).into_iter().filter(|s| s.2).map(|s| s.0).collect();
    assert_eq!(used, ["data/nodes/web-1.toml", "data/common.toml"]);
    assert_eq!(lookup("ntp.iburst").value, Some(toml::Value::Boolean(true)));
}

#[test]
fn sensitive_values_are_never_shown_and_missing_keys_have_no_value() {
    let l = lookup("token");
    assert_eq!(l.value, Some(toml::Value::String("(sensitive)".into())));
    let json = serde_json::to_string(&l).unwrap();
    assert!(!json.contains("s3cret"), "{json}");
    let none = lookup("nothing.here");
    assert!(none.value.is_none() && none.steps.iter().all(|s| !s.used));
}
