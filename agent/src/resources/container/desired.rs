//! What the catalog asks for, in the engine's terms: the create body, the
//! labels that mark the container as drover's, and the spec hash that tells
//! whether an existing container was made from this same spec.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Result, anyhow};
use bollard::models::{
    ContainerCreateBody, HealthConfig, HostConfig, PortBinding, RestartPolicy as ApiRestart,
    RestartPolicyNameEnum,
};
use drover_catalog::container::{Mount, MountSource, PortMapping, RestartPolicy};
use drover_catalog::model::{ContainerEnsure, ContainerSpec, sha256_hex};
use serde_json::Value;

/// The node the container belongs to.
pub(super) const LABEL_NODE: &str = "drover.node";
/// The resource id (`container:NAME`) that manages it.
pub(super) const LABEL_RESOURCE: &str = "drover.resource";
/// sha256 of [`LABEL_DESIRED`]: equal means made from this spec.
pub(super) const LABEL_SPEC: &str = "drover.spec";
/// The spec it was made from (JSON), so a recreate can say which fields changed.
pub(super) const LABEL_DESIRED: &str = "drover.desired";

const NANOS_PER_SEC: i64 = 1_000_000_000;

pub(super) struct Desired {
    pub body: ContainerCreateBody,
    /// The spec the container is made from, as stored in [`LABEL_DESIRED`].
    pub shape: String,
    pub hash: String,
    /// Limits `docker update` can change on a live container, checked
    /// against it directly (the labels cannot see such a change).
    pub memory: i64,
    pub nano_cpus: i64,
    pub restart: RestartPolicy,
}

/// The parts of the spec a container is created from: not `ensure` (a
/// state, not a shape), not where the image came from, and not an app's
/// probe (the agent's, not the engine's: a new probe recreates nothing).
fn shape(spec: &ContainerSpec) -> String {
    let shape = ContainerSpec {
        ensure: ContainerEnsure::Running,
        image_archive: None,
        probe: None,
        ..spec.clone()
    };
    serde_json::to_string(&shape).expect("a container spec serializes")
}

pub(super) fn desired(spec: &ContainerSpec, node: &str, resource: &str) -> Result<Desired> {
    let shape = shape(spec);
    let hash = sha256_hex(shape.as_bytes());
    let restart = match &spec.restart {
        Some(text) => RestartPolicy::parse(text).map_err(|e| anyhow!("invalid `restart`: {e}"))?,
        None => RestartPolicy::default(),
    };
    let memory = spec.memory_bytes.map_or(0, |b| b as i64);
    let nano_cpus = spec.millicpus.map_or(0, |m| m as i64 * 1_000_000);

    let mut labels: HashMap<String, String> = spec.labels.clone().into_iter().collect();
    labels.insert(LABEL_NODE.into(), node.into());
    labels.insert(LABEL_RESOURCE.into(), resource.into());
    labels.insert(LABEL_SPEC.into(), hash.clone());
    labels.insert(LABEL_DESIRED.into(), shape.clone());

    let (exposed, bindings) = ports(&spec.ports)?;
    let host_config = HostConfig {
        binds: Some(binds(&spec.volumes)?),
        port_bindings: Some(bindings),
        restart_policy: Some(api_restart(restart)),
        memory: Some(memory),
        nano_cpus: Some(nano_cpus),
        network_mode: spec.network.clone(),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        cmd: spec.command.clone(),
        entrypoint: spec.entrypoint.clone(),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        user: spec.user.clone(),
        exposed_ports: Some(exposed),
        healthcheck: spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone()),
            interval: h.interval_secs.map(secs_to_nanos),
            timeout: h.timeout_secs.map(secs_to_nanos),
            retries: h.retries.map(i64::from),
            ..Default::default()
        }),
        host_config: Some(host_config),
        stop_timeout: spec.stop_timeout_secs.map(|s| s as i64),
        ..Default::default()
    };
    Ok(Desired {
        body,
        shape,
        hash,
        memory,
        nano_cpus,
        restart,
    })
}

fn secs_to_nanos(secs: u64) -> i64 {
    (secs as i64).saturating_mul(NANOS_PER_SEC)
}

type Ports = (Vec<String>, HashMap<String, Option<Vec<PortBinding>>>);

fn ports(specs: &[String]) -> Result<Ports> {
    let mut bindings: BTreeMap<String, Vec<PortBinding>> = BTreeMap::new();
    for text in specs {
        let port = PortMapping::parse(text).map_err(|e| anyhow!("invalid `ports`: {e}"))?;
        bindings
            .entry(port.container_key())
            .or_default()
            .push(PortBinding {
                host_ip: port.host_ip.map(|ip| ip.to_string()),
                host_port: Some(port.host_port.map(|p| p.to_string()).unwrap_or_default()),
            });
    }
    let exposed = bindings.keys().cloned().collect();
    Ok((
        exposed,
        bindings.into_iter().map(|(k, v)| (k, Some(v))).collect(),
    ))
}

