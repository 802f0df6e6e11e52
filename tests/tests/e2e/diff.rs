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
