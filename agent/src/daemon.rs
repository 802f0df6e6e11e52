//! Daemon mode: one event loop over [`Event`], runs on a per-node splay then
//! every interval, and a graceful stop on SIGTERM/SIGINT.

use std::io::{ErrorKind, Read};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::config::Settings;

/// Everything that can wake the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Time for a run.
    Tick,
    /// SIGTERM or SIGINT.
    Shutdown,
}

/// The stop flag (checked between resources) and a socket that a signal
/// writes to, so a sleep ends the moment a signal arrives.
pub struct Signals {
    pub stop: Arc<AtomicBool>,
    wake: UnixStream,
}

impl Signals {
    /// Installs the handlers. A second signal while stopping exits at once.
    pub fn install() -> Result<Signals> {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake, notify) = UnixStream::pair().context("cannot create the signal socket")?;
        for signal in [SIGTERM, SIGINT] {
            signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&stop))?;
            signal_hook::flag::register(signal, Arc::clone(&stop))?;
            signal_hook::low_level::pipe::register(signal, notify.try_clone()?)?;
        }
        Ok(Signals { stop, wake })
    }

    #[cfg(test)]
    fn from_parts(stop: Arc<AtomicBool>, wake: UnixStream) -> Signals {
        Signals { stop, wake }
    }

    /// Sleeps until `deadline` (-> Tick) or a signal (-> Shutdown).
    pub fn wait_until(&mut self, deadline: Instant) -> Event {
        let mut buf = [0u8; 16];
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return Event::Shutdown;
            }
            let now = Instant::now();
            if now >= deadline {
                return Event::Tick;
            }
            // A zero timeout would mean "block forever".
            let wait = (deadline - now).max(Duration::from_millis(1));
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
pub fn splay_offset(node: &str, splay: Duration) -> Duration {
    let secs = splay.as_secs();
    if secs == 0 {
        return Duration::ZERO;
    }
    let digest = Sha256::digest(node.as_bytes());
    let n = u64::from_be_bytes(digest[..8].try_into().expect("sha256 has 32 bytes"));
    Duration::from_secs(n % secs)
}

/// Runs until a signal; the exit code is 0 on a requested stop.
pub fn run_daemon(settings: &Settings, mut signals: Signals) -> i32 {
    let first = splay_offset(&settings.node, settings.splay);
    eprintln!(
        "drover-agent: node `{}`, server {}, first run in {} s, then every {} s",
        settings.node,
        settings.server,
        first.as_secs(),
        settings.interval.as_secs()
    );
    let mut next = Instant::now() + first;
    loop {
        match signals.wait_until(next) {
            Event::Shutdown => {
                eprintln!("drover-agent: stopping");
                return 0;
            }
            Event::Tick => {
                let started = Instant::now();
                if let Err(e) = crate::run::run_once(settings, &signals.stop) {
                    eprintln!("error: {e:#}");
                }
                next = started + settings.interval;
                if next <= Instant::now() {
                    // A run longer than the interval: start the next one a full interval from now.
                    next = Instant::now() + settings.interval;
                }
            }
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
        let mut signals = Signals::from_parts(Arc::clone(&stop), wake);
        let t = Instant::now();
        assert_eq!(
            signals.wait_until(t + Duration::from_millis(20)),
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
            signals.wait_until(t + Duration::from_secs(60)),
            Event::Shutdown
        );
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "woke on the signal, not the deadline"
        );
        handle.join().unwrap();
    }
}
