//! Replicas of apps: the containers the server's scheduler writes into a
//! node's catalog, labelled `drover.app`, `drover.replica` and
//! `drover.placement`. The container kind converges them like any other;
//! once the walk is done this module
//!
//! - removes the replicas of this node that the catalog no longer holds (the
//!   scheduler placed them elsewhere, e.g. while this node was lost), each
//!   reported as a resource of its own, and
//! - reports the state of every replica the catalog holds, for the
//!   scheduler's control loop: the engine's view of it, or for a running
//!   replica with an app's `health` probe, the probe's (`verdicts.rs`).
//!
//! Only a container with both `drover.app` and this node's `drover.node` is
//! ever removed: one without `drover.app` is a plain catalog container, one
//! with another node's name belongs to another agent sharing the engine.
//! The engine is listed only when its socket is there, and an engine that
//! cannot be reached is skipped quietly: the catalog's own container
//! resources already fail when they need it.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use bollard::models::{ContainerInspectResponse, ContainerState, HealthStatusEnum};
use drover_catalog::model::{ContainerSpec, Kind};
use drover_catalog::report::{Event, ReplicaReport, ReplicaState, ResourceReport, ResourceStatus};
use drover_catalog::{Catalog, ResourceId, Spec};
use jiff::Timestamp;

use super::Containers;
use super::desired::{LABEL_NODE, LABEL_RESOURCE};
use super::docker::{Docker, Listed};
/// Where, in the state directory, the replicas' probe verdicts are kept.
pub(crate) use super::verdicts::FILE_NAME as PROBE_STATE;
use super::verdicts::Probing;

/// The app a replica container runs.
pub(crate) const LABEL_APP: &str = "drover.app";
/// The replica's index in its app.
pub(crate) const LABEL_REPLICA: &str = "drover.replica";
/// The placement that put the replica on its node.
pub(crate) const LABEL_PLACEMENT: &str = "drover.placement";

/// Docker's `retries` when a healthcheck sets none.
const DEFAULT_RETRIES: i64 = 3;

/// What the replica step of a run came to.
#[derive(Debug, Default)]
pub(crate) struct Replicas {
    /// One per stale replica: removed (`changed`), would be (`noop`), or
    /// not, with why (`failed`, `skipped` when the run stopped first).
    pub removed: Vec<ResourceReport>,
    /// The state of each replica the catalog holds.
    pub states: Vec<ReplicaReport>,
}

/// After the walk: removes this node's stale replicas (only reports them in
/// `noop`), then reads the state of the catalog's. `stop` is asked before
/// each removal, as the engine asks between resources.
pub(crate) fn settle(
    catalog: &Catalog,
    containers: &mut Containers,
    noop: bool,
    stop: impl Fn() -> Option<String>,
) -> Replicas {
    let specs: Vec<&ContainerSpec> = catalog
        .resources
        .iter()
        .filter_map(|r| match &r.spec {
            Spec::Container(spec) => Some(&**spec),
            _ => None,
        })
        .collect();
    let mut probing = Probing::load(containers.probe_state());
    let Some(Ok((docker, node))) = containers.connect_if_present() else {
        return Replicas::default();
    };
    let names: BTreeSet<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    let filter = [LABEL_APP.to_owned(), format!("{LABEL_NODE}={node}")];
    let removed = match docker.list_labelled(&filter) {
        Ok(listed) => stale(&listed, &names, node)
            .into_iter()
            .map(|replica| remove(docker, replica, noop, &stop))
            .collect(),
        Err(e) => {
            crate::output::warning(&format!("stale replicas were not looked for: {e:#}"));
            Vec::new()
        }
    };
    let states = specs
        .into_iter()
        .filter_map(|spec| state_of(docker, node, spec, &mut probing))
        .collect();
    probing.save();
    Replicas { removed, states }
}

/// The listed containers to remove: replicas (`drover.app`) of `node` that
/// are not among the catalog's container names.
pub(super) fn stale<'l>(
    listed: &'l [Listed],
    catalog: &BTreeSet<&str>,
    node: &str,
) -> Vec<&'l Listed> {
    listed
        .iter()
        .filter(|c| {
            c.labels.contains_key(LABEL_APP)
                && c.labels.get(LABEL_NODE).map(String::as_str) == Some(node)
                && !catalog.contains(c.name.as_str())
        })
        .collect()
}

