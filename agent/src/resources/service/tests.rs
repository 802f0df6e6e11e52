//! The pure part of the service kind: unit names and plans. What systemd does
//! with a plan is checked on booted nodes (tests/).

use super::*;
use systemd::ServiceStatus;

const TEXT: &str = "[Service]\nExecStart=/bin/sleep infinity\n";

fn spec(ensure: Option<ServiceEnsure>, enabled: Option<bool>, unit: Option<&str>) -> ServiceSpec {
    ServiceSpec {
        name: "demo".into(),
        ensure,
        enabled,
        unit: unit.map(str::to_owned),
    }
}

fn status(load: &str, active: &str) -> UnitStatus {
    UnitStatus {
        load: load.into(),
        active: active.into(),
        sub: String::new(),
        need_reload: false,
        service: Some(ServiceStatus::default()),
    }
}

fn seen<'a>(text: Option<&'a str>, file_state: Option<&str>, status: UnitStatus) -> Observed<'a> {
    Observed {
        unit_text: text.map(str::as_bytes),
        file_state: file_state.map(str::to_owned),
        status,
    }
}

fn flags(noop: bool, refresh: bool) -> Flags {
    Flags {
        noop,
        sensitive: false,
        refresh,
    }
}

fn plan_for(spec: &ServiceSpec, seen: &Observed<'_>, flags: Flags) -> Result<Plan> {
    let path = Path::new(UNIT_DIR).join("demo.service");
    plan(spec, "demo.service", &path, seen, flags)
}

/// `property previous -> desired` for each event, to compare at a glance.
fn summary(plan: &Plan) -> Vec<String> {
    plan.outcome
        .events
        .iter()
        .map(|e| {
            let v = |v: &Option<String>| v.clone().unwrap_or_else(|| "absent".into());
            format!("{} {} -> {}", e.property, v(&e.previous), v(&e.desired))
        })
        .collect()
}

fn running() -> Option<ServiceEnsure> {
    Some(ServiceEnsure::Running)
}

#[test]
fn unit_names_get_a_service_suffix_unless_they_have_one() {
    assert_eq!(unit_name("nginx").unwrap(), "nginx.service");
    assert_eq!(unit_name("nginx.service").unwrap(), "nginx.service");
    assert_eq!(unit_name("backup.timer").unwrap(), "backup.timer");
    assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
    assert_eq!(unit_name("my.app").unwrap(), "my.app.service");
    for bad in ["", "../etc/passwd", "a/b", ".service", "sp ace"] {
        let err = unit_name(bad).unwrap_err().to_string();
        assert!(
            err.contains("not a valid systemd unit name"),
            "{bad}: {err}"
        );
    }
}

#[test]
fn unit_file_states_map_to_enablement() {
    assert_eq!(enablement(Some("enabled")), Enablement::Enabled);
    assert_eq!(enablement(Some("alias")), Enablement::Enabled);
    assert_eq!(enablement(Some("linked")), Enablement::Disabled);
    assert_eq!(enablement(Some("masked-runtime")), Enablement::Masked);
    assert_eq!(enablement(None), Enablement::Missing);
    assert_eq!(
        enablement(Some("static")),
        Enablement::NotInstallable("static".into())
    );
}

#[test]
fn a_new_unit_is_written_enabled_reloaded_once_and_started() {
    let s = spec(running(), Some(true), Some(TEXT));
    let p = plan_for(
        &s,
        &seen(None, None, status("not-found", "inactive")),
        flags(false, false),
    )
    .unwrap();
    let sha = short(&sha256_hex(TEXT.as_bytes()));
    assert_eq!(
        summary(&p),
        [
            format!("unit absent -> {sha}"),
            "enabled false -> true".into(),
            "ensure stopped -> running".into(),
        ]
    );
    assert!(p.write_unit && p.reload);
    assert_eq!((p.enable, p.job), (Some(true), Some(Job::Start)));
    let diff = p.outcome.diff.unwrap();
    assert!(
        diff.starts_with("--- /etc/systemd/system/demo.service\n"),
        "{diff}"
    );
    assert!(diff.contains("+ExecStart=/bin/sleep infinity\n"), "{diff}");
}

