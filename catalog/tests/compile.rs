//! Data-driven tests of repository compilation: each fixture is a
//! multi-file string with `//- path` markers, compiled for one node, and
//! the catalog or the errors are compared with a committed snapshot.

mod common;

use common::fixture;
use drover_catalog::{CompileRequest, Compiled, Facts, Repository};

fn facts(json: &str) -> Facts {
    serde_json::from_str(json).expect("facts are a JSON object")
}

fn debian() -> Facts {
    facts(
        r#"{"hostname": "web-1", "os": {"id": "debian", "version_id": "12", "family": "linux"}, "networking": {"ip": "10.0.0.5"}, "processors": {"count": 2}}"#,
    )
}

fn compile_with(text: &str, node: &str, facts: &Facts, commit: &str) -> Result<Compiled, String> {
    let repo = Repository::parse(fixture(text)).map_err(|e| e.to_string())?;
    let req = CompileRequest {
        node,
        facts,
        environment: "production",
        commit,
    };
    repo.compile(&req).map_err(|e| e.to_string())
}

fn compile(text: &str, node: &str) -> Result<Compiled, String> {
    compile_with(text, node, &debian(), "c0ffee")
}

/// The compile errors of a fixture that must fail, one per line.
fn errors(text: &str) -> String {
    match compile(text, "web-1") {
        Ok(c) => panic!(
            "expected errors, compiled {} resources",
            c.catalog.resources.len()
        ),
        Err(e) => e,
    }
}

/// The catalog plus its contents as text, for a readable snapshot.
fn show(c: &Compiled) -> serde_json::Value {
    let contents: serde_json::Map<String, serde_json::Value> = c
        .contents
        .iter()
        .map(|(sha, bytes)| {
            (
                sha.clone(),
                String::from_utf8_lossy(bytes).into_owned().into(),
            )
        })
        .collect();
    serde_json::json!({"roles": c.roles, "catalog": c.catalog, "contents": contents})
}

const SITE: &str = r#"
//- drover.toml
[data]
hierarchy = ["nodes/{{ node }}", "os/{{ facts.os.id }}", "roles/{{ role }}", "common"]
//- nodes.toml
[[node]]
match = "*"
roles = ["base"]

[[node]]
match = "web-*"
facts = { "os.id" = "debian" }
roles = ["web", "base"]
environment = "production"
# its roles render sensitive data: the operator vouches for the os facts
trust_facts = true
//- roles/base.toml
[vars]
motd_owner = "nobody"
greeting = "hello from role vars"

[[file]]
path = "/etc/motd"
content = "{{ vars.greeting }} on {{ node }} ({{ facts.os.id }})\n"
mode = "0644"

[[package]]
name = "{{ vars.editor }}"
//- roles/web.toml
include = ["app"]

[[directory]]
path = "/etc/nginx"
mode = "0755"

[[file]]
path = "/etc/nginx/nginx.conf"
source = "files/nginx.conf"
notify = ["service:nginx"]

[[package]]
name = "nginx"
before = ["file:/etc/nginx/nginx.conf"]

[[service]]
name = "nginx"
ensure = "running"
enabled = true
//- roles/app.toml
[vars]
listen_port = 8080

[[group]]
name = "todo"
system = true

[[user]]
name = "todo"
group = "todo"
home = "/srv/todo"
system = true

[[directory]]
path = "/srv/todo"
owner = "todo"
group = "todo"
mode = "0750"

[[file]]
path = "/srv/todo/app.conf"
template = "templates/todo/app.conf.j2"
owner = "todo"
group = "todo"
mode = "0640"
sensitive = true
notify = ["service:todo"]

[[service]]
name = "todo"
ensure = "running"
enabled = true
unit_template = "templates/todo/todo.service.j2"
tags = ["app"]
//- data/common.toml
editor = "vim"
greeting = "hello from common"
db = { host = "db.internal", port = 5432 }
//- data/os/debian.toml
editor = "nano"
//- data/roles/app.toml
listen_port = 9090
//- data/nodes/web-1.toml
db = { host = "db-primary.internal" }
//- files/nginx.conf
worker_processes auto;
# {{ this is not rendered }}
//- templates/todo/app.conf.j2
# managed by drover, commit {{ commit }}
listen = {{ vars.listen_port }}
{% include "todo/db.j2" %}
//- templates/todo/db.j2
db = {{ vars.db.host }}:{{ vars.db.port }}
//- templates/todo/todo.service.j2
[Service]
User=todo
ExecStart=/usr/bin/todo --port {{ vars.listen_port }}
"#;