fn remove(
    docker: &Docker,
    replica: &Listed,
    noop: bool,
    stop: &impl Fn() -> Option<String>,
) -> ResourceReport {
    let started = Instant::now();
    let done = match (noop, stop()) {
        (true, _) => Ok(()),
        (false, Some(reason)) => Err((ResourceStatus::Skipped, reason)),
        (false, None) => docker
            .remove(&replica.name)
            .map_err(|e| (ResourceStatus::Failed, format!("{e:#}"))),
    };
    let mut report = removal(replica, noop, done);
    report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    report
}

/// The report of a stale replica's removal: done (or, in `noop`, what
/// would be done), or the status and error it ended with.
fn removal(
    replica: &Listed,
    noop: bool,
    done: Result<(), (ResourceStatus, String)>,
) -> ResourceReport {
    let id = ResourceId::new(Kind::Container, &replica.name);
    let mut report = ResourceReport::new(id, ResourceStatus::Unchanged);
    if let Err((status, error)) = done {
        report.status = status;
        report.error = Some(error);
        return report;
    }
    let (status, did) = match noop {
        true => (ResourceStatus::Noop, "would remove"),
        false => (ResourceStatus::Changed, "removed"),
    };
    let previous = match replica.running {
        true => "running",
        false => "stopped",
    };
    report.status = status;
    report.events = vec![Event {
        property: "ensure".into(),
        previous: Some(previous.into()),
        desired: Some("absent".into()),
        message: Some(format!(
            "{did}: replica {} of app {} is no longer placed on this node",
            label(&replica.labels, LABEL_REPLICA),
            label(&replica.labels, LABEL_APP)
        )),
    }];
    report
}

fn label<'a>(labels: &'a HashMap<String, String>, key: &str) -> &'a str {
    labels.get(key).map_or("?", String::as_str)
}

/// The state of the catalog's container `spec` when it is a replica (its
/// labels name the app and a numeric replica index); `None` for a plain
/// container, or when the engine cannot say. A running replica with an
/// app's probe is as its probe says now (`verdicts.rs`).
fn state_of(
    docker: &Docker,
    node: &str,
    spec: &ContainerSpec,
    probing: &mut Probing,
) -> Option<ReplicaReport> {
    let app = spec.labels.get(LABEL_APP)?;
    let replica = spec.labels.get(LABEL_REPLICA)?.parse().ok()?;
    let resource = ResourceId::new(Kind::Container, &spec.name).to_string();
    let (state, since) = match docker.inspect(&spec.name) {
        Ok(Some(c)) if is_ours(&c, node, &resource) => spec
            .probe
            .as_ref()
            .and_then(|probe| probing.state(&spec.name, &c, probe))
            .unwrap_or_else(|| observed(c)),
        Ok(_) => (ReplicaState::Missing, None),
        Err(e) => {
            crate::output::warning(&format!(
                "the state of replica {} is unknown: {e:#}",
                spec.name
            ));
            return None;
        }
    };
    Some(ReplicaReport {
        container: spec.name.clone(),
        app: app.clone(),
        replica,
        placement: spec
            .labels
            .get(LABEL_PLACEMENT)
            .cloned()
            .unwrap_or_default(),
        state,
        since,
    })
}

/// A container of the replica's name that drover did not make for it on
/// this node is not the replica (its resource failed on it).
fn is_ours(c: &ContainerInspectResponse, node: &str, resource: &str) -> bool {
    let labels = c.config.as_ref().and_then(|c| c.labels.as_ref());
    let get = |key| labels.and_then(|l| l.get(key)).map(String::as_str);
    get(LABEL_NODE) == Some(node) && get(LABEL_RESOURCE) == Some(resource)
}

fn observed(c: ContainerInspectResponse) -> (ReplicaState, Option<Timestamp>) {
    let retries = c
        .config
        .and_then(|c| c.healthcheck)
        .and_then(|h| h.retries)
        .filter(|r| *r > 0)
        .unwrap_or(DEFAULT_RETRIES);
    replica_state(&c.state.unwrap_or_default(), retries)
}

