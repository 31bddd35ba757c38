//! A key/model actor's wait estimate, published for lock-free reading.
//!
//! Routing needs every candidate's estimate for every request. Asking each actor with a
//! message per candidate cost a mailbox round trip and a timer each, on the hot path. So
//! each actor publishes its estimate after every change of its state, in absolute times
//! (when the rate limit frees, when a newcomer could start), and the router reads them
//! without a message: the estimate is exact until the next state change, and routing is
//! advisory anyway — reserving a slot re-checks.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use crate::capacity::{Outcome, Rejection, WaitEstimate};
use crate::clock::Millis;
use crate::fast_grant::FastGrants;

const BLOCKERS: [&str; 5] = ["none", "rpm", "rpd", "paused", "concurrency"];

/// The published estimate of one key/model.
#[derive(Debug, Default)]
pub struct Published {
    next_free_at: AtomicI64,
    start_at: AtomicI64,
    service_ms: AtomicI64,
    queue_len: AtomicU64,
    in_flight: AtomicU32,
    blocker: AtomicU8,
    unavailable: AtomicU8,
    available_at: AtomicI64,
    capacity: AtomicU64,
    fast: Arc<FastGrants>,
    /// Successful calls on permits granted ahead whose release the actor has not taken
    /// in yet (see `KeyModelHandle`): `(granted_at, outcome)`.
    batched: Mutex<Vec<(Millis, Outcome)>>,
}

fn blocker_code(b: &str) -> u8 {
    BLOCKERS.iter().position(|x| *x == b).unwrap_or(0) as u8
}

impl Published {
    /// The permits the actor grants ahead (see `fast_grant`).
    pub fn fast_grants(&self) -> &Arc<FastGrants> {
        &self.fast
    }

    /// Adds a finished call to the batch; returns the batch's length.
    pub fn batch_release(&self, granted_at: Millis, outcome: Outcome) -> usize {
        let mut b = self.batched.lock().unwrap_or_else(PoisonError::into_inner);
        b.push((granted_at, outcome));
        b.len()
    }

    /// Takes the batch (actor side).
    pub(crate) fn take_batched(&self) -> Vec<(Millis, Outcome)> {
        std::mem::take(&mut *self.batched.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Requests waiting in the pair's FIFO, as last published.
    pub fn queued(&self) -> u64 {
        self.queue_len.load(Relaxed)
    }

    /// Records `e`, computed at `now`.
    pub fn publish(&self, now: Millis, e: &WaitEstimate) {
        self.next_free_at.store(now + e.rate_limit_wait_ms, Relaxed);
        self.start_at
            .store(now + e.rate_limit_wait_ms + e.queue_wait_ms, Relaxed);
        self.service_ms.store(e.service_ms, Relaxed);
        self.queue_len.store(e.queue_len as u64, Relaxed);
        self.in_flight.store(e.in_flight, Relaxed);
        self.blocker.store(blocker_code(e.blocker), Relaxed);
        let (code, at, capacity) = match &e.unavailable {
            None => (0, 0, 0),
            Some(Rejection::Disabled { .. }) => (1, 0, 0),
            Some(Rejection::QueueFull {
                capacity,
                available_in_ms,
            }) => (2, now + available_in_ms, *capacity as u64),
            Some(Rejection::CircuitOpen {
                available_in_ms: Some(ms),
                ..
            }) => (3, now + ms, 0),
            Some(Rejection::CircuitOpen {
                available_in_ms: None,
                ..
            }) => (4, 0, 0),
            Some(Rejection::TrialInProgress) => (5, 0, 0),
            Some(Rejection::ShuttingDown) => (6, 0, 0),
            Some(_) => (7, 0, 0),
        };
        self.available_at.store(at, Relaxed);
        self.capacity.store(capacity, Relaxed);
        self.unavailable.store(code, Relaxed);
    }

    /// The estimate as it stands at `now`.
    pub fn read(&self, now: Millis) -> WaitEstimate {
        let rate = (self.next_free_at.load(Relaxed) - now).max(0);
        let start = (self.start_at.load(Relaxed) - now).max(0);
        let service_ms = self.service_ms.load(Relaxed);
        let available_at = self.available_at.load(Relaxed);
        let unavailable = match self.unavailable.load(Relaxed) {
            0 => None,
            1 => Some(Rejection::Disabled {
                message: "authentication failed".into(),
            }),
            2 => Some(Rejection::QueueFull {
                capacity: self.capacity.load(Relaxed) as usize,
                available_in_ms: (available_at - now).max(1),
            }),
            // An open circuit whose time has come admits a trial.
            3 if now >= available_at => None,
            3 => Some(Rejection::CircuitOpen {
                available_in_ms: Some(available_at - now),
                kind: "open",
            }),
            4 => Some(Rejection::CircuitOpen {
                available_in_ms: None,
                kind: "auth",
            }),
            5 => Some(Rejection::TrialInProgress),
            6 => Some(Rejection::ShuttingDown),
            _ => Some(Rejection::ActorUnavailable),
        };
        let blocker = if start > 0 {
            BLOCKERS[usize::from(self.blocker.load(Relaxed)).min(BLOCKERS.len() - 1)]
        } else {
            "none"
        };
        WaitEstimate {
            rate_limit_wait_ms: rate,
            queue_wait_ms: (start - rate).max(0),
            service_ms,
            total_ms: start + service_ms,
            queue_len: self.queue_len.load(Relaxed) as usize,
            in_flight: self.in_flight.load(Relaxed),
            blocker,
            unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn est(rate: Millis, queue: Millis, unavailable: Option<Rejection>) -> WaitEstimate {
        WaitEstimate {
            rate_limit_wait_ms: rate,
            queue_wait_ms: queue,
            service_ms: 300,
            total_ms: rate + queue + 300,
            queue_len: 2,
            in_flight: 1,
            blocker: if rate + queue > 0 { "rpm" } else { "none" },
            unavailable,
        }
    }

    #[test]
    fn a_published_estimate_reads_back_and_ages_with_time() {
        let p = Published::default();
        p.publish(1_000, &est(500, 200, None));
        assert_eq!(p.read(1_000), est(500, 200, None));
        let later = p.read(1_400);
        assert_eq!((later.rate_limit_wait_ms, later.queue_wait_ms), (100, 200));
        let done = p.read(5_000);
        assert_eq!(
            (done.rate_limit_wait_ms, done.queue_wait_ms, done.total_ms),
            (0, 0, 300)
        );
        assert_eq!(done.blocker, "none");
    }

    #[test]
    fn an_open_circuit_reopens_for_a_trial_when_its_time_comes() {
        let p = Published::default();
        let open = Rejection::CircuitOpen {
            available_in_ms: Some(2_000),
            kind: "server_error",
        };
        p.publish(0, &est(0, 0, Some(open)));
        assert_eq!(
            p.read(1_000).unavailable.and_then(|r| r.available_in_ms()),
            Some(1_000)
        );
        assert_eq!(p.read(2_000).unavailable, None);
    }
}
