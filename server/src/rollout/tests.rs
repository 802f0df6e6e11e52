//! [`pick`]: which commit a node is served, for each state of a rollout.

use super::{Pick, pick};
use crate::db::rollouts::{ABORTED, DONE, PAUSED, ROLLING, Rollout, StageRow};

fn rollout(state: &str, stage: i64) -> Rollout {
    let stage_of = |nodes: &[&str]| StageRow {
        spec: String::new(),
        nodes: nodes.iter().map(|n| (*n).to_owned()).collect(),
        started_at: None,
        started_us: None,
        passed_at: None,
    };
    Rollout {
        environment: "production".into(),
        from_commit: "old".into(),
        to_commit: "new".into(),
        state: state.into(),
        stage,
        stages: vec![stage_of(&["canary-1"]), stage_of(&["web-1", "web-2"])],
        gate: None,
        reason: String::new(),
        request: None,
        version: 1,
        started_at: String::new(),
        updated_at: String::new(),
    }
}

fn old() -> Pick {
    Pick::Commit("old".into())
}

#[test]
fn a_stage_not_reached_keeps_the_previous_commit() {
    for state in [ROLLING, PAUSED] {
        let r = rollout(state, 0);
        assert_eq!(pick("canary-1", "new", true, Some(&r)), Pick::Head);
        assert_eq!(pick("web-1", "new", true, Some(&r)), old());
        // A node the rollout did not know when it started waits for the end.
        assert_eq!(pick("web-9", "new", true, Some(&r)), old());
        let r = rollout(state, 1);
        assert_eq!(pick("web-2", "new", true, Some(&r)), Pick::Head);
    }
}

#[test]
fn done_serves_the_new_commit_and_aborted_the_previous_one() {
    assert_eq!(
        pick("web-1", "new", true, Some(&rollout(DONE, 2))),
        Pick::Head
    );
    assert_eq!(
        pick("canary-1", "new", true, Some(&rollout(ABORTED, 0))),
        old()
    );
    assert_eq!(pick("web-1", "new", true, None), Pick::Head);
}

#[test]
fn a_commit_the_leader_has_not_seen_waits_for_it_only_when_staged() {
    // The environment moved to `newer`; the row still says `new`.
    let r = rollout(ROLLING, 0);
    assert_eq!(
        pick("canary-1", "newer", true, Some(&r)),
        Pick::Commit("new".into())
    );
    assert_eq!(pick("web-1", "newer", true, Some(&r)), old());
    // Without [rollout] in it, the commit reaches every node at once.
    assert_eq!(pick("web-1", "newer", false, Some(&r)), Pick::Head);
    let mut settled = rollout(DONE, 0);
    settled.from_commit = "new".into();
    assert_eq!(
        pick("web-1", "newer", true, Some(&settled)),
        Pick::Commit("new".into())
    );
}

#[test]
fn only_a_row_that_may_change_a_nodes_commit_recompiles() {
    let rollouts = super::Rollouts::default();
    let mut settled = rollout(DONE, 0);
    settled.stages.clear();
    settled.from_commit = "new".into();
    assert!(
        rollouts.replace(vec![settled.clone()]).is_empty(),
        "first sight"
    );
    let mut next = settled.clone();
    next.to_commit = "newer".into();
    next.from_commit = "newer".into();
    assert!(
        rollouts.replace(vec![next.clone()]).is_empty(),
        "a commit without stages"
    );
    let rolling = rollout(ROLLING, 0);
    assert_eq!(
        rollouts.replace(vec![rolling.clone()]),
        vec!["production".to_owned()]
    );
    let mut waiting = rolling.clone();
    waiting.reason = "stage 1 waits".into();
    assert!(
        rollouts.replace(vec![waiting]).is_empty(),
        "a new reason moves nothing"
    );
    assert_eq!(
        rollouts.replace(vec![rollout(ABORTED, 0)]),
        vec!["production".to_owned()]
    );
    assert_eq!(
        rollouts.replace(vec![next]),
        vec!["production".to_owned()],
        "settled after a rollout"
    );
}
