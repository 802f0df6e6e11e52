//! Daemon mode: one event loop over [`Event`]: runs on a per-node splay then
//! every interval, a run at once on SIGHUP (`systemctl reload`) and when the
//! catalog watch hears of a new version (see [`crate::watch`]), a graceful
//! stop on SIGTERM/SIGINT. Under systemd it says when it is ready, shows its
//! status and feeds the watchdog (see [`crate::systemd`]).

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::config::Settings;
use crate::output;
use crate::state::StateDir;
use crate::systemd::Notifier;
use crate::systemd::status::{self, LastOutcome};
use crate::systemd::watchdog::{self, RunBudget};
use crate::watch::Waker;

/// Everything that can wake the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    /// Time for a run.
    Tick,
    /// Time to tell systemd the loop still turns (a watchdog ping).
    Heartbeat,
    /// SIGHUP (`systemctl reload`): run now, or right after the current run.
    RunNow,
    /// The server has a catalog version this node does not hold: run now.
    CatalogChanged,
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// The stop flag (checked between resources), the run-now and
/// catalog-changed flags, and a socket that a signal (or the watch thread)
/// writes to, so a sleep ends the moment one arrives.
pub(crate) struct Signals {
    pub stop: Arc<AtomicBool>,
    run_now: Arc<AtomicBool>,
    catalog_changed: Arc<AtomicBool>,
    wake: UnixStream,
    notify: UnixStream,
}

impl Signals {
    /// SIGTERM and SIGINT stop; a second one while stopping exits at once.
    pub(crate) fn install() -> Result<Signals> {
        Self::install_handlers(false)
    }

    /// Also SIGHUP, which asks for a run now (daemon mode; elsewhere it
    /// keeps its default of ending the process).
    pub(crate) fn install_with_reload() -> Result<Signals> {
        Self::install_handlers(true)
    }

    fn install_handlers(reload: bool) -> Result<Signals> {
        let stop = Arc::new(AtomicBool::new(false));
        let run_now = Arc::new(AtomicBool::new(false));
        let (wake, notify) = UnixStream::pair().context("cannot create the signal socket")?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
            signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
        }
        if reload {
            signal_hook::flag::register(SIGHUP, Arc::clone(&run_now))?;
            signal_hook::low_level::pipe::register(SIGHUP, notify.try_clone()?)?;
        }
        notify
            .set_nonblocking(true)
            .context("cannot set up the signal socket")?;
        Ok(Signals {
            stop,
            run_now,
            catalog_changed: Arc::new(AtomicBool::new(false)),
            wake,
            notify,
        })
    }

    #[cfg(test)]
    fn from_parts(stop: Arc<AtomicBool>, run_now: Arc<AtomicBool>, wake: UnixStream) -> Signals {
        // Writes to a clone of `wake` reach nobody; a test of the watch's
        // wake-ups gives the other end with `notify_with`.
        let notify = wake.try_clone().expect("a socket clone");
        Signals {
            stop,
            run_now,
            catalog_changed: Arc::new(AtomicBool::new(false)),
            wake,
            notify,
        }
    }

    #[cfg(test)]
    fn notify_with(self, notify: UnixStream) -> Signals {
        Signals { notify, ..self }
    }

    /// A handle for the watch thread; `Err` when the socket cannot be shared.
    pub(crate) fn waker(&self) -> Result<Waker> {
        Ok(Waker::new(
            Arc::clone(&self.catalog_changed),
            self.notify
                .try_clone()
                .context("cannot share the signal socket")?,
        ))
    }

    /// Sleeps until `deadline` (-> Tick), a signal (-> Shutdown, RunNow), the
    /// watch (-> CatalogChanged), or, when `heartbeat` is set, until that
    /// much time has passed (-> Heartbeat).
    pub(crate) fn wait_until(&mut self, deadline: Instant, heartbeat: Option<Duration>) -> Event {
        let beat = heartbeat.map(|every| Instant::now() + every);
        let mut buf = [0u8; 16];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Event::Shutdown;
            }
            if self.run_now.swap(false, Ordering::SeqCst) {
                return Event::RunNow;
            }
            if self.catalog_changed.swap(false, Ordering::SeqCst) {
                return Event::CatalogChanged;
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Tick;
            }
            if beat.is_some_and(|beat| now >= beat) {
                return Event::Heartbeat;
            }
            let until = beat.map_or(deadline, |beat| beat.min(deadline));
            // A zero timeout would mean "block forever".
            let wait = (until - now).max(Duration::from_millis(1));
            if self.wake.set_read_timeout(Some(wait)).is_err() {
                std::thread::sleep(wait.min(Duration::from_millis(200)));
                continue;
            }
            match self.wake.read(&mut buf) {
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }
}

