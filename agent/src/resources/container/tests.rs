//! The container kind's decisions (what differs, what to do) without a Docker engine.

use std::collections::BTreeMap;

use drover_catalog::Spec;
use drover_catalog::model::{ContainerEnsure, ContainerSpec};

use super::desired::{self, LABEL_DESIRED, LABEL_NODE, LABEL_RESOURCE, LABEL_SPEC};
use super::*;

const NODE: &str = "web-1";
const RESOURCE: &str = "container:app";
const IMAGE_ID: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const NEWER_ID: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn spec() -> ContainerSpec {
    ContainerSpec {
        name: "app".into(),
        image: "drover-test/busybox:1".into(),
        ensure: ContainerEnsure::Running,
        command: Some(vec!["httpd".into(), "-f".into()]),
        entrypoint: None,
        env: BTreeMap::from([("GREETING".into(), "hello".into())]),
        ports: vec!["127.0.0.1:8080:80".into()],
        volumes: vec!["data:/var/lib/app".into(), "/srv/www:/www:ro".into()],
        restart: Some("unless-stopped".into()),
        labels: BTreeMap::from([("team".into(), "web".into())]),
        user: None,
        network: None,
        memory_bytes: Some(64 << 20),
        millicpus: Some(500),
        healthcheck: None,
        image_archive: None,
        stop_timeout_secs: Some(2),
        probe: None,
    }
}

fn flags() -> Flags {
    Flags::default()
}

fn noop() -> Flags {
    Flags {
        noop: true,
        ..Flags::default()
    }
}

fn desired_of(spec: &ContainerSpec) -> Desired {
    desired::desired(spec, NODE, RESOURCE).unwrap()
}

fn local_image() -> Image {
    Image {
        local: Some(IMAGE_ID.into()),
        archive: None,
        fetch: None,
    }
}

/// The container as drover made it from `spec`, running.
fn made_from(spec: &ContainerSpec) -> Seen {
    let desired = desired_of(spec);
    let labels = desired.body.labels.clone().unwrap();
    Seen {
        labels,
        image_id: IMAGE_ID.into(),
        running: true,
        memory: desired.memory,
        nano_cpus: desired.nano_cpus,
        restart: desired.restart,
        ..Seen::default()
    }
}

fn plan_for(spec: &ContainerSpec, seen: Option<&Seen>, image: &Image, flags: Flags) -> Plan {
    plan(spec, &desired_of(spec), seen, image, flags)
}

fn properties(plan: &Plan) -> Vec<&str> {
    plan.outcome
        .events
        .iter()
        .map(|e| e.property.as_str())
        .collect()
}

#[test]
fn the_create_body_carries_every_field_and_drovers_labels() {
    let desired = desired_of(&spec());
    let body = &desired.body;
    assert_eq!(body.image.as_deref(), Some("drover-test/busybox:1"));
    assert_eq!(
        body.env.as_deref(),
        Some(&["GREETING=hello".to_owned()][..])
    );
    assert_eq!(
        body.exposed_ports.as_deref(),
        Some(&["80/tcp".to_owned()][..])
    );
    let labels = body.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_NODE], NODE);
    assert_eq!(labels[LABEL_RESOURCE], RESOURCE);
    assert_eq!(labels[LABEL_SPEC], desired.hash);
    assert_eq!(labels["team"], "web");
    let host = body.host_config.as_ref().unwrap();
    assert_eq!(
        host.binds.as_deref(),
        Some(
            &[
                "data:/var/lib/app".to_owned(),
                "/srv/www:/www:ro".to_owned()
            ][..]
        )
    );
    let binding = &host.port_bindings.as_ref().unwrap()["80/tcp"]
        .as_ref()
        .unwrap()[0];
    assert_eq!(binding.host_ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(binding.host_port.as_deref(), Some("8080"));
    assert_eq!(host.memory, Some(64 << 20));
    assert_eq!(host.nano_cpus, Some(500_000_000));
    assert_eq!(
        host.restart_policy.as_ref().unwrap().name,
        Some(bollard::models::RestartPolicyNameEnum::UNLESS_STOPPED)
    );
}

#[test]
fn the_spec_hash_ignores_ensure_where_the_image_comes_from_and_the_probe() {
    let running = desired_of(&spec()).hash;
    let stopped = ContainerSpec {
        ensure: ContainerEnsure::Stopped,
        image_archive: Some("/srv/images/app.tar".into()),
        probe: Some(drover_catalog::model::HttpProbe {
            path: "/healthz".into(),
            port: 80,
            interval_secs: 5,
            timeout_secs: 2,
        }),
        ..spec()
    };
    assert_eq!(desired_of(&stopped).hash, running);
    let other_env = ContainerSpec {
        env: BTreeMap::from([("GREETING".into(), "bonjour".into())]),
        ..spec()
    };
    assert_ne!(desired_of(&other_env).hash, running);
}

