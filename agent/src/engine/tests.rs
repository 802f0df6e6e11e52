//! The engine's walk: order, dependents of failures, refreshes, stops.

use drover_catalog::model::{FileSpec, Meta};

use super::*;
use crate::resources::testing::MapSource;

fn file(path: &str, content: &[u8], require: &[&str], subscribe: &[&str]) -> Resource {
    let ids = |v: &[&str]| {
        v.iter()
            .map(|s| ResourceId::try_from(s.to_string()).unwrap())
            .collect()
    };
    Resource {
        meta: Meta {
            require: ids(require),
            subscribe: ids(subscribe),
            ..Meta::default()
        },
        ..Resource::new(Spec::File(FileSpec::with_content(path, content)))
    }
}

pub(super) fn catalog(resources: Vec<Resource>) -> Catalog {
    Catalog {
        node: "n".into(),
        environment: "production".into(),
        commit: "c".into(),
        version: Catalog::compute_version(&resources),
        resources,
        contents: Default::default(),
    }
}

pub(super) fn config<'a>(
    source: &'a MapSource,
    stop: &'a AtomicBool,
    previous: Option<&'a Catalog>,
) -> EngineConfig<'a> {
    EngineConfig {
        noop: false,
        node: "test-node",
        container_socket: Path::new("/nonexistent/docker.sock"),
        backups: "/nonexistent/backups".into(),
        contents: source,
        previous,
        stop,
        timeout: None,
        verbose: false,
        filecache: None,
        temp_marker: None,
        probe_state: None,
        protected: Vec::new(),
        partial: false,
    }
}

#[test]
fn failed_dependency_skips_dependents_and_refresh_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).to_string_lossy().into_owned();
    let (a, b, c, d) = (p("a"), p("missing/b"), p("c"), p("d"));
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(false);
    let (ida, idb, idc) = (
        format!("file:{a}"),
        format!("file:{b}"),
        format!("file:{c}"),
    );
    let cat = catalog(vec![
        file(&a, b"x", &[], &[]),
        file(&b, b"x", &[], &[]),
        file(&c, b"x", &[&idb], &[]),
        file(&d, b"x", &[&ida, &idc], &[&ida]),
    ]);
    let applied = apply(&cat, &config(&source, &stop, None));
    let st: Vec<_> = applied.resources.iter().map(|r| r.status).collect();
    assert_eq!(
        st[..3],
        [
            ResourceStatus::Changed,
            ResourceStatus::Failed,
            ResourceStatus::Skipped
        ]
    );
    assert_eq!(
        applied.resources[2].error.as_deref(),
        Some(format!("skipped: dependency {idb} failed").as_str())
    );
    assert_eq!(applied.resources[3].status, ResourceStatus::Skipped);
    assert!(
        applied.resources[3]
            .error
            .as_deref()
            .unwrap()
            .ends_with(&format!("{idc} was skipped"))
    );

    let cat2 = catalog(vec![
        file(&a, b"x", &[], &[]),
        file(&d, b"x", &[&ida], &[&ida]),
    ]);
    fs_err::remove_file(&a).unwrap();
    let applied = apply(&cat2, &config(&source, &stop, None));
    assert!(
        applied.resources[1].refreshed,
        "a changed, so d got a refresh"
    );
}

#[test]
fn an_unreachable_engine_fails_its_container_alone_and_corrective_marks_drift() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a").to_string_lossy().into_owned();
    let container: Resource = serde_json::from_str(
        r#"{"id":"container:web","kind":"container","name":"web","image":"nginx"}"#,
    )
    .unwrap();
    let cat = catalog(vec![file(&a, b"x", &[], &[]), container]);
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(false);
    let applied = apply(&cat, &config(&source, &stop, Some(&cat)));
    assert!(
        applied.resources[0].corrective,
        "same spec as last time: drift repair"
    );
    assert_eq!(applied.resources[1].status, ResourceStatus::Failed);
    let error = applied.resources[1].error.as_deref().unwrap();
    assert!(
        error.starts_with("cannot reach the Docker Engine at /nonexistent/docker.sock"),
        "{error}"
    );
}

#[test]
fn stop_flag_skips_the_rest_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a").to_string_lossy().into_owned();
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(true);
    let applied = apply(
        &catalog(vec![file(&a, b"x", &[], &[])]),
        &config(&source, &stop, None),
    );
    assert_eq!(applied.stopped.as_deref(), Some(INTERRUPTED));
    assert_eq!(applied.resources[0].status, ResourceStatus::Skipped);
    assert!(!dir.path().join("a").exists());
}

#[test]
fn run_timeout_skips_the_rest_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a").to_string_lossy().into_owned();
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(false);
    let mut cfg = config(&source, &stop, None);
    cfg.timeout = Some((std::time::Instant::now(), Duration::ZERO));
    let applied = apply(&catalog(vec![file(&a, b"x", &[], &[])]), &cfg);
    let reason = applied.stopped.expect("the run stopped");
    assert!(reason.contains("run_timeout_secs"), "{reason}");
    assert_eq!(applied.resources[0].status, ResourceStatus::Skipped);
    assert!(!dir.path().join("a").exists());
}

#[test]
fn noop_run_reports_noop_and_summary_counts() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a").to_string_lossy().into_owned();
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(false);
    let mut cfg = config(&source, &stop, None);
    cfg.noop = true;
    let applied = apply(&catalog(vec![file(&a, b"x", &[], &[])]), &cfg);
    assert_eq!(applied.resources[0].status, ResourceStatus::Noop);
    assert!(!dir.path().join("a").exists());
    let line = crate::output::summary_line(&applied.resources, true, Duration::from_millis(3));
    assert_eq!(
        line,
        "1 resources: 1 would change, 0 failed, 0 skipped in 3 ms"
    );
    assert!(
        crate::output::describe_events(&applied.resources[0])
            .starts_with("ensure absent -> present, content absent -> ")
    );
}

#[test]
fn a_parent_changed_by_an_earlier_resource_is_walked_again() {
    // link -> real; f1 is written through it, then a symlink resource
    // points link at other: f2 must land in other, not in the
    // directory f1's walk reached.
    let dir = tempfile::tempdir().unwrap();
    let at = |n: &str| dir.path().join(n);
    fs_err::create_dir(at("real")).unwrap();
    fs_err::create_dir(at("other")).unwrap();
    std::os::unix::fs::symlink(at("real"), at("link")).unwrap();
    let link = at("link").display().to_string();
    let repoint: Resource = serde_json::from_value(serde_json::json!({
        "id": format!("symlink:{link}"),
        "kind": "symlink",
        "path": link,
        "target": at("other"),
    }))
    .unwrap();
    let cat = catalog(vec![
        file(&format!("{link}/f1"), b"x", &[], &[]),
        repoint,
        file(&format!("{link}/f2"), b"x", &[], &[]),
    ]);
    let source = MapSource::with(&[b"x"]);
    let stop = AtomicBool::new(false);
    let applied = apply(&cat, &config(&source, &stop, None));
    assert!(
        applied
            .resources
            .iter()
            .all(|r| r.status == ResourceStatus::Changed),
        "{:?}",
        applied.resources
    );
    assert!(at("real/f1").exists() && at("other/f2").exists());
    assert!(!at("real/f2").exists(), "f2 followed the new link");
}
