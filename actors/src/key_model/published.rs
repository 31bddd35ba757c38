//! A key/model actor's wait estimate, published for lock-free reading.
//!
//! Routing needs every candidate's estimate for every request. Asking each actor with a
//! message per candidate cost a mailbox round trip and a timer each, on the hot path. So
//! each actor publishes its estimate after every change of its state, in absolute times
//! (when the rate limit frees, when a newcomer could start), and the request path reads
//! them (`RoutingTable::plan`) without a message: the estimate is exact until the next state change, and routing is
//! advisory anyway — reserving a slot re-checks.
//!
//! A call taken on a permit granted ahead (see `permits`) changes what the next request
//! faces *before* the actor hears of it. So the actor publishes two estimates: one for
//! while permits are left (a newcomer starts at once), and one for when they have run out
//! (every permit counted as a call made now). A reader picks by the permit counter, which
//! the take itself lowers, so the very next plan after the last permit is taken sees the
//! window as it will be, not as it was. The estimate for after counts the permits as
//! taken when it was published; a take later than that (an idle pair's first call in a
//! while) shifts it by the difference, through the time of the latest take.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use crate::clock::Millis;
use crate::key_model::capacity::{Outcome, Rejection, WaitEstimate};
use crate::key_model::permits::FastGrants;

const BLOCKERS: [&str; 5] = ["none", "rpm", "rpd", "paused", "concurrency"];

/// The published estimate of one key/model.
#[derive(Debug, Default)]
pub struct Published {
    /// While permits are left: when the rate limit frees (absolute Unix ms).
    next_free_at: AtomicI64,
    /// While permits are left: when a newcomer could start.
    start_at: AtomicI64,
    /// While permits are left: calls in flight.
    in_flight: AtomicU32,
    /// While permits are left: what holds a newcomer back (index into `BLOCKERS`).
    blocker: AtomicU8,
    /// Once every permit is taken: the same four.
    spent_next_free_at: AtomicI64,
    spent_start_at: AtomicI64,
    spent_in_flight: AtomicU32,
    spent_blocker: AtomicU8,
    /// When the estimates were computed.
    published_at: AtomicI64,
    /// When a handler last took a permit.
    last_take_at: AtomicI64,
    /// Expected upstream time (moving average).
    service_ms: AtomicI64,
    /// 95th percentile of recent successful latencies (the attempt timeout's base).
    latency_p95_ms: AtomicI64,
    /// Requests waiting in the pair's FIFO.
    queue_len: AtomicU64,
    /// Why no request can be admitted (0: it can; codes as in [`Published::publish_both`]).
    unavailable: AtomicU8,
    /// When an unavailable pair expects to admit again (queue full, circuit open).
    available_at: AtomicI64,
    /// The queue bound, for a full queue's rejection.
    capacity: AtomicU64,
    /// The permits the actor grants ahead (see `permits`).
    fast: Arc<FastGrants>,
    /// Successful calls on permits granted ahead whose release the actor has not taken
    /// in yet (see `KeyModelHandle`): `(sent_at, outcome)`.
    batched: Mutex<Vec<(Millis, Outcome)>>,
}

fn blocker_code(b: &str) -> u8 {
    BLOCKERS.iter().position(|x| *x == b).unwrap_or(0) as u8
}

impl Published {
    /// The permits the actor grants ahead (see `permits`).
    pub fn fast_grants(&self) -> &Arc<FastGrants> {
        &self.fast
    }

