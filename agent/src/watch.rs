//! The daemon's catalog watch: a thread that holds a long-poll on the
//! server's catalog version for this node (`GET nodes/{name}/catalog/watch`)
//! and raises [`crate::daemon::Event::CatalogChanged`] when the server knows
//! a version this node does not hold, so a git push converges in seconds.
//!
//! The run interval stays the safety net: the watch only starts runs early.
//! It never enrolls or renews (runs do); it reads the identity the last run
//! left. After it announces a version it waits for the run, then watches
//! again with the version that run applied. Failures back off exponentially
//! with jitter, and so does a version announced again because the run could
//! not reach it (the server shedding load, say), so it never busy-loops.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::backoff::Backoff;
use crate::client::{Client, Watched};
use crate::config::Settings;
use crate::http::{Http, Trust};
use crate::identity::TlsDir;
use crate::output;

/// How long one long-poll asks the server to wait: under the minute that
/// proxies and NAT tables commonly keep an idle connection.
pub(crate) const WATCH_SECS: u64 = 55;
/// The longest a failing watch waits before it tries again.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// The first wait after a failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// A run starts up to this long after an announcement, so that a fleet
/// told at the same instant does not fetch at the same instant.
const MAX_JITTER: Duration = Duration::from_secs(1);
/// The longest the watch waits for the run it asked for before watching
/// again (a run that takes longer is still going: the answer repeats).
const RUN_WAIT: Duration = Duration::from_secs(600);

/// What the daemon loop and the watch thread share: the version this node
/// holds and how many runs have finished.
#[derive(Debug, Default)]
struct Shared {
    round: Mutex<Round>,
    ran: Condvar,
}

#[derive(Debug, Default, Clone)]
struct Round {
    version: Option<String>,
    runs: u64,
    /// A run is under way (it may apply what the server announces).
    running: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Round> {
        self.round.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn current(&self) -> Round {
        self.lock().clone()
    }

    /// Sleeps `wait`, or less when a run after run number `runs` finishes;
    /// true when one did.
    fn wait_for_run(&self, runs: u64, wait: Duration) -> bool {
        let guard = self.lock();
        let (guard, _) = self
            .ran
            .wait_timeout_while(guard, wait, |round| round.runs == runs)
            .unwrap_or_else(|e| e.into_inner());
        guard.runs != runs
    }
}

/// The daemon's end of the watch.
pub(crate) struct Handle {
    shared: Arc<Shared>,
}

impl Handle {
    /// Before each run.
    pub(crate) fn starting(&self) {
        self.shared.lock().running = true;
    }

    /// After each run: the catalog version it applied (`None` when the run
    /// could not happen, which keeps the one held).
    pub(crate) fn ran(&self, version: Option<String>) {
        let mut round = self.shared.lock();
        if version.is_some() {
            round.version = version;
        }
        round.runs += 1;
        round.running = false;
        self.shared.ran.notify_all();
    }
}

/// What the watch thread holds to raise the daemon's
/// [`crate::daemon::Event::CatalogChanged`]: the daemon's flag, and the
/// socket that ends its sleep.
pub(crate) struct Waker {
    flag: Arc<AtomicBool>,
    notify: UnixStream,
}

impl Waker {
    pub(crate) fn new(flag: Arc<AtomicBool>, notify: UnixStream) -> Waker {
        Waker { flag, notify }
    }

    pub(crate) fn catalog_changed(&self) {
        self.flag.store(true, Ordering::SeqCst);
        // Non-blocking: a full socket already holds a wake-up.
        let _ = (&self.notify).write(b"c");
    }
}

/// Starts the watch thread, holding `version` (the cached catalog's).
pub(crate) fn spawn(settings: &Settings, version: Option<String>, waker: Waker) -> Result<Handle> {
    let shared = Arc::new(Shared {
        round: Mutex::new(Round {
            version,
            runs: 0,
            running: false,
        }),
        ran: Condvar::new(),
    });
    let watcher = Watcher {
        settings: settings.clone(),
        shared: Arc::clone(&shared),
        waker,
    };
    std::thread::Builder::new()
        .name("catalog-watch".into())
        .spawn(move || watcher.run())
        .context("cannot start the catalog watch thread")?;
    Ok(Handle { shared })
}

struct Watcher {
    settings: Settings,
    shared: Arc<Shared>,
    waker: Waker,
}

/// What to do with one watch answer.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Watch again at once.
    Again,
    /// Wait this long (or until a run), then watch again.
    Pause(Duration),
    /// Tell the daemon after this delay (unless a run comes first), then
    /// wait for its run.
    Announce(String, Duration),
}

/// What [`Next::Announce`] carries for a run an operator asked for.
const ASKED: &str = "(asked)";

/// Announcements of one version without the run reaching it.
#[derive(Debug, Default)]
struct Repeats {
    version: Option<String>,
    times: u32,
}

