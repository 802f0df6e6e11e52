//! Readiness: a container drover started must still be running, one
//! with a healthcheck must turn healthy within a bound its own check sets,
//! and one with an app's probe (`probe.rs`) must pass it within the bound
//! the probe sets. A running container its check or its probe calls
//! unhealthy fails its resource on later runs too.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use bollard::models::{HealthStatusEnum, HealthcheckResult};
use drover_catalog::model::{Healthcheck, HttpProbe};

use super::Seen;
use super::docker::Docker;
use super::probe::{self, Prober};
use crate::resources::sensitive::OUTPUT_HIDDEN;

/// Docker's defaults for what a healthcheck leaves unset.
const DEFAULT_INTERVAL_SECS: u64 = 30;
const DEFAULT_TIMEOUT_SECS: u64 = 30;
const DEFAULT_RETRIES: u32 = 3;
/// No wait for healthy is longer than this, whatever the check says.
const MAX_WAIT: Duration = Duration::from_secs(10 * 60);
const POLL: Duration = Duration::from_millis(250);
/// Between probes while a fresh container is awaited: sooner than the
/// probe's interval, so a replica that is up is seen up at once.
const PROBE_POLL: Duration = Duration::from_millis(500);
/// Health probe outputs shown under a failure.
const LOG_ENTRIES: usize = 3;

/// After a start: the container is running, and healthy when it has a check.
/// A `sensitive` container's logs and probe outputs stay out of the error.
pub(super) fn await_running(
    docker: &Docker,
    name: &str,
    check: Option<&Healthcheck>,
    sensitive: bool,
) -> Result<()> {
    let wait = check.map_or(Duration::ZERO, budget);
    let deadline = Instant::now() + wait;
    loop {
        let Some(seen) = docker.inspect(name)?.map(Seen::from) else {
            bail!("container {name} disappeared right after it started");
        };
        if !seen.running {
            let logs = match sensitive {
                true => OUTPUT_HIDDEN.to_owned(),
                false => logs_or_nothing(docker.log_tail(name)),
            };
            bail!("container {name} exited right after it started\n{logs}");
        }
        match (check, seen.health) {
            (None, _) | (_, Some(HealthStatusEnum::HEALTHY)) => return Ok(()),
            (_, Some(HealthStatusEnum::UNHEALTHY)) => bail!(unhealthy(name, &seen, sensitive)),
            _ if Instant::now() >= deadline => bail!(
                "container {name} did not become healthy within {} s (its health is still `starting`){}",
                wait.as_secs(),
                probe_log(&seen, sensitive)
            ),
            _ => std::thread::sleep(POLL),
        }
    }
}

/// After a start (and the container's own healthcheck): the app's probe
/// passes within [`probe::budget`], while the container keeps running.
pub(super) fn await_probe(
    docker: &Docker,
    name: &str,
    probe: &HttpProbe,
    sensitive: bool,
) -> Result<()> {
    let prober = Prober::new()?;
    let wait = probe::budget(probe);
    let deadline = Instant::now() + wait;
    loop {
        let Some(c) = docker.inspect(name)? else {
            bail!("container {name} disappeared while its probe was awaited");
        };
        if !c.state.as_ref().and_then(|s| s.running).unwrap_or(false) {
            let logs = match sensitive {
                true => OUTPUT_HIDDEN.to_owned(),
                false => logs_or_nothing(docker.log_tail(name)),
            };
            bail!("container {name} exited before its probe passed\n{logs}");
        }
        let verdict = prober.once(&c, probe);
        if verdict.passed() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= deadline {
            bail!(
                "container {name} is unhealthy: its probe did not pass within {} s; the last one: {verdict}",
                wait.as_secs()
            );
        }
        std::thread::sleep(PROBE_POLL.min(deadline - now));
    }
}