#[test]
fn a_missing_container_is_created_and_noop_says_so() {
    let image = Image {
        local: None,
        archive: None,
        fetch: Some(Fetch::Pull),
    };
    let plan = plan_for(&spec(), None, &image, noop());
    assert_eq!(plan.action, Action::Create);
    let created = &plan.outcome.events[0];
    assert_eq!(created.property, "ensure");
    assert_eq!(created.previous.as_deref(), Some("absent"));
    assert_eq!(created.desired.as_deref(), Some("running"));
    assert_eq!(
        created.message.as_deref(),
        Some("would create and start; image drover-test/busybox:1 would be pulled")
    );
}

#[test]
fn a_container_made_from_the_same_spec_is_left_alone() {
    let spec = spec();
    let plan = plan_for(&spec, Some(&made_from(&spec)), &local_image(), flags());
    assert_eq!(plan.action, Action::Nothing);
    assert!(!plan.outcome.changed());
}

#[test]
fn a_changed_env_recreates_and_names_the_entry() {
    let old = spec();
    let seen = made_from(&old);
    let new = ContainerSpec {
        env: BTreeMap::from([
            ("GREETING".into(), "bonjour".into()),
            ("MODE".into(), "prod".into()),
        ]),
        ..old
    };
    let plan = plan_for(&new, Some(&seen), &local_image(), flags());
    assert_eq!(plan.action, Action::Recreate);
    assert_eq!(properties(&plan), ["env"]);
    let env = &plan.outcome.events[0];
    assert_eq!(env.previous.as_deref(), Some("GREETING=hello"));
    assert_eq!(env.desired.as_deref(), Some("GREETING=bonjour, MODE=prod"));
    assert_eq!(env.message.as_deref(), Some("recreated"));
}

#[test]
fn changed_limits_are_named_as_the_catalog_spells_them() {
    let old = spec();
    let seen = made_from(&old);
    let new = ContainerSpec {
        memory_bytes: Some(128 << 20),
        millicpus: Some(1500),
        ports: vec!["127.0.0.1:8081:80".into()],
        ..old
    };
    let plan = plan_for(&new, Some(&seen), &local_image(), flags());
    assert_eq!(properties(&plan), ["cpus", "memory", "ports"]);
    let cpus = &plan.outcome.events[0];
    assert_eq!(
        (cpus.previous.as_deref(), cpus.desired.as_deref()),
        (Some("0.5"), Some("1.5"))
    );
}

#[test]
fn a_limit_changed_by_docker_update_is_drift() {
    let spec = spec();
    let mut seen = made_from(&spec);
    seen.memory = 256 << 20;
    let plan = plan_for(&spec, Some(&seen), &local_image(), flags());
    assert_eq!(plan.action, Action::Recreate);
    assert_eq!(properties(&plan), ["memory"]);
}

#[test]
fn a_new_image_behind_the_same_name_recreates() {
    let spec = spec();
    let image = Image {
        local: Some(NEWER_ID.into()),
        ..local_image()
    };
    let plan = plan_for(&spec, Some(&made_from(&spec)), &image, flags());
    assert_eq!(plan.action, Action::Recreate);
    let event = &plan.outcome.events[0];
    assert_eq!(event.property, "image");
    assert_eq!(event.previous.as_deref(), Some("sha256:aaaaaaaaaaaa"));
    assert_eq!(event.desired.as_deref(), Some("sha256:bbbbbbbbbbbb"));
}

#[test]
fn an_archive_holding_another_image_is_loaded_and_recreates() {
    let spec = ContainerSpec {
        image_archive: Some("/srv/images/app.tar".into()),
        ..spec()
    };
    let image = Image {
        local: Some(IMAGE_ID.into()),
        archive: Some(NEWER_ID.into()),
        fetch: Some(Fetch::Load("/srv/images/app.tar".into())),
    };
    let plan = plan_for(&spec, Some(&made_from(&spec)), &image, noop());
    assert_eq!(plan.action, Action::Recreate);
    assert_eq!(
        plan.outcome.events[0].message.as_deref(),
        Some(
            "would recreate; image drover-test/busybox:1 would be loaded from /srv/images/app.tar"
        )
    );
}