#[test]
fn site_compiles_with_roles_data_templates_and_edges() {
    let compiled = compile(SITE, "web-1").expect("site compiles");
    insta::assert_json_snapshot!("site", show(&compiled));
}

#[test]
fn classify_reports_roles_and_environment_pin() {
    let repo = Repository::parse(fixture(SITE)).unwrap();
    let c = repo.classify("web-1", &debian()).unwrap();
    assert_eq!(c.roles, ["base", "web"]);
    assert_eq!(c.environment.as_deref(), Some("production"));
    let other = repo.classify("db-1", &debian()).unwrap();
    assert_eq!(other.roles, ["base"]);
    assert_eq!(other.environment, None);
    // the fact matcher must hold too
    let centos = facts(r#"{"os": {"id": "centos"}}"#);
    assert_eq!(repo.classify("web-2", &centos).unwrap().roles, ["base"]);
}

#[test]
fn version_ignores_the_commit_but_not_the_content() {
    let a = compile_with(
        SITE.replace("commit {{ commit }}", "").as_str(),
        "web-1",
        &debian(),
        "aaaa",
    )
    .unwrap();
    let b = compile_with(
        SITE.replace("commit {{ commit }}", "").as_str(),
        "web-1",
        &debian(),
        "bbbb",
    )
    .unwrap();
    assert_eq!(a.catalog.version, b.catalog.version);
    assert_ne!(a.catalog.commit, b.catalog.commit);
    let changed = SITE.replace("worker_processes auto;", "worker_processes 4;");
    let c = compile_with(&changed, "web-1", &debian(), "aaaa").unwrap();
    assert_ne!(a.catalog.version, c.catalog.version);
    // a template that uses `commit` does change with it
    let d = compile_with(SITE, "web-1", &debian(), "aaaa").unwrap();
    let e = compile_with(SITE, "web-1", &debian(), "bbbb").unwrap();
    assert_ne!(d.catalog.version, e.catalog.version);
}

#[test]
fn facts_with_template_syntax_are_inserted_literally() {
    let repo = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["r"]
//- roles/r.toml
[[file]]
path = "/etc/evil"
content = "{{ facts.a }}|{{ facts.b }}|{{ vars.c }}"
//- data/common.toml
c = "{{ node }}"
"#;
    let f = facts(r#"{"a": "{{ 7*7 }}", "b": "{% include \"/etc/passwd\" %}"}"#);
    let compiled = compile_with(repo, "n1", &f, "c").unwrap();
    let text: Vec<String> = compiled
        .contents
        .values()
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .collect();
    assert_eq!(
        text,
        [r#"{{ 7*7 }}|{% include "/etc/passwd" %}|{{ node }}"#]
    );
}

/// A fixture whose only node entry gives every node the role `r`.
fn one_role(role: &str) -> String {
    format!("//- nodes.toml\n[[node]]\nmatch = \"*\"\nroles = [\"r\"]\n//- roles/r.toml\n{role}")
}

#[test]
fn error_duplicate_id_names_both_places() {
    let repo = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["a", "b"]
//- roles/a.toml
[[package]]
name = "curl"
//- roles/b.toml
[[file]]
path = "/etc/x"
content = "x"

[[package]]
name = "curl"
"#;
    insta::assert_snapshot!("duplicate_id", errors(repo));
}

#[test]
fn error_unknown_reference() {
    let repo = one_role("[[file]]\npath = \"/etc/x\"\nrequire = [\"package:nope\"]\n");
    insta::assert_snapshot!("unknown_reference", errors(&repo));
}

#[test]
fn error_dependency_cycle() {
    let repo = one_role(
        "[[package]]\nname = \"a\"\nrequire = [\"service:b\"]\n\n[[service]]\nname = \"b\"\nrequire = [\"exec:c\"]\n\n[[exec]]\nname = \"c\"\ncommand = \"true\"\nbefore = [\"service:b\"]\nrequire = [\"package:a\"]\n",
    );
    insta::assert_snapshot!("dependency_cycle", errors(&repo));
}

#[test]
fn error_relative_path() {
    let repo =
        one_role("[[file]]\npath = \"etc/motd\"\n\n[[directory]]\npath = \"/etc/../tmp/\"\n");
    insta::assert_snapshot!("relative_path", errors(&repo));
}

#[test]
fn error_bad_mode() {
    let repo = one_role("[[file]]\npath = \"/etc/motd\"\nmode = \"0648\"\n");
    insta::assert_snapshot!("bad_mode", errors(&repo));
}

#[test]
fn error_undefined_template_variable() {
    let repo = one_role(
        "[[file]]\npath = \"/etc/inline\"\ncontent = \"{{ vars.nope }}\"\n\n[[file]]\npath = \"/etc/app.conf\"\ntemplate = \"templates/app.conf.j2\"\n",
    ) + "//- templates/app.conf.j2\nfine = {{ node }}\nbad = {{ facts.os.nope.deeper }}\n";
    insta::assert_snapshot!("undefined_template_variable", errors(&repo));
}

#[test]
fn error_source_outside_files() {
    let repo = one_role(
        "[[file]]\npath = \"/etc/a\"\nsource = \"../secrets\"\n\n[[file]]\npath = \"/etc/b\"\nsource = \"roles/r.toml\"\n\n[[file]]\npath = \"/etc/c\"\nsource = \"files/missing\"\n",
    );
    insta::assert_snapshot!("source_outside_files", errors(&repo));
}

#[test]
fn error_role_include_cycle() {
    let repo = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["a"]
//- roles/a.toml
include = ["b"]
//- roles/b.toml
include = ["c"]
//- roles/c.toml
include = ["a"]
"#;
    insta::assert_snapshot!("role_include_cycle", errors(repo));
}

#[test]
fn error_malformed_toml() {
    let repo = one_role("[[file]]\npath = \"/etc/motd\n");
    insta::assert_snapshot!("malformed_toml", errors(&repo));
}

#[test]
fn error_unknown_field() {
    let repo = one_role("[[file]]\npath = \"/etc/motd\"\nowner = \"root\"\nmod = \"0644\"\n");
    insta::assert_snapshot!("unknown_field", errors(&repo));
}

#[test]
fn error_node_matched_by_no_entry() {
    let repo = "//- nodes.toml\n[[node]]\nmatch = \"db-*\"\nroles = [\"r\"]\n//- roles/r.toml\n";
    insta::assert_snapshot!("no_matching_node_entry", errors(repo));
}

#[test]
fn error_endless_template_loop_runs_out_of_fuel() {
    let repo = one_role("[[file]]\npath = \"/etc/loop\"\ntemplate = \"templates/loop.j2\"\n")
        + "//- templates/loop.j2\n{% for i in range(100000) %}{% for j in range(100000) %}{{ j }}{% endfor %}{% endfor %}\n";
    insta::assert_snapshot!("endless_template_loop", errors(&repo));
}

#[test]
fn templates_never_include_outside_templates() {
    let repo = one_role("[[file]]\npath = \"/etc/x\"\ntemplate = \"templates/x.j2\"\n")
        + "//- templates/x.j2\n{% include \"/etc/passwd\" %}{% include \"../nodes.toml\" %}\n";
    insta::assert_snapshot!("include_outside_templates", errors(&repo));
}

#[test]
fn every_kind_compiles() {
    let repo = one_role(
        r#"
[[symlink]]
path = "/usr/local/bin/todo"
target = "/opt/todo/bin/todo"

[[container]]
name = "cache"
image = "redis:{{ vars.redis_version }}"
command = ["redis-server", "--maxmemory", "100mb"]
env = { LOG = "info", PORT = 6379, NODE = "{{ node }}" }
ports = ["127.0.0.1:6379:6379"]
volumes = ["cache-data:/data"]
restart = "unless-stopped"
labels = { team = "web" }
memory = "256m"
cpus = 0.5
healthcheck = { test = "redis-cli ping", interval = 10, timeout = 3, retries = 5 }

[[exec]]
name = "migrate"
command = ["/opt/todo/bin/migrate", "--db", "{{ vars.db }}"]
cwd = "/opt/todo"
env = { RUST_LOG = "info" }
user = "todo"
unless = "test -e /opt/todo/.migrated"
refreshonly = true
timeout = 300
subscribe = ["symlink:/usr/local/bin/todo"]
noop = true

[[user]]
name = "todo"
uid = 990
groups = ["docker"]
shell = "/usr/sbin/nologin"

[[group]]
name = "docker"
gid = 998

[[package]]
name = "redis-tools"
ensure = "7:7.0.15-1"

[[service]]
name = "legacy"
ensure = "stopped"
enabled = false
unit = "[Service]\nExecStart=/bin/true {{ node }}\n"

[[file]]
path = "/etc/old"
ensure = "absent"
backup = false
"#,
    ) + "//- data/common.toml\nredis_version = \"7.2\"\ndb = \"postgres://db/todo\"\n";
    let compiled = compile(&repo, "web-1").expect("compiles");
    insta::assert_json_snapshot!("every_kind", compiled.catalog.resources);
}

/// Containers using every field, with the implicit edges to the managed
/// image archive and bind-mount sources.
const CONTAINERS: &str = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["app"]
//- roles/app.toml
[vars]
port = 8080

[[directory]]
path = "/srv/app"

[[file]]
path = "/srv/images/app.tar"
source = "files/app.tar"
backup = false

[[file]]
path = "/srv/app/app.conf"
content = "port = {{ vars.port }}\n"
notify = ["container:app"]

[[container]]
name = "app"
image = "registry.example.com:5000/team/app:{{ vars.app_version }}"
image_archive = "/srv/images/app.tar"
ensure = "running"
entrypoint = ["/usr/bin/tini", "--"]
command = ["serve", "--config", "/etc/app/app.conf"]
env = { RUST_LOG = "info", PORT = "{{ vars.port }}", DEBUG = false }
ports = ["127.0.0.1:{{ vars.port }}:8080", "[::1]:{{ vars.port }}:8080", "9090", "53:53/udp", "53:53/tcp", "0.0.0.0::443", "[fe80::1]::8443/sctp"]
volumes = ["/srv/app/app.conf:/etc/app/app.conf:ro", "/srv/app:/var/lib/app:rw", "app-cache:/cache"]
restart = "on-failure:3"
labels = { team = "web", tier = 2 }
user = "1000:1000"
network = "bridge"
memory = 268435456
cpus = "1.5"
healthcheck = { test = ["CMD", "wget", "-q", "-O-", "http://127.0.0.1:8080/health"], interval = 30 }
stop_timeout = 20

[[container]]
name = "old-worker.v1"
image = "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
ensure = "absent"
restart = "no"
//- data/common.toml
app_version = "1.4.2"
//- files/app.tar
not really a tarball
"#;

#[test]
fn containers_compile_with_every_field_and_their_implicit_edges() {
    let compiled = compile(CONTAINERS, "web-1").expect("compiles");
    insta::assert_json_snapshot!("containers", compiled.catalog.resources);
    let clean = drover_catalog::check(fixture(CONTAINERS), "production", "c0ffee", &[]);
    assert_eq!(clean, [], "templated ports are not judged without a node");
}

#[test]
fn error_container_values() {
    let repo = one_role(
        r#"[[container]]
name = "web"
image = "Web:1"
image_archive = "images/web.tar"
env = { "A=B" = "x", "" = "y", OK = "z" }
ports = ["8o:80", "127.0.0.1:8080:80", "8080:81", "8080:81/udp", "[::1]:9000:90", "[::1]:9000:91"]
volumes = ["data:data", "/srv/data:/data:rx", "logs:/var/log"]
restart = "sometimes"

[[container]]
name = "-web"
image = "busybox"
ports = ["80:80/http"]
restart = "on-failure:x"
"#,
    );
    let errors = errors(&repo);
    for expected in [
        "roles/r.toml:3:9: `Web:1` is not an image reference",
        "roles/r.toml:6:10: `8o:80` is not a port mapping: `8o` is not a port number",
        "roles/r.toml:6:40: port `8080:81` publishes host port 8080/tcp again: `127.0.0.1:8080:80` at roles/r.toml:6:19 publishes it already",
        "roles/r.toml:7:12: `data:data` is not a volume",
        "roles/r.toml:8:11: `sometimes` is not a restart policy",
        "roles/r.toml:4:17: `image_archive` must be an absolute, normalised path: `images/web.tar` (it is not absolute)",
        "roles/r.toml:11:8: `-web` is not a valid container name",
    ] {
        assert!(
            errors.contains(expected),
            "missing {expected:?} in:\n{errors}"
        );
    }
    insta::assert_snapshot!("container_values", errors);
}

#[test]
fn check_without_facts_lists_every_error_of_every_role() {
    let repo = r#"
//- nodes.toml
[[node]]
match = "*"
roles = ["good", "missing"]
//- roles/good.toml
[[package]]
name = "{{ vars.editor }}"

[[file]]
path = "/home/{{ vars.user }}/.profile"
require = ["package:{{ vars.editor }}", "user:{{ vars.user }}"]
template = "templates/profile.j2"
//- roles/broken.toml
[[file]
path = "/x"
//- roles/refs.toml
[[service]]
name = "s"
require = ["package:nope"]
//- roles/loop.toml
[[package]]
name = "a"
require = ["package:b"]

[[package]]
name = "b"
require = ["package:a"]
//- templates/profile.j2
export EDITOR={{ vars.editor }}
//- templates/bad.j2
{% if %}
"#;
    let errors = drover_catalog::check(fixture(repo), "production", "c0ffee", &[]);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("check_without_facts", text.join("\n"));
}

#[test]
fn check_with_facts_compiles_every_node() {
    let nodes = vec![
        ("web-1".to_owned(), debian()),
        ("web-2".to_owned(), facts(r#"{"os": {"id": "alpine"}}"#)),
    ];
    let clean = drover_catalog::check(fixture(SITE), "production", "c0ffee", &nodes);
    assert_eq!(clean, []);
    let clean_without_facts = drover_catalog::check(fixture(SITE), "production", "c0ffee", &[]);
    assert_eq!(clean_without_facts, []);

    let broken = SITE.replace("{{ vars.db.host }}", "{{ vars.db.hostname }}");
    let errors = drover_catalog::check(fixture(&broken), "production", "c0ffee", &nodes);
    let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
    insta::assert_snapshot!("check_with_facts", text.join("\n"));
}

#[test]
fn error_missing_field_wrong_type_and_bad_values() {
    let repo = one_role("[[file]]\nmode = \"0644\"\n\n[[package]]\nname = 5\n");
    insta::assert_snapshot!("missing_field_and_wrong_type", errors(&repo));
    let repo = one_role(
        "[[service]]\nname = \"x\"\nensure = \"started\"\n\n[[symlink]]\npath = \"/etc/l\"\n\n[[container]]\nname = \"web\"\nimage = \"i\"\nmemory = \"lots\"\n\n[[file]]\npath = \"/etc/f\"\ncontent = \"a\"\nsource = \"files/f\"\n\n[[directory]]\npath = \"/etc/f\"\n",
    );
    insta::assert_snapshot!("bad_values", errors(&repo));
}

#[test]
fn parse_fails_only_on_site_wide_files() {
    let err = Repository::parse(fixture("//- roles/r.toml\n")).unwrap_err();
    assert_eq!(err.0[0].file, "nodes.toml");
    // a broken role only breaks the nodes that use it
    let repo = "//- nodes.toml\n[[node]]\nmatch = \"db-*\"\nroles = [\"broken\"]\n[[node]]\nmatch = \"web-*\"\nroles = [\"ok\"]\n//- roles/broken.toml\n[[[\n//- roles/ok.toml\n";
    assert!(compile(repo, "web-1").is_ok());
    assert!(
        compile(repo, "db-1")
            .unwrap_err()
            .starts_with("roles/broken.toml:1:")
    );
}

#[test]
fn repository_is_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Repository>();
    assert_send_sync::<Compiled>();
}

/// Issue 16, item 17: a control character in a path (a TOML escape, so it
/// fits on one line) is refused where it is written.
#[test]
fn error_control_character_in_a_path() {
    let repo = one_role(
        r#"[[file]]
path = "/etc/motd\nroot:x:0:0"
content = "x"
"#,
    );
    let errors = errors(&repo);
    let expected = r"roles/r.toml:2:8: `path` must be an absolute, normalised path: `/etc/motd\nroot:x:0:0` (it contains a control character such as a newline or a tab)";
    assert!(
        errors.contains(expected),
        "missing {expected:?} in:\n{errors}"
    );
}
