//! Unit tests of `capacity`.

use super::*;
use crate::circuit::{CircuitConfig, FailureKind};
use chrono_tz::Tz;
use std::cell::Cell;
use std::rc::Rc;

const T0: Millis = 1_767_225_600_000;

#[derive(Debug, Clone)]
struct H(u32, Rc<Cell<bool>>);
impl WaiterHandle for H {
    fn is_gone(&self) -> bool {
        self.1.get()
    }
}
fn h(n: u32) -> H {
    H(n, Rc::new(Cell::new(false)))
}

fn cap(rpm: u32, conc: Option<u32>) -> KeyModelCapacity<H> {
    KeyModelCapacity::new(
        RateWindow::new(rpm, 1_000, Tz::UTC, T0),
        CircuitConfig::default(),
        conc,
        10,
        500,
    )
}

fn lease(a: Admission) -> Lease {
    match a {
        Admission::Granted(l) => l,
        other => panic!("expected a grant, got {other:?}"),
    }
}

#[test]
fn grants_at_once_while_capacity_remains() {
    let mut c = cap(2, None);
    let l = lease(c.admit(T0, T0 + 1_000));
    assert_eq!((l.queue_wait_ms, l.rate_limit_wait_ms), (0, 0));
    lease(c.admit(T0, T0 + 1_000));
    // The window is full: a short deadline is refused at once, a long one queues.
    assert!(matches!(
        c.admit(T0, T0 + 1_000),
        Admission::Rejected(Rejection::WouldMissDeadline { blocker: "rpm", .. })
    ));
    assert_eq!(c.admit(T0, T0 + 120_000), Admission::Enqueue);
}

#[test]
fn waiters_are_granted_in_fifo_order_with_measured_waits() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 200_000));
    for n in 0..3 {
        assert_eq!(c.admit(T0, T0 + 200_000), Admission::Enqueue);
        c.enqueue(T0, T0 + 200_000, h(n)).unwrap();
    }
    let p = c.pump(T0);
    assert!(p.granted.is_empty());
    assert_eq!(p.wake_in, Some(60_000));
    let p = c.pump(T0 + 60_000);
    assert_eq!(p.granted.len(), 1);
    let (first, l) = &p.granted[0];
    assert_eq!(first.0, 0);
    assert_eq!(l.rate_limit_wait_ms, 60_000);
    assert_eq!(l.queue_wait_ms, 0);
    let p = c.pump(T0 + 120_000);
    let (second, l) = &p.granted[0];
    assert_eq!(second.0, 1);
    // 60 s behind the first waiter, then 60 s at the head held by RPM.
    assert_eq!((l.queue_wait_ms, l.rate_limit_wait_ms), (60_000, 60_000));
}

#[test]
fn concurrency_cap_holds_until_release() {
    let mut c = cap(100, Some(1));
    let l = lease(c.admit(T0, T0 + 10_000));
    assert_eq!(c.admit(T0, T0 + 10_000), Admission::Enqueue);
    c.enqueue(T0, T0 + 10_000, h(7)).unwrap();
    assert!(c.pump(T0).granted.is_empty());
    c.release(T0 + 300, l.lease_id, Outcome::Success { latency_ms: 300 });
    let p = c.pump(T0 + 300);
    assert_eq!(p.granted.len(), 1);
    assert_eq!(p.granted[0].1.queue_wait_ms, 300);
}

#[test]
fn not_sent_gives_the_rate_slot_back_and_release_is_idempotent() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 1_000));
    c.release(T0, l.lease_id, Outcome::NotSent);
    c.release(T0, l.lease_id, Outcome::NotSent);
    assert_eq!(c.status(T0).requests_this_minute, 0);
    lease(c.admit(T0, T0 + 1_000));
}

#[test]
fn a_429_pauses_and_releases_waiters_it_would_make_late() {
    let mut c = cap(100, Some(1));
    let l = lease(c.admit(T0, T0 + 100_000));
    c.enqueue(T0, T0 + 5_000, h(1)).unwrap();
    c.enqueue(T0, T0 + 100_000, h(2)).unwrap();
    let late = c.release(
        T0 + 100,
        l.lease_id,
        Outcome::RateLimited {
            retry_after_ms: Some(30_000),
        },
    );
    assert_eq!(late.iter().map(|h| h.0).collect::<Vec<_>>(), vec![1]);
    let p = c.pump(T0 + 100);
    assert!(p.granted.is_empty());
    assert_eq!(p.wake_in, Some(30_000));
    let est = c.estimate(T0 + 100);
    assert_eq!(est.blocker, "paused");
    assert_eq!(est.rate_limit_wait_ms, 30_000);
    assert_eq!(c.pump(T0 + 30_100).granted.len(), 1);
}

#[test]
fn default_pause_grows_on_consecutive_429s() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1));
    c.release(
        T0,
        l.lease_id,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.window_mut().paused_until(T0), Some(T0 + 1_000));
    let now = T0 + 1_000;
    let l = lease(c.admit(now, now + 1));
    c.release(
        now,
        l.lease_id,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.window_mut().paused_until(now), Some(now + 2_000));
}

