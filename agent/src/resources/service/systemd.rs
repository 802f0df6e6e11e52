//! systemd's D-Bus API: one connection per run, unit state, and jobs that are
//! waited for (JobRemoved, subscribed before the job is queued) with a bound.

use std::fmt;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use futures_lite::StreamExt as _;
use zbus::blocking::Connection;
use zbus::proxy::CacheProperties;
use zbus::zvariant::{ObjectPath, OwnedObjectPath};

use crate::resources::sensitive::OUTPUT_HIDDEN;

/// How long a start, stop or restart may take. A little over systemd's own
/// default TimeoutStartSec (90 s), so systemd's verdict usually comes first.
const JOB_TIMEOUT: Duration = Duration::from_secs(100);
/// A method call (daemon-reload included) that takes longer means systemd is stuck.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// A `Type=simple` service counts as started once forked: watch it this long
/// so one that exits at once (bad config) fails its resource.
const SIMPLE_SETTLE: Duration = Duration::from_secs(1);
const JOURNAL_LINES: &str = "10";

/// (change type, symlink, destination), as EnableUnitFiles and DisableUnitFiles report them.
type UnitFileChanges = Vec<(String, String, String)>;

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Manager",
    default_service = "org.freedesktop.systemd1",
    default_path = "/org/freedesktop/systemd1"
)]
trait Manager {
    fn subscribe(&self) -> zbus::Result<()>;
    fn reload(&self) -> zbus::Result<()>;
    fn load_unit(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn start_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn stop_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn restart_unit(&self, name: &str, mode: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_unit_file_state(&self, file: &str) -> zbus::Result<String>;
    fn enable_unit_files(
        &self,
        files: &[&str],
        runtime: bool,
        force: bool,
    ) -> zbus::Result<(bool, UnitFileChanges)>;
    fn disable_unit_files(&self, files: &[&str], runtime: bool) -> zbus::Result<UnitFileChanges>;
    #[zbus(signal)]
    fn job_removed(
        &self,
        id: u32,
        job: ObjectPath<'_>,
        unit: &str,
        result: &str,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Unit",
    default_service = "org.freedesktop.systemd1",
    gen_async = false
)]
trait Unit {
    #[zbus(property)]
    fn load_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn active_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn sub_state(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn need_daemon_reload(&self) -> zbus::Result<bool>;
}

#[zbus::proxy(
    interface = "org.freedesktop.systemd1.Service",
    default_service = "org.freedesktop.systemd1",
    gen_async = false
)]
trait Service {
    #[zbus(property)]
    fn result(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn exec_main_code(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn exec_main_status(&self) -> zbus::Result<i32>;
    #[zbus(property, name = "Type")]
    fn service_type(&self) -> zbus::Result<String>;
}

/// The connection to systemd, opened by the first service resource of a run
/// and reused by the others.
#[derive(Default)]
pub(crate) struct Services {
    systemd: Option<Systemd>,
}

impl fmt::Debug for Services {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Services")
            .field("connected", &self.systemd.is_some())
            .finish()
    }
}

impl Services {
    pub(super) fn connect(&mut self) -> Result<&Systemd> {
        match &mut self.systemd {
            Some(systemd) => Ok(systemd),
            slot @ None => Ok(slot.insert(Systemd::connect()?)),
        }
    }
}

pub(super) struct Systemd {
    conn: Connection,
    manager: ManagerProxyBlocking<'static>,
    /// The same interface, async: its JobRemoved stream can be awaited with a timer.
    jobs: ManagerProxy<'static>,
}

/// A job systemd runs on a unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Job {
    Start,
    Stop,
    Restart,
}

impl Job {
    pub(super) fn verb(self) -> &'static str {
        match self {
            Job::Start => "start",
            Job::Stop => "stop",
            Job::Restart => "restart",
        }
    }
}

