//! `service`: systemd units over systemd's D-Bus API (`systemd.rs`): an
//! optional unit file, enabled or not, running or stopped, restarted when its
//! definition changed or on refresh (once per run).
//!
//! Observe everything first, plan the events and actions from that alone
//! (pure, so noop reports exactly what apply would do), then apply.

mod systemd;

use std::path::Path;

use anyhow::{Result, bail};
use drover_catalog::model::{ServiceEnsure, ServiceSpec, sha256_hex};
use drover_catalog::report::Event;

pub(crate) use systemd::Services;
use systemd::{Job, Systemd, UnitStatus};

use super::file::store_backup;
use super::{Env, Flags, Outcome, describe_type, event, observe};
use crate::diff::content_diff;
use crate::fsutil::{self, NewFile};

const UNIT_DIR: &str = "/etc/systemd/system";
const UNIT_SUFFIXES: [&str; 11] = [
    ".service",
    ".socket",
    ".device",
    ".mount",
    ".automount",
    ".swap",
    ".target",
    ".path",
    ".timer",
    ".slice",
    ".scope",
];
/// Unit contents appear in events as this many hex digits of their sha256.
const SHA_PREFIX: usize = 12;

pub(crate) fn converge(spec: &ServiceSpec, env: &mut Env<'_>, flags: Flags) -> Result<Outcome> {
    let unit = unit_name(&spec.name)?;
    let unit_path = Path::new(UNIT_DIR).join(&unit);
    if spec.unit.is_some() && !flags.noop {
        env.sweep_stale_temps(Path::new(UNIT_DIR));
    }
    let unit_text = match spec.unit {
        Some(_) => read_unit_file(&unit_path, &unit)?,
        None => None,
    };
    let systemd = env.services.connect()?;
    let seen = Observed {
        unit_text: unit_text.as_deref(),
        file_state: systemd.unit_file_state(&unit)?,
        status: systemd.status(&unit)?,
    };
    let plan = plan(spec, &unit, &unit_path, &seen, flags)?;
    if !flags.noop {
        if plan.write_unit {
            env.temps.before_temp();
        }
        apply(&plan, spec, &unit, &unit_path, systemd, &env.backups, &seen)?;
    }
    Ok(plan.outcome)
}

/// `nginx` -> `nginx.service`; names with a unit suffix stay as they are.
pub(crate) fn unit_name(name: &str) -> Result<String> {
    let valid = !name.is_empty()
        && name.len() <= 240
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":-_.\\@".contains(&b));
    if !valid {
        bail!(
            "`{name}` is not a valid systemd unit name\nhint: use letters, digits and `:-_.\\@`, e.g. `nginx` or `nginx.service`"
        );
    }
    let has_suffix = UNIT_SUFFIXES
        .iter()
        .any(|suffix| name.len() > suffix.len() && name.ends_with(suffix));
    Ok(match has_suffix {
        true => name.to_owned(),
        false => format!("{name}.service"),
    })
}

/// What the node looks like before anything changes.
#[derive(Debug)]
struct Observed<'a> {
    /// The managed unit file's content (only read when `unit` is managed).
    unit_text: Option<&'a [u8]>,
    /// systemd's UnitFileState; `None` when there is no unit file.
    file_state: Option<String>,
    status: UnitStatus,
}

/// The events to report and the actions that make them true.
#[derive(Debug, Default)]
struct Plan {
    outcome: Outcome,
    write_unit: bool,
    enable: Option<bool>,
    reload: bool,
    job: Option<Job>,
    /// A failed job's error leaves out the unit's journal.
    sensitive: bool,
}

/// Whether a unit file can be (and is) enabled, from its UnitFileState.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Enablement {
    Enabled,
    Disabled,
    /// `static`, `indirect`, `generated`, `transient`, `bad`: nothing to enable.
    NotInstallable(String),
    Masked,
    Missing,
}

