//! Admission for catalog compiles: at most `max_concurrent_compiles` run at
//! once and at most `compile_queue` wait for a slot; a request beyond both is
//! shed with 503 and `Retry-After`, so a fleet arriving at the same instant
//! gets quick answers to come back instead of timeouts.
//!
//! Only compiles are admitted here: a node whose catalog is in the compile
//! cache (its second check-in, a 304) is answered without a slot, so load
//! shedding never delays the cheap path.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::AppError;

/// What a shed request is told to wait before it asks again, in seconds.
/// Small: the agent adds its own jitter on top, which spreads the retries.
pub const RETRY_AFTER_SECS: u64 = 1;

/// Who asks for a compile slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A node's request: shed when the queue is full.
    Shed,
    /// Background work (recompiling known nodes after a refresh): waits its
    /// turn, never shed, but still counts against the compile slots.
    Wait,
}

#[derive(Debug)]
pub struct Shed {
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
    max: usize,
    queue: usize,
}

impl Shed {
    /// `max_compiles` slots (at least one) and room for `queue` waiters.
    pub fn new(max_compiles: usize, queue: usize) -> Shed {
        let max = max_compiles.max(1);
        Shed {
            slots: Arc::new(Semaphore::new(max)),
            waiting: Arc::default(),
            max,
            queue,
        }
    }

    /// A compile slot, held until the permit drops. `Err` (503) when every
    /// slot is busy and `queue` requests already wait.
    pub async fn admit(&self, admission: Admission) -> Result<OwnedSemaphorePermit, AppError> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Ok(permit);
        }
        let place = Waiting::enter(&self.waiting);
        if admission == Admission::Shed && place.ahead >= self.queue {
            return Err(AppError::Overloaded {
                message: format!(
                    "the server is compiling at capacity ({} compiles running, {} waiting); retry after {RETRY_AFTER_SECS} s",
                    self.running(),
                    place.ahead
                ),
                retry_after_secs: RETRY_AFTER_SECS,
            });
        }
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| AppError::Internal(format!("compile slots closed: {e}")))?;
        drop(place);
        Ok(permit)
    }

    /// Requests waiting for a slot now.
    /// Compiles that run at once.
    pub fn capacity(&self) -> usize {
        self.max
    }

    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::SeqCst)
    }

    /// Compiles holding a slot now.
    pub fn running(&self) -> usize {
        self.max.saturating_sub(self.slots.available_permits())
    }
}

/// A place in the queue, given back when the request got its slot or went
/// away (a client that hung up while waiting frees its place too).
struct Waiting {
    count: Arc<AtomicUsize>,
    ahead: usize,
}

impl Waiting {
    fn enter(count: &Arc<AtomicUsize>) -> Waiting {
        let ahead = count.fetch_add(1, Ordering::SeqCst);
        Waiting {
            count: Arc::clone(count),
            ahead,
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_slots_and_queue_a_request_is_shed_but_background_work_waits() {
        let shed = Arc::new(Shed::new(1, 1));
        let first = shed.admit(Admission::Shed).await.unwrap();
        assert_eq!(shed.running(), 1);
        // The second waits in the one queue place...
        let queued = {
            let shed = Arc::clone(&shed);
            tokio::spawn(async move { shed.admit(Admission::Shed).await.map(drop) })
        };
        while shed.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        // ...the third finds it taken and is told when to come back.
        match shed.admit(Admission::Shed).await {
            Err(AppError::Overloaded {
                retry_after_secs,
                message,
            }) => {
                assert_eq!(retry_after_secs, RETRY_AFTER_SECS);
                assert!(message.contains("1 waiting"), "{message}");
            }
            other => panic!("expected 503, got {other:?}"),
        }
        // Background work is never shed: it waits behind the queue.
        let background = {
            let shed = Arc::clone(&shed);
            tokio::spawn(async move { shed.admit(Admission::Wait).await.map(drop) })
        };
        drop(first);
        queued.await.unwrap().unwrap();
        background.await.unwrap().unwrap();
        assert_eq!(shed.running(), 0);
        assert_eq!(shed.waiting.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_waiter_that_goes_away_gives_its_place_back() {
        let shed = Arc::new(Shed::new(1, 1));
        let _slot = shed.admit(Admission::Shed).await.unwrap();
        let gone = {
            let shed = Arc::clone(&shed);
            tokio::spawn(async move { shed.admit(Admission::Shed).await.map(drop) })
        };
        while shed.waiting.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        gone.abort();
        let _ = gone.await;
        assert_eq!(shed.waiting.load(Ordering::SeqCst), 0);
    }
}