/// Deterministic per-node offset in [0, splay): stable across restarts, and
/// spreads a fleet's runs over the splay window.
pub(crate) fn splay_offset(node: &str, splay: Duration) -> Duration {
    let secs = splay.as_secs();
    if secs == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(node.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"));
    Duration::from_secs(n % secs)
}

/// How soon to run again after `n` runs in a row left reports spooled:
/// 5 s, doubling up to 5 minutes; none when the spool is empty.
fn spool_retry(n: u32) -> Option<Duration> {
    (n > 0).then(|| Duration::from_secs(5 << (n - 1).min(6)).min(Duration::from_secs(300)))
}

/// The next run: an interval after the last one started, or, after a run
/// longer than the interval, a full interval from now.
fn next_run_after(started: Instant, interval: Duration, now: Instant) -> Instant {
    let next = started + interval;
    if next <= now { now + interval } else { next }
}

/// Runs until a signal; the exit code is 0 on a requested stop. `Err` when
/// the daemon cannot start (then systemd never sees it ready).
pub(crate) fn run_daemon(settings: &Settings, mut signals: Signals) -> Result<i32> {
    let notifier = Notifier::from_env();
    let (cached, version) = prepare_state(settings)?;
    let first = splay_offset(&settings.node, settings.splay);
    output::info(&format!(
        "node `{}`, server {}, {cached}, first run in {} s, then every {} s{}",
        settings.node,
        settings.servers.join(", "),
        first.as_secs(),
        settings.interval.as_secs(),
        if settings.watch {
            ", and at once when the catalog changes"
        } else {
            ""
        }
    ));
    let watch = if settings.watch {
        Some(crate::watch::spawn(settings, version, signals.waker()?)?)
    } else {
        None
    };
    let mut next_run = Instant::now() + first;
    let mut last = LastOutcome::None;
    let mut undelivered = 0u32;
    // Ready before the first run: a run can take minutes, readiness must not wait for it.
    notifier.ready(&status::idle(first, &last));
    loop {
        let event = signals.wait_until(next_run, notifier.ping_interval());
        match event {
            Event::Shutdown => {
                notifier.stopping();
                output::info("stopping");
                return Ok(0);
            }
            Event::Heartbeat => {
                let next_in = next_run.saturating_duration_since(Instant::now());
                notifier.alive(&status::idle(next_in, &last));
            }
            Event::Tick | Event::RunNow | Event::CatalogChanged => {
                match event {
                    Event::RunNow => output::info("run requested (SIGHUP)"),
                    Event::CatalogChanged => output::info("run requested (new catalog version)"),
                    _ => {}
                }
                let started = Instant::now();
                if let Some(watch) = &watch {
                    watch.starting();
                }
                let (outcome, version) = run_watched(settings, &signals.stop, &notifier);
                last = outcome;
                if let Some(watch) = &watch {
                    watch.ran(version);
                }
                next_run = next_run_after(started, settings.interval, Instant::now());
                // A report the server did not get (spooled) is news it
                // waits for (a drain waits for a replica's state): the next
                // run, which delivers the spool first, comes soon.
                let spooled = crate::state::StateDir::new(&settings.state_dir)
                    .spooled()
                    .is_ok_and(|s| !s.is_empty());
                undelivered = if spooled { undelivered + 1 } else { 0 };
                if let Some(retry) = spool_retry(undelivered) {
                    next_run = next_run.min(Instant::now() + retry);
                }
                let next_in = next_run.saturating_duration_since(Instant::now());
                notifier.alive(&status::idle(next_in, &last));
            }
        }
    }
}

/// The state directory exists; says which catalog the first run falls back
/// on (the cached one, verified with the pinned signing key), and its version.
fn prepare_state(settings: &Settings) -> Result<(String, Option<String>)> {
    let state = StateDir::new(&settings.state_dir);
    state.prepare()?;
    let Some(key) = crate::identity::pinned_signing_key(&settings.state_dir)? else {
        return Ok(("not enrolled yet".to_owned(), None));
    };
    Ok(match state.cached_catalog(&key) {
        Ok(Some(c)) if c.node == settings.node => (
            format!(
                "cached catalog {} ({} resources)",
                c.version,
                c.resources.len()
            ),
            Some(c.version),
        ),
        Ok(Some(c)) => (
            format!("no cached catalog (the cached one is node `{}`'s)", c.node),
            None,
        ),
        Ok(None) => ("no cached catalog".to_owned(), None),
        Err(e) => {
            output::error(&format!("{e:#}"));
            ("no usable cached catalog".to_owned(), None)
        }
    })
}

/// One run, with the watchdog fed only while the run is within its budget;
/// with the catalog version it applied (or would have, in `--noop`), the
/// one the catalog watch holds from now on.
fn run_watched(
    settings: &Settings,
    stop: &AtomicBool,
    notifier: &Notifier,
) -> (LastOutcome, Option<String>) {
    notifier.status(status::RUNNING);
    let run = || crate::run::run_once(settings, stop);
    let result = match notifier.ping_interval() {
        None => run(),
        Some(every) => {
            let budget =
                RunBudget::new(Instant::now(), settings.run_timeout, settings.http_timeout);
            watchdog::feed_during(
                every,
                budget,
                || notifier.watchdog(),
                || output::error(&budget.overrun_message()),
                run,
            )
        }
    };
    match result {
        Ok(ran) => (
            LastOutcome::of(&ran.report),
            Some(ran.report.catalog_version),
        ),
        Err(e) => {
            output::error(&format!("{e:#}"));
            (LastOutcome::could_not_run(&e), None)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn splay_is_stable_and_bounded() {
        let splay = Duration::from_secs(1800);
        let a = splay_offset("web-1", splay);
        assert_eq!(a, splay_offset("web-1", splay));
        assert!(a < splay);
        assert_ne!(splay_offset("web-1", splay), splay_offset("web-2", splay));
        assert_eq!(splay_offset("x", Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn wait_ticks_at_deadline_and_wakes_on_signal() {
        let (wake, mut notify) = UnixStream::pair().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let run_now = Arc::new(AtomicBool::new(false));
        let mut signals = Signals::from_parts(Arc::clone(&stop), Arc::clone(&run_now), wake);
        let t = Instant::now();
        assert_eq!(
            signals.wait_until(t + Duration::from_millis(20), None),
            Event::Tick
        );
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
            notify.write_all(b"x").unwrap();
        });
        let t = Instant::now();
        assert_eq!(
            signals.wait_until(t + Duration::from_secs(60), None),
            Event::Shutdown
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "woke on the signal, not the deadline"
        );
        handle.join().unwrap();
    }

    #[test]
    fn heartbeats_come_before_the_deadline_and_sighup_asks_for_a_run() {
        let (wake, mut notify) = UnixStream::pair().unwrap();
        let run_now = Arc::new(AtomicBool::new(false));
        let mut signals =
            Signals::from_parts(Arc::new(AtomicBool::new(false)), Arc::clone(&run_now), wake);
        let deadline = Instant::now() + Duration::from_secs(60);
        let t = Instant::now();
        assert_eq!(
            signals.wait_until(deadline, Some(Duration::from_millis(20))),
            Event::Heartbeat
        );
        assert!(t.elapsed() < Duration::from_secs(5));
        let soon = Instant::now() + Duration::from_millis(10);
        assert_eq!(
            signals.wait_until(soon, Some(Duration::from_secs(60))),
            Event::Tick,
            "the deadline wins over a later heartbeat"
        );
        run_now.store(true, Ordering::SeqCst);
        notify.write_all(b"h").unwrap();
        assert_eq!(signals.wait_until(deadline, None), Event::RunNow);
        assert!(!run_now.load(Ordering::SeqCst), "one SIGHUP, one run");
    }

    #[test]
    fn the_watch_thread_wakes_the_loop_for_a_run() {
        let (wake, notify) = UnixStream::pair().unwrap();
        let mut signals = Signals::from_parts(
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
            wake,
        )
        .notify_with(notify);
        let waker = signals.waker().unwrap();
        let handle = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.catalog_changed();
        });
        let t = Instant::now();
        let deadline = t + Duration::from_secs(60);
        assert_eq!(signals.wait_until(deadline, None), Event::CatalogChanged);
        assert!(t.elapsed() < Duration::from_secs(5), "woke at once");
        handle.join().unwrap();
        let soon = Instant::now() + Duration::from_millis(20);
        assert_eq!(
            signals.wait_until(soon, None),
            Event::Tick,
            "one announcement, one run"
        );
    }

    #[test]
    fn spooled_reports_bring_the_next_run_closer_backing_off() {
        assert_eq!(spool_retry(0), None);
        assert_eq!(spool_retry(1), Some(Duration::from_secs(5)));
        assert_eq!(spool_retry(2), Some(Duration::from_secs(10)));
        assert_eq!(spool_retry(7), Some(Duration::from_secs(300)));
        assert_eq!(spool_retry(40), Some(Duration::from_secs(300)));
    }

    #[test]
    fn next_run_is_an_interval_after_the_start_or_from_now_after_a_long_run() {
        let t = Instant::now();
        let interval = Duration::from_secs(1800);
        assert_eq!(
            next_run_after(t, interval, t + Duration::from_secs(60)),
            t + interval
        );
        let late = t + Duration::from_secs(2000);
        assert_eq!(next_run_after(t, interval, late), late + interval);
    }
}
