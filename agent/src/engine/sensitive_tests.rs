//! A sensitive resource of every kind, converged by the engine: its secret
//! appears nowhere in the report, the printed lines or the journal entry.
//! Each test also runs the same resource without `sensitive` and sees the
//! secret, so a check that can never fail is not mistaken for a pass.

use std::sync::atomic::AtomicBool;

use drover_catalog::report::ResourceStatus;
use serde_json::{Value, json};

use super::*;
use crate::resources::testing::MapSource;

const SECRET: &str = "s3cret-Pa55";

fn resource(mut json: Value, sensitive: bool) -> Resource {
    json["sensitive"] = sensitive.into();
    serde_json::from_value(json).expect("a valid resource")
}

/// Converges `resources` and returns the reports.
fn converge(resources: Vec<Resource>, source: &MapSource, noop: bool) -> Vec<ResourceReport> {
    let stop = AtomicBool::new(false);
    let backups = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        noop,
        backups: backups.path().to_owned(),
        ..super::tests::config(source, &stop, None)
    };
    apply(&super::tests::catalog(resources), &cfg).resources
}

/// The report as posted, and every line printed or logged about it.
fn shown(reports: &[ResourceReport]) -> String {
    reports
        .iter()
        .map(|r| {
            let json = serde_json::to_string(r).unwrap();
            format!("{json}\n{}", crate::output::everything_shown(r))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Converges the resource twice, plain and sensitive: the plain run must
/// show the secret (the test can see a leak), the sensitive one must not.
/// Returns the sensitive run's reports.
fn leaks_only_when_plain(
    make: impl Fn(bool) -> Vec<Resource>,
    source: &MapSource,
    noop: bool,
    prepare: impl Fn(),
) -> Vec<ResourceReport> {
    prepare();
    let plain = shown(&converge(make(false), source, noop));
    assert!(plain.contains(SECRET), "the plain run shows it: {plain}");
    prepare();
    let reports = converge(make(true), source, noop);
    let hidden = shown(&reports);
    assert!(!hidden.contains(SECRET), "{hidden}");
    reports
}

#[test]
fn file_content_diff_and_validate_output_are_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.conf");
    let path_str = path.to_string_lossy().into_owned();
    let content = format!("password = {SECRET}\n");
    let source = MapSource::with(&[content.as_bytes()]);
    let file = |validate: Option<&str>| {
        let path_str = path_str.clone();
        let content = content.clone();
        let validate = validate.map(str::to_owned);
        move |sensitive| {
            let mut spec = json!({
                "id": format!("file:{path_str}"),
                "kind": "file",
                "path": path_str,
                "sha256": drover_catalog::sha256_hex(content.as_bytes()),
                "size": content.len(),
            });
            if let Some(v) = &validate {
                spec["validate"] = v.clone().into();
            }
            vec![resource(spec, sensitive)]
        }
    };
    let old = || fs_err::write(&path, format!("password = old-{SECRET}\n")).unwrap();

    for noop in [true, false] {
        let reports = leaks_only_when_plain(file(None), &source, noop, old);
        assert!(
            matches!(
                reports[0].status,
                ResourceStatus::Noop | ResourceStatus::Changed
            ),
            "{reports:?}"
        );
        assert_eq!(reports[0].diff, None);
        assert_eq!(reports[0].events[0].property, "content");
    }
    let reports = leaks_only_when_plain(file(Some("cat %; exit 1")), &source, false, old);
    assert_eq!(reports[0].status, ResourceStatus::Failed);
    let error = reports[0].error.as_deref().unwrap();
    assert!(error.contains("validate command failed"), "{error}");
}

#[test]
fn exec_command_env_and_output_are_hidden() {
    let exec = |command: Value| {
        move |sensitive| {
            let spec = json!({
                "id": "exec:set-password",
                "kind": "exec",
                "name": "set-password",
                "command": command.clone(),
                "env": {"TOKEN": SECRET},
            });
            vec![resource(spec, sensitive)]
        }
    };
    let source = MapSource::default();
    let ok = leaks_only_when_plain(exec(json!("echo token=$TOKEN")), &source, false, || {});
    assert_eq!(ok[0].status, ResourceStatus::Changed);
    let failed = leaks_only_when_plain(
        exec(json!(["sh", "-c", "echo $TOKEN; exit 3"])),
        &source,
        false,
        || {},
    );
    assert!(
        failed[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("command exited with status 3")
    );
    let missing = format!("/nonexistent/{SECRET}");
    let unspawnable = leaks_only_when_plain(exec(json!([missing])), &source, false, || {});
    assert_eq!(unspawnable[0].status, ResourceStatus::Failed);
}

#[test]
fn symlink_target_is_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("link").to_string_lossy().into_owned();
    let link = |sensitive| {
        let spec = json!({
            "id": format!("symlink:{path}"),
            "kind": "symlink",
            "path": path,
            "target": format!("/opt/{SECRET}"),
        });
        vec![resource(spec, sensitive)]
    };
    let reports = leaks_only_when_plain(link, &MapSource::default(), true, || {});
    let target = &reports[0].events[1];
    assert_eq!(target.property, "target");
    assert!(target.desired.as_deref().unwrap().starts_with("sha256:"));
}

#[test]
fn user_home_and_shell_are_hashes() {
    let user = |sensitive| {
        let spec = json!({
            "id": "user:root",
            "kind": "user",
            "name": "root",
            "home": format!("/home/{SECRET}"),
            "shell": format!("/bin/{SECRET}"),
        });
        vec![resource(spec, sensitive)]
    };
    // noop: the report says what usermod would change, nothing runs.
    let reports = leaks_only_when_plain(user, &MapSource::default(), true, || {});
    assert_eq!(reports[0].status, ResourceStatus::Noop);
    assert_eq!(reports[0].events.len(), 2);
}

#[test]
fn container_and_service_failures_quote_no_value() {
    // No Docker Engine or systemd bus is needed to see that what they
    // report about a sensitive resource quotes none of its values; their
    // plans are tested with real values in their own modules.
    let container = json!({
        "id": "container:db",
        "kind": "container",
        "name": "db",
        "image": "postgres:16",
        "env": {"POSTGRES_PASSWORD": SECRET},
    });
    let service = json!({
        "id": "service:app",
        "kind": "service",
        "name": "app",
        "unit": format!("[Service]\nEnvironment=PW={SECRET}\nExecStart=/bin/true\n"),
    });
    for spec in [container, service] {
        let reports = converge(vec![resource(spec, true)], &MapSource::default(), true);
        let hidden = shown(&reports);
        assert!(!hidden.contains(SECRET), "{hidden}");
    }
}