impl Watcher {
    /// Never returns: the thread ends with the process.
    fn run(self) {
        let mut failures = 0u32;
        let mut repeats = Repeats::default();
        loop {
            let round = self.shared.current();
            let started = Instant::now();
            let answer = self
                .client()
                .and_then(|client| client.watch(round.version.as_deref(), WATCH_SECS));
            let next = match answer {
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        output::warning(&format!(
                            "the catalog watch failed (runs still happen every {} s; retrying with backoff): {e:#}",
                            self.settings.interval.as_secs()
                        ));
                    }
                    Next::Pause(backoff(failures, crate::backoff::share()))
                }
                Ok(answer) => {
                    if failures > 0 {
                        output::info("the catalog watch is back");
                    }
                    failures = 0;
                    let now = self.shared.current();
                    decide(&answer, &round, &now, started.elapsed(), &mut repeats)
                }
            };
            match next {
                Next::Again => {}
                Next::Pause(wait) => {
                    self.shared.wait_for_run(round.runs, wait);
                }
                Next::Announce(version, delay) => {
                    if self.shared.wait_for_run(round.runs, delay) {
                        continue;
                    }
                    output::info(&if version == ASKED {
                        "an operator asked for a run; running now".to_owned()
                    } else {
                        format!("the server has catalog {version} for this node; running now")
                    });
                    self.waker.catalog_changed();
                    self.shared.wait_for_run(round.runs, RUN_WAIT);
                }
            }
        }
    }

    /// A client over the identity the last run left (read each round, so a
    /// renewed certificate is picked up), with a timeout past the long-poll's.
    fn client(&self) -> Result<Client> {
        let s = &self.settings;
        let timeout = Duration::from_secs(WATCH_SECS) + s.http_timeout;
        let Some(signing_key) = crate::identity::pinned_signing_key(&s.state_dir)? else {
            return Err(anyhow!("not enrolled yet (the first run enrolls)"));
        };
        if s.insecure_http {
            let http = Http::new(&s.servers, Trust::InsecureHttp, timeout)?;
            return Ok(Client::over(http, &s.node, signing_key));
        }
        let dir = TlsDir::of(&s.state_dir);
        let ca = certificate(&dir.ca())?;
        let cert = certificate(&dir.cert())?;
        let key_pem = fs_err::read_to_string(dir.key())?;
        let trust = Trust::Pinned {
            ca: &ca,
            client: Some((&cert, &key_pem)),
            tls_dir: dir.root(),
        };
        let http = Http::new(&s.servers, trust, timeout)?;
        Ok(Client::over(http, &s.node, signing_key))
    }
}

fn certificate(path: &std::path::Path) -> Result<CertificateDer<'static>> {
    let pem = fs_err::read(path)?;
    CertificateDer::pem_slice_iter(&pem)
        .next()
        .ok_or_else(|| anyhow!("{} holds no PEM certificate", path.display()))?
        .map_err(|e| anyhow!("{} is not a PEM certificate: {e}", path.display()))
}

/// The next step after `answer` to a watch sent in `sent`, given the round
/// `now` (a run may have finished meanwhile) and the call's `took`.
fn decide(
    answer: &Watched,
    sent: &Round,
    now: &Round,
    took: Duration,
    repeats: &mut Repeats,
) -> Next {
    if answer.run {
        // An operator asked for a run now (`node run`): no backoff, and
        // the version is the one held (the run fetches whatever is new).
        return Next::Announce(ASKED.to_owned(), Duration::ZERO);
    }
    let new = match (&answer.version, answer.changed) {
        (Some(new), true) => new,
        // An answer much sooner than asked for is a server going away (it
        // ends waits at shutdown), not news: pause rather than spin.
        _ if took < FIRST_BACKOFF => return Next::Pause(FIRST_BACKOFF),
        _ => return Next::Again,
    };
    if now.runs != sent.runs || now.version.as_ref() == Some(new) {
        // A run since the call was sent: watch with what it applied.
        return Next::Again;
    }
    if now.running {
        // The run under way may apply it: decide once it is over.
        return Next::Pause(RUN_WAIT);
    }
    if repeats.version.as_ref() == Some(new) {
        repeats.times += 1;
    } else {
        *repeats = Repeats {
            version: Some(new.clone()),
            times: 0,
        };
    }
    let mut delay = jitter(crate::backoff::share());
    if repeats.times > 0 {
        // The last run did not get this version: ask again, later each
        // time (an interval run may get it meanwhile).
        delay += backoff(repeats.times, crate::backoff::share());
    }
    Next::Announce(new.clone(), delay)
}

/// The wait after `n` failures in a row: doubling from one second up to
/// [`MAX_BACKOFF`], each in its upper half at random (`share`), so a fleet
/// that lost its server does not come back in step.
fn backoff(n: u32, share: f64) -> Duration {
    Backoff {
        first: FIRST_BACKOFF,
        cap: MAX_BACKOFF,
    }
    .upper_half(n.saturating_sub(1), share)
}

