//! An app's `health` probe end to end, on real agent daemons and the real
//! dockerd: the agent GETs the path on the replica's own address (the
//! replica publishes only on its node's 127.0.0.x, so 127.0.0.1 would not
//! reach it), a replica that answers is `healthy` in the report and the
//! API, and one whose path 404s is `unhealthy` and fails its node's run
//! with a message that names the probe.

use drover_tests::docker;
use serde_json::Value;

use super::fleet::Fleet;

/// node name, label, address.
const GOOD: (&str, &str, &str) = ("probe-ok", "ok", "127.0.0.14");
const BAD: (&str, &str, &str) = ("probe-bad", "bad", "127.0.0.15");

/// An app on the node labelled `label` serving /www (with a /www/healthz)
/// on port 80, published on its node's address, probed at `path`.
fn app_file(image: &str, label: &str, port: u16, path: &str) -> String {
    format!(
        "image = \"{image}\"\n\
         command = [\"sh\", \"-c\", \"echo ok > /www/healthz && exec httpd -f -p 80 -h /www\"]\n\
         ports = [\"{{{{ labels.ip }}}}:{port}:80\"]\n\
         selector = {{ labels = {{ probe = \"{label}\" }} }}\n\
         stop_timeout = 1\n\
         health = {{ http = \"{path}\", port = 80, interval_secs = 1, timeout_secs = 1 }}\n"
    )
}

/// The newest report of `node`, once there is one.
fn latest(fleet: &Fleet, node: &str) -> Option<Value> {
    let path = format!("/api/v1/nodes/{node}/reports?limit=1");
    let (status, list) = fleet.server.request("GET", &path, None);
    if status != 200 {
        return None;
    }
    let id = drover_tests::report_list(&list).first()?["id"]
        .as_str()?
        .to_owned();
    Some(fleet.server.get_json(&format!("/api/v1/reports/{id}")))
}

/// The newest report of `node` whose replica of `app` is in `state`, and
/// that replica's entry.
fn reported(fleet: &Fleet, node: &str, app: &str, state: &str) -> Option<(Value, Value)> {
    let report = latest(fleet, node)?;
    let replica = report["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["app"] == app && r["state"] == state)?
        .clone();
    Some((report, replica))
}

#[test]
fn a_passing_probe_makes_a_replica_healthy_and_a_failing_one_fails_the_run() {
    let port = docker::free_port();
    let image = docker::ensure_image();
    let fleet = Fleet::start("probe", &[GOOD.0, BAD.0], |repo, docker, _| {
        let mut nodes = String::new();
        for (name, label, ip) in [GOOD, BAD] {
            nodes.push_str(&format!(
                "[[node]]\nmatch = \"{name}\"\nroles = [\"docker-host\"]\n\
                 labels = {{ probe = \"{label}\", ip = \"{ip}\" }}\n\n"
            ));
        }
        repo.write("nodes.toml", &nodes);
        repo.write("roles/docker-host.toml", "# replicas only\n");
        let good = app_file(image, GOOD.1, port, "/healthz");
        repo.write(&format!("apps/{}.toml", docker.name("good")), &good);
        let bad = app_file(image, BAD.1, port, "/nope");
        repo.write(&format!("apps/{}.toml", docker.name("bad")), &bad);
    });
    let (good, bad) = (fleet.docker.name("good"), fleet.docker.name("bad"));

    // Healthy by its probe: in the node's report, since the probe said so.
    let (report, replica) = fleet.wait(90, "the good replica reported healthy", |f| {
        reported(f, GOOD.0, &good, "healthy")
    });
    assert_ne!(report["status"], "failed", "{report:#}");
    let container = replica["container"].as_str().unwrap().to_owned();
    let started: jiff::Timestamp =
        docker::inspect(&container).expect("the replica")["State"]["StartedAt"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
    let since: jiff::Timestamp = replica["since"].as_str().unwrap().parse().unwrap();
    assert!(since >= started, "healthy since {since}, started {started}");
    // The server sees it healthy too (its drains count it so).
    fleet.wait(30, "the API shows the good replica healthy", |f| {
        let app = f.app(&good);
        (app["replicas"][0]["state"] == "healthy").then_some(())
    });

    // Its path 404s: unhealthy, and the run fails naming the probe.
    let (report, _) = fleet.wait(90, "the bad replica reported unhealthy", |f| {
        reported(f, BAD.0, &bad, "unhealthy")
    });
    assert_eq!(report["status"], "failed", "{report:#}");
    let failed = report["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["status"] == "failed")
        .unwrap_or_else(|| panic!("no failed resource in {report:#}"));
    let error = failed["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("is unhealthy: its probe")
            && error.contains("/nope answered 404 Not Found")
            && !error.contains("127.0.0.1"),
        "{error}"
    );
    fleet.wait(30, "the API shows the bad replica unhealthy", |f| {
        let app = f.app(&bad);
        (app["replicas"][0]["state"] == "unhealthy").then_some(())
    });
}
