//! Air-gapped nodes: the image travels in the catalog repository as a
//! `docker save` tarball, a file resource puts it on the node, and the
//! container loads it from there instead of pulling.

use drover_tests::docker::{self, IMAGE};

use crate::{World, container_report, inspect, is_running, resource, sleeper};

#[test]
fn an_image_archive_is_loaded_when_the_image_is_missing() {
    let w = World::new("airgap");
    let tag = w.docker.image_tag("airgap");
    let marker = format!("made for {tag}");
    let image_id = unique_image(&w, &tag, &marker);
    fs_err::create_dir_all(w.repo.path.join("files")).unwrap();
    docker::save_image(&tag, &w.repo.path.join("files/airgap.tar"));
    docker::rmi(&tag);
    assert!(!docker::image_exists(&image_id), "{tag} is still in docker");

    let archive = w.path("images/airgap.tar");
    let archive = archive.display();
    let app = w.name("app");
    w.set_role(&format!(
        r#"
[[directory]]
path = "{images}"

[[file]]
path = "{archive}"
source = "files/airgap.tar"

[[container]]
name = "{app}"
image = "{tag}"
image_archive = "{archive}"
command = {sleeper}
"#,
        images = w.path("images").display(),
        sleeper = sleeper(),
    ));

    w.agent.run(&[]).expect_code(2);
    assert!(docker::image_exists(&tag), "{tag} was not loaded");
    assert!(is_running(&app));
    let c = inspect(&app);
    assert_eq!(c["Config"]["Image"], tag.as_str());
    assert_eq!(c["Image"], image_id.as_str());
    let read = docker::docker_ok(&["exec", &app, "cat", "/airgap-marker"]);
    assert_eq!(read.trim(), marker);
    let report = w.report();
    let file = resource(&report, &format!("file:{archive}"));
    assert_eq!(file["status"], "changed", "{file:#}");
    let entry = container_report(&report, &app);
    assert_eq!(entry["status"], "changed", "{entry:#}");

    w.agent.run(&[]).expect_code(0);
}

/// An image found nowhere else: the test image plus a file holding `marker`,
/// committed as `tag`. Returns its id.
fn unique_image(w: &World, tag: &str, marker: &str) -> String {
    let maker = w.name("maker");
    let script = format!("echo '{marker}' > /airgap-marker");
    w.docker.run("maker", &[IMAGE, "sh", "-c", &script]);
    docker::docker_ok(&["wait", &maker]);
    docker::docker_ok(&["commit", &maker, tag]);
    docker::docker_ok(&["rm", &maker]);
    docker::docker_ok(&["image", "inspect", "--format", "{{.Id}}", tag])
        .trim()
        .to_owned()
}
