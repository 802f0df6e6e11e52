//! Stage assignment, the gate, and `[rollout]`'s parse errors.

use super::gate::{LastRun, Observed, Verdict, decide};
use super::*;
use crate::Repository;

fn names(n: usize, prefix: &str) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i:02}")).collect()
}

fn policy(toml: &str) -> Result<RolloutPolicy, String> {
    let files = [
        ("drover.toml", toml.to_owned()),
        (
            "nodes.toml",
            "[[node]]\nmatch = \"*\"\nroles = []\n".to_owned(),
        ),
    ]
    .into_iter()
    .map(|(p, t)| (p.to_owned(), std::sync::Arc::from(t.into_bytes())))
    .collect();
    match Repository::parse(files) {
        Ok(repo) => Ok(repo.rollout().cloned().expect("a [rollout]")),
        Err(d) => Err(d
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")),
    }
}

#[test]
fn stages_are_stable_cumulative_and_globs_come_first() {
    let p = policy(
        "[rollout]\nstages = [{ nodes = \"canary-*\" }, { percent = 10 }, { percent = 50 }, { percent = 100 }]\n",
    )
    .unwrap();
    let mut nodes = names(18, "web-");
    nodes.extend(names(2, "canary-"));
    let stages = assign(&p.stages, &nodes);
    let mut canaries = stages[0].clone();
    canaries.sort();
    assert_eq!(canaries, names(2, "canary-"));
    // Cumulative: after stage k, ceil(p% of 20) nodes (or the canaries, if more).
    let upto = |k: usize| stages[..=k].iter().map(Vec::len).sum::<usize>();
    assert!(
        upto(1) >= 2,
        "10% of 20 is 2 nodes, counted with the canaries"
    );
    // 50% is the first 10 by hash; canaries outside them were served earlier.
    let mut by_hash = nodes.clone();
    by_hash.sort_by_key(|n| (node_hash(n), n.clone()));
    let first_half: std::collections::BTreeSet<&String> = by_hash[..10].iter().collect();
    assert!(stages[2].iter().all(|n| first_half.contains(n)));
    assert_eq!(
        upto(2),
        first_half.len() + stages[0].iter().filter(|n| !first_half.contains(n)).count()
    );
    assert_eq!(upto(3), 20);
    // Every node once.
    let mut all: Vec<String> = stages.concat();
    all.sort();
    let mut expected = nodes.clone();
    expected.sort();
    assert_eq!(all, expected);
    // Stable: the order the nodes come in does not matter, nor other runs.
    let mut reversed = nodes.clone();
    reversed.reverse();
    assert_eq!(assign(&p.stages, &reversed), stages);
    // A node keeps its place when the fleet grows (percent of a larger fleet).
    let mut grown = nodes.clone();
    grown.push("web-99".into());
    let bigger = assign(&p.stages, &grown);
    for node in &stages[2] {
        assert!(
            bigger[..=2].iter().any(|s| s.contains(node)),
            "{node} moved to a later stage"
        );
    }
}

#[test]
fn a_percent_rounds_up_and_an_empty_fleet_has_empty_stages() {
    let p = policy("[rollout]\nstages = [{ percent = 10 }, { percent = 100 }]\n").unwrap();
    let stages = assign(&p.stages, &names(3, "n"));
    assert_eq!(stages[0].len(), 1, "10% of 3 nodes is one node, not none");
    assert_eq!(stages[1].len(), 2);
    assert_eq!(
        assign(&p.stages, &[]),
        vec![Vec::<String>::new(), Vec::new()]
    );
}

fn run(node: &str, commit: &str, failed: u64) -> Observed {
    Observed {
        node: node.into(),
        last_run: Some(LastRun {
            commit: commit.into(),
            failed,
        }),
        replicas: Vec::new(),
    }
}

const GATE: Gate = Gate {
    max_failed_nodes: 0,
    min_wait_secs: 60,
    healthy_apps: true,
};

#[test]
fn the_gate_passes_only_on_every_node_reporting_the_commit_after_the_wait() {
    let good = [run("a", "new", 0), run("b", "new", 0)];
    assert_eq!(decide(&GATE, "new", &good, 60), Verdict::Pass);
    assert_eq!(
        decide(&GATE, "new", &good, 10),
        Verdict::Wait(vec![
            "min_wait_secs = 60 has not passed since the stage began".into()
        ])
    );
    // No data is not success.
    let silent = [
        run("a", "new", 0),
        Observed {
            node: "b".into(),
            last_run: None,
            replicas: vec![],
        },
    ];
    assert_eq!(
        decide(&GATE, "new", &silent, 600),
        Verdict::Wait(vec!["b has not reported yet".into()])
    );
    let old = [run("a", "new", 0), run("b", "old", 0)];
    assert!(
        matches!(decide(&GATE, "new", &old, 600), Verdict::Wait(w) if w[0].starts_with("b has not reported commit new"))
    );
    // A failure of the old commit is not the new commit's.
    let old_failed = [run("a", "old", 3)];
    assert!(matches!(
        decide(&GATE, "new", &old_failed, 600),
        Verdict::Wait(_)
    ));
}

#[test]
fn failed_nodes_beyond_the_allowance_fail_the_gate() {
    let nodes = [run("a", "new", 2), run("b", "new", 0)];
    let Verdict::Fail(why) = decide(&GATE, "new", &nodes, 600) else {
        panic!()
    };
    assert_eq!(
        why,
        vec![
            "1 failed node (the gate allows 0)".to_owned(),
            "a reported 2 failed resources at commit new".into()
        ]
    );
    // Even before min_wait_secs: a failure is known at once.
    assert!(matches!(decide(&GATE, "new", &nodes, 0), Verdict::Fail(_)));
    let lenient = Gate {
        max_failed_nodes: 1,
        ..GATE
    };
    assert_eq!(decide(&lenient, "new", &nodes, 600), Verdict::Pass);
}

#[test]
fn healthy_apps_reads_the_replicas() {
    let mut node = run("a", "new", 0);
    node.replicas = vec![
        ("todo-0".into(), "healthy".into()),
        ("todo-1".into(), "missing".into()),
    ];
    assert_eq!(
        decide(&GATE, "new", std::slice::from_ref(&node), 600),
        Verdict::Wait(vec!["a has replicas not healthy yet: todo-1".into()])
    );
    let off = Gate {
        healthy_apps: false,
        ..GATE
    };
    assert_eq!(
        decide(&off, "new", std::slice::from_ref(&node), 600),
        Verdict::Pass
    );
    node.replicas[1].1 = "unhealthy".into();
    assert!(
        matches!(decide(&GATE, "new", &[node], 600), Verdict::Fail(w) if w[1] == "a has unhealthy replicas: todo-1")
    );
}

#[test]
fn rollout_errors_name_their_place() {
    let cases = [
        "[rollout]\nstages = []\n",
        "[rollout]\nstages = [{ percent = 0 }, { percent = 50 }, { percent = 20 }]\n",
        "[rollout]\nstages = [{ nodes = \"[\" }, { nodes = \"a\", percent = 5 }, {}]\n",
        "[rollout]\nstages = [{ percent = 100 }]\ngate = { max_failed_nodes = -1, min_wait_secs = -5 }\n",
        "[rollout]\nstages = [{ percent = 100 }]\ngate = { max_failed = 1 }\n",
        "[rollout]\nstage = [{ percent = 100 }]\n",
    ];
    let out: Vec<String> = cases.iter().map(|c| policy(c).unwrap_err()).collect();
    insta::assert_snapshot!(out.join("\n---\n"));
}

#[test]
fn the_example_of_the_spec_parses() {
    let p = policy(
        "[rollout]\nstages = [{ nodes = \"canary-*\" }, { percent = 10 }, { percent = 50 }, { percent = 100 }]\ngate = { max_failed_nodes = 0, min_wait_secs = 60, healthy_apps = true }\n",
    )
    .unwrap();
    assert_eq!(p.stages.len(), 4);
    assert_eq!(p.stages[0].describe(), "nodes = \"canary-*\"");
    assert_eq!(p.gate, GATE);
}
