//! A container subscribed to a file restarts when the file changes, and
//! only then.

use drover_tests::docker::IMAGE;

use crate::{World, container_id, container_report, event, is_running, sleeper, started_at};

fn catalog(w: &World, content: &str) -> String {
    let conf = w.path("app.conf");
    let conf = conf.display();
    format!(
        r#"
[[file]]
path = "{conf}"
content = "{content}"

[[container]]
name = "{app}"
image = "{IMAGE}"
command = {sleeper}
subscribe = ["file:{conf}"]
"#,
        app = w.name("app"),
        sleeper = sleeper(),
    )
}

#[test]
fn a_changed_subscribed_file_restarts_the_container() {
    let w = World::new("refresh");
    let app = w.name("app");
    w.set_role(&catalog(&w, "v1"));
    w.agent.run(&[]).expect_code(2);
    let id = container_id(&app);
    let started = started_at(&app);

    w.agent.run(&[]).expect_code(0);
    assert_eq!(
        started_at(&app),
        started,
        "a run without change restarted {app}"
    );

    w.set_role(&catalog(&w, "v2"));
    w.agent.run(&[]).expect_code(2);
    assert_eq!(fs_err::read_to_string(w.path("app.conf")).unwrap(), "v2");
    assert_eq!(
        container_id(&app),
        id,
        "a refresh restarts, it does not recreate"
    );
    assert!(is_running(&app));
    let restarted = started_at(&app);
    assert_ne!(restarted, started, "{app} was not restarted");
    let entry = container_report(&w.report(), &app);
    assert_eq!(entry["status"], "changed", "{entry:#}");
    event(&entry, "refresh");

    w.agent.run(&[]).expect_code(0);
    assert_eq!(
        started_at(&app),
        restarted,
        "a run without change restarted {app}"
    );
}
