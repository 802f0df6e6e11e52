//! Backing off when the server sheds load: a 503 from the catalog route
//! (with `Retry-After`) is waited out and asked again a few times, each wait
//! the server's figure plus a random share of a window that doubles per
//! retry, so a fleet that arrived at once comes back spread out. Past the
//! last retry the error stands, and the run falls back to its cached catalog
//! as it does when the server is away.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use drover_catalog::CatalogRequest;

use crate::backoff::{self, Backoff};
use crate::client::{CatalogAnswer, Client, ServerBusy};
use crate::output;

/// Retries after a 503 within one run (the first ask not counted).
pub(super) const BUSY_RETRIES: u32 = 3;
/// No single wait is longer, whatever the server says: the run interval is
/// the real retry.
pub(super) const MAX_WAIT: Duration = Duration::from_secs(30);
/// The wait when a 503 names none.
const DEFAULT_WAIT: Duration = Duration::from_secs(1);
/// The smallest jitter window, so `Retry-After: 0` still spreads a herd.
const MIN_WINDOW: Duration = Duration::from_millis(100);

/// [`Client::catalog`], asked again after each 503 (at most
/// [`BUSY_RETRIES`] times); a stop request ends the wait with the 503.
pub(super) fn catalog_with_backoff(
    client: &Client,
    request: &CatalogRequest,
    cached_version: Option<&str>,
    stop: &AtomicBool,
) -> Result<CatalogAnswer> {
    let mut retry = 0;
    loop {
        let answer = client.catalog(request, cached_version);
        let busy = match &answer {
            Err(e) => e.downcast_ref::<ServerBusy>(),
            Ok(_) => None,
        };
        let Some(busy) = busy.filter(|_| retry < BUSY_RETRIES) else {
            return answer;
        };
        let wait = delay(busy.retry_after, retry, backoff::share());
        output::warning(&format!(
            "{busy}; asking again in {:.1} s (retry {} of {BUSY_RETRIES})",
            wait.as_secs_f64(),
            retry + 1
        ));
        if !sleep_unless_stopped(wait, stop) {
            return answer;
        }
        retry += 1;
    }
}

/// `Retry-After` (bounded) plus `share` (0 to 1) of a window as long as it,
/// doubled at each retry.
fn delay(retry_after: Option<Duration>, retry: u32, share: f64) -> Duration {
    let base = retry_after.unwrap_or(DEFAULT_WAIT).min(MAX_WAIT);
    let window = Backoff {
        first: base.max(MIN_WINDOW),
        cap: MAX_WAIT,
    }
    .window(retry);
    (base + window.mul_f64(share.clamp(0.0, 1.0))).min(MAX_WAIT)
}

/// Sleeps `duration` in short steps; false when asked to stop first.
fn sleep_unless_stopped(duration: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + duration;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wait_honours_retry_after_and_the_jitter_window_doubles() {
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(delay(secs(2), 0, 0.0), Duration::from_secs(2));
        assert_eq!(delay(secs(2), 0, 0.5), Duration::from_secs(3));
        assert_eq!(delay(secs(2), 1, 0.5), Duration::from_secs(4));
        assert_eq!(delay(secs(2), 2, 0.999_999).as_secs(), 9);
        // No Retry-After: one second; Retry-After: 0 still jitters a little.
        assert_eq!(delay(None, 0, 0.0), Duration::from_secs(1));
        assert_eq!(delay(secs(0), 0, 1.0), MIN_WINDOW);
        // A server asking for an hour gets at most MAX_WAIT.
        assert_eq!(delay(secs(3600), 0, 0.7), MAX_WAIT);
        assert_eq!(delay(secs(20), 5, 1.0), MAX_WAIT);
    }

    #[test]
    fn a_stop_request_ends_the_wait() {
        let stop = AtomicBool::new(true);
        let started = Instant::now();
        assert!(!sleep_unless_stopped(Duration::from_secs(30), &stop));
        assert!(started.elapsed() < Duration::from_secs(1));
        let go = AtomicBool::new(false);
        assert!(sleep_unless_stopped(Duration::from_millis(20), &go));
    }
}
