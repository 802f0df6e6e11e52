//! The main loop for containers: create, idempotence, a change in git,
//! noop, `ensure = "absent"` and `"stopped"`.

use drover_tests::docker::{self, IMAGE, INDEX_HTML};
use serde_json::{Value, json};

use crate::{World, container_id, container_report, event, http_get, inspect, is_running, sleeper};

/// A web server publishing 127.0.0.1:`port` with every setting the kind
/// has, a managed directory it bind-mounts with a file in it (the container
/// is ordered after the directory), and a worker whose `MODE` is `mode`.
pub(crate) fn web_and_worker(w: &World, port: u16, mode: &str) -> String {
    let bind = w.path("bind");
    let bind = bind.display();
    format!(
        r#"
[[directory]]
path = "{bind}"

[[file]]
path = "{bind}/greeting.txt"
content = "bound\n"

[[container]]
name = "{web}"
image = "{IMAGE}"
command = ["httpd", "-f", "-p", "80", "-h", "/www"]
ports = ["127.0.0.1:{port}:80"]
env = {{ GREETING = "hello", TIER = "front" }}
labels = {{ app = "web" }}
restart = "unless-stopped"
memory = "64m"
cpus = 0.5
volumes = ["{volume}:/data", "{bind}:/bind:ro"]
healthcheck = {{ test = ["CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/"], interval = 1 }}
stop_timeout = 1

[[container]]
name = "{worker}"
image = "{IMAGE}"
command = {sleeper}
env = {{ MODE = "{mode}" }}
"#,
        web = w.name("web"),
        volume = w.name("data"),
        worker = w.name("worker"),
        sleeper = sleeper(),
    )
}

fn env_of(name: &str) -> Vec<String> {
    let env = inspect(name)["Config"]["Env"].clone();
    serde_json::from_value(env).expect("Config.Env is a list of strings")
}

#[track_caller]
fn assert_created(entry: &Value) {
    assert_eq!(entry["status"], "changed", "{entry:#}");
    assert_eq!(entry["corrective"], false, "{entry:#}");
    let ensure = event(entry, "ensure");
    assert_eq!(ensure["previous"], "absent", "{entry:#}");
    assert_eq!(ensure["desired"], "running", "{entry:#}");
}

#[test]
fn two_containers_are_created_then_nothing_changes() {
    let w = World::new("two_containers");
    let port = docker::free_port();
    w.set_role(&web_and_worker(&w, port, "one"));
    let (web, worker) = (w.name("web"), w.name("worker"));

    let noop = w.agent.run(&["--noop"]);
    noop.expect_code(2);
    assert!(docker::inspect(&web).is_none(), "noop created {web}");
    assert!(docker::inspect(&worker).is_none(), "noop created {worker}");
    let volume = docker::docker(&["volume", "inspect", &w.name("data")]);
    assert_ne!(volume.code, 0, "noop created the volume {}", w.name("data"));
    assert!(!w.path("bind").exists(), "noop created the bind directory");
    let report = w.report();
    assert_eq!(report["noop"], true);
    for name in [&web, &worker] {
        let entry = container_report(&report, name);
        assert_eq!(entry["status"], "noop", "{entry:#}");
        assert_eq!(event(&entry, "ensure")["desired"], "running", "{entry:#}");
    }

    w.agent.run(&[]).expect_code(2);
    assert!(is_running(&web) && is_running(&worker));
    assert_eq!(http_get(port), INDEX_HTML);
    let report = w.report();
    assert_created(&container_report(&report, &web));
    assert_created(&container_report(&report, &worker));
    assert_web_is_configured(&w, &web, port);
    let ids = (container_id(&web), container_id(&worker));

    w.agent.run(&[]).expect_code(0);
    assert_eq!((container_id(&web), container_id(&worker)), ids);
    let report = w.report();
    assert_eq!(report["status"], "unchanged", "{report:#}");
    assert_eq!(container_report(&report, &web)["status"], "unchanged");
    assert_eq!(container_report(&report, &worker)["status"], "unchanged");
    assert_eq!(http_get(port), INDEX_HTML);
}