#[test]
fn a_converged_service_plans_nothing() {
    let s = spec(running(), Some(true), Some(TEXT));
    let p = plan_for(
        &s,
        &seen(Some(TEXT), Some("enabled"), status("loaded", "active")),
        flags(false, false),
    )
    .unwrap();
    assert!(!p.outcome.changed() && p.outcome.diff.is_none());
    assert!(!p.write_unit && !p.reload && p.enable.is_none() && p.job.is_none());
}

#[test]
fn a_changed_unit_restarts_a_running_service_once_even_with_a_refresh() {
    let s = spec(running(), None, Some(TEXT));
    let p = plan_for(
        &s,
        &seen(
            Some("[Service]\nExecStart=/bin/true\n"),
            Some("disabled"),
            status("loaded", "active"),
        ),
        flags(false, true),
    )
    .unwrap();
    assert_eq!(p.outcome.events.len(), 1, "{:?}", p.outcome.events);
    assert_eq!(p.outcome.events[0].property, "unit");
    assert_eq!(
        p.outcome.events[0].message.as_deref(),
        Some("restarted to apply it")
    );
    assert_eq!(p.job, Some(Job::Restart));
    assert!(p.reload);
}

#[test]
fn a_loaded_but_stale_unit_is_reloaded_and_restarted() {
    let mut st = status("loaded", "active");
    st.need_reload = true;
    let p = plan_for(
        &spec(None, None, Some(TEXT)),
        &seen(Some(TEXT), Some("static"), st),
        flags(false, false),
    )
    .unwrap();
    assert_eq!(
        summary(&p),
        [format!(
            "unit not loaded -> {}",
            short(&sha256_hex(TEXT.as_bytes()))
        )]
    );
    assert!(!p.write_unit && p.reload);
    assert_eq!(p.job, Some(Job::Restart));
}

#[test]
fn refresh_restarts_a_running_service_and_noop_only_says_so() {
    let s = spec(running(), None, None);
    let active = || seen(None, Some("enabled"), status("loaded", "active"));
    let p = plan_for(&s, &active(), flags(false, true)).unwrap();
    assert_eq!(summary(&p), ["refresh running -> restarted"]);
    assert_eq!(p.job, Some(Job::Restart));
    let p = plan_for(&s, &active(), flags(true, true)).unwrap();
    assert_eq!(summary(&p), ["refresh running -> restarted"]);
    assert!(
        p.outcome.events[0]
            .message
            .as_deref()
            .unwrap()
            .starts_with("would restart")
    );
    assert_eq!(p.job, None, "noop");
    let unrefreshed = plan_for(&s, &active(), flags(false, false)).unwrap();
    assert!(!unrefreshed.outcome.changed());
}

#[test]
fn refresh_does_not_restart_what_was_just_started_stopped_or_is_down() {
    let started = plan_for(
        &spec(running(), None, None),
        &seen(None, Some("enabled"), status("loaded", "failed")),
        flags(false, true),
    )
    .unwrap();
    assert_eq!(summary(&started), ["ensure stopped -> running"]);
    assert_eq!(started.job, Some(Job::Start));
    let stopped = plan_for(
        &spec(Some(ServiceEnsure::Stopped), None, None),
        &seen(None, Some("enabled"), status("loaded", "active")),
        flags(false, true),
    )
    .unwrap();
    assert_eq!(summary(&stopped), ["ensure running -> stopped"]);
    assert_eq!(stopped.job, Some(Job::Stop));
    let unmanaged_down = plan_for(
        &spec(None, None, None),
        &seen(None, Some("enabled"), status("loaded", "inactive")),
        flags(false, true),
    )
    .unwrap();
    assert!(!unmanaged_down.outcome.changed() && unmanaged_down.job.is_none());
}

