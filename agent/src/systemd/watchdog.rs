//! What a watchdog ping means. While idle, the daemon loop pings, so a loop
//! that stops turning gets the agent restarted. During a run a pinger thread
//! pings, but only while the run is within its time budget: a run wedged past
//! `run_timeout_secs` (plus a grace) stops the pings, and systemd kills the
//! agent and everything it started (KillMode=mixed) and starts it again.

use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

/// The engine checks `run_timeout_secs` between resources only, so a healthy
/// run overruns it by the resource in progress: an apt transaction, an exec
/// up to its own timeout.
pub(crate) const SLOWEST_RESOURCE: Duration = Duration::from_secs(15 * 60);

/// How long a run may take before it counts as wedged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunBudget {
    started: Instant,
    run_timeout: Duration,
    grace: Duration,
}

impl RunBudget {
    /// The grace: the slowest resource, then posting the report and one more
    /// request (each bounded by the HTTP timeout).
    pub(crate) fn new(
        started: Instant,
        run_timeout: Duration,
        http_timeout: Duration,
    ) -> RunBudget {
        RunBudget {
            started,
            run_timeout,
            grace: SLOWEST_RESOURCE + http_timeout * 2,
        }
    }

    pub(crate) fn limit(&self) -> Duration {
        self.run_timeout + self.grace
    }

    pub(crate) fn allows(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.started) < self.limit()
    }

    pub(crate) fn overrun_message(&self) -> String {
        format!(
            "the run has taken longer than run_timeout_secs ({} s) plus {} s of grace: \
             it is wedged, the watchdog is no longer fed and systemd will restart the agent\n\
             hint: if runs are really this long, raise run_timeout_secs",
            self.run_timeout.as_secs(),
            self.grace.as_secs()
        )
    }
}

/// Runs `work` while another thread calls `ping` every `every`, as long as
/// `budget` allows; once it does not, `overrun` is called once and the pings stop.
pub(crate) fn feed_during<T>(
    every: Duration,
    budget: RunBudget,
    ping: impl Fn() + Sync,
    overrun: impl Fn() + Sync,
    work: impl FnOnce() -> T,
) -> T {
    let (done, finished) = mpsc::channel::<()>();
    std::thread::scope(|scope| {
        let (ping, overrun) = (&ping, &overrun);
        scope.spawn(move || pinger(&finished, every, budget, ping, overrun));
        let result = work();
        // Disconnecting the channel ends the pinger at once.
        drop(done);
        result
    })
}

fn pinger(
    finished: &Receiver<()>,
    every: Duration,
    budget: RunBudget,
    ping: &dyn Fn(),
    overrun: &dyn Fn(),
) {
    let mut overran = false;
    while let Err(RecvTimeoutError::Timeout) = finished.recv_timeout(every) {
        if budget.allows(Instant::now()) {
            ping();
        } else if !overran {
            overran = true;
            overrun();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn budget_is_the_run_timeout_plus_the_grace() {
        let t = Instant::now();
        let budget = RunBudget::new(t, Duration::from_secs(3600), Duration::from_secs(30));
        assert_eq!(budget.limit(), Duration::from_secs(3600 + 15 * 60 + 60));
        assert!(budget.allows(t));
        assert!(budget.allows(t + Duration::from_secs(3600 + 15 * 60 + 59)));
        assert!(!budget.allows(t + Duration::from_secs(3600 + 15 * 60 + 60)));
        assert!(
            budget
                .overrun_message()
                .contains("run_timeout_secs (3600 s) plus 960 s")
        );
    }

    #[test]
    fn pings_stop_when_the_budget_is_spent_and_overrun_is_said_once() {
        let started = Instant::now();
        // A zero timeout and no HTTP time: the budget is just the grace, shortened for the test.
        let budget = RunBudget {
            started,
            run_timeout: Duration::ZERO,
            grace: Duration::from_millis(150),
        };
        let pings = Mutex::new(Vec::new());
        let overruns = AtomicUsize::new(0);
        let answer = feed_during(
            Duration::from_millis(20),
            budget,
            || pings.lock().unwrap().push(Instant::now()),
            || {
                overruns.fetch_add(1, Ordering::SeqCst);
            },
            || {
                std::thread::sleep(Duration::from_millis(400));
                42
            },
        );
        assert_eq!(answer, 42);
        let pings = pings.into_inner().unwrap();
        assert!(!pings.is_empty(), "pinged while within the budget");
        assert!(
            pings.iter().all(|&p| budget.allows(p)),
            "no ping after the budget"
        );
        assert_eq!(overruns.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_pinger_ends_with_the_work() {
        let budget = RunBudget::new(Instant::now(), Duration::from_secs(60), Duration::ZERO);
        let t = Instant::now();
        feed_during(Duration::from_secs(3600), budget, || {}, || {}, || ());
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "did not wait a ping interval"
        );
    }
}