/// What `docker inspect` says of the web container: the catalog's settings
/// and drover's labels.
fn assert_web_is_configured(w: &World, web: &str, port: u16) {
    let c = inspect(web);
    let env = env_of(web);
    for entry in ["GREETING=hello", "TIER=front"] {
        assert!(env.iter().any(|e| e == entry), "{entry} not in {env:?}");
    }
    let host = &c["HostConfig"];
    assert_eq!(host["Memory"], 64 * 1024 * 1024, "{host:#}");
    assert_eq!(host["NanoCpus"], 500_000_000, "{host:#}");
    assert_eq!(host["RestartPolicy"]["Name"], "unless-stopped", "{host:#}");
    assert_eq!(c["Config"]["StopTimeout"], 1, "{:#}", c["Config"]);
    assert_eq!(
        host["PortBindings"]["80/tcp"],
        json!([{ "HostIp": "127.0.0.1", "HostPort": port.to_string() }]),
        "{host:#}"
    );
    let labels = &c["Config"]["Labels"];
    assert_eq!(labels["app"], "web", "{labels:#}");
    assert_eq!(labels["drover.node"], w.node.as_str(), "{labels:#}");
    assert_eq!(
        labels["drover.resource"],
        format!("container:{web}"),
        "{labels:#}"
    );
    assert!(
        labels["drover.spec"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{labels:#}"
    );
    assert_eq!(
        c["State"]["Health"]["Status"], "healthy",
        "{:#}",
        c["State"]
    );

    let mounts = c["Mounts"].as_array().expect("Mounts");
    let volume = mounts
        .iter()
        .find(|m| m["Destination"] == "/data")
        .unwrap_or_else(|| panic!("no /data mount in {mounts:#?}"));
    assert_eq!(volume["Type"], "volume");
    assert_eq!(volume["Name"], w.name("data").as_str());
    let bind = mounts
        .iter()
        .find(|m| m["Destination"] == "/bind")
        .unwrap_or_else(|| panic!("no /bind mount in {mounts:#?}"));
    assert_eq!(bind["Type"], "bind");
    assert_eq!(bind["Source"], w.path("bind").to_str().unwrap());
    assert_eq!(bind["RW"], false);
    let read = docker::docker_ok(&["exec", web, "cat", "/bind/greeting.txt"]);
    assert_eq!(read, "bound\n");
}

#[test]
fn an_env_change_in_git_recreates_only_that_container() {
    let w = World::new("env_change");
    let port = docker::free_port();
    w.set_role(&web_and_worker(&w, port, "one"));
    let (web, worker) = (w.name("web"), w.name("worker"));
    w.agent.run(&[]).expect_code(2);
    let (web_id, worker_id) = (container_id(&web), container_id(&worker));

    w.set_role(&web_and_worker(&w, port, "two"));
    w.agent.run(&["--noop"]).expect_code(2);
    assert_eq!(container_id(&worker), worker_id, "noop recreated {worker}");
    let entry = container_report(&w.report(), &worker);
    assert_eq!(entry["status"], "noop", "{entry:#}");
    assert_env_event(&entry);

    w.agent.run(&[]).expect_code(2);
    assert_ne!(
        container_id(&worker),
        worker_id,
        "{worker} was not recreated"
    );
    assert_eq!(container_id(&web), web_id, "{web} was recreated");
    assert!(is_running(&worker));
    let env = env_of(&worker);
    assert!(env.iter().any(|e| e == "MODE=two"), "{env:?}");
    assert!(!env.iter().any(|e| e == "MODE=one"), "{env:?}");

    let report = w.report();
    assert_eq!(container_report(&report, &web)["status"], "unchanged");
    let entry = container_report(&report, &worker);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    assert_eq!(entry["corrective"], false, "{entry:#}");
    assert_env_event(&entry);
    assert_eq!(http_get(port), INDEX_HTML);
    w.agent.run(&[]).expect_code(0);
}

#[track_caller]
fn assert_env_event(entry: &Value) {
    let env = event(entry, "env");
    let previous = env["previous"].as_str().unwrap_or_default();
    let desired = env["desired"].as_str().unwrap_or_default();
    assert!(previous.contains("MODE=one"), "{entry:#}");
    assert!(desired.contains("MODE=two"), "{entry:#}");
    let properties: Vec<_> = entry["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["property"].clone())
        .collect();
    assert_eq!(properties, ["env"], "only env differs: {entry:#}");
}

fn two_sleepers(w: &World, gone: &str, paused: &str) -> String {
    format!(
        r#"
[[container]]
name = "{gone_name}"
image = "{IMAGE}"
command = {sleeper}
ensure = "{gone}"

[[container]]
name = "{paused_name}"
image = "{IMAGE}"
command = {sleeper}
ensure = "{paused}"
"#,
        gone_name = w.name("gone"),
        paused_name = w.name("paused"),
        sleeper = sleeper(),
    )
}

#[test]
fn absent_removes_and_stopped_stops() {
    let w = World::new("absent_stopped");
    let (gone, paused) = (w.name("gone"), w.name("paused"));
    w.set_role(&two_sleepers(&w, "running", "running"));
    w.agent.run(&[]).expect_code(2);
    let paused_id = container_id(&paused);

    w.set_role(&two_sleepers(&w, "absent", "stopped"));
    w.agent.run(&["--noop"]).expect_code(2);
    assert!(is_running(&gone), "noop touched {gone}");
    assert!(is_running(&paused), "noop touched {paused}");
    let report = w.report();
    let entry = container_report(&report, &gone);
    assert_eq!(entry["status"], "noop", "{entry:#}");
    assert_eq!(event(&entry, "ensure")["desired"], "absent", "{entry:#}");
    let entry = container_report(&report, &paused);
    assert_eq!(entry["status"], "noop", "{entry:#}");
    assert_eq!(event(&entry, "ensure")["desired"], "stopped", "{entry:#}");

    w.agent.run(&[]).expect_code(2);
    assert!(docker::inspect(&gone).is_none(), "{gone} was not removed");
    assert!(!is_running(&paused), "{paused} was not stopped");
    assert_eq!(container_id(&paused), paused_id, "{paused} was recreated");
    let report = w.report();
    let entry = container_report(&report, &gone);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["previous"], "running", "{entry:#}");
    assert_eq!(ensure["desired"], "absent", "{entry:#}");
    let entry = container_report(&report, &paused);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    let ensure = event(&entry, "ensure");
    assert_eq!(ensure["previous"], "running", "{entry:#}");
    assert_eq!(ensure["desired"], "stopped", "{entry:#}");

    w.agent.run(&[]).expect_code(0);
    assert!(docker::inspect(&gone).is_none());
    assert!(!is_running(&paused));
}