/// A running container already converged whose probe fails (a few tries,
/// [`Prober::confirm`]) is a failure to see, as an unhealthy check is.
pub(super) fn check_probe(docker: &Docker, name: &str, probe: &HttpProbe) -> Result<()> {
    let Some(c) = docker.inspect(name)? else {
        bail!("container {name} disappeared before its probe");
    };
    let verdict = Prober::new()?.confirm(&c, probe);
    if !verdict.passed() {
        bail!(
            "container {name} is unhealthy: its probe failed {} times in a row; the last one: {verdict}",
            probe::TRIES
        );
    }
    Ok(())
}

/// A running container that its own check calls unhealthy is a failure
/// to see, even when nothing else about it changed.
pub(super) fn check_not_unhealthy(name: &str, seen: &Seen, sensitive: bool) -> Result<()> {
    if seen.health == Some(HealthStatusEnum::UNHEALTHY) {
        bail!(unhealthy(name, seen, sensitive));
    }
    Ok(())
}

fn unhealthy(name: &str, seen: &Seen, sensitive: bool) -> String {
    format!(
        "container {name} is unhealthy: its healthcheck failed{}",
        probe_log(seen, sensitive)
    )
}

/// How long a check may take to call a fresh container healthy or
/// unhealthy: every retry, each one interval plus its timeout, and slack.
fn budget(check: &Healthcheck) -> Duration {
    let interval = check.interval_secs.unwrap_or(DEFAULT_INTERVAL_SECS);
    let timeout = check.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    let tries = u64::from(check.retries.unwrap_or(DEFAULT_RETRIES)) + 1;
    let secs = (interval + timeout).saturating_mul(tries).saturating_add(5);
    Duration::from_secs(secs).min(MAX_WAIT)
}

/// The newest probe outputs, oldest first, one line each.
pub(super) fn last_outputs(log: Vec<HealthcheckResult>) -> Vec<String> {
    let skip = log.len().saturating_sub(LOG_ENTRIES);
    log.into_iter()
        .skip(skip)
        .map(|probe| {
            let output = probe.output.unwrap_or_default();
            let output = output.trim();
            let code = probe.exit_code.unwrap_or(-1);
            match output.is_empty() {
                true => format!("exit code {code}, no output"),
                false => format!("exit code {code}: {}", output.replace('\n', " / ")),
            }
        })
        .collect()
}

fn probe_log(seen: &Seen, sensitive: bool) -> String {
    match (seen.health_log.is_empty(), sensitive) {
        (true, _) => String::new(),
        (false, true) => format!("\nhealth log: {OUTPUT_HIDDEN}"),
        (false, false) => format!("\nhealth log:\n  {}", seen.health_log.join("\n  ")),
    }
}

fn logs_or_nothing(lines: String) -> String {
    match lines.is_empty() {
        true => "(it wrote no log)".into(),
        false => format!("its last log lines:\n{lines}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_follows_the_check_and_is_bounded() {
        let check = |interval, timeout, retries| Healthcheck {
            test: vec!["CMD".into(), "true".into()],
            interval_secs: interval,
            timeout_secs: timeout,
            retries,
        };
        assert_eq!(
            budget(&check(Some(1), Some(2), Some(2))),
            Duration::from_secs(14)
        );
        assert_eq!(budget(&check(None, None, None)), Duration::from_secs(245));
        assert_eq!(budget(&check(Some(600), None, Some(9))), MAX_WAIT);
    }

    #[test]
    fn the_health_log_keeps_the_newest_probes_on_one_line_each() {
        let probe = |code, output: &str| HealthcheckResult {
            exit_code: Some(code),
            output: Some(output.into()),
            ..Default::default()
        };
        let log = vec![
            probe(1, "first"),
            probe(1, "second"),
            probe(1, "connection refused\nretrying"),
            probe(1, ""),
        ];
        assert_eq!(
            last_outputs(log),
            [
                "exit code 1: second",
                "exit code 1: connection refused / retrying",
                "exit code 1, no output",
            ]
        );
    }
}
