//! A replica's health as its node's last report says it: healthy by its
//! container's healthcheck or the app's probe, or running when it has
//! neither (then running is as healthy as anyone can tell). Drains,
//! updates and their gates all ask here.

use std::collections::HashMap;

use super::placements::container_name;
use crate::db::apps::ReplicaStateRow;

/// Reported states by (node, container).
pub type States = HashMap<(String, String), ReplicaStateRow>;

/// The container of `app`'s replica `replica` placed as `id` on `node`.
pub struct Container<'a> {
    pub app: &'a str,
    pub replica: u32,
    pub node: &'a str,
    pub id: &'a str,
}

impl Container<'_> {
    fn reported<'s>(&self, states: &'s States) -> Option<&'s ReplicaStateRow> {
        let name = container_name(self.app, self.replica, self.id);
        states.get(&(self.node.to_owned(), name))
    }

    pub fn name(&self) -> String {
        container_name(self.app, self.replica, self.id)
    }

    /// Whether the last report calls it healthy.
    pub fn is_healthy(&self, states: &States, has_check: bool) -> bool {
        self.reported(states)
            .is_some_and(|s| healthy_state(&s.state, has_check))
    }

    /// What the last report says of it (`not reported yet` before one).
    pub fn said(&self, states: &States) -> String {
        self.reported(states)
            .map_or_else(|| "not reported yet".to_owned(), |s| s.state.clone())
    }

    /// How long it has been healthy, in seconds, when it is; counted from
    /// the time its node says it became so, else from `placed_us`.
    pub fn healthy_secs(
        &self,
        states: &States,
        has_check: bool,
        placed_us: i64,
        now_us: i64,
    ) -> Option<u64> {
        let state = self.reported(states)?;
        if !healthy_state(&state.state, has_check) {
            return None;
        }
        let since = state
            .since
            .as_deref()
            .and_then(|s| s.parse::<jiff::Timestamp>().ok())
            .map_or(placed_us, |t| t.as_microsecond());
        Some(u64::try_from((now_us - since).max(0) / 1_000_000).unwrap_or(0))
    }
}

fn healthy_state(state: &str, has_check: bool) -> bool {
    state == "healthy" || (state == "running" && !has_check)
}

/// Microseconds since the epoch of an RFC 3339 time, 0 when unreadable.
pub fn micros(at: &str) -> i64 {
    at.parse::<jiff::Timestamp>()
        .map_or(0, jiff::Timestamp::as_microsecond)
}
