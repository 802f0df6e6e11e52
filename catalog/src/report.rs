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
    /// The server's compile error when it served the node's last good
    /// catalog because the current commit does not compile for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
    #[serde(default)]
    pub agent_version: String,
    /// The server this run talked to (the first of the agent's server list
    /// that answered); absent in reports of agents before 0.2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    pub resources: Vec<ResourceReport>,
    /// The state of each replica of an app the catalog places on this node
    /// (its container resources labelled `drover.app`), as the container
    /// engine saw them once the run converged; absent when there is none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replicas: Vec<ReplicaReport>,
    /// `run --tags`: the run converged only the resources with one of
    /// these tags (or ids) and what they require; empty for a whole run.
    /// Such a run says nothing of the rest, its replicas included.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// What the run cost and what it did, measured by the agent.
    #[serde(default)]
    pub metrics: RunMetrics,
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
    /// 2 changed (or would, in noop), 4 failures, 6 both. A run that could
    /// not use a fresh catalog (the cached one applied, or the server's last
    /// good one because the commit does not compile) failed too: it
    /// converged, but not to what the repository says now.
    pub fn exit_code(&self) -> i32 {
        let changed = self
            .resources
            .iter()
            .any(|r| matches!(r.status, ResourceStatus::Changed | ResourceStatus::Noop));
        let failed = self
            .resources
            .iter()
            .any(|r| matches!(r.status, ResourceStatus::Failed | ResourceStatus::Skipped));
        let stale = self.cached_catalog == CachedCatalog::OnFailure || self.catalog_error.is_some();
        i32::from(changed) * 2 + i32::from(failed || stale) * 4
    }
}

/// The run's own measurements. Reports of agents older than these metrics
/// have none, and decode with zeros.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunMetrics {
    /// The whole run, from start to the report being built (ms).
    pub duration_ms: f64,
    /// Time spent gathering facts (ms); 0 when the phase did not happen.
    #[serde(default)]
    pub facts_ms: f64,
    /// Time spent fetching (or loading, or compiling) the catalog and
    /// fetching the file contents it references (ms).
    #[serde(default)]
    pub catalog_ms: f64,
    /// Time spent converging, file content fetches excluded (ms).
    #[serde(default)]
    pub apply_ms: f64,
    #[serde(default)]
    pub resources: ResourceCounts,
    /// How the run checked managed file contents.
    #[serde(default)]
    pub files: FileChecks,
}

/// How a run checked the contents of its managed files: read and hashed,
/// or vouched for by the agent's metadata cache without being read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileChecks {
    /// Files whose content was read and hashed.
    pub hashed: u64,
    /// Files whose unchanged metadata (inode, size, mtime, ctime) vouched for their content.
    pub trusted: u64,
    /// The run ignored the cache and hashed every file (the periodic full verification).
    pub full_verification: bool,
}

/// How many resources ended in each status; `corrective` counts the changed
/// (or noop) ones that repaired drift, so it overlaps `changed` and `noop`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceCounts {
    pub total: u64,
    pub unchanged: u64,
    pub changed: u64,
    pub failed: u64,
    pub skipped: u64,
    pub noop: u64,
    pub corrective: u64,
}

impl ResourceCounts {
    pub fn of(resources: &[ResourceReport]) -> ResourceCounts {
        let mut counts = ResourceCounts::default();
        for r in resources {
            counts.total += 1;
            *counts.status_mut(r.status) += 1;
            counts.corrective += u64::from(r.corrective);
        }
        counts
    }

    /// The count of one status.
    pub fn of_status(&self, status: ResourceStatus) -> u64 {
        match status {
            ResourceStatus::Unchanged => self.unchanged,
            ResourceStatus::Changed => self.changed,
            ResourceStatus::Failed => self.failed,
            ResourceStatus::Skipped => self.skipped,
            ResourceStatus::Noop => self.noop,
        }
    }

    fn status_mut(&mut self, status: ResourceStatus) -> &mut u64 {
        match status {
            ResourceStatus::Unchanged => &mut self.unchanged,
            ResourceStatus::Changed => &mut self.changed,
            ResourceStatus::Failed => &mut self.failed,
            ResourceStatus::Skipped => &mut self.skipped,
            ResourceStatus::Noop => &mut self.noop,
        }
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

impl ResourceStatus {
    /// Every status, in the order reports and metrics list them.
    pub const ALL: [ResourceStatus; 5] = [
        ResourceStatus::Unchanged,
        ResourceStatus::Changed,
        ResourceStatus::Failed,
        ResourceStatus::Skipped,
        ResourceStatus::Noop,
    ];

    /// The name in reports (`unchanged`, `noop`...).
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceStatus::Unchanged => "unchanged",
            ResourceStatus::Changed => "changed",
            ResourceStatus::Failed => "failed",
            ResourceStatus::Skipped => "skipped",
            ResourceStatus::Noop => "noop",
        }
    }
}

/// One replica of an app on this node, as its container is after the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplicaReport {
    /// The container resource's name (`APP-REPLICA-ID`).
    pub container: String,
    /// Its `drover.app` label.
    pub app: String,
    /// Its `drover.replica` label: the replica's index in the app.
    pub replica: u32,
    /// Its `drover.placement` label: the placement that put it here.
    pub placement: String,
    pub state: ReplicaState,
    /// When it entered `state`, as far as the engine tells (for a probed
    /// replica, the first report that saw its probe's current verdict);
    /// `None` when it does not (a missing container).
    #[serde(default)]
    pub since: Option<jiff::Timestamp>,
}

/// A replica's container as the engine reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplicaState {
    /// Running, with no healthcheck or one still starting (and no probe).
    Running,
    /// Running, and its healthcheck passes, or its app's probe when it has one.
    Healthy,
    /// Running, and its healthcheck fails, or its app's probe when it has one.
    Unhealthy,
    /// Created or stopped, not running.
    Exited,
    /// In the catalog, but no such container (a noop run, a failed create).
    Missing,
}

