//! The one-line status `systemctl status drover-agent` shows (sd_notify's STATUS=).

use std::time::Duration;

use drover_catalog::Report;
use drover_catalog::report::{CachedCatalog, ResourceStatus};

pub(crate) const RUNNING: &str = "run in progress";
pub(crate) const STOPPING: &str = "stopping";

/// Longer reasons are cut: the status is one line of `systemctl status`.
const MAX_REASON_CHARS: usize = 160;

/// How the daemon's last run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastOutcome {
    /// No run since the agent started.
    None,
    Finished {
        noop: bool,
        changed: usize,
        failed: usize,
        skipped: usize,
        cached_catalog: bool,
    },
    /// The run could not happen (lock held, no catalog and no cached one...).
    CouldNotRun(String),
}

impl LastOutcome {
    pub(crate) fn of(report: &Report) -> LastOutcome {
        let count =
            |f: fn(ResourceStatus) -> bool| report.resources.iter().filter(|r| f(r.status)).count();
        LastOutcome::Finished {
            noop: report.noop,
            changed: count(|s| matches!(s, ResourceStatus::Changed | ResourceStatus::Noop)),
            failed: count(|s| s == ResourceStatus::Failed),
            skipped: count(|s| s == ResourceStatus::Skipped),
            cached_catalog: report.cached_catalog == CachedCatalog::OnFailure,
        }
    }

    /// The first line of the error, cut to fit a status line.
    pub(crate) fn could_not_run(error: &anyhow::Error) -> LastOutcome {
        let text = format!("{error:#}");
        let line = text.lines().next().unwrap_or_default();
        let reason = match line.char_indices().nth(MAX_REASON_CHARS) {
            Some((cut, _)) => format!("{}...", &line[..cut]),
            None => line.to_owned(),
        };
        LastOutcome::CouldNotRun(reason)
    }
}

/// `idle, next run in 1742 s; last run: 3 changed, 0 failed`.
pub(crate) fn idle(next_run_in: Duration, last: &LastOutcome) -> String {
    let next = format!("idle, next run in {} s", next_run_in.as_secs());
    match last {
        LastOutcome::None => next,
        LastOutcome::Finished {
            noop,
            changed,
            failed,
            skipped,
            cached_catalog,
        } => {
            let (label, verb) = match noop {
                true => ("last run (noop)", "would change"),
                false => ("last run", "changed"),
            };
            let mut text = format!("{next}; {label}: {changed} {verb}, {failed} failed");
            if *skipped > 0 {
                text.push_str(&format!(", {skipped} skipped"));
            }
            if *cached_catalog {
                text.push_str(", on the cached catalog (server unreachable)");
            }
            text
        }
        LastOutcome::CouldNotRun(reason) => format!("{next}; last run could not happen: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use anyhow::anyhow;
    use drover_catalog::report::ResourceReport;

    use super::*;

    fn resource(status: ResourceStatus) -> ResourceReport {
        ResourceReport::new("file:/x".to_string().try_into().unwrap(), status)
    }

    #[test]
    fn idle_status_counts_the_last_run() {
        let secs = Duration::from_millis(1_742_900);
        assert_eq!(idle(secs, &LastOutcome::None), "idle, next run in 1742 s");
        let mut report = crate::testutil::report("r");
        report.resources = vec![
            resource(ResourceStatus::Changed),
            resource(ResourceStatus::Changed),
            resource(ResourceStatus::Changed),
            resource(ResourceStatus::Unchanged),
        ];
        assert_eq!(
            idle(secs, &LastOutcome::of(&report)),
            "idle, next run in 1742 s; last run: 3 changed, 0 failed"
        );
        report.resources.push(resource(ResourceStatus::Failed));
        report.resources.push(resource(ResourceStatus::Skipped));
        report.cached_catalog = CachedCatalog::OnFailure;
        assert_eq!(
            idle(secs, &LastOutcome::of(&report)),
            "idle, next run in 1742 s; last run: 3 changed, 1 failed, 1 skipped, \
             on the cached catalog (server unreachable)"
        );
    }

    #[test]
    fn idle_status_says_noop() {
        let mut report = crate::testutil::report("r");
        report.noop = true;
        report.resources = vec![resource(ResourceStatus::Noop)];
        assert_eq!(
            idle(Duration::from_secs(5), &LastOutcome::of(&report)),
            "idle, next run in 5 s; last run (noop): 1 would change, 0 failed"
        );
    }

    #[test]
    fn a_run_that_could_not_happen_shows_its_first_line_cut_short() {
        let e = anyhow!("another run holds the lock /run/drover-agent.lock\nhint: wait");
        assert_eq!(
            idle(Duration::ZERO, &LastOutcome::could_not_run(&e)),
            "idle, next run in 0 s; last run could not happen: \
             another run holds the lock /run/drover-agent.lock"
        );
        let long = anyhow!("é{}", "x".repeat(400));
        let LastOutcome::CouldNotRun(reason) = LastOutcome::could_not_run(&long) else {
            panic!("not CouldNotRun")
        };
        assert_eq!(reason.chars().count(), MAX_REASON_CHARS + 3);
        assert!(
            reason.starts_with('é') && reason.ends_with("x..."),
            "{reason}"
        );
    }
}