fn enablement(file_state: Option<&str>) -> Enablement {
    match file_state {
        None | Some("not-found") => Enablement::Missing,
        Some("enabled" | "enabled-runtime" | "alias") => Enablement::Enabled,
        Some("disabled" | "linked" | "linked-runtime") => Enablement::Disabled,
        Some("masked" | "masked-runtime") => Enablement::Masked,
        Some(other) => Enablement::NotInstallable(other.to_owned()),
    }
}

fn plan(
    spec: &ServiceSpec,
    unit: &str,
    unit_path: &Path,
    seen: &Observed<'_>,
    flags: Flags,
) -> Result<Plan> {
    let mut plan = Plan {
        sensitive: flags.sensitive,
        ..Plan::default()
    };
    let unit_event = plan_unit_file(spec, unit_path, seen, flags, &mut plan);
    let redefined = unit_event.is_some();
    plan_enabled(spec, unit, seen, &mut plan)?;
    plan.reload = redefined || plan.enable.is_some();

    let events = &mut plan.outcome.events;
    let running = seen.status.running();
    // Started, stopped or restarted by this resource: a refresh adds nothing.
    let mut acted = false;
    match spec.ensure {
        Some(ServiceEnsure::Running) if !running => {
            check_startable(unit, &seen.status, plan.write_unit)?;
            events.push(event(
                "ensure",
                Some("stopped".into()),
                Some("running".into()),
            ));
            plan.job = Some(Job::Start);
            acted = true;
        }
        Some(ServiceEnsure::Stopped) if running => {
            events.push(event(
                "ensure",
                Some("running".into()),
                Some("stopped".into()),
            ));
            plan.job = Some(Job::Stop);
            acted = true;
        }
        _ => {}
    }
    let keeps_running = running && spec.ensure != Some(ServiceEnsure::Stopped);
    if let Some(index) = unit_event.filter(|_| keeps_running) {
        let note = match flags.noop {
            true => "would restart to apply it",
            false => "restarted to apply it",
        };
        let message = &mut events[index].message;
        *message = Some(match message.take() {
            Some(m) => format!("{m}; {note}"),
            None => note.to_owned(),
        });
        plan.job = Some(Job::Restart);
        acted = true;
    }
    if flags.refresh && keeps_running && !acted {
        let act = !flags.noop;
        let message = match act {
            true => "restarted: a subscribed resource changed",
            false => "would restart: a subscribed resource would change (noop)",
        };
        events.push(Event {
            message: Some(message.into()),
            ..event("refresh", Some("running".into()), Some("restarted".into()))
        });
        if act {
            plan.job = Some(Job::Restart);
        }
    }
    Ok(plan)
}

/// The unit file's event (its index), when the definition systemd runs changes:
/// new text, or the right text that systemd has not loaded yet (a run killed
/// between the write and the daemon-reload).
fn plan_unit_file(
    spec: &ServiceSpec,
    unit_path: &Path,
    seen: &Observed<'_>,
    flags: Flags,
    plan: &mut Plan,
) -> Option<usize> {
    let text = spec.unit.as_deref()?.as_bytes();
    let new_sha = sha256_hex(text);
    let events = &mut plan.outcome.events;
    if seen.unit_text == Some(text) {
        if !seen.status.need_reload {
            return None;
        }
        events.push(Event {
            message: Some("systemd had not loaded this unit file: daemon-reload".into()),
            ..event("unit", Some("not loaded".into()), Some(short(&new_sha)))
        });
        return Some(events.len() - 1);
    }
    let old_sha = seen.unit_text.map(sha256_hex);
    events.push(event(
        "unit",
        old_sha.as_deref().map(short),
        Some(short(&new_sha)),
    ));
    if !flags.sensitive {
        plan.outcome.diff = Some(content_diff(
            &unit_path.to_string_lossy(),
            seen.unit_text,
            text,
            old_sha.as_deref().unwrap_or("none"),
            &new_sha,
        ));
    }
    plan.write_unit = true;
    Some(events.len() - 1)
}