#[test]
fn draining_refuses_new_requests_and_hands_back_waiters() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 100_000));
    c.enqueue(T0, T0 + 100_000, h(1)).unwrap();
    assert_eq!(c.drain().len(), 1);
    assert_eq!(
        c.admit(T0, T0 + 100_000),
        Admission::Rejected(Rejection::ShuttingDown)
    );
    // The call in flight still finishes normally.
    c.release(T0, l.lease_id, Outcome::Success { latency_ms: 5 });
    assert_eq!(c.status(T0).in_flight, 0);
}

#[test]
fn disabled_rejects_and_hands_back_waiters() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 100_000));
    c.enqueue(T0, T0 + 100_000, h(1)).unwrap();
    assert_eq!(c.disable("401".into()).len(), 1);
    assert!(matches!(
        c.admit(T0, T0 + 100_000),
        Admission::Rejected(Rejection::Disabled { .. })
    ));
    assert!(c.estimate(T0).unavailable.is_some());
    c.reset();
    assert!(c.estimate(T0).unavailable.is_none());
}

#[test]
fn gone_waiters_are_skipped_without_using_capacity() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 100_000));
    let gone = h(1);
    c.enqueue(T0, T0 + 100_000, gone.clone()).unwrap();
    c.enqueue(T0, T0 + 100_000, h(2)).unwrap();
    gone.1.set(true);
    c.release(T0, l.lease_id, Outcome::Success { latency_ms: 10 });
    let p = c.pump(T0 + 60_000);
    assert_eq!(p.granted.len(), 1);
    assert_eq!(p.granted[0].0 .0, 2);
}

#[test]
fn estimate_adds_queue_and_service_time() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 1));
    c.enqueue(T0, T0 + 500_000, h(1)).unwrap();
    let e = c.estimate(T0);
    assert_eq!(e.rate_limit_wait_ms, 60_000);
    assert_eq!(e.queue_wait_ms, 60_000);
    assert_eq!(e.service_ms, 500);
    assert_eq!(e.total_ms, 120_500);
}

#[test]
fn service_average_moves_toward_observations() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1));
    c.release(T0, l.lease_id, Outcome::Success { latency_ms: 1_500 });
    assert_eq!(c.estimate(T0).service_ms, 700);
}

fn fail(c: &mut KeyModelCapacity<H>, now: Millis) {
    let l = lease(c.admit(now, now + 100_000));
    c.release(
        now,
        l.lease_id,
        Outcome::Failed {
            latency_ms: 10,
            kind: Some(FailureKind::Server),
        },
    );
}

#[test]
fn repeated_failures_open_the_circuit_and_send_waiters_elsewhere() {
    let mut c = cap(100, Some(1));
    fail(&mut c, T0);
    fail(&mut c, T0 + 1);
    let l = lease(c.admit(T0 + 2, T0 + 100_000));
    c.enqueue(T0 + 2, T0 + 100_000, h(9)).unwrap();
    let handed_back = c.release(
        T0 + 3,
        l.lease_id,
        Outcome::Failed {
            latency_ms: 10,
            kind: Some(FailureKind::Timeout),
        },
    );
    assert_eq!(handed_back.len(), 1, "the waiter fails over at once");
    match c.admit(T0 + 4, T0 + 100_000) {
        Admission::Rejected(r @ Rejection::CircuitOpen { .. }) => {
            let wait = r.available_in_ms().unwrap();
            assert!((4_999..=6_000).contains(&wait), "{wait}");
        }
        other => panic!("{other:?}"),
    }
    let e = c.estimate(T0 + 4);
    assert!(matches!(e.unavailable, Some(Rejection::CircuitOpen { .. })));
    assert_eq!(c.status(T0 + 4).circuit_state, "open");
}

#[test]
fn half_open_lets_one_trial_through_and_closes_on_success() {
    let mut c = cap(100, None);
    for i in 0..3 {
        fail(&mut c, T0 + i);
    }
    let later = T0 + 10_000;
    let trial = lease(c.admit(later, later + 10_000));
    assert!(trial.trial);
    assert_eq!(
        c.admit(later, later + 10_000),
        Admission::Rejected(Rejection::TrialInProgress)
    );
    c.release(later, trial.lease_id, Outcome::Success { latency_ms: 5 });
    assert_eq!(c.status(later).circuit_state, "closed");
    assert!(!lease(c.admit(later, later + 10_000)).trial);
}

#[test]
fn a_bad_request_does_not_count_against_the_pair() {
    let mut c = cap(100, None);
    for i in 0..5 {
        let l = lease(c.admit(T0 + i, T0 + 100_000));
        c.release(
            T0 + i,
            l.lease_id,
            Outcome::Failed {
                latency_ms: 1,
                kind: None,
            },
        );
    }
    assert_eq!(c.status(T0 + 10).circuit_state, "closed");
}