    /// Adds a finished call to the batch; returns the batch's length.
    pub fn batch_release(&self, sent_at: Millis, outcome: Outcome) -> usize {
        let mut b = self.batched.lock().unwrap_or_else(PoisonError::into_inner);
        b.push((sent_at, outcome));
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

    /// The 95th percentile of recent successful latencies, as last published.
    pub fn latency_p95_ms(&self) -> Millis {
        self.latency_p95_ms.load(Relaxed)
    }

    /// Records `e`, computed at `now` (alone: as if no permit were left).
    pub fn publish(&self, now: Millis, e: &WaitEstimate) {
        self.publish_both(now, e, e, e.service_ms);
    }

    /// Notes that a handler took a permit at `now` (see the module header).
    pub fn note_take(&self, now: Millis) {
        self.last_take_at.fetch_max(now, Relaxed);
    }

    /// Records the estimate while permits are left (`e`), the one once they are all taken
    /// (`spent`), both computed at `now`, and the latency percentile.
    pub fn publish_both(&self, now: Millis, e: &WaitEstimate, spent: &WaitEstimate, p95: Millis) {
        self.published_at.store(now, Relaxed);
        self.next_free_at.store(now + e.rate_limit_wait_ms, Relaxed);
        self.start_at
            .store(now + e.rate_limit_wait_ms + e.queue_wait_ms, Relaxed);
        self.in_flight.store(e.in_flight, Relaxed);
        self.blocker.store(blocker_code(e.blocker), Relaxed);
        self.spent_next_free_at
            .store(now + spent.rate_limit_wait_ms, Relaxed);
        self.spent_start_at.store(
            now + spent.rate_limit_wait_ms + spent.queue_wait_ms,
            Relaxed,
        );
        self.spent_in_flight.store(spent.in_flight, Relaxed);
        self.spent_blocker
            .store(blocker_code(spent.blocker), Relaxed);
        self.service_ms.store(e.service_ms, Relaxed);
        self.latency_p95_ms.store(p95, Relaxed);
        self.queue_len.store(e.queue_len as u64, Relaxed);
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

    /// The estimate as it stands at `now`: while the actor's permits last, the one it
    /// published for them; once they are all taken, the one for after.
    pub fn read(&self, now: Millis) -> WaitEstimate {
        let (mut next_free_at, mut start_at) =
            (self.next_free_at.load(Relaxed), self.start_at.load(Relaxed));
        let (in_flight, blocker) = if self.fast.available() > 0 {
            (&self.in_flight, &self.blocker)
        } else {
            let (spent_free, spent_start) = (
                self.spent_next_free_at.load(Relaxed),
                self.spent_start_at.load(Relaxed),
            );
            // The permits were counted as taken at publication; taken later, they hold
            // the window (or the concurrency slots) that much longer. A day limit ends at
            // midnight whenever they were taken.
            let late = (self.last_take_at.load(Relaxed) - self.published_at.load(Relaxed)).max(0);
            let shift = |spent: Millis, plain: Millis| {
                if spent > plain && self.spent_blocker.load(Relaxed) != blocker_code("rpd") {
                    spent + late
                } else {
                    spent
                }
            };
            next_free_at = shift(spent_free, next_free_at);
            start_at = shift(spent_start, start_at);
            (&self.spent_in_flight, &self.spent_blocker)
        };
        let rate = (next_free_at - now).max(0);
        let start = (start_at - now).max(0);
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
            BLOCKERS[usize::from(blocker.load(Relaxed)).min(BLOCKERS.len() - 1)]
        } else {
            "none"
        };
        WaitEstimate {
            rate_limit_wait_ms: rate,
            queue_wait_ms: (start - rate).max(0),
            service_ms,
            total_ms: start + service_ms,
            queue_len: self.queue_len.load(Relaxed) as usize,
            in_flight: in_flight.load(Relaxed),
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
    fn the_estimate_for_after_the_permits_shows_once_the_last_is_taken() {
        let p = Published::default();
        p.fast_grants().replace(0, 1).unwrap();
        p.publish_both(1_000, &est(0, 0, None), &est(60_000, 0, None), 300);
        assert_eq!(p.read(1_000).rate_limit_wait_ms, 0);
        assert!(p.fast_grants().try_take());
        p.note_take(1_000);
        let after = p.read(1_001);
        assert_eq!(after.rate_limit_wait_ms, 59_999);
        assert_eq!(after.blocker, "rpm");
        assert_eq!(p.latency_p95_ms(), 300);
    }

    #[test]
    fn a_permit_taken_long_after_publication_holds_the_window_from_then() {
        let p = Published::default();
        p.fast_grants().replace(0, 1).unwrap();
        p.publish_both(1_000, &est(0, 0, None), &est(60_000, 0, None), 300);
        // An idle hour later the permit is taken.
        let t = 3_601_000;
        assert!(p.fast_grants().try_take());
        p.note_take(t);
        assert_eq!(p.read(t + 1).rate_limit_wait_ms, 59_999);
    }

    #[test]
    fn every_blocker_reads_back_while_a_start_waits() {
        let p = Published::default();
        for blocker in BLOCKERS {
            let mut e = est(1_000, 0, None);
            e.blocker = blocker;
            p.publish(0, &e);
            assert_eq!(p.read(0).blocker, blocker);
        }
    }

    #[test]
    fn both_estimates_read_back_whole() {
        let p = Published::default();
        p.fast_grants().replace(0, 1).unwrap();
        let mut spent = est(2_000, 500, None);
        spent.in_flight = 3;
        spent.blocker = "concurrency";
        let plain = est(300, 200, None);
        p.publish_both(1_000, &plain, &spent, 300);
        assert_eq!(p.read(1_000), plain, "while a permit is left");
        assert!(p.fast_grants().try_take());
        p.note_take(1_000);
        assert_eq!(p.read(1_000), spent);
        let later = p.read(2_500);
        assert_eq!(
            (
                later.rate_limit_wait_ms,
                later.queue_wait_ms,
                later.total_ms
            ),
            (500, 500, 1_300)
        );
    }

    #[test]
    fn a_late_take_shifts_nothing_when_the_permits_change_nothing() {
        let p = Published::default();
        p.fast_grants().replace(0, 1).unwrap();
        // The permits do not change the estimate: the same wait either way.
        p.publish_both(1_000, &est(500, 0, None), &est(500, 0, None), 300);
        assert!(p.fast_grants().try_take());
        p.note_take(1_100);
        assert_eq!(p.read(1_200).rate_limit_wait_ms, 300);
    }

    #[test]
    fn a_late_take_does_not_move_a_day_limit_past_midnight() {
        let p = Published::default();
        p.fast_grants().replace(0, 1).unwrap();
        let mut spent = est(50_000, 0, None);
        spent.blocker = "rpd";
        p.publish_both(1_000, &est(0, 0, None), &spent, 300);
        assert!(p.fast_grants().try_take());
        p.note_take(11_000);
        let after = p.read(11_000);
        assert_eq!(after.rate_limit_wait_ms, 40_000, "midnight stays at 51,000");
        assert_eq!(after.blocker, "rpd");
    }

    #[test]
    fn every_rejection_reads_back_as_published() {
        let p = Published::default();
        let back = |r: Rejection, at: Millis| {
            p.publish(1_000, &est(0, 0, Some(r)));
            p.read(at).unavailable
        };
        assert_eq!(
            back(
                Rejection::Disabled {
                    message: "401".into()
                },
                1_000
            ),
            Some(Rejection::Disabled {
                message: "authentication failed".into()
            })
        );
        let full = Rejection::QueueFull {
            capacity: 7,
            available_in_ms: 2_000,
        };
        assert_eq!(
            back(full.clone(), 1_500),
            Some(Rejection::QueueFull {
                capacity: 7,
                available_in_ms: 1_500
            })
        );
        assert_eq!(
            back(full, 9_000),
            Some(Rejection::QueueFull {
                capacity: 7,
                available_in_ms: 1
            }),
            "a full queue whose head is overdue still reports a wait"
        );
        let auth = Rejection::CircuitOpen {
            available_in_ms: None,
            kind: "auth",
        };
        assert_eq!(back(auth.clone(), 1_000_000), Some(auth));
        assert_eq!(
            back(Rejection::TrialInProgress, 1_000),
            Some(Rejection::TrialInProgress)
        );
        assert_eq!(
            back(Rejection::ShuttingDown, 1_000),
            Some(Rejection::ShuttingDown)
        );
        assert_eq!(
            back(Rejection::DeadlinePassed, 1_000),
            Some(Rejection::ActorUnavailable)
        );
        let open = Rejection::CircuitOpen {
            available_in_ms: Some(4_000),
            kind: "open",
        };
        assert_eq!(
            back(open, 2_000),
            Some(Rejection::CircuitOpen {
                available_in_ms: Some(3_000),
                kind: "open"
            })
        );
    }

    #[test]
    fn the_queue_length_and_the_batch_read_back() {
        let p = Published::default();
        p.publish(0, &est(0, 0, None));
        assert_eq!(p.queued(), 2);
        assert_eq!(p.batch_release(10, Outcome::Success { latency_ms: 5 }), 1);
        assert_eq!(p.batch_release(20, Outcome::NotSent), 2);
        assert_eq!(
            p.take_batched(),
            vec![
                (10, Outcome::Success { latency_ms: 5 }),
                (20, Outcome::NotSent)
            ]
        );
        assert!(p.take_batched().is_empty());
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
