//! `drover-server diff`: impact analysis of a branch on a fixture fleet. A
//! changed template changes exactly the nodes that render it, with the
//! file's diff; a sensitive value shows as hashes only; a broken branch
//! names the nodes and their errors; exit codes fit CI (0, 2, 1).

use std::process::Command;

use drover_tests::{GitRepo, Output, bin};

fn diff(repo: &GitRepo, facts: &std::path::Path, branch: &str) -> Output {
    let out = Command::new(bin("drover-server"))
        .args(["diff", "--env", branch, "--against", "main", "--repo"])
        .arg(&repo.path)
        .arg("--facts-dir")
        .arg(facts)
        .output()
        .unwrap();
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_branch_changes_exactly_the_nodes_that_render_what_it_touches() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&tmp.path().join("site"));
    repo.write(
        "nodes.toml",
        "[[node]]\nmatch = \"web-*\"\nroles = [\"web\"]\n\n[[node]]\nmatch = \"db-*\"\nroles = [\"db\"]\n",
    )
    .write(
        "roles/web.toml",
        "[[file]]\npath = \"/etc/motd\"\ntemplate = \"templates/motd.j2\"\n\n\
         [[file]]\npath = \"/etc/web.token\"\ncontent = \"{{ vars.token }}\\n\"\n",
    )
    .write("roles/db.toml", "[[file]]\npath = \"/etc/db.conf\"\ncontent = \"port = 5432\\n\"\n")
    .write("templates/motd.j2", "welcome to {{ node }}\n")
    .write("data/common.toml", "token = { sensitive = \"s3cret-one\" }\n");
    repo.commit("main");
    let facts = tmp.path().join("facts");
    fs_err::create_dir_all(&facts).unwrap();
    for node in ["web-1", "web-2", "db-1"] {
        fs_err::write(
            facts.join(format!("{node}.json")),
            r#"{"os": {"id": "debian"}}"#,
        )
        .unwrap();
    }

    // Nothing changed: exit 0.
    repo.git(&["branch", "same"]);
    let same = diff(&repo, &facts, "same");
    same.expect_code(0);
    assert!(
        same.stdout
            .contains("0 of 3 node(s) change and 0 do not compile on same"),
        "{}",
        same.stdout
    );

    // The template and a secret change: the web nodes only.
    repo.git(&["checkout", "-q", "-b", "motd"]);
    repo.write(
        "templates/motd.j2",
        "welcome to {{ node }}, managed by drover\n",
    )
    .write(
        "data/common.toml",
        "token = { sensitive = \"s3cret-two\" }\n",
    );
    repo.commit("a new motd and token");
    let out = diff(&repo, &facts, "motd");
    out.expect_code(2);
    assert!(
        out.stdout.contains("web-1: 2 changed, 0 added, 0 removed"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("web-2: 2 changed"), "{}", out.stdout);
    assert!(
        !out.stdout.contains("db-1"),
        "db-1 renders neither: {}",
        out.stdout
    );
    assert!(out.stdout.contains("~ file:/etc/motd"), "{}", out.stdout);
    assert!(out.stdout.contains("-welcome to web-1\n"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("+welcome to web-1, managed by drover\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("~ file:/etc/web.token"),
        "{}",
        out.stdout
    );
    assert!(
        !out.stdout.contains("s3cret"),
        "a secret leaked: {}",
        out.stdout
    );
    assert!(out.stdout.contains("sha256:"), "{}", out.stdout);
    assert!(
        out.stdout
            .contains("2 of 3 node(s) change and 0 do not compile on motd"),
        "{}",
        out.stdout
    );

    // A broken role: the nodes it breaks, with the error's place.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-q", "-b", "broken"]);
    repo.write("roles/web.toml", "[[file]]\npth = \"/etc/motd\"\n");
    repo.commit("a typo");
    let broken = diff(&repo, &facts, "broken");
    broken.expect_code(1);
    assert!(
        broken.stdout.contains("web-1: does not compile on broken:"),
        "{}",
        broken.stdout
    );
    assert!(
        broken.stdout.contains("roles/web.toml:2:1"),
        "{}",
        broken.stdout
    );
    assert!(
        broken
            .stdout
            .contains("0 of 3 node(s) change and 2 do not compile on broken"),
        "{}",
        broken.stdout
    );
}

/// An app on the web nodes: two replicas of 64 MiB.
const SHOP: &str = "replicas = 2\nimage = \"busybox:1\"\n\
                    requests = { memory = \"64MiB\" }\nselector = { roles = [\"web\"] }\n";

/// The placement lines of `diff`'s text (`  APP#N: ...`).
fn moves(out: &Output) -> Vec<String> {
    out.stdout
        .lines()
        .filter(|l| l.starts_with("  shop#"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_branch_that_changes_an_app_moves_exactly_its_replicas() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = GitRepo::init(&tmp.path().join("site"));
    repo.write(
        "nodes.toml",
        "[[node]]\nmatch = \"web-*\"\nroles = [\"web\"]\n\n[[node]]\nmatch = \"db-*\"\nroles = [\"db\"]\n",
    )
    .write("roles/web.toml", "[[file]]\npath = \"/etc/motd\"\ncontent = \"web\\n\"\n")
    .write("roles/db.toml", "[[file]]\npath = \"/etc/motd\"\ncontent = \"db\\n\"\n")
    .write("apps/shop.toml", SHOP);
    repo.commit("main");
    let facts = tmp.path().join("facts");
    fs_err::create_dir_all(&facts).unwrap();
    for node in ["web-1", "web-2", "web-3", "db-1", "db-2"] {
        fs_err::write(
            facts.join(format!("{node}.json")),
            r#"{"processors": {"count": 2}, "memory": {"total_bytes": 4294967296}}"#,
        )
        .unwrap();
    }

    // A change that touches no app: no placement moves.
    repo.git(&["checkout", "-q", "-b", "motd"]);
    repo.write(
        "roles/db.toml",
        "[[file]]\npath = \"/etc/motd\"\ncontent = \"database\\n\"\n",
    );
    repo.commit("a new motd on db nodes");
    let out = diff(&repo, &facts, "motd");
    out.expect_code(2);
    assert!(moves(&out).is_empty(), "{}", out.stdout);
    assert!(!out.stdout.contains("placements of"), "{}", out.stdout);

    // One more replica: exactly one placed, on the one web node left.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-q", "-b", "scale"]);
    repo.write(
        "apps/shop.toml",
        &SHOP.replace("replicas = 2", "replicas = 3"),
    );
    repo.commit("three shops");
    let out = diff(&repo, &facts, "scale");
    out.expect_code(2);
    let lines = moves(&out);
    assert_eq!(lines.len(), 1, "{}", out.stdout);
    assert!(
        lines[0].starts_with("  shop#2: placed on web-"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("0 of 5 node(s) change and 0 do not compile on scale (against main); 1 replica placement(s) change"),
        "{}",
        out.stdout
    );

    // The selector moves to the db nodes: both replicas move, with why.
    repo.git(&["checkout", "-q", "main"]);
    repo.git(&["checkout", "-q", "-b", "to-db"]);
    repo.write("apps/shop.toml", &SHOP.replace("[\"web\"]", "[\"db\"]"));
    repo.commit("shop on the db nodes");
    let out = diff(&repo, &facts, "to-db");
    out.expect_code(2);
    let lines = moves(&out);
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    for (i, line) in lines.iter().enumerate() {
        assert!(
            line.starts_with(&format!("  shop#{i}: moves from web-")),
            "{}",
            out.stdout
        );
        assert!(line.contains(" to db-"), "{}", out.stdout);
        assert!(
            line.ends_with("refused by selector: didn't match the app's selector"),
            "{}",
            out.stdout
        );
    }
    let json = Command::new(bin("drover-server"))
        .args([
            "diff",
            "--json",
            "--env",
            "to-db",
            "--against",
            "main",
            "--repo",
        ])
        .arg(&repo.path)
        .arg("--facts-dir")
        .arg(&facts)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let placements = json["placements"].as_array().unwrap();
    assert_eq!(placements.len(), 2, "{json:#}");
    assert_eq!(placements[0]["fate"], "moved");
    assert_eq!(placements[0]["app"], "shop");
    assert!(
        placements[0]["to"].as_str().unwrap().starts_with("db-"),
        "{json:#}"
    );
}