impl ReplicaState {
    /// Every state, in the order reports list them.
    pub const ALL: [ReplicaState; 5] = [
        ReplicaState::Running,
        ReplicaState::Healthy,
        ReplicaState::Unhealthy,
        ReplicaState::Exited,
        ReplicaState::Missing,
    ];

    /// The state as reports and the API spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            ReplicaState::Running => "running",
            ReplicaState::Healthy => "healthy",
            ReplicaState::Unhealthy => "unhealthy",
            ReplicaState::Exited => "exited",
            ReplicaState::Missing => "missing",
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A report as agents posted it before `metrics` (and `catalog_error`).
    const OLD_REPORT: &str = r#"{"run_id":"r","node":"n","environment":"production","commit":"c",
        "catalog_version":"v","noop":false,"started_at":"2024-05-01T10:00:00Z",
        "finished_at":"2024-05-01T10:00:01Z","status":"unchanged",
        "cached_catalog":"not_used","agent_version":"0.1.0","resources":[]}"#;

    #[test]
    fn a_report_from_before_metrics_decodes_with_zeros() {
        let report: Report = serde_json::from_str(OLD_REPORT).unwrap();
        assert_eq!(report.metrics, RunMetrics::default());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["metrics"]["duration_ms"], 0.0);
        assert_eq!(json["metrics"]["resources"]["failed"], 0);
        // Only the whole-run duration is required once `metrics` is there.
        let partial: RunMetrics = serde_json::from_str(r#"{"duration_ms": 12.5}"#).unwrap();
        assert_eq!(partial.duration_ms, 12.5);
        assert_eq!(partial.resources, ResourceCounts::default());
    }

    #[test]
    fn every_float_reads_back_as_written() {
        // One ulp apart without serde_json's float_roundtrip (the fuzzer's find).
        let mut report: Report = serde_json::from_str(
            r#"{"run_id":"r","node":"n","environment":"e","commit":"c",
            "catalog_version":"v","noop":false,"started_at":"2025-01-01T00:00:00Z",
            "finished_at":"2025-01-01T00:00:01Z","status":"unchanged",
            "cached_catalog":"not_used","resources":[]}"#,
        )
        .unwrap();
        report.metrics.duration_ms = 1.333_333_333_333_333_5e110;
        let json = serde_json::to_string(&report).unwrap();
        let again: Report = serde_json::from_str(&json).unwrap();
        assert_eq!(
            again.metrics.duration_ms.to_bits(),
            report.metrics.duration_ms.to_bits()
        );
        assert_eq!(serde_json::to_string(&again).unwrap(), json);
    }

    #[test]
    fn a_run_without_a_fresh_catalog_carries_the_failure_bit() {
        let fresh: Report = serde_json::from_str(OLD_REPORT).unwrap();
        assert_eq!(fresh.exit_code(), 0);
        let cached = Report {
            cached_catalog: CachedCatalog::OnFailure,
            ..fresh.clone()
        };
        assert_eq!(cached.exit_code(), 4);
        let last_good = Report {
            catalog_error: Some("roles/web.toml:3:9: unknown key `pth`".into()),
            resources: vec![ResourceReport::new(
                ResourceId::try_from("file:/a".to_owned()).unwrap(),
                ResourceStatus::Changed,
            )],
            ..fresh
        };
        assert_eq!(last_good.exit_code(), 6);
    }

    #[test]
    fn counts_add_up_by_status_and_corrective_overlaps() {
        let id = |n: &str| ResourceId::try_from(format!("file:/{n}")).unwrap();
        let mut repaired = ResourceReport::new(id("a"), ResourceStatus::Changed);
        repaired.corrective = true;
        let resources = [
            repaired,
            ResourceReport::new(id("b"), ResourceStatus::Changed),
            ResourceReport::new(id("c"), ResourceStatus::Failed),
            ResourceReport::new(id("d"), ResourceStatus::Skipped),
            ResourceReport::new(id("e"), ResourceStatus::Noop),
            ResourceReport::new(id("f"), ResourceStatus::Unchanged),
        ];
        let counts = ResourceCounts::of(&resources);
        assert_eq!(
            counts,
            ResourceCounts {
                total: 6,
                unchanged: 1,
                changed: 2,
                failed: 1,
                skipped: 1,
                noop: 1,
                corrective: 1,
            }
        );
        let by_status: u64 = ResourceStatus::ALL
            .iter()
            .map(|s| counts.of_status(*s))
            .sum();
        assert_eq!(by_status, counts.total);
    }

    #[test]
    fn replicas_are_left_out_when_there_are_none_and_read_back_when_there_are() {
        let mut report: Report = serde_json::from_str(OLD_REPORT).unwrap();
        assert!(report.replicas.is_empty());
        let json = serde_json::to_value(&report).unwrap();
        assert!(json.get("replicas").is_none(), "{json}");
        report.replicas = vec![ReplicaReport {
            container: "web-0-p1".into(),
            app: "web".into(),
            replica: 0,
            placement: "p1".into(),
            state: ReplicaState::Healthy,
            since: Some("2025-01-01T00:00:00Z".parse().unwrap()),
        }];
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["replicas"][0]["state"], "healthy");
        assert_eq!(json["replicas"][0]["since"], "2025-01-01T00:00:00Z");
        let again: Report = serde_json::from_value(json).unwrap();
        assert_eq!(again, report);
    }

    #[test]
    fn status_names_are_the_serialized_ones() {
        for status in ResourceStatus::ALL {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                status.as_str(),
                "{status:?}"
            );
        }
    }
}
