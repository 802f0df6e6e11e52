//! The harness itself (tests/src/docker.rs): the test image, and the guard
//! that cleans up after a test, also one that panics.

use std::panic::{AssertUnwindSafe, catch_unwind};

use drover_tests::docker::{self, Containers, IMAGE, INDEX_HTML};

#[test]
fn the_test_image_has_its_applets_and_web_root() {
    let guard = Containers::new("image_contents");
    docker::ensure_image();
    let script = "for a in sh wget httpd sleep cat echo false true; do \
                  test -x /bin/$a || echo missing $a; done; cat /www/index.html";
    let name = guard.name("probe");
    let out = docker::docker_ok(&["run", "--rm", "--name", &name, IMAGE, "sh", "-c", script]);
    assert_eq!(out, INDEX_HTML);
    let cmd = docker::docker_ok(&[
        "image",
        "inspect",
        "--format",
        "{{json .Config.Cmd}}",
        IMAGE,
    ]);
    assert_eq!(cmd.trim(), r#"["/bin/sh"]"#);
}

/// Whether any container, volume or image of the engine has this exact name.
fn exists(kind: &str, name: &str) -> bool {
    docker::docker(&[kind, "inspect", name]).code == 0
}

#[test]
fn the_guard_removes_what_its_test_made_even_on_panic() {
    docker::ensure_image();
    // Another test whose prefix starts like this one's keeps its container.
    let neighbour = Containers::new("guard_panics_not");
    neighbour.run("keep", &[IMAGE, "sleep", "60"]);

    let guard = Containers::new("guard_panics");
    let (container, volume, image) = (guard.name("c"), guard.name("v"), guard.image_tag("i"));
    let result = catch_unwind(AssertUnwindSafe(move || {
        guard.run("c", &[IMAGE, "sleep", "60"]);
        docker::docker_ok(&["volume", "create", &guard.name("v")]);
        docker::tag(IMAGE, &guard.image_tag("i"));
        panic!("the test fails while its guard holds a container, a volume and an image");
    }));
    assert!(result.is_err());
    assert!(!exists("container", &container), "{container} is left");
    assert!(!exists("volume", &volume), "{volume} is left");
    assert!(!exists("image", &image), "{image} is left");
    assert!(exists("container", &neighbour.name("keep")));
    assert!(exists("image", IMAGE), "the shared image must stay");
}
