//! The priorities: a score in 0..=1 per feasible node, times its weight.
//! Every allocation score looks at the node *after* the replica is placed,
//! over the dimensions the node has (a capacity of 0, a fact the agent did
//! not report, leaves that dimension out).
//!
//! `spread` is normalised between the feasible domains (values of the
//! app's spread label, or nodes) holding the fewest and the most of the
//! app's replicas: `(max - count) / (max - min)`, 1 everywhere when they
//! are equal. Kubernetes' `(max - count) / max` shrinks with the app's
//! size (a domain one replica behind scores 1/10 at ten per zone), so a
//! slightly emptier node in a fuller zone can win and the zones drift
//! apart. With this normalisation a node in a domain at the minimum
//! outscores every node in a domain at the maximum by the full weight of
//! `spread`, and that is enough to keep every app within one replica of
//! even whenever each domain has a feasible node:
//!
//! - `least_allocated` + `balanced_allocation` lies in [1/3, 2]: when all
//!   present dimensions are full, cpu and memory use are equal and
//!   `balanced` is 1; the least is cpu empty, memory and disk full.
//! - So with the default weights (1, 1, spread 2) a node in a minimum
//!   domain totals at least 2 + 1/3 and one in a maximum domain at most 2:
//!   when the domains are one apart the replica goes to a behind domain,
//!   when they are even any choice leaves them one apart at most.
//! - In general the guarantee holds when spread's weight exceeds the sum
//!   of the weights of `least_allocated`, `most_allocated` and
//!   `balanced_allocation` (and `stay` does not apply, i.e. the replica
//!   has no feasible previous node: `stay` is meant to win).

use super::Priority;
use super::fleet::Fleet;

/// What a node's score depends on beyond the node itself.
#[derive(Debug, Clone, Copy)]
pub(super) struct Context {
    /// The fewest and most of the app's replicas in one domain, over the
    /// domains of the feasible nodes.
    pub spread_min: u32,
    pub spread_max: u32,
    /// The node the replica was on, if it is being placed again.
    pub previous: Option<usize>,
}

impl Fleet<'_> {
    /// The weighted sum of the policy's priorities, in the policy's order.
    #[inline]
    pub(super) fn total(&self, app: usize, node: usize, ctx: &Context) -> f64 {
        let used = self.used_after(app, node);
        let mut total = 0.0;
        for &(priority, weight) in &self.policy.priorities {
            total += f64::from(weight) * self.score(priority, app, node, ctx, &used);
        }
        total
    }

    /// Each weighted score and their sum: the same arithmetic as
    /// [`Fleet::total`], so the sum is the one the node was ranked by.
    pub(super) fn breakdown(
        &self,
        app: usize,
        node: usize,
        ctx: &Context,
    ) -> (Vec<(Priority, f64)>, f64) {
        let used = self.used_after(app, node);
        let mut total = 0.0;
        let scores = self
            .policy
            .priorities
            .iter()
            .map(|&(priority, weight)| {
                let s = f64::from(weight) * self.score(priority, app, node, ctx, &used);
                total += s;
                (priority, s)
            })
            .collect();
        (scores, total)
    }

    /// Per dimension, the used fraction once the replica is placed
    /// (clamped to 1), or `None` where the node has no capacity.
    #[inline]
    fn used_after(&self, app: usize, node: usize) -> [Option<f64>; 3] {
        let (used, req, inv) = (&self.used[node], &self.req[app], &self.inv_cap[node]);
        std::array::from_fn(|d| {
            (inv[d] > 0.0).then(|| ((used[d].saturating_add(req[d])) as f64 * inv[d]).min(1.0))
        })
    }

    #[inline]
    fn score(
        &self,
        priority: Priority,
        app: usize,
        node: usize,
        ctx: &Context,
        used: &[Option<f64>; 3],
    ) -> f64 {
        match priority {
            Priority::LeastAllocated => mean(used.iter().flatten().map(|u| 1.0 - u)),
            Priority::MostAllocated => mean(used.iter().flatten().copied()),
            Priority::BalancedAllocation => match (used[0], used[1]) {
                (Some(cpu), Some(memory)) => 1.0 - (cpu - memory).abs(),
                _ => 1.0,
            },
            Priority::Spread => {
                let (min, max) = (ctx.spread_min, ctx.spread_max);
                if max <= min {
                    1.0
                } else {
                    let count = self.domain_count(app, node).clamp(min, max);
                    f64::from(max - count) / f64::from(max - min)
                }
            }
            Priority::Stay => {
                if ctx.previous == Some(node) {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }
}

/// The mean, or 0 for no values (a node with no capacity at all).
#[inline]
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = values.fold((0.0, 0u32), |(s, n), v| (s + v, n + 1));
    if n == 0 { 0.0 } else { sum / f64::from(n) }
}