/// What systemd says about a unit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct UnitStatus {
    pub load: String,
    pub active: String,
    pub sub: String,
    /// The unit file on disk differs from what systemd loaded.
    pub need_reload: bool,
    /// Only for `.service` units.
    pub service: Option<ServiceStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct ServiceStatus {
    pub result: String,
    /// CLD_EXITED (1), CLD_KILLED (2), CLD_DUMPED (3); 0 when nothing ran.
    pub main_code: i32,
    pub main_status: i32,
    pub kind: String,
}

impl UnitStatus {
    /// Running as `systemctl is-active` means it.
    pub(super) fn running(&self) -> bool {
        matches!(self.active.as_str(), "active" | "reloading")
    }

    /// `failed (Result=exit-code, status=1)`, `activating/auto-restart (...)`.
    pub(super) fn describe(&self) -> String {
        let mut text = self.active.clone();
        if !self.sub.is_empty() && self.sub != self.active {
            text = format!("{text}/{}", self.sub);
        }
        let Some(service) = &self.service else {
            return text;
        };
        let exit = match service.main_code {
            1 => format!(", status={}", service.main_status),
            2 | 3 => format!(", signal={}", service.main_status),
            _ => String::new(),
        };
        format!("{text} (Result={}{exit})", service.result)
    }
}

impl Systemd {
    fn connect() -> Result<Systemd> {
        let conn = zbus::blocking::connection::Builder::system()
            .and_then(|b| b.method_timeout(CALL_TIMEOUT).build())
            .map_err(not_booted)?;
        let manager = ManagerProxyBlocking::new(&conn).map_err(not_booted)?;
        // systemd sends JobRemoved only while some client is subscribed.
        manager.subscribe().map_err(not_booted)?;
        let jobs = async_io::block_on(ManagerProxy::new(conn.inner())).map_err(not_booted)?;
        Ok(Systemd {
            conn,
            manager,
            jobs,
        })
    }

    pub(super) fn status(&self, unit: &str) -> Result<UnitStatus> {
        let read = || -> zbus::Result<UnitStatus> {
            let path = self.manager.load_unit(unit)?;
            let props = UnitProxy::builder(&self.conn)
                .path(path.clone())?
                .cache_properties(CacheProperties::No)
                .build()?;
            let service = match unit.ends_with(".service") {
                true => Some(self.service_status(path)?),
                false => None,
            };
            Ok(UnitStatus {
                load: props.load_state()?,
                active: props.active_state()?,
                sub: props.sub_state()?,
                need_reload: props.need_daemon_reload()?,
                service,
            })
        };
        read().with_context(|| format!("cannot read the state of {unit} from systemd"))
    }

    fn service_status(&self, path: OwnedObjectPath) -> zbus::Result<ServiceStatus> {
        let props = ServiceProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(CacheProperties::No)
            .build()?;
        Ok(ServiceStatus {
            result: props.result()?,
            main_code: props.exec_main_code()?,
            main_status: props.exec_main_status()?,
            kind: props.service_type()?,
        })
    }

