//! Drains, as the replacement step (`moves`) carries them out: what a
//! drain does with a replica that fits nowhere else, and each drain's
//! state and status after a step.
//!
//! A replica that fits nowhere is stopped (left pending) only when its app
//! keeps `disruption.min_available` healthy replicas without it; otherwise
//! the drain waits and says why. When the drain's deadline passes, what is
//! left stops: a replacement is taken as it is, a replica without one
//! stops. Every wait is said in the drain's status.

use std::collections::{BTreeMap, HashMap};

use super::moves::{Inputs, Step};
use crate::db::apps::PlacementRow;
use crate::db::drains;

/// `row` stopped by the drain of `node`: pending, saying why.
pub fn stopped(row: &PlacementRow, node: &str, reason: &str) -> PlacementRow {
    PlacementRow {
        node: None,
        placement_id: None,
        address: None,
        reason: Some(format!("stopped by the drain of {node}: {reason}")),
        ..row.clone()
    }
}

/// Each active drain's state and status after `step`.
pub fn progress(
    input: &Inputs<'_>,
    step: &Step,
    waits: &BTreeMap<String, Vec<String>>,
) -> Vec<(String, &'static str, String)> {
    let after: HashMap<(&str, u32), &PlacementRow> = step
        .upsert
        .iter()
        .map(|r| ((r.app.as_str(), r.replica), r))
        .collect();
    let mut out = Vec::new();
    for (node, drain) in input.drains {
        let left = input
            .rows
            .iter()
            .map(|r| {
                after
                    .get(&(r.app.as_str(), r.replica))
                    .copied()
                    .unwrap_or(r)
            })
            .filter(|r| r.node.as_deref() == Some(node.as_str()))
            .count();
        let past_deadline = drain
            .deadline_at_us
            .is_some_and(|deadline| input.now_us >= deadline);
        let (state, status) = if left == 0 && past_deadline {
            (
                drains::STOPPED,
                "the deadline passed: what was left was stopped; no replica left".to_owned(),
            )
        } else if left == 0 {
            (drains::DONE, "drained: no replica left".to_owned())
        } else {
            let said = waits.get(node).map(|w| w.join("; ")).unwrap_or_default();
            (drains::DRAINING, format!("{left} replica(s) left: {said}"))
        };
        out.push((node.clone(), state, status));
    }
    out
}
