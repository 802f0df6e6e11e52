//! The agent's one retry policy: a window that doubles with each failure in
//! a row up to a cap, and a random share of it, so a fleet that failed
//! together does not come back together. The randomness is `fastrand`'s
//! (seeded per thread from the system): it only has to spread, never to be
//! unpredictable.

use std::time::Duration;

/// Doubling from `first` at each failure in a row, never past `cap`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    pub(crate) first: Duration,
    pub(crate) cap: Duration,
}

impl Backoff {
    /// The window after `n` failures in a row beyond the first (`n` = 0:
    /// `first`).
    pub(crate) fn window(&self, n: u32) -> Duration {
        self.first.saturating_mul(1u32 << n.min(16)).min(self.cap)
    }

    /// A wait in the upper half of [`Backoff::window`], placed by `share`
    /// (0 to 1): never shorter than half, so backing off always slows down.
    pub(crate) fn upper_half(&self, n: u32, share: f64) -> Duration {
        let half = self.window(n) / 2;
        half + half.mul_f64(share.clamp(0.0, 1.0))
    }
}

/// A uniform draw in [0, 1): the share of a window a jittered wait takes.
pub(crate) fn share() -> f64 {
    fastrand::f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_doubles_up_to_its_cap() {
        let b = Backoff {
            first: Duration::from_secs(1),
            cap: Duration::from_secs(60),
        };
        let windows: Vec<u64> = (0..8).map(|n| b.window(n).as_secs()).collect();
        assert_eq!(windows, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.window(u32::MAX), Duration::from_secs(60));
        assert_eq!(b.upper_half(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.upper_half(0, 1.0), Duration::from_secs(1));
        assert_eq!(b.upper_half(3, 0.5), Duration::from_secs(6));
    }

    #[test]
    fn shares_are_in_the_unit_interval_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| share()).collect();
        assert!(draws.iter().all(|j| (0.0..1.0).contains(j)), "{draws:?}");
        let distinct: std::collections::BTreeSet<u64> = draws.iter().map(|j| j.to_bits()).collect();
        assert!(distinct.len() > 60, "{draws:?}");
    }
}