fn plan_enabled(
    spec: &ServiceSpec,
    unit: &str,
    seen: &Observed<'_>,
    plan: &mut Plan,
) -> Result<()> {
    let Some(want) = spec.enabled else {
        return Ok(());
    };
    let now = enablement(seen.file_state.as_deref());
    // A unit file about to be written decides for itself whether it can be enabled.
    let new_file = plan.write_unit;
    let is_enabled = match (&now, want) {
        (Enablement::Enabled, _) => true,
        (Enablement::Disabled, _) | (_, false) => false,
        (_, true) if new_file => false,
        (Enablement::Masked, true) => bail!(
            "cannot enable {unit}: it is masked\nhint: unmask it (`systemctl unmask {unit}`); drover never unmasks"
        ),
        (Enablement::Missing, true) => bail!(
            "cannot enable {unit}: there is no unit file for it\nhint: install the package that ships it first (and require it), or give the unit text with `unit`"
        ),
        (Enablement::NotInstallable(state), true) => bail!(
            "cannot enable {unit}: its unit file state is `{state}`, it has no [Install] section to enable\nhint: add one (e.g. WantedBy=multi-user.target) or leave `enabled` unset"
        ),
    };
    if is_enabled != want {
        plan.outcome.events.push(event(
            "enabled",
            Some(is_enabled.to_string()),
            Some(want.to_string()),
        ));
        plan.enable = Some(want);
    }
    Ok(())
}

fn check_startable(unit: &str, status: &UnitStatus, unit_written: bool) -> Result<()> {
    if unit_written {
        return Ok(());
    }
    match status.load.as_str() {
        "not-found" => bail!(
            "service {unit} does not exist (systemd has no unit file for it)\nhint: install the package that ships it first (and require it), or give the unit text with `unit`"
        ),
        "masked" => bail!(
            "cannot start {unit}: it is masked\nhint: unmask it (`systemctl unmask {unit}`); drover never unmasks"
        ),
        "error" | "bad-setting" => bail!(
            "cannot start {unit}: systemd could not load its unit file (LoadState={})\nhint: `systemd-analyze verify {unit}` says why",
            status.load
        ),
        _ => Ok(()),
    }
}

fn apply(
    plan: &Plan,
    spec: &ServiceSpec,
    unit: &str,
    unit_path: &Path,
    systemd: &Systemd,
    backups: &Path,
    seen: &Observed<'_>,
) -> Result<()> {
    if let (true, Some(text)) = (plan.write_unit, spec.unit.as_deref()) {
        if let Some(old) = seen.unit_text {
            store_backup(backups, &sha256_hex(old), old)?;
        }
        let file = NewFile {
            content: text.as_bytes(),
            mode: 0o644,
            uid: None,
            gid: None,
            validate: None,
            quiet: false,
        };
        fsutil::write_atomic(unit_path, file)?;
    }
    match plan.enable {
        Some(true) => systemd.enable(unit)?,
        Some(false) => systemd.disable(unit)?,
        None => {}
    }
    if plan.reload {
        systemd.reload()?;
    }
    if let Some(job) = plan.job {
        systemd.run(unit, job, plan.sensitive)?;
    }
    Ok(())
}

/// The managed unit file's content; a symlink there (a mask, a link to a
/// file elsewhere) is not replaced behind the operator's back.
fn read_unit_file(path: &Path, unit: &str) -> Result<Option<Vec<u8>>> {
    match observe(path)? {
        None => Ok(None),
        Some(md) if md.is_file() => Ok(Some(fs_err::read(path)?)),
        Some(md) if md.file_type().is_symlink() => bail!(
            "{} is a symlink to {}, not a unit file drover can replace\nhint: a link to /dev/null is a mask: unmask it (`systemctl unmask {unit}`) or remove the link",
            path.display(),
            fs_err::read_link(path)?.display()
        ),
        Some(md) => bail!(
            "{} is a {}, not a unit file",
            path.display(),
            describe_type(&md)
        ),
    }
}

fn short(sha: &str) -> String {
    sha[..SHA_PREFIX.min(sha.len())].to_owned()
}

#[cfg(test)]
mod tests;