/// The replica's state from the engine's `State`, and since when: the
/// start of a running container, the end of an exited one, and for a
/// health verdict the probe that made it (the first success of the last
/// run of successes; the failure that brought the failing streak to the
/// check's `retries`). When the engine's short probe log no longer holds
/// that probe, its oldest probe of the streak (later than the real change,
/// never earlier), else the start.
pub(super) fn replica_state(
    state: &ContainerState,
    retries: i64,
) -> (ReplicaState, Option<Timestamp>) {
    let running = state.running == Some(true) && state.restarting != Some(true);
    if !running {
        return (
            ReplicaState::Exited,
            timestamp(state.finished_at.as_deref()),
        );
    }
    let started = timestamp(state.started_at.as_deref());
    let health = state.health.as_ref();
    let log = health.and_then(|h| h.log.as_deref()).unwrap_or_default();
    // Newest first: the probes with the outcome the status shows.
    let streak = |passed: bool| {
        log.iter()
            .rev()
            .take_while(move |p| (p.exit_code == Some(0)) == passed)
            .map(|p| timestamp(p.end.as_deref()))
    };
    match health.and_then(|h| h.status) {
        Some(HealthStatusEnum::HEALTHY) => {
            let since = streak(true).last().flatten();
            (ReplicaState::Healthy, since.or(started))
        }
        Some(HealthStatusEnum::UNHEALTHY) => {
            let failures: Vec<Option<Timestamp>> = streak(false).collect();
            let failing = health.and_then(|h| h.failing_streak).unwrap_or(0);
            // failures[i] brought the streak to `failing - i`.
            let turned = usize::try_from(failing - retries)
                .ok()
                .and_then(|i| failures.get(i))
                .or(failures.last())
                .copied()
                .flatten();
            (ReplicaState::Unhealthy, turned.or(started))
        }
        _ => (ReplicaState::Running, started),
    }
}