#[test]
fn enabling_what_cannot_be_enabled_is_a_clear_error() {
    let on = spec(None, Some(true), None);
    let err = |state: Option<&str>, load: &str| {
        plan_for(
            &on,
            &seen(None, state, status(load, "inactive")),
            flags(true, false),
        )
        .unwrap_err()
        .to_string()
    };
    assert!(err(Some("static"), "loaded").contains("state is `static`"));
    assert!(err(Some("masked"), "masked").contains("systemctl unmask demo.service"));
    assert!(err(None, "not-found").contains("no unit file"));
    // Disabling any of those is already true.
    for state in [Some("static"), Some("masked"), None] {
        let off = spec(None, Some(false), None);
        let p = plan_for(
            &off,
            &seen(None, state, status("loaded", "inactive")),
            flags(false, false),
        )
        .unwrap();
        assert!(!p.outcome.changed(), "{state:?}");
    }
    // A unit file about to be written may bring its [Install] section.
    let with_text = spec(None, Some(true), Some(TEXT));
    let p = plan_for(
        &with_text,
        &seen(
            Some("[Unit]\n"),
            Some("static"),
            status("loaded", "inactive"),
        ),
        flags(true, false),
    )
    .unwrap();
    assert_eq!(p.enable, Some(true));
}

#[test]
fn starting_a_unit_that_does_not_exist_is_a_clear_error_unless_it_is_being_written() {
    let err = plan_for(
        &spec(running(), None, None),
        &seen(None, None, status("not-found", "inactive")),
        flags(false, false),
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("service demo.service does not exist"),
        "{err}"
    );
    let noop_new = plan_for(
        &spec(running(), None, Some(TEXT)),
        &seen(None, None, status("not-found", "inactive")),
        flags(true, false),
    )
    .unwrap();
    assert_eq!(noop_new.outcome.events.len(), 2);
}

#[test]
fn sensitive_units_report_hashes_but_no_diff() {
    let mut f = flags(false, false);
    f.sensitive = true;
    let p = plan_for(
        &spec(None, None, Some(TEXT)),
        &seen(Some("old\n"), Some("static"), status("loaded", "inactive")),
        f,
    )
    .unwrap();
    assert!(p.outcome.diff.is_none());
    assert_eq!(
        p.outcome.events[0].previous.as_deref(),
        Some(short(&sha256_hex(b"old\n")).as_str())
    );
    assert_eq!(p.job, None, "a stopped unmanaged service stays stopped");
}

#[test]
fn a_sensitive_units_text_shows_nowhere_in_its_report() {
    let secret_text = "[Service]\nEnvironment=PW=s3cret-Pa55\nExecStart=/bin/true\n";
    let old_text = "[Service]\nEnvironment=PW=old-s3cret-Pa55\n";
    let new = spec(running(), Some(true), Some(secret_text));
    let mut f = flags(true, false);
    f.sensitive = true;
    let p = plan_for(
        &new,
        &seen(Some(old_text), Some("enabled"), status("loaded", "active")),
        f,
    )
    .unwrap();
    let mut report = drover_catalog::report::ResourceReport::new(
        "service:demo".to_string().try_into().unwrap(),
        drover_catalog::report::ResourceStatus::Noop,
    );
    report.events = p.outcome.events;
    report.diff = p.outcome.diff;
    crate::resources::sensitive::hide(&mut report, &drover_catalog::Spec::Service(new));
    let json = serde_json::to_string(&report).unwrap();
    assert!(!json.contains("s3cret"), "{json}");
    assert_eq!(report.events[0].property, "unit");
    assert_eq!(
        report.events[0].desired.as_deref(),
        Some(short(&sha256_hex(secret_text.as_bytes())).as_str()),
        "the unit's own short hash is kept"
    );
}

#[test]
fn the_unit_file_is_read_but_a_symlink_in_its_place_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.service");
    assert_eq!(read_unit_file(&path, "demo.service").unwrap(), None);
    fs_err::write(&path, TEXT).unwrap();
    assert_eq!(
        read_unit_file(&path, "demo.service").unwrap().as_deref(),
        Some(TEXT.as_bytes())
    );
    fs_err::remove_file(&path).unwrap();
    std::os::unix::fs::symlink("/dev/null", &path).unwrap();
    let err = read_unit_file(&path, "demo.service")
        .unwrap_err()
        .to_string();
    assert!(err.contains("is a symlink to /dev/null"), "{err}");
    assert!(err.contains("systemctl unmask demo.service"), "{err}");
}