#[test]
fn stopped_by_hand_is_started_and_ensure_stopped_stops() {
    let spec_running = spec();
    let mut seen = made_from(&spec_running);
    seen.running = false;
    let plan = plan_for(&spec_running, Some(&seen), &local_image(), flags());
    assert_eq!(plan.action, Action::Start);
    assert_eq!(plan.outcome.events[0].previous.as_deref(), Some("stopped"));

    let spec_stopped = ContainerSpec {
        ensure: ContainerEnsure::Stopped,
        ..spec()
    };
    let seen = made_from(&spec_stopped);
    let plan = plan_for(&spec_stopped, Some(&seen), &local_image(), flags());
    assert_eq!(plan.action, Action::Stop);
}

#[test]
fn a_refresh_restarts_a_running_container_once() {
    let spec = spec();
    let seen = made_from(&spec);
    let refresh = Flags {
        refresh: true,
        ..Flags::default()
    };
    let plan = plan_for(&spec, Some(&seen), &local_image(), refresh);
    assert_eq!(plan.action, Action::Restart);
    assert_eq!(properties(&plan), ["refresh"]);

    // Recreated anyway: the refresh adds nothing.
    let changed = ContainerSpec {
        command: Some(vec!["sleep".into(), "60".into()]),
        ..spec.clone()
    };
    let plan = plan_for(&changed, Some(&seen), &local_image(), refresh);
    assert_eq!(plan.action, Action::Recreate);
    assert_eq!(properties(&plan), ["command"]);
}

#[test]
fn sensitive_changes_show_hashes_not_values() {
    let old = ContainerSpec {
        env: BTreeMap::from([("PASSWORD".into(), "old-s3cret".into())]),
        ..spec()
    };
    let seen = made_from(&old);
    let new = ContainerSpec {
        env: BTreeMap::from([("PASSWORD".into(), "new-s3cret".into())]),
        ..old
    };
    let sensitive = Flags {
        sensitive: true,
        ..Flags::default()
    };
    let plan = plan_for(&new, Some(&seen), &local_image(), sensitive);
    assert_eq!(properties(&plan), ["env"]);
    let mut report = drover_catalog::report::ResourceReport::new(
        RESOURCE.to_string().try_into().unwrap(),
        drover_catalog::report::ResourceStatus::Changed,
    );
    report.events = plan.outcome.events;
    crate::resources::sensitive::hide(&mut report, &Spec::Container(Box::new(new)));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("s3cret"), "{json}");
    let env = &report.events[0];
    assert!(
        env.desired.as_deref().unwrap().starts_with("sha256:"),
        "{json}"
    );
    assert_ne!(env.previous, env.desired, "a change still shows as one");
}

#[test]
fn a_sensitive_containers_probe_outputs_stay_out_of_its_error() {
    let seen = Seen {
        health: Some(HealthStatusEnum::UNHEALTHY),
        health_log: vec!["exit code 1: token=s3cret rejected".into()],
        ..made_from(&spec())
    };
    let shown = health::check_not_unhealthy("app", &seen, false).unwrap_err();
    assert!(shown.to_string().contains("token=s3cret"), "{shown}");
    let hidden = health::check_not_unhealthy("app", &seen, true)
        .unwrap_err()
        .to_string();
    assert!(!hidden.contains("s3cret"), "{hidden}");
    assert!(hidden.contains("output hidden"), "{hidden}");
}

#[test]
fn ensure_absent_removes_what_exists() {
    let seen = made_from(&spec());
    let plan = plan_absent(Some(&seen), noop());
    assert_eq!(plan.action, Action::Remove);
    let removed = &plan.outcome.events[0];
    assert_eq!(
        (removed.previous.as_deref(), removed.desired.as_deref()),
        (Some("running"), Some("absent"))
    );
    assert_eq!(removed.message.as_deref(), Some("would remove"));
    assert_eq!(plan_absent(None, flags()).action, Action::Nothing);
}

#[test]
fn containers_without_drovers_labels_are_refused() {
    let socket = Path::new("/var/run/docker.sock");
    let foreign = Seen::default();
    let err = check_ours(&foreign, "app", NODE, RESOURCE, socket).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "container app exists on /var/run/docker.sock and is not managed by drover"
        ),
        "{err}"
    );
    let other_node = made_from(&spec());
    let err = check_ours(&other_node, "app", "web-2", RESOURCE, socket).unwrap_err();
    assert!(err.to_string().contains("of node web-1"), "{err}");
    assert!(check_ours(&other_node, "app", NODE, RESOURCE, socket).is_ok());
}

#[test]
fn a_container_made_before_labels_held_the_spec_is_recreated_as_a_whole() {
    let spec = spec();
    let mut seen = made_from(&spec);
    seen.labels.remove(LABEL_DESIRED);
    seen.labels.insert(LABEL_SPEC.into(), "0".repeat(64));
    let plan = plan_for(&spec, Some(&seen), &local_image(), flags());
    assert_eq!(properties(&plan), ["spec"]);
}