/// Bind mounts and named volumes, in Docker's `SOURCE:TARGET[:ro]` form.
fn binds(specs: &[String]) -> Result<Vec<String>> {
    specs
        .iter()
        .map(|text| {
            let mount = Mount::parse(text).map_err(|e| anyhow!("invalid `volumes`: {e}"))?;
            let source = match &mount.source {
                MountSource::Bind(path) => path.display().to_string(),
                MountSource::Volume(name) => name.clone(),
            };
            let mode = if mount.read_only { ":ro" } else { "" };
            Ok(format!("{source}:{}{mode}", mount.target))
        })
        .collect()
}

fn api_restart(policy: RestartPolicy) -> ApiRestart {
    let (name, retries) = match policy {
        RestartPolicy::No => (RestartPolicyNameEnum::NO, None),
        RestartPolicy::Always => (RestartPolicyNameEnum::ALWAYS, None),
        RestartPolicy::UnlessStopped => (RestartPolicyNameEnum::UNLESS_STOPPED, None),
        RestartPolicy::OnFailure { max_retries } => (
            RestartPolicyNameEnum::ON_FAILURE,
            max_retries.map(i64::from),
        ),
    };
    ApiRestart {
        name: Some(name),
        maximum_retry_count: retries,
    }
}

/// The live restart policy, in the catalog's terms.
pub(super) fn live_restart(policy: Option<&ApiRestart>) -> RestartPolicy {
    let Some(policy) = policy else {
        return RestartPolicy::No;
    };
    match policy.name {
        None | Some(RestartPolicyNameEnum::EMPTY | RestartPolicyNameEnum::NO) => RestartPolicy::No,
        Some(RestartPolicyNameEnum::ALWAYS) => RestartPolicy::Always,
        Some(RestartPolicyNameEnum::UNLESS_STOPPED) => RestartPolicy::UnlessStopped,
        Some(RestartPolicyNameEnum::ON_FAILURE) => RestartPolicy::OnFailure {
            max_retries: policy
                .maximum_retry_count
                .filter(|n| *n > 0)
                .and_then(|n| u32::try_from(n).ok()),
        },
    }
}

/// A field whose value differs between the spec a container was made from
/// and the one it should be made from, in the catalog's words.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct FieldChange {
    pub field: String,
    pub previous: Option<String>,
    pub desired: Option<String>,
}

/// Which fields differ between two shapes (JSON objects of the spec).
/// Maps (`env`, `labels`) show only the entries that differ, as `KEY=value`.
pub(super) fn changed_fields(previous: &str, desired: &str) -> Vec<FieldChange> {
    let parse = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map.into_iter().collect::<BTreeMap<_, _>>()),
        _ => None,
    };
    let (Some(old), Some(new)) = (parse(previous), parse(desired)) else {
        return vec![FieldChange {
            field: "spec".into(),
            previous: None,
            desired: None,
        }];
    };
    let mut fields: Vec<&String> = old.keys().chain(new.keys()).collect();
    fields.sort();
    fields.dedup();
    let mut changes: Vec<FieldChange> = fields
        .into_iter()
        .filter_map(|field| {
            let (before, after) = (old.get(field), new.get(field));
            if before == after {
                return None;
            }
            let (previous, desired) = match (before, after) {
                (Some(Value::Object(a)), Some(Value::Object(b))) => map_difference(a, b),
                _ => (
                    before.map(|v| render_field(field, v)),
                    after.map(|v| render_field(field, v)),
                ),
            };
            Some(FieldChange {
                field: catalog_field(field).to_owned(),
                previous,
                desired,
            })
        })
        .collect();
    changes.sort_by(|a, b| a.field.cmp(&b.field));
    changes
}

type Entries = serde_json::Map<String, Value>;

fn map_difference(old: &Entries, new: &Entries) -> (Option<String>, Option<String>) {
    let entries = |from: &Entries, other: &Entries| {
        let differing: Vec<String> = from
            .iter()
            .filter(|(k, v)| other.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}={}", render(v)))
            .collect();
        (!differing.is_empty()).then(|| differing.join(", "))
    };
    (entries(old, new), entries(new, old))
}

/// The model's field as the catalog spells it.
fn catalog_field(key: &str) -> &str {
    match key {
        "memory_bytes" => "memory",
        "millicpus" => "cpus",
        "stop_timeout_secs" => "stop_timeout",
        other => other,
    }
}

fn render_field(key: &str, value: &Value) -> String {
    match (key, value.as_i64()) {
        ("memory_bytes", Some(bytes)) => memory_text(bytes),
        ("millicpus", Some(milli)) => cpus_text(milli * 1_000_000),
        _ => render(value),
    }
}

pub(super) fn memory_text(bytes: i64) -> String {
    match bytes {
        0 => "unlimited".into(),
        bytes => bytes.to_string(),
    }
}

pub(super) fn cpus_text(nano_cpus: i64) -> String {
    match nano_cpus {
        0 => "unlimited".into(),
        nano => (nano as f64 / NANOS_PER_SEC as f64).to_string(),
    }
}

pub(super) fn restart_text(policy: RestartPolicy) -> String {
    match policy {
        RestartPolicy::OnFailure {
            max_retries: Some(n),
        } => format!("on-failure:{n}"),
        other => other.docker_name().to_owned(),
    }
}

fn render(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