/// Up to [`MAX_JITTER`], at random (`share`).
fn jitter(share: f64) -> Duration {
    MAX_JITTER.mul_f64(share.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(version: &str, runs: u64) -> Round {
        Round {
            version: Some(version.into()),
            runs,
            running: false,
        }
    }

    fn answer(version: &str, changed: bool) -> Watched {
        Watched {
            version: Some(version.into()),
            changed,
            run: false,
        }
    }

    #[test]
    fn a_run_asked_for_is_announced_at_once_even_unchanged() {
        let mut repeats = Repeats::default();
        let asked = Watched {
            run: true,
            ..answer("v1", false)
        };
        let next = decide(&asked, &round("v1", 3), &round("v1", 3), LONG, &mut repeats);
        assert!(
            matches!(next, Next::Announce(ref v, d) if v == ASKED && d.is_zero()),
            "{next:?}"
        );
    }

    const LONG: Duration = Duration::from_secs(55);

    #[test]
    fn a_new_version_is_announced_within_the_jitter() {
        let mut repeats = Repeats::default();
        let sent = round("v1", 0);
        let Next::Announce(version, delay) =
            decide(&answer("v2", true), &sent, &sent, LONG, &mut repeats)
        else {
            panic!("not announced")
        };
        assert_eq!(version, "v2");
        assert!(delay <= MAX_JITTER);
    }

    #[test]
    fn a_version_a_run_already_applied_is_not_announced() {
        let mut repeats = Repeats::default();
        let sent = round("v1", 0);
        let now = round("v2", 1);
        assert_eq!(
            decide(&answer("v2", true), &sent, &now, LONG, &mut repeats),
            Next::Again
        );
        assert_eq!(
            decide(&answer("v1", false), &sent, &sent, LONG, &mut repeats),
            Next::Again,
            "a full wait without news: watch again"
        );
        let running = Round {
            running: true,
            ..sent.clone()
        };
        assert_eq!(
            decide(&answer("v2", true), &sent, &running, LONG, &mut repeats),
            Next::Pause(RUN_WAIT),
            "the run under way may apply it"
        );
    }

    #[test]
    fn an_early_unchanged_answer_pauses_instead_of_spinning() {
        let mut repeats = Repeats::default();
        let sent = round("v1", 0);
        assert_eq!(
            decide(
                &answer("v1", false),
                &sent,
                &sent,
                Duration::from_millis(3),
                &mut repeats
            ),
            Next::Pause(FIRST_BACKOFF)
        );
    }

    #[test]
    fn a_version_announced_again_waits_longer_each_time() {
        let mut repeats = Repeats::default();
        let sent = round("v1", 0);
        let mut delays = Vec::new();
        for _ in 0..8 {
            match decide(&answer("v2", true), &sent, &sent, LONG, &mut repeats) {
                Next::Announce(_, delay) => delays.push(delay),
                other => panic!("{other:?}"),
            }
        }
        assert!(delays[0] <= MAX_JITTER);
        assert!(delays[1] >= FIRST_BACKOFF / 2);
        assert!(delays[7] >= MAX_BACKOFF / 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= MAX_BACKOFF + MAX_JITTER));
        // Another version starts over.
        let Next::Announce(_, delay) =
            decide(&answer("v3", true), &sent, &sent, LONG, &mut repeats)
        else {
            panic!("not announced")
        };
        assert!(delay <= MAX_JITTER);
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_stays_under_a_second() {
        for r in [0.0, 0.001, 0.5, 0.999, 1.0] {
            for n in 1..40 {
                let d = backoff(n, r);
                let full = FIRST_BACKOFF
                    .saturating_mul(1 << (n - 1).min(16))
                    .min(MAX_BACKOFF);
                assert!(d >= full / 2 && d <= full, "n={n} r={r}: {d:?}");
            }
            assert!(jitter(r) <= MAX_JITTER);
        }
        assert_eq!(backoff(1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(30, 0.0), MAX_BACKOFF / 2);
    }

    #[test]
    fn a_run_ends_the_wait_and_keeps_the_version_when_it_could_not_happen() {
        let shared = Arc::new(Shared::default());
        let handle = Handle {
            shared: Arc::clone(&shared),
        };
        handle.ran(Some("v1".into()));
        assert!(
            !shared.wait_for_run(1, Duration::from_millis(10)),
            "no run: timed out"
        );
        let waiter = {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || shared.wait_for_run(1, Duration::from_secs(60)))
        };
        std::thread::sleep(Duration::from_millis(50));
        handle.ran(None);
        assert!(waiter.join().unwrap(), "woken by the run");
        let now = shared.current();
        assert_eq!((now.version.as_deref(), now.runs), (Some("v1"), 2));
    }
}
