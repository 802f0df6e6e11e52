//! Apps and node labels: `apps/NAME.toml` parsed into what the scheduler
//! needs, replicas compiled into the nodes they are placed on, `labels` and
//! `apps` in templates. Fixtures are multi-file strings with `//- path`
//! markers, as in `compile.rs`; errors are compared with snapshots.

mod common;

use std::collections::BTreeMap;

use common::fixture;

use drover_catalog::schedule::{HostPort, Placement, Resources};
use drover_catalog::{
    AppsInput, CompileRequest, Compiled, Facts, NodeProfile, ReplicaView, Repository, Spec,
    sha256_hex,
};

fn debian() -> Facts {
    serde_json::from_str(r#"{"os": {"id": "debian"}, "networking": {"ip": "10.0.0.5"}}"#).unwrap()
}

fn repo(text: &str) -> Repository {
    Repository::parse(fixture(text)).expect("parses")
}

fn compile(repo: &Repository, node: &str, apps: &AppsInput) -> Result<Compiled, String> {
    let facts = debian();
    let req = CompileRequest {
        node,
        facts: &facts,
        environment: "production",
        commit: "c0ffee",
    };
    repo.compile_with(&req, apps).map_err(|e| e.to_string())
}

fn check(text: &str) -> String {
    let errors = drover_catalog::check(fixture(text), "production", "c0ffee", &[]);
    let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
    lines.join("\n")
}

fn placement(app: &str, replica: u32, node: &str, id: &str) -> Placement {
    Placement {
        app: app.into(),
        replica,
        node: node.into(),
        id: id.into(),
        spec_hash: String::new(),
    }
}

fn containers(c: &Compiled) -> Vec<&drover_catalog::Resource> {
    c.catalog
        .resources
        .iter()
        .filter(|r| matches!(r.spec, Spec::Container(_)))
        .collect()
}

const NODES: &str = r#"
//- drover.toml
[data]
hierarchy = ["zones/{{ labels.zone }}", "common"]
//- nodes.toml
[[node]]
match = "*"
roles = ["base"]
labels = { zone = "paris-1", tier = "app" }
taints = ["dedicated=edge"]

[[node]]
match = "web-*"
facts = { os.id = "debian" }
roles = ["docker-host"]
labels = { zone = "paris-2", ip = "10.0.0.5" }
taints = ["gpu", "dedicated=edge"]
//- roles/base.toml
[[file]]
path = "/etc/zone"
content = "{{ labels.zone }} {{ labels.tier }} {{ vars.dc }}\n"
//- roles/docker-host.toml
include = ["base"]
//- data/zones/paris-2.toml
dc = "p2"
//- data/common.toml
dc = "unknown"
"#;

#[test]
fn a_nodes_labels_and_taints_are_the_union_of_its_entries() {
    let repo = repo(NODES);
    let profile = repo.node_profile("web-1", &debian()).unwrap();
    assert_eq!(
        profile,
        NodeProfile {
            roles: vec!["base".into(), "docker-host".into()],
            labels: BTreeMap::from([
                ("ip".into(), "10.0.0.5".into()),
                ("tier".into(), "app".into()),
                ("zone".into(), "paris-2".into()),
            ]),
            taints: vec!["dedicated=edge".into(), "gpu".into()],
        }
    );
    let db = repo.node_profile("db-1", &debian()).unwrap();
    assert_eq!(db.labels["zone"], "paris-1");
    assert_eq!(db.taints, ["dedicated=edge"]);

    // templates and hierarchy levels see the labels
    let compiled = compile(&repo, "web-1", &AppsInput::default()).unwrap();
    let (sha, _) = compiled.contents.iter().next().unwrap();
    assert_eq!(&*compiled.contents[sha], b"paris-2 app p2\n");
    assert!(!compiled.reads_apps);
}

#[test]
fn node_labels_are_strings_and_taints_are_checked() {
    let text = "//- nodes.toml\n[[node]]\nmatch = \"*\"\nlabels = { rack = 12, zone = \"a\" }\ntaints = [\"dedicated=edge\", \"no space=x\", \"k=\"]\n";
    let errors = Repository::parse(fixture(text)).unwrap_err();
    insta::assert_snapshot!("node_label_and_taint_errors", errors.to_string());
}

/// A site with apps: `todo` is placed by the scheduler on docker hosts.
const SITE: &str = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["base"]

[[node]]
match = "web-*"
roles = ["docker-host", "lb"]
labels = { ip = "10.0.0.5", zone = "paris-1" }
//- roles/base.toml
[vars]
todo_db = "postgres://db/todo"
//- roles/docker-host.toml
[[directory]]
path = "/srv/todo"
//- roles/lb.toml
[[file]]
path = "/etc/nginx/upstream.conf"
template = "templates/upstream.conf.j2"
//- templates/upstream.conf.j2
upstream todo {
{% for r in apps.todo.replicas %}  server {{ r.address }}:{{ r.ports[0] }}; # {{ r.node }} {{ r.state }}
{% endfor %}}
{% for r in apps.cron.replicas %}{{ r }}{% endfor %}
//- apps/todo.toml
replicas = 3
image = "registry.example.com/todo:1.4"
command = ["todo", "--listen", "0.0.0.0:8080", "--zone", "{{ labels.zone }}"]
env = { DB_URL = "{{ vars.todo_db }}", NODE = "{{ node }}" }
ports = ["{{ labels.ip }}:8080:8080", "9090/udp"]
volumes = ["/srv/todo:/data"]
restart = "unless-stopped"
labels = { team = "web" }
memory = "512m"
requests = { cpu = 0.5, memory = "256MiB", disk = 2147483648 }
selector = { roles = ["docker-host"], facts = { os.id = "debian", "os.version_id" = 12 }, labels = { zone = "paris-1" } }
spread = "zone"
tolerations = ["dedicated=edge", "gpu"]
health = { http = "/healthz", port = 8080 }
disruption = { min_available = 2 }
update = { max_parallel = 2, canary = 1, auto_revert = true }
//- apps/cron.toml
replicas = 0
image = "busybox"
"#;

#[test]
fn an_app_is_parsed_into_what_the_scheduler_needs() {
    let text = SITE;
    let repo = repo(text);
    let demands = repo.app_demands();
    assert_eq!(
        demands.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["cron", "todo"]
    );
    let todo = &demands[1];
    assert_eq!(todo.replicas, 3);
    let file = &fixture(text)["apps/todo.toml"];
    assert_eq!(todo.spec_hash, sha256_hex(file));
    assert_eq!(
        todo.requests,
        Resources {
            millicpu: 500,
            memory: 256 << 20,
            disk: 2 << 30
        }
    );
    assert_eq!(
        todo.host_ports,
        [HostPort {
            port: 8080,
            protocol: "tcp".into()
        }]
    );
    assert_eq!(todo.selector.roles, ["docker-host"]);
    assert_eq!(
        todo.selector.facts,
        [
            ("os.id".to_owned(), toml::Value::String("debian".into())),
            ("os.version_id".to_owned(), toml::Value::Integer(12)),
        ]
    );
    assert_eq!(todo.selector.labels["zone"], "paris-1");
    assert_eq!(todo.spread.as_deref(), Some("zone"));
    assert_eq!(todo.tolerations, ["dedicated=edge", "gpu"]);

    let (_, app) = repo.apps().find(|(name, _)| *name == "todo").unwrap();
    let app = app.unwrap();
    let health = app.health.as_ref().unwrap();
    assert_eq!((health.http.as_str(), health.port), ("/healthz", 8080));
    assert_eq!((health.interval_secs, health.timeout_secs), (10, 2));
    // `health` alone (no container healthcheck) makes its replicas checked.
    assert!(app.has_healthcheck());
    let (_, cron_app) = repo.apps().find(|(name, _)| *name == "cron").unwrap();
    assert!(!cron_app.unwrap().has_healthcheck());
    assert_eq!(app.disruption.min_available, 2);
    assert_eq!(
        (
            app.update.max_parallel,
            app.update.canary,
            app.update.auto_revert
        ),
        (2, 1, true)
    );
    assert_eq!(
        (
            app.update.min_healthy_secs,
            app.update.healthy_deadline_secs
        ),
        (10, 300)
    );
    let cron = &demands[0];
    assert_eq!((cron.replicas, cron.requests), (0, Resources::default()));
    assert_eq!(check(text), "");
}

#[test]
fn replicas_compile_into_the_nodes_they_are_placed_on() {
    let repo = repo(SITE);
    let apps = AppsInput {
        placed: vec![
            placement("todo", 0, "web-1", "a1b2c3"),
            placement("todo", 1, "web-2", "d4e5f6"),
        ],
        ..AppsInput::default()
    };
    let web1 = compile(&repo, "web-1", &apps).unwrap();
    insta::assert_json_snapshot!("replica_container", containers(&web1));
    // The app's `health` rides on its replica for the agent to probe.
    let Spec::Container(replica) = &containers(&web1)[0].spec else {
        unreachable!()
    };
    let probe = replica
        .probe
        .as_ref()
        .expect("the replica carries the probe");
    assert_eq!(
        (
            probe.path.as_str(),
            probe.port,
            probe.interval_secs,
            probe.timeout_secs
        ),
        ("/healthz", 8080, 10, 2)
    );
    let web2 = compile(&repo, "web-2", &apps).unwrap();
    let names: Vec<&str> = containers(&web2).iter().map(|r| r.id.name()).collect();
    assert_eq!(names, ["todo-1-d4e5f6"]);
    // a node with no placement has no replica
    let db = compile(&repo, "db-1", &apps).unwrap();
    assert!(containers(&db).is_empty());
}

#[test]
fn a_replica_of_an_earlier_spec_is_built_from_its_stored_body() {
    let repo = repo(SITE);
    let (_, todo) = repo.apps().find(|(name, _)| *name == "todo").unwrap();
    let now = todo.unwrap();
    let before = now.body().replace("todo:1.4", "todo:1.3");
    let before_hash = sha256_hex(before.as_bytes());
    let at = |replica, node: &str, id: &str, spec: &str| Placement {
        spec_hash: spec.to_owned(),
        ..placement("todo", replica, node, id)
    };
    let apps = AppsInput {
        placed: vec![
            at(0, "web-1", "old000", &before_hash),
            at(1, "web-1", "new111", &now.demand.spec_hash),
            // a spec nobody stored: built from this commit's
            at(2, "web-1", "lost22", "0000"),
        ],
        specs: BTreeMap::from([(before_hash.clone(), before.into())]),
        ..AppsInput::default()
    };
    let web1 = compile(&repo, "web-1", &apps).unwrap();
    let images: Vec<(&str, String)> = containers(&web1)
        .iter()
        .map(|r| match &r.spec {
            Spec::Container(c) => (r.id.name(), c.image.clone()),
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(
        images,
        [
            ("todo-0-old000", "registry.example.com/todo:1.3".to_owned()),
            ("todo-1-new111", "registry.example.com/todo:1.4".to_owned()),
            ("todo-2-lost22", "registry.example.com/todo:1.4".to_owned()),
        ]
    );
    // a stored body that no longer parses names the app file
    let apps = AppsInput {
        placed: vec![at(0, "web-1", "bad000", "bad")],
        specs: BTreeMap::from([("bad".to_owned(), "replicas = \"two\"".into())]),
        ..AppsInput::default()
    };
    let err = compile(&repo, "web-1", &apps).unwrap_err();
    assert!(err.contains("apps/todo.toml"), "{err}");
}

#[test]
fn apps_in_templates_come_from_discovery_and_are_tracked() {
    let repo = repo(SITE);
    let view = |replica, node: &str, address: &str| ReplicaView {
        replica,
        node: node.into(),
        address: Some(address.into()),
        ports: vec![8080],
        state: "healthy".into(),
    };
    let apps = AppsInput {
        placed: Vec::new(),
        // `cron` is missing: a repo app is seen with no replicas
        discovery: BTreeMap::from([(
            "todo".to_owned(),
            vec![view(0, "web-1", "10.0.0.5"), view(1, "web-2", "10.0.0.6")],
        )]),
        ..AppsInput::default()
    };
    let lb = compile(&repo, "web-1", &apps).unwrap();
    let upstream = lb.contents.values().next().unwrap();
    assert_eq!(
        String::from_utf8_lossy(upstream),
        "upstream todo {\n  server 10.0.0.5:8080; # web-1 healthy\n  server 10.0.0.6:8080; # web-2 healthy\n}\n\n"
    );
    assert!(lb.reads_apps, "the upstream template reads apps");
    let db = compile(&repo, "db-1", &apps).unwrap();
    assert!(!db.reads_apps, "nothing of db-1 reads apps");
    // no placements at all: the template still renders, with no servers
    let empty = compile(&repo, "web-1", &AppsInput::default()).unwrap();
    let upstream = empty.contents.values().next().unwrap();
    assert_eq!(String::from_utf8_lossy(upstream), "upstream todo {\n}\n\n");
}

#[test]
fn app_errors_point_into_the_app_file() {
    let text = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["base"]
//- roles/base.toml
include = ["docker"]
//- roles/docker.toml
//- roles/gpu.toml
//- apps/typo.toml
image = "busybox"
replica = 2
//- apps/quantities.toml
image = "busybox"
requests = { cpu = 0, memory = "lots", disk = -1 }
//- apps/ports.toml
image = "busybox"
ports = ["{{ labels.ip }}:{{ vars.port }}:80", "8080:{{ vars.port }}", "70000:80"]
//- apps/limits.toml
replicas = 2
image = "busybox"
labels = { "drover.app" = "x" }
health = { http = "healthz", port = 0, interval_secs = 0 }
disruption = { min_available = 3 }
update = { max_parallel = 0, min_healthy_secs = 600 }
tolerations = ["=edge"]
selector = { labels = { rack = 12 } }
//- apps/Bad Name.toml
image = "busybox"
//- apps/selector.toml
image = "busybox"
selector = { roles = ["docker", "gpu", "nope"] }
//- apps/container.toml
image = "Not An Image"
env = { URL = "{{ vars.x " }
restart = "sometimes"
"#;
    insta::assert_snapshot!("app_errors", check(text));
}

#[test]
fn a_broken_app_fails_only_the_nodes_given_a_replica_of_it() {
    let text = format!(
        "{SITE}//- apps/broken.toml\nimage = \"busybox\"\nports = [\"8080:80\"]\nmemory = \"lots\"\n//- apps/unparsable.toml\nimage = \"busybox\"\nsize = 3\n"
    );
    let repo = repo(&text);
    let apps = AppsInput {
        placed: vec![
            placement("broken", 0, "web-1", "b0"),
            placement("unparsable", 0, "web-2", "u0"),
            placement("gone", 0, "web-3", "g0"),
            placement("todo", 0, "web-4", "t0"),
        ],
        ..AppsInput::default()
    };
    let errors = ["web-1", "web-2", "web-3"]
        .map(|node| format!("{node}:\n{}", compile(&repo, node, &apps).unwrap_err()));
    insta::assert_snapshot!("broken_app_placements", errors.join("\n"));
    assert!(compile(&repo, "web-4", &apps).is_ok());
    assert!(compile(&repo, "db-1", &apps).is_ok());
    // `check` reports both, whatever is placed
    let checked = check(&text);
    assert!(
        checked.contains("apps/broken.toml:3:10: invalid `memory`"),
        "{checked}"
    );
    assert!(
        checked.contains("apps/unparsable.toml:2:1: unknown field `size`"),
        "{checked}"
    );
    assert_eq!(repo.app_demands().len(), 3, "broken, cron and todo parse");
}