    /// `enabled`, `disabled`, `static`, `masked`, ...; `None` without a unit file.
    pub(super) fn unit_file_state(&self, unit: &str) -> Result<Option<String>> {
        match self.manager.get_unit_file_state(unit) {
            Ok(state) => Ok(Some(state)),
            Err(zbus::Error::MethodError(name, _, _))
                if name.as_str() == "org.freedesktop.systemd1.NoSuchUnit"
                    || name.as_str() == "org.freedesktop.DBus.Error.FileNotFound" =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("cannot read the unit file state of {unit}")),
        }
    }

    pub(super) fn enable(&self, unit: &str) -> Result<()> {
        let (has_install, _changes) = self
            .manager
            .enable_unit_files(&[unit], false, false)
            .with_context(|| format!("cannot enable {unit}"))?;
        if !has_install {
            bail!(
                "cannot enable {unit}: its unit file has no [Install] section\nhint: add one (e.g. WantedBy=multi-user.target) or leave `enabled` unset"
            );
        }
        Ok(())
    }

    pub(super) fn disable(&self, unit: &str) -> Result<()> {
        self.manager
            .disable_unit_files(&[unit], false)
            .with_context(|| format!("cannot disable {unit}"))?;
        Ok(())
    }

    /// `systemctl daemon-reload`: returns once systemd has reloaded.
    pub(super) fn reload(&self) -> Result<()> {
        self.manager
            .reload()
            .context("systemd daemon-reload failed")
    }

    /// Runs `job` on `unit` and waits for it; a start or restart must leave
    /// the unit running, else the error carries its state and journal (not
    /// for a `sensitive` unit: its journal may print what it was given).
    pub(super) fn run(&self, unit: &str, job: Job, sensitive: bool) -> Result<()> {
        let verb = job.verb();
        let mut removed = async_io::block_on(self.jobs.receive_job_removed())
            .context("cannot subscribe to systemd's JobRemoved signal")?;
        let queued = match job {
            Job::Start => self.manager.start_unit(unit, "replace"),
            Job::Stop => self.manager.stop_unit(unit, "replace"),
            Job::Restart => self.manager.restart_unit(unit, "replace"),
        }
        .with_context(|| format!("cannot {verb} {unit}"))?;
        let finished = async_io::block_on(futures_lite::future::or(
            async { job_result(&mut removed, &queued).await.map(Some) },
            async {
                async_io::Timer::after(JOB_TIMEOUT).await;
                Ok(None)
            },
        ))?;
        match finished.as_deref() {
            None => Err(self.failure(
                unit,
                job,
                sensitive,
                Some(&format!(
                    "did not finish within {} s (the job may still be running)",
                    JOB_TIMEOUT.as_secs()
                )),
            )),
            Some("done") if job == Job::Stop => Ok(()),
            Some("done") => self.check_running(unit, job, sensitive),
            Some(result) => Err(self.failure(unit, job, sensitive, Some(&job_result_note(result)))),
        }
    }

    /// After a successful start job: running, and (for `Type=simple`, which
    /// counts as started once forked) still running a moment later.
    fn check_running(&self, unit: &str, job: Job, sensitive: bool) -> Result<()> {
        let started = Instant::now();
        loop {
            let status = self.status(unit)?;
            let restarting = status.sub == "auto-restart";
            if restarting || !(status.running() || status.active == "activating") {
                return Err(self.failure(unit, job, sensitive, None));
            }
            let simple = status
                .service
                .as_ref()
                .is_some_and(|s| matches!(s.kind.as_str(), "simple" | "idle"));
            if !simple || started.elapsed() >= SIMPLE_SETTLE {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `service demo.service failed to start: failed (Result=exit-code, status=1)`,
    /// a note (the job's result) or a hint, then the last journal lines.
    fn failure(&self, unit: &str, job: Job, sensitive: bool, note: Option<&str>) -> anyhow::Error {
        let (state, hint) = match self.status(unit) {
            Ok(status) => (status.describe(), oneshot_hint(&status)),
            Err(e) => (format!("state unknown ({e:#})"), None),
        };
        let detail = match (note, hint) {
            (Some(note), _) => format!("; {note}"),
            (None, Some(hint)) => hint.to_owned(),
            (None, None) => String::new(),
        };
        let journal = journal_unless_sensitive(unit, sensitive);
        anyhow!(
            "service {unit} failed to {}: {state}{detail}\nlast journal lines:\n{journal}",
            job.verb(),
        )
    }
}

async fn job_result(removed: &mut JobRemovedStream, job: &OwnedObjectPath) -> Result<String> {
    while let Some(signal) = removed.next().await {
        let args = signal
            .args()
            .context("malformed JobRemoved signal from systemd")?;
        if args.job() == &job.as_ref() {
            return Ok(args.result().to_string());
        }
    }
    bail!("the D-Bus connection to systemd closed while waiting for the job {job}")
}

fn job_result_note(result: &str) -> String {
    let why = match result {
        "dependency" => " (a unit it requires failed)",
        "timeout" => " (systemd's own timeout for the unit expired)",
        "canceled" => " (another job replaced it)",
        _ => "",
    };
    format!("systemd job result `{result}`{why}")
}

/// A start job that succeeded but left the unit inactive: a oneshot that exited.
fn oneshot_hint(status: &UnitStatus) -> Option<&'static str> {
    let exited_cleanly = status.active == "inactive"
        && status
            .service
            .as_ref()
            .is_some_and(|s| s.result == "success");
    exited_cleanly.then_some(
        "; it exited successfully, so it is not running\nhint: a oneshot service needs RemainAfterExit=yes to count as running",
    )
}

/// The journal lines under a failure; a sensitive unit's are not read.
fn journal_unless_sensitive(unit: &str, sensitive: bool) -> String {
    match sensitive {
        true => OUTPUT_HIDDEN.to_owned(),
        false => journal_tail(unit),
    }
}

/// The unit's last journal lines (what `systemctl status` would show).
fn journal_tail(unit: &str) -> String {
    let output = crate::resources::tool("journalctl")
        .args(["-u", unit, "-n", JOURNAL_LINES, "--no-pager", "-o", "cat"])
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            match text.trim_end() {
                "" => "(none)".to_owned(),
                lines => lines.to_owned(),
            }
        }
        Ok(out) => format!(
            "(journalctl failed: {})",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => format!("(cannot run journalctl: {e})"),
    }
}

