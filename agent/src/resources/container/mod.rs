//! `container`: Docker Engine containers over the engine's API (`docker.rs`).
//!
//! A container drover makes carries labels naming the node, the resource
//! and the spec it was made from (`desired.rs`). A container whose spec,
//! image or live limits differ is recreated; one stopped or removed by hand
//! is started or created again; a refresh restarts it. Containers without
//! drover's labels are never touched.
//!
//! As with services: observe, plan the events and the action from that alone
//! (pure, so noop reports exactly what apply would do), then apply.

mod archive;
mod desired;
mod docker;
mod health;
mod probe;
pub(crate) mod replicas;
mod verdicts;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use bollard::models::{ContainerInspectResponse, HealthStatusEnum};
use drover_catalog::ResourceId;
use drover_catalog::container::RestartPolicy;
use drover_catalog::model::Kind;
use drover_catalog::model::{ContainerEnsure, ContainerSpec};
use drover_catalog::report::Event;

use desired::{Desired, FieldChange, LABEL_NODE, LABEL_RESOURCE, LABEL_SPEC};
pub(crate) use docker::Containers;
use docker::Docker;

use super::{Env, Flags, Outcome, event};

/// Image ids appear in events as `sha256:` and this many hex digits.
const ID_PREFIX: usize = 12;

pub(crate) fn converge(spec: &ContainerSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    let resource = ResourceId::new(Kind::Container, &spec.name).to_string();
    let (docker, node) = env.containers.connect()?;
    let seen = docker.inspect(&spec.name)?.map(Seen::from);
    if let Some(seen) = &seen {
        check_ours(seen, &spec.name, node, &resource, docker.socket())?;
    }
    if spec.ensure == ContainerEnsure::Absent {
        let plan = plan_absent(seen.as_ref(), flags);
        if !flags.noop && plan.action == Action::Remove {
            docker.remove(&spec.name)?;
        }
        return Ok(plan.outcome);
    }
    let desired = desired::desired(spec, node, &resource)?;
    let image = observe_image(docker, spec, flags)?;
    let plan = plan(spec, &desired, seen.as_ref(), &image, flags);
    if let Some(seen) = seen
        .as_ref()
        .filter(|s| s.running && plan.action == Action::Nothing)
    {
        health::check_not_unhealthy(&spec.name, seen, flags.sensitive)?;
        if let Some(probe) = &spec.probe {
            health::check_probe(docker, &spec.name, probe)?;
        }
    }
    if !flags.noop {
        apply(&plan, spec, desired, &image, docker, flags.sensitive)?;
    }
    Ok(plan.outcome)
}

/// What the engine says of the container now.
#[derive(Debug, Clone, Default)]
struct Seen {
    labels: HashMap<String, String>,
    image_id: String,
    running: bool,
    health: Option<HealthStatusEnum>,
    /// The newest health probe outputs, oldest first.
    health_log: Vec<String>,
    memory: i64,
    nano_cpus: i64,
    restart: RestartPolicy,
}

impl From<ContainerInspectResponse> for Seen {
    fn from(c: ContainerInspectResponse) -> Seen {
        let state = c.state.unwrap_or_default();
        let health = state.health.unwrap_or_default();
        let host = c.host_config.unwrap_or_default();
        Seen {
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
            image_id: c.image.unwrap_or_default(),
            running: state.running.unwrap_or(false),
            health: health.status,
            health_log: health::last_outputs(health.log.unwrap_or_default()),
            memory: host.memory.unwrap_or(0),
            nano_cpus: host.nano_cpus.unwrap_or(0),
            restart: desired::live_restart(host.restart_policy.as_ref()),
        }
    }
}

impl Seen {
    fn state(&self) -> &'static str {
        match self.running {
            true => "running",
            false => "stopped",
        }
    }
}

/// A container of that name that drover did not make for this resource on
/// this node is not drover's to change.
fn check_ours(seen: &Seen, name: &str, node: &str, resource: &str, socket: &Path) -> Result<()> {
    match (seen.labels.get(LABEL_NODE), seen.labels.get(LABEL_RESOURCE)) {
        (Some(n), Some(r)) if n == node && r == resource => Ok(()),
        (Some(n), Some(r)) => bail!(
            "container {name} belongs to drover resource {r} of node {n}, not to {resource} of node {node}; it is left as it is\nhint: give this resource another `name`, or remove that container"
        ),
        _ => bail!(
            "container {name} exists on {} and is not managed by drover (it has no {LABEL_RESOURCE} label); it is left as it is\nhint: remove or rename it (`docker rm -f {name}`) so drover can create its own, or give this resource another `name`",
            socket.display()
        ),
    }
}

