//! Admission control for generation: at most `parallel` generations run at once (one per
//! pooled llama.cpp context), at most `queue` more wait, and the rest are turned away with
//! a hint of when to retry.
//!
//! Waiting is bounded so a burst of requests cannot pile up behind a slow model until every
//! client times out; refusing early lets a load balancer or client retry elsewhere.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Occupancy and counters, for `GET /v1/models` and metrics: the API's type, so the
/// service reports it as is.
pub use zhiku_schemas::SlotInfo;

/// How often a queued request checks whether its client is still there.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Why a slot was not granted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// Every slot is busy and the queue is full.
    #[error(
        "all {parallel} generation slots are busy and {queue} requests are already waiting; retry in {retry_after_secs} s"
    )]
    Busy {
        /// Slots (`llm.parallel`).
        parallel: usize,
        /// Queue length (`llm.queue`).
        queue: usize,
        /// Seconds after which a retry is likely to be admitted.
        retry_after_secs: u64,
    },
    /// The caller gave up while waiting (its client disconnected).
    #[error("the request was cancelled while waiting for a generation slot")]
    Cancelled,
}

#[derive(Debug, Default)]
struct State {
    status: SlotInfo,
    /// Mean time a slot is held, smoothed; drives `Retry-After`.
    mean_hold: Option<Duration>,
}

/// The gate every generation passes through.
#[derive(Debug)]
pub struct Slots {
    state: Mutex<State>,
    freed: Condvar,
}

/// A granted slot; dropping it frees the slot for the next waiter.
#[derive(Debug)]
pub struct Slot<'a> {
    slots: &'a Slots,
    since: Instant,
}

impl Slots {
    /// A gate for `parallel` (at least 1) concurrent generations and `queue` waiters.
    pub fn new(parallel: usize, queue: usize) -> Self {
        Self {
            state: Mutex::new(State {
                status: SlotInfo {
                    parallel: parallel.max(1),
                    queue,
                    ..SlotInfo::default()
                },
                mean_hold: None,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is plain counters, consistent after every statement; a panic elsewhere
        // while holding the lock leaves nothing to repair.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Current occupancy and counters.
    pub fn status(&self) -> SlotInfo {
        self.lock().status
    }

    /// Counts a generation its client abandoned (for [`SlotInfo::cancelled`]).
    pub fn record_cancelled(&self) {
        self.lock().status.cancelled += 1;
    }

    /// Takes a slot, waiting in the queue if all are busy. `gone` is polled while waiting;
    /// when it returns true the request leaves the queue.
    ///
    /// # Errors
    /// [`SlotError::Busy`] at once when the queue is full, [`SlotError::Cancelled`] when
    /// `gone` turned true while waiting.
    pub fn acquire(&self, gone: &dyn Fn() -> bool) -> Result<Slot<'_>, SlotError> {
        let mut state = self.lock();
        let mean_hold = state.mean_hold;
        let status = &mut state.status;
        if status.busy >= status.parallel {
            if status.queued >= status.queue {
                status.rejected += 1;
                let retry_after_secs = retry_after(status, mean_hold);
                return Err(SlotError::Busy {
                    parallel: status.parallel,
                    queue: status.queue,
                    retry_after_secs,
                });
            }
            status.queued += 1;
            while state.status.busy >= state.status.parallel {
                if gone() {
                    state.status.queued -= 1;
                    state.status.cancelled += 1;
                    return Err(SlotError::Cancelled);
                }
                state = self
                    .freed
                    .wait_timeout(state, CANCEL_POLL)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
            state.status.queued -= 1;
        }
        state.status.busy += 1;
        state.status.admitted += 1;
        Ok(Slot {
            slots: self,
            since: Instant::now(),
        })
    }
}

/// Seconds until a queued request would likely be served: the queue ahead drained
/// `parallel` at a time at the mean hold time; at least 1.
fn retry_after(status: &SlotInfo, mean_hold: Option<Duration>) -> u64 {
    let hold = mean_hold.unwrap_or(Duration::from_secs(1)).as_secs_f64();
    let rounds = (status.queued + 1) as f64 / status.parallel as f64;
    (hold * rounds).ceil().clamp(1.0, 600.0) as u64
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let held = self.since.elapsed();
        let mut state = self.slots.lock();
        state.status.busy -= 1;
        state.mean_hold = Some(match state.mean_hold {
            None => held,
            Some(mean) => mean.mul_f64(0.8) + held.mul_f64(0.2),
        });
        drop(state);
        self.slots.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn full_queue_is_refused_and_a_freed_slot_admits_the_waiter() {
        let slots = Arc::new(Slots::new(1, 1));
        let first = slots.acquire(&|| false).unwrap();
        let waiter = {
            let slots = slots.clone();
            std::thread::spawn(move || slots.acquire(&|| false).map(|_| ()))
        };
        while slots.status().queued == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let refused = slots.acquire(&|| false).unwrap_err();
        assert!(
            matches!(refused, SlotError::Busy { retry_after_secs, .. } if retry_after_secs >= 1)
        );
        drop(first);
        waiter.join().unwrap().unwrap();
        let status = slots.status();
        assert_eq!((status.busy, status.queued), (0, 0));
        assert_eq!((status.admitted, status.rejected), (2, 1));
    }

    #[test]
    fn a_waiter_whose_client_left_leaves_the_queue() {
        let slots = Arc::new(Slots::new(1, 4));
        let _held = slots.acquire(&|| false).unwrap();
        let gone = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (slots, gone) = (slots.clone(), gone.clone());
            std::thread::spawn(move || slots.acquire(&|| gone.load(Ordering::Relaxed)).map(|_| ()))
        };
        while slots.status().queued == 0 {
            std::thread::sleep(Duration::from_millis(5));
        }
        gone.store(true, Ordering::Relaxed);
        assert_eq!(waiter.join().unwrap(), Err(SlotError::Cancelled));
        let status = slots.status();
        assert_eq!((status.busy, status.queued, status.cancelled), (1, 0, 1));
    }
}