fn not_booted(e: zbus::Error) -> anyhow::Error {
    anyhow!(
        "cannot connect to systemd over D-Bus: {e}\nhint: the service kind needs a booted systemd (PID 1) and the system bus (package dbus)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(active: &str, sub: &str, service: Option<ServiceStatus>) -> UnitStatus {
        UnitStatus {
            load: "loaded".into(),
            active: active.into(),
            sub: sub.into(),
            need_reload: false,
            service,
        }
    }

    fn exited(result: &str, code: i32, status: i32) -> Option<ServiceStatus> {
        Some(ServiceStatus {
            result: result.into(),
            main_code: code,
            main_status: status,
            kind: "simple".into(),
        })
    }

    #[test]
    fn describe_names_state_result_and_exit() {
        let failed = status("failed", "failed", exited("exit-code", 1, 1));
        assert_eq!(failed.describe(), "failed (Result=exit-code, status=1)");
        let restarting = status("activating", "auto-restart", exited("signal", 2, 9));
        assert_eq!(
            restarting.describe(),
            "activating/auto-restart (Result=signal, signal=9)"
        );
        assert_eq!(
            status("active", "mounted", None).describe(),
            "active/mounted"
        );
        assert!(status("reloading", "reload", None).running());
        assert!(!status("activating", "start", None).running());
    }

    #[test]
    fn clean_exit_of_a_oneshot_gets_a_hint_and_job_results_are_explained() {
        let gone = status("inactive", "dead", exited("success", 1, 0));
        assert!(oneshot_hint(&gone).unwrap().contains("RemainAfterExit=yes"));
        let failed = status("failed", "failed", exited("exit-code", 1, 1));
        assert_eq!(oneshot_hint(&failed), None);
        assert_eq!(
            job_result_note("dependency"),
            "systemd job result `dependency` (a unit it requires failed)"
        );
    }

    #[test]
    fn a_sensitive_units_journal_is_never_read() {
        assert_eq!(
            journal_unless_sensitive("drover-no-such-unit.service", true),
            OUTPUT_HIDDEN
        );
    }

    #[test]
    fn services_debug_does_not_need_a_connection() {
        assert_eq!(
            format!("{:?}", Services::default()),
            "Services { connected: false }"
        );
    }
}