/// The engine's time, `None` for its zero time (`0001-01-01T00:00:00Z`:
/// never started, never finished) or none at all.
fn timestamp(text: Option<&str>) -> Option<Timestamp> {
    text?
        .parse::<Timestamp>()
        .ok()
        .filter(|t| *t > Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use bollard::models::{Health, HealthcheckResult};

    use super::*;

    const NODE: &str = "web-1";
    const STARTED: &str = "2025-01-01T10:00:00.5Z";

    fn at(text: &str) -> Option<Timestamp> {
        Some(text.parse().unwrap())
    }

    fn running(health: Option<Health>) -> ContainerState {
        ContainerState {
            running: Some(true),
            started_at: Some(STARTED.into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            health,
            ..Default::default()
        }
    }

    /// Probes ending at 10:01, 10:02... with these exit codes.
    fn health(status: HealthStatusEnum, failing: i64, codes: &[i64]) -> Option<Health> {
        let log = codes
            .iter()
            .enumerate()
            .map(|(i, code)| HealthcheckResult {
                exit_code: Some(*code),
                end: Some(format!("2025-01-01T10:{:02}:00.123456789+00:00", i + 1)),
                ..Default::default()
            })
            .collect();
        Some(Health {
            status: Some(status),
            failing_streak: Some(failing),
            log: Some(log),
        })
    }

    #[test]
    fn running_without_a_check_or_still_starting_is_running_since_its_start() {
        assert_eq!(
            replica_state(&running(None), 3),
            (ReplicaState::Running, at(STARTED))
        );
        let starting = health(HealthStatusEnum::STARTING, 1, &[1]);
        assert_eq!(
            replica_state(&running(starting), 3),
            (ReplicaState::Running, at(STARTED))
        );
    }

    #[test]
    fn healthy_since_the_first_success_of_its_last_run_of_successes() {
        let state = running(health(HealthStatusEnum::HEALTHY, 0, &[0, 1, 0, 0]));
        assert_eq!(
            replica_state(&state, 3),
            (ReplicaState::Healthy, at("2025-01-01T10:03:00.123456789Z"))
        );
        // Every probe the log keeps passed: the oldest, never earlier.
        let state = running(health(HealthStatusEnum::HEALTHY, 0, &[0, 0, 0, 0, 0]));
        assert_eq!(
            replica_state(&state, 3).1,
            at("2025-01-01T10:01:00.123456789Z")
        );
        // No probe logged yet: the start.
        let state = running(health(HealthStatusEnum::HEALTHY, 0, &[]));
        assert_eq!(
            replica_state(&state, 3),
            (ReplicaState::Healthy, at(STARTED))
        );
    }

    #[test]
    fn unhealthy_since_the_failure_that_reached_the_retries() {
        // Five failures in a row with retries 3: the third made it unhealthy.
        let state = running(health(HealthStatusEnum::UNHEALTHY, 5, &[0, 1, 1, 1, 1, 1]));
        assert_eq!(
            replica_state(&state, 3),
            (
                ReplicaState::Unhealthy,
                at("2025-01-01T10:04:00.123456789Z")
            )
        );
        // A streak longer than the log: the oldest failure it keeps.
        let state = running(health(HealthStatusEnum::UNHEALTHY, 9, &[1, 1, 1, 1, 1]));
        assert_eq!(
            replica_state(&state, 3).1,
            at("2025-01-01T10:01:00.123456789Z")
        );
    }

    #[test]
    fn not_running_or_restarting_is_exited_since_it_finished() {
        let exited = ContainerState {
            running: Some(false),
            started_at: Some(STARTED.into()),
            finished_at: Some("2025-01-01T11:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(
            replica_state(&exited, 3),
            (ReplicaState::Exited, at("2025-01-01T11:00:00Z"))
        );
        let restarting = ContainerState {
            running: Some(true),
            restarting: Some(true),
            ..exited
        };
        assert_eq!(replica_state(&restarting, 3).0, ReplicaState::Exited);
        // Created, never started: the engine's zero times are no time.
        let created = ContainerState {
            running: Some(false),
            started_at: Some("0001-01-01T00:00:00Z".into()),
            finished_at: Some("0001-01-01T00:00:00Z".into()),
            ..Default::default()
        };
        assert_eq!(replica_state(&created, 3), (ReplicaState::Exited, None));
    }

    fn listed(name: &str, labels: &[(&str, &str)]) -> Listed {
        Listed {
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            running: true,
        }
    }

    #[test]
    fn only_this_nodes_replicas_missing_from_the_catalog_are_stale() {
        let listed = [
            listed("web-0-a", &[(LABEL_APP, "web"), (LABEL_NODE, NODE)]),
            listed("web-1-b", &[(LABEL_APP, "web"), (LABEL_NODE, NODE)]),
            listed("web-2-c", &[(LABEL_APP, "web"), (LABEL_NODE, "web-2")]),
            listed("plain", &[(LABEL_NODE, NODE)]),
            listed("by-hand", &[(LABEL_APP, "web")]),
        ];
        let catalog = BTreeSet::from(["web-0-a", "other"]);
        let names: Vec<&str> = stale(&listed, &catalog, NODE)
            .into_iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["web-1-b"]);
        assert!(stale(&listed, &BTreeSet::new(), "web-3").is_empty());
    }

    #[test]
    fn a_removal_says_which_replica_went_and_why() {
        let mut replica = listed("web-1-b", &[(LABEL_APP, "web"), (LABEL_REPLICA, "1")]);
        let report = removal(&replica, false, Ok(()));
        assert_eq!(report.id.to_string(), "container:web-1-b");
        assert_eq!(report.status, ResourceStatus::Changed);
        let event = &report.events[0];
        assert_eq!(
            (event.previous.as_deref(), event.desired.as_deref()),
            (Some("running"), Some("absent"))
        );
        assert_eq!(
            event.message.as_deref(),
            Some("removed: replica 1 of app web is no longer placed on this node")
        );
        replica.running = false;
        let report = removal(&replica, true, Ok(()));
        assert_eq!(report.status, ResourceStatus::Noop);
        assert_eq!(report.events[0].previous.as_deref(), Some("stopped"));
        assert!(
            report.events[0]
                .message
                .as_deref()
                .unwrap()
                .starts_with("would remove: replica 1 of app web")
        );
        let failed = removal(
            &replica,
            false,
            Err((ResourceStatus::Failed, "cannot remove".into())),
        );
        assert_eq!(failed.status, ResourceStatus::Failed);
        assert_eq!(failed.error.as_deref(), Some("cannot remove"));
        assert!(failed.events.is_empty());
    }

    #[test]
    fn no_socket_means_no_engine_and_no_attempt() {
        let mut containers =
            Containers::new(std::path::Path::new("/nonexistent/docker.sock"), NODE);
        assert!(containers.connect_if_present().is_none());
        let replicas = settle(&catalog_with_a_replica(), &mut containers, false, || None);
        assert!(replicas.removed.is_empty() && replicas.states.is_empty());
    }

    fn catalog_with_a_replica() -> Catalog {
        let replica: drover_catalog::Resource = serde_json::from_value(serde_json::json!({
            "id": "container:web-0-a",
            "kind": "container",
            "name": "web-0-a",
            "image": "nginx",
            "labels": {LABEL_APP: "web", LABEL_REPLICA: "0", LABEL_PLACEMENT: "a"},
        }))
        .unwrap();
        let resources = vec![replica];
        Catalog {
            node: NODE.into(),
            environment: "production".into(),
            commit: "c".into(),
            version: Catalog::compute_version(&resources),
            resources,
            contents: Default::default(),
        }
    }
}
