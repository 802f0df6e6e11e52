//! A run report: what the agent did to a node, resource by resource.
//!
//! The agent builds it, spools it on disk when the server is away, and posts
//! it; the server stores it whole. `run_id` makes a re-post idempotent.

use serde::{Deserialize, Serialize};

use crate::model::ResourceId;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Unique per run (a UUID); the server stores a run_id once.
    pub run_id: String,
    pub node: String,
    pub environment: String,
    pub commit: String,
    pub catalog_version: String,
    pub noop: bool,
    pub started_at: jiff::Timestamp,
    pub finished_at: jiff::Timestamp,
    pub status: RunStatus,
    pub cached_catalog: CachedCatalog,
    /// Why the run could not use a fresh catalog, or why it stopped early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub agent_version: String,
    pub resources: Vec<ResourceReport>,
}

impl Report {
    /// The run status that the resource statuses add up to.
    pub fn summarize(resources: &[ResourceReport]) -> RunStatus {
        let mut status = RunStatus::Unchanged;
        for r in resources {
            match r.status {
                ResourceStatus::Failed | ResourceStatus::Skipped => return RunStatus::Failed,
                ResourceStatus::Changed | ResourceStatus::Noop => status = RunStatus::Changed,
                ResourceStatus::Unchanged => {}
            }
        }
        status
    }

    /// Exit code of `run --detailed-exitcodes` and `apply`: 0 nothing changed,
    /// 2 changed (or would, in noop), 4 failures, 6 both.
    pub fn exit_code(&self) -> i32 {
        let changed = self
            .resources
            .iter()
            .any(|r| matches!(r.status, ResourceStatus::Changed | ResourceStatus::Noop));
        let failed = self
            .resources
            .iter()
            .any(|r| matches!(r.status, ResourceStatus::Failed | ResourceStatus::Skipped));
        i32::from(changed) * 2 + i32::from(failed) * 4
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Unchanged,
    Changed,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Unchanged => "unchanged",
            RunStatus::Changed => "changed",
            RunStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CachedCatalog {
    /// The catalog came fresh from the server (or from a local path).
    NotUsed,
    /// The server could not be reached or failed; the last good catalog was applied.
    OnFailure,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceReport {
    pub id: ResourceId,
    pub status: ResourceStatus,
    /// The change repaired drift from a desired state that had not changed.
    #[serde(default)]
    pub corrective: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<Event>,
    /// Unified diff of file content (absent for sensitive resources).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether a refresh (restart, refreshonly exec) was sent to this resource.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub refreshed: bool,
    pub duration_ms: f64,
}

impl ResourceReport {
    /// A resource with `status` and nothing else to say yet.
    pub fn new(id: ResourceId, status: ResourceStatus) -> ResourceReport {
        ResourceReport {
            id,
            status,
            corrective: false,
            events: Vec::new(),
            diff: None,
            error: None,
            refreshed: false,
            duration_ms: 0.0,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    Unchanged,
    Changed,
    Failed,
    /// Not tried because something it requires failed or was skipped.
    Skipped,
    /// Would change, but the run or resource is in noop.
    Noop,
}

/// One property that differed: `content`, `mode`, `owner`, `ensure`, `target`...
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub property: String,
    /// `None` when the resource did not exist.
    pub previous: Option<String>,
    pub desired: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