/// What the node has of the image, and how a create would get it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Image {
    /// The id the reference names on this node.
    local: Option<String>,
    /// The id `image_archive` holds under the reference.
    archive: Option<String>,
    fetch: Option<Fetch>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Fetch {
    Pull,
    Load(PathBuf),
}

impl Image {
    /// The image a container should run: the archive's when there is one.
    fn wanted(&self) -> Option<&str> {
        self.archive.as_deref().or(self.local.as_deref())
    }
}

fn observe_image(docker: &Docker, spec: &ContainerSpec, flags: Flags) -> Result<Image> {
    let local = docker.image_id(&spec.image)?;
    let Some(path) = spec.image_archive.as_deref().map(Path::new) else {
        let fetch = local.is_none().then_some(Fetch::Pull);
        return Ok(Image {
            local,
            archive: None,
            fetch,
        });
    };
    if super::observe(path)?.is_none() {
        // In noop the file resource that makes it has not run.
        if local.is_none() && !flags.noop {
            bail!(
                "image {} is not on this node and its image_archive {} does not exist\nhint: manage the archive with a file resource (the container requires it)",
                spec.image,
                path.display()
            );
        }
        let fetch = local.is_none().then(|| Fetch::Load(path.to_owned()));
        return Ok(Image {
            local,
            archive: None,
            fetch,
        });
    }
    let archive = archive::image_id(path, &spec.image)?;
    let fetch = (local.as_deref() != Some(&archive)).then(|| Fetch::Load(path.to_owned()));
    Ok(Image {
        local,
        archive: Some(archive),
        fetch,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Nothing,
    Create,
    Recreate,
    Start,
    Stop,
    Restart,
    Remove,
}

#[derive(Debug)]
struct Plan {
    outcome: Outcome,
    action: Action,
}

impl Plan {
    fn new(action: Action, events: Vec<Event>) -> Plan {
        Plan {
            outcome: Outcome { events, diff: None },
            action,
        }
    }
}

fn plan_absent(seen: Option<&Seen>, flags: Flags) -> Plan {
    let Some(seen) = seen else {
        return Plan::new(Action::Nothing, Vec::new());
    };
    let message = say(flags, "removed", "would remove");
    let removed = with_message(
        event("ensure", Some(seen.state().into()), Some("absent".into())),
        message,
    );
    Plan::new(Action::Remove, vec![removed])
}

fn plan(
    spec: &ContainerSpec,
    desired: &Desired,
    seen: Option<&Seen>,
    image: &Image,
    flags: Flags,
) -> Plan {
    let start = spec.ensure == ContainerEnsure::Running;
    let wanted_state = if start { "running" } else { "stopped" };
    let Some(seen) = seen else {
        let message = match start {
            true => say(flags, "created and started", "would create and start"),
            false => say(flags, "created", "would create"),
        };
        let created = event("ensure", Some("absent".into()), Some(wanted_state.into()));
        let message = format!("{message}{}", fetch_note(spec, image, flags));
        return Plan::new(Action::Create, vec![with_message(created, &message)]);
    };
    let changes = differences(seen, desired, image);
    if !changes.is_empty() {
        let message = format!(
            "{}{}",
            say(flags, "recreated", "would recreate"),
            fetch_note(spec, image, flags)
        );
        let mut events: Vec<Event> = changes
            .into_iter()
            .map(|c| with_message(change_event(c), &message))
            .collect();
        if start && !seen.running {
            events.push(event(
                "ensure",
                Some("stopped".into()),
                Some("running".into()),
            ));
        }
        return Plan::new(Action::Recreate, events);
    }
    match (start, seen.running) {
        (true, false) => Plan::new(
            Action::Start,
            vec![event(
                "ensure",
                Some("stopped".into()),
                Some("running".into()),
            )],
        ),
        (false, true) => Plan::new(
            Action::Stop,
            vec![event(
                "ensure",
                Some("running".into()),
                Some("stopped".into()),
            )],
        ),
        (true, true) if flags.refresh => {
            let message = say(
                flags,
                "restarted: a subscribed resource changed",
                "would restart: a subscribed resource would change (noop)",
            );
            let refresh = event("refresh", Some("running".into()), Some("restarted".into()));
            Plan::new(Action::Restart, vec![with_message(refresh, message)])
        }
        _ => Plan::new(Action::Nothing, Vec::new()),
    }
}

/// Why an existing container must be made again: its spec (from its
/// labels), its image, or limits changed on the live container.
fn differences(seen: &Seen, desired: &Desired, image: &Image) -> Vec<FieldChange> {
    let made_from = seen.labels.get(LABEL_SPEC);
    let mut changes = if made_from != Some(&desired.hash) {
        let previous = seen
            .labels
            .get(desired::LABEL_DESIRED)
            .map_or("", String::as_str);
        desired::changed_fields(previous, &desired.shape)
    } else {
        live_differences(seen, desired)
    };
    let image_changed = changes.iter().any(|c| c.field == "image");
    if let Some(wanted) = image
        .wanted()
        .filter(|w| *w != seen.image_id && !image_changed)
    {
        changes.push(FieldChange {
            field: "image".into(),
            previous: Some(short_id(&seen.image_id)),
            desired: Some(short_id(wanted)),
        });
    }
    changes
}

/// Limits `docker update` changes without touching the labels.
fn live_differences(seen: &Seen, desired: &Desired) -> Vec<FieldChange> {
    let mut changes = Vec::new();
    let mut differ = |field: &str, live: String, want: String| {
        if live != want {
            changes.push(FieldChange {
                field: field.into(),
                previous: Some(live),
                desired: Some(want),
            });
        }
    };
    differ(
        "memory",
        desired::memory_text(seen.memory),
        desired::memory_text(desired.memory),
    );
    differ(
        "cpus",
        desired::cpus_text(seen.nano_cpus),
        desired::cpus_text(desired.nano_cpus),
    );
    differ(
        "restart",
        desired::restart_text(seen.restart),
        desired::restart_text(desired.restart),
    );
    changes
}

/// The values as they are: for a sensitive container the engine turns
/// them into hashes (`resources::sensitive`).
fn change_event(change: FieldChange) -> Event {
    event(&change.field, change.previous, change.desired)
}

/// `; image X pulled` when making the container needs the image first.
fn fetch_note(spec: &ContainerSpec, image: &Image, flags: Flags) -> String {
    match &image.fetch {
        None => String::new(),
        Some(Fetch::Pull) => format!(
            "; image {} {}",
            spec.image,
            say(flags, "pulled", "would be pulled")
        ),
        Some(Fetch::Load(path)) => format!(
            "; image {} {} from {}",
            spec.image,
            say(flags, "loaded", "would be loaded"),
            path.display()
        ),
    }
}

fn apply(
    plan: &Plan,
    spec: &ContainerSpec,
    desired: Desired,
    image: &Image,
    docker: &Docker,
    sensitive: bool,
) -> Result<()> {
    let name = &spec.name;
    let started = match plan.action {
        Action::Nothing => return Ok(()),
        Action::Create | Action::Recreate => {
            // The image first: a node that cannot get it keeps its old container.
            match &image.fetch {
                Some(Fetch::Pull) => docker.pull(&spec.image)?,
                Some(Fetch::Load(path)) => load(docker, path, &spec.image)?,
                None => {}
            }
            if plan.action == Action::Recreate {
                docker.remove(name)?;
            }
            docker.create(name, desired.body)?;
            let start = spec.ensure == ContainerEnsure::Running;
            if start {
                docker.start(name)?;
            }
            start
        }
        Action::Start => {
            docker.start(name)?;
            true
        }
        Action::Restart => {
            docker.restart(name)?;
            true
        }
        Action::Stop => {
            docker.stop(name)?;
            false
        }
        Action::Remove => {
            docker.remove(name)?;
            false
        }
    };
    if started {
        health::await_running(docker, name, spec.healthcheck.as_ref(), sensitive)?;
        if let Some(probe) = &spec.probe {
            health::await_probe(docker, name, probe, sensitive)?;
        }
    }
    Ok(())
}

/// Loads the archive and checks it gave the node the image it names.
fn load(docker: &Docker, archive: &Path, reference: &str) -> Result<()> {
    docker.load(archive)?;
    if docker.image_id(reference)?.is_none() {
        bail!(
            "loading {} did not give this node the image {reference}",
            archive.display()
        );
    }
    Ok(())
}

fn say(flags: Flags, done: &'static str, would: &'static str) -> &'static str {
    match flags.noop {
        true => would,
        false => done,
    }
}

fn with_message(event: Event, message: &str) -> Event {
    Event {
        message: Some(message.to_owned()),
        ..event
    }
}

fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    format!("sha256:{}", &hex[..ID_PREFIX.min(hex.len())])
}

#[cfg(test)]
mod tests;
