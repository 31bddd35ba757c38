//! Unit tests of `capacity`.

use super::*;
use crate::key_model::circuit::{CircuitConfig, FailureKind};
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
    let l = lease(c.admit(T0, T0 + 1_000, None));
    assert_eq!((l.queue_wait_ms, l.rate_limit_wait_ms), (0, 0));
    lease(c.admit(T0, T0 + 1_000, None));
    // The window is full: a short deadline is refused at once, a long one queues.
    assert!(matches!(
        c.admit(T0, T0 + 1_000, None),
        Admission::Rejected(Rejection::WouldMissDeadline { blocker: "rpm", .. })
    ));
    assert_eq!(c.admit(T0, T0 + 120_000, None), Admission::Enqueue);
}

#[test]
fn waiters_are_granted_in_fifo_order_with_measured_waits() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 200_000, None));
    for n in 0..3 {
        assert_eq!(c.admit(T0, T0 + 200_000, None), Admission::Enqueue);
        c.enqueue(T0, T0 + 200_000, None, h(n)).unwrap();
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
    let l = lease(c.admit(T0, T0 + 10_000, None));
    assert_eq!(c.admit(T0, T0 + 10_000, None), Admission::Enqueue);
    c.enqueue(T0, T0 + 10_000, None, h(7)).unwrap();
    assert!(c.pump(T0).granted.is_empty());
    c.release(
        T0 + 300,
        l.lease_id,
        None,
        Outcome::Success { latency_ms: 300 },
    );
    let p = c.pump(T0 + 300);
    assert_eq!(p.granted.len(), 1);
    assert_eq!(p.granted[0].1.queue_wait_ms, 300);
}

#[test]
fn not_sent_gives_the_rate_slot_back_and_release_is_idempotent() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(T0, l.lease_id, None, Outcome::NotSent);
    c.release(T0, l.lease_id, None, Outcome::NotSent);
    assert_eq!(c.status(T0).requests_this_minute, 0);
    lease(c.admit(T0, T0 + 1_000, None));
}

#[test]
fn a_429_pauses_and_releases_waiters_it_would_make_late() {
    let mut c = cap(100, Some(1));
    let l = lease(c.admit(T0, T0 + 100_000, None));
    c.enqueue(T0, T0 + 5_000, None, h(1)).unwrap();
    c.enqueue(T0, T0 + 100_000, None, h(2)).unwrap();
    let late = c.release(
        T0 + 100,
        l.lease_id,
        None,
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
    let l = lease(c.admit(T0, T0 + 1, None));
    c.release(
        T0,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.window_mut().paused_until(T0), Some(T0 + 1_000));
    let now = T0 + 1_000;
    let l = lease(c.admit(now, now + 1, None));
    c.release(
        now,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.window_mut().paused_until(now), Some(now + 2_000));
}

#[test]
fn draining_refuses_new_requests_and_hands_back_waiters() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 100_000, None));
    c.enqueue(T0, T0 + 100_000, None, h(1)).unwrap();
    assert_eq!(c.drain().len(), 1);
    assert_eq!(
        c.admit(T0, T0 + 100_000, None),
        Admission::Rejected(Rejection::ShuttingDown)
    );
    // The call in flight still finishes normally.
    c.release(T0, l.lease_id, None, Outcome::Success { latency_ms: 5 });
    assert_eq!(c.status(T0).in_flight, 0);
}

#[test]
fn disabled_rejects_and_hands_back_waiters() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 100_000, None));
    c.enqueue(T0, T0 + 100_000, None, h(1)).unwrap();
    assert_eq!(c.disable("401".into()).len(), 1);
    assert!(matches!(
        c.admit(T0, T0 + 100_000, None),
        Admission::Rejected(Rejection::Disabled { .. })
    ));
    assert!(c.estimate(T0).unavailable.is_some());
    c.reset();
    assert!(c.estimate(T0).unavailable.is_none());
}

#[test]
fn gone_waiters_are_skipped_without_using_capacity() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 100_000, None));
    let gone = h(1);
    c.enqueue(T0, T0 + 100_000, None, gone.clone()).unwrap();
    c.enqueue(T0, T0 + 100_000, None, h(2)).unwrap();
    gone.1.set(true);
    c.release(T0, l.lease_id, None, Outcome::Success { latency_ms: 10 });
    let p = c.pump(T0 + 60_000);
    assert_eq!(p.granted.len(), 1);
    assert_eq!(p.granted[0].0 .0, 2);
}

#[test]
fn estimate_adds_queue_and_service_time() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 1, None));
    c.enqueue(T0, T0 + 500_000, None, h(1)).unwrap();
    let e = c.estimate(T0);
    assert_eq!(e.rate_limit_wait_ms, 60_000);
    assert_eq!(e.queue_wait_ms, 60_000);
    assert_eq!(e.service_ms, 500);
    assert_eq!(e.total_ms, 120_500);
}

#[test]
fn service_average_moves_toward_observations() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1, None));
    c.release(T0, l.lease_id, None, Outcome::Success { latency_ms: 1_500 });
    assert_eq!(c.estimate(T0).service_ms, 700);
}

fn fail(c: &mut KeyModelCapacity<H>, now: Millis) {
    let l = lease(c.admit(now, now + 100_000, None));
    c.release(
        now,
        l.lease_id,
        None,
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
    let l = lease(c.admit(T0 + 2, T0 + 100_000, None));
    c.enqueue(T0 + 2, T0 + 100_000, None, h(9)).unwrap();
    let handed_back = c.release(
        T0 + 3,
        l.lease_id,
        None,
        Outcome::Failed {
            latency_ms: 10,
            kind: Some(FailureKind::Timeout),
        },
    );
    assert_eq!(handed_back.len(), 1, "the waiter fails over at once");
    match c.admit(T0 + 4, T0 + 100_000, None) {
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
    let trial = lease(c.admit(later, later + 10_000, None));
    assert!(trial.trial);
    assert_eq!(
        c.admit(later, later + 10_000, None),
        Admission::Rejected(Rejection::TrialInProgress)
    );
    c.release(
        later,
        trial.lease_id,
        None,
        Outcome::Success { latency_ms: 5 },
    );
    assert_eq!(c.status(later).circuit_state, "closed");
    assert!(!lease(c.admit(later, later + 10_000, None)).trial);
}

#[test]
fn a_bad_request_does_not_count_against_the_pair() {
    let mut c = cap(100, None);
    for i in 0..5 {
        let l = lease(c.admit(T0 + i, T0 + 100_000, None));
        c.release(
            T0 + i,
            l.lease_id,
            None,
            Outcome::Failed {
                latency_ms: 1,
                kind: None,
            },
        );
    }
    assert_eq!(c.status(T0 + 10).circuit_state, "closed");
}

#[test]
fn permits_granted_ahead_follow_the_room_and_are_recorded_when_reported() {
    let mut c = cap(3, Some(2));
    c.grant_ahead(T0);
    let fast = c.fast_grants().clone();
    assert_eq!(fast.available(), 2, "concurrency 2 is the smaller room");
    assert!(fast.try_take());
    assert_eq!(
        c.status(T0).in_flight,
        1,
        "an unreported permit counts in flight"
    );
    // The slow path sees the unreported permit: one more call fits, then the cap.
    lease(c.admit(T0, T0 + 1_000, None));
    assert!(!fast.try_take(), "admit took the unused permits back");
    c.grant_ahead(T0);
    assert_eq!(fast.available(), 0);
    assert_eq!(c.admit(T0, T0 + 120_000, None), Admission::Enqueue);
    // The permit's release records its dispatch at the time it was granted.
    c.release_fast(T0 + 500, T0, Outcome::Success { latency_ms: 500 });
    let s = c.status(T0 + 500);
    assert_eq!((s.in_flight, s.requests_this_minute), (1, 2));
    c.grant_ahead(T0 + 500);
    assert_eq!(fast.available(), 1, "rpm 3 with 2 recorded");
    // A permit never sent is given back without a dispatch.
    assert!(fast.try_take());
    c.release_fast(T0 + 600, T0 + 600, Outcome::NotSent);
    c.grant_ahead(T0 + 600);
    assert_eq!(fast.available(), 1);
    assert_eq!(c.status(T0 + 600).requests_this_minute, 2);
}

#[test]
fn no_permit_while_waiters_queue_or_the_circuit_is_not_closed() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 200_000, None));
    assert_eq!(c.admit(T0, T0 + 200_000, None), Admission::Enqueue);
    c.enqueue(T0, T0 + 200_000, None, h(1)).unwrap();
    c.grant_ahead(T0 + 60_000);
    assert_eq!(c.fast_grants().available(), 0, "the waiter goes first");
    assert_eq!(c.pump(T0 + 60_000).granted.len(), 1);

    let mut c = cap(100, None);
    for _ in 0..CircuitConfig::default().consecutive_failures {
        let l = lease(c.admit(T0, T0 + 1_000, None));
        c.release(
            T0,
            l.lease_id,
            None,
            Outcome::Failed {
                latency_ms: 1,
                kind: Some(FailureKind::Server),
            },
        );
    }
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 0, "open");
    c.grant_ahead(T0 + 3_600_000);
    assert_eq!(
        c.fast_grants().available(),
        0,
        "half-open: trials go through admit"
    );
}

#[test]
fn a_snapshot_counts_unreported_permits_as_dispatched_now() {
    let mut c = cap(10, None);
    c.grant_ahead(T0);
    assert!(c.fast_grants().try_take());
    assert!(c.fast_grants().try_take());
    let (rate, _) = c.snapshot(T0 + 10);
    assert_eq!(rate.recent_runs, vec![(T0 + 10, 2)]);
    assert_eq!(rate.day_count, 2);
}

#[derive(Debug, Clone)]
enum Op {
    /// Take a permit; the call leaves this many ms later.
    Take(i64),
    GrantAhead,
    ReportFast(usize, u8),
    Admit(i64),
    ReleaseSlow(usize, u8),
    Pump,
    Step(i64),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    use proptest::prelude::*;
    prop_oneof![
        4 => (0i64..2_000).prop_map(Op::Take),
        3 => Just(Op::GrantAhead),
        3 => (any::<usize>(), 0u8..5).prop_map(|(i, o)| Op::ReportFast(i, o)),
        2 => (0i64..90_000).prop_map(Op::Admit),
        2 => (any::<usize>(), 0u8..5).prop_map(|(i, o)| Op::ReleaseSlow(i, o)),
        1 => Just(Op::Pump),
        2 => (0i64..20_000).prop_map(Op::Step),
    ]
}

fn outcome(o: u8) -> Outcome {
    match o {
        0 | 1 => Outcome::Success { latency_ms: 10 },
        2 => Outcome::RateLimited {
            retry_after_ms: Some(3_000),
        },
        3 => Outcome::NotSent,
        _ => Outcome::Failed {
            latency_ms: 10,
            kind: Some(FailureKind::Server),
        },
    }
}

proptest::proptest! {
    /// Permits taken by handlers at any moment, recomputed by the actor at any moment,
    /// reported in any order, mixed with calls the actor grants itself (at once or from
    /// the queue), calls on permits leaving up to 2 s after the take: no half-open 60 s
    /// interval ever holds more than `rpm` calls as a provider counts them (when they
    /// leave), no day more than `rpd`, and never more than `max_concurrent` are in flight.
    #[test]
    fn permits_granted_ahead_never_exceed_the_limits(
        rpm in 1u32..6,
        rpd in 1u32..25,
        conc in proptest::option::of(1u32..4),
        ops in proptest::collection::vec(op(), 1..300),
    ) {
        let mut c: KeyModelCapacity<H> = KeyModelCapacity::new(
            RateWindow::new(rpm, rpd, Tz::UTC, T0),
            CircuitConfig::default(),
            conc,
            5,
            100,
        );
        let fast = c.fast_grants().clone();
        let mut now = T0;
        // Calls that went upstream: (dispatch time, still in flight).
        let mut sent: Vec<Millis> = Vec::new();
        let mut fast_out: Vec<Millis> = Vec::new();
        let mut slow_out: Vec<Lease> = Vec::new();
        let mut next_waiter = 0;
        for op in ops {
            match op {
                Op::Take(delay) => {
                    if fast.try_take() {
                        // The provider sees the call when it leaves, `delay` later.
                        fast_out.push(now + delay);
                        sent.push(now + delay);
                    }
                }
                Op::GrantAhead => c.grant_ahead(now),
                Op::ReportFast(i, o) => {
                    // Only a call that has left can have ended.
                    let left: Vec<usize> =
                        (0..fast_out.len()).filter(|&k| fast_out[k] <= now).collect();
                    if !left.is_empty() {
                        let at = fast_out.remove(left[i % left.len()]);
                        let o = outcome(o);
                        if o == Outcome::NotSent {
                            let p = sent.iter().position(|&t| t == at).unwrap();
                            sent.remove(p);
                        }
                        c.release_fast(now, at, o);
                    }
                }
                Op::Admit(wait) => match c.admit(now, now + wait, None) {
                    Admission::Granted(l) => {
                        slow_out.push(l);
                        sent.push(now);
                    }
                    Admission::Enqueue => {
                        next_waiter += 1;
                        let _ = c.enqueue(now, now + wait, None, h(next_waiter));
                    }
                    Admission::Rejected(_) => {}
                },
                Op::ReleaseSlow(i, o) => {
                    if !slow_out.is_empty() {
                        let l = slow_out.remove(i % slow_out.len());
                        let o = outcome(o);
                        if o == Outcome::NotSent {
                            let p = sent.iter().position(|&t| t == l.granted_at).unwrap();
                            sent.remove(p);
                        }
                        c.release(now, l.lease_id, None, o);
                    }
                }
                Op::Pump => {
                    for (_, l) in c.pump(now).granted {
                        slow_out.push(l);
                        sent.push(now);
                    }
                }
                Op::Step(ms) => now += ms,
            }
            // Calls that have left by now, as the provider counts them.
            let arrived: Vec<Millis> = sent.iter().copied().filter(|&t| t <= now).collect();
            for &start in &arrived {
                let in_window = arrived
                    .iter()
                    .filter(|&&t| t >= start && t < start + crate::key_model::rate_window::WINDOW_MS)
                    .count();
                proptest::prop_assert!(in_window <= rpm as usize, "rpm exceeded: {sent:?}");
            }
            let day = |t: Millis| (t - T0).div_euclid(86_400_000);
            let today = arrived.iter().filter(|&&t| day(t) == day(now)).count();
            proptest::prop_assert!(today <= rpd as usize, "rpd exceeded");
            if let Some(conc) = conc {
                proptest::prop_assert!(
                    fast_out.len() + slow_out.len() <= conc as usize,
                    "concurrency exceeded"
                );
            }
        }
    }
}

#[test]
fn the_estimate_for_after_the_permits_counts_them_as_calls_made() {
    let mut c = cap(1, None);
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 1);
    assert_eq!(c.estimate(T0).rate_limit_wait_ms, 0);
    let spent = c.estimate_exhausted(T0);
    assert_eq!(spent.rate_limit_wait_ms, 60_000);
    assert_eq!(spent.blocker, "rpm");
}

#[test]
fn a_start_past_the_latest_accepted_is_refused_not_queued() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 120_000, None));
    assert_eq!(
        c.admit(T0 + 1_000, T0 + 120_000, Some(T0 + 5_000)),
        Admission::Rejected(Rejection::OverBudget {
            available_in_ms: 59_000,
            blocker: "rpm"
        })
    );
    assert_eq!(
        c.admit(T0 + 1_000, T0 + 120_000, Some(T0 + 61_000)),
        Admission::Enqueue
    );
    // Without a latest start it queues as before.
    assert_eq!(c.admit(T0 + 1_000, T0 + 120_000, None), Admission::Enqueue);
}

#[test]
fn a_pause_past_a_waiters_latest_start_hands_it_back() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 120_000, None));
    c.enqueue(T0, T0 + 120_000, Some(T0 + 70_000), h(1))
        .unwrap();
    c.enqueue(T0, T0 + 120_000, None, h(2)).unwrap();
    let late = c.release(
        T0 + 100,
        l.lease_id,
        Some(T0),
        Outcome::RateLimited {
            retry_after_ms: Some(80_000),
        },
    );
    assert_eq!(late.iter().map(|w| w.0).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn a_released_lease_holds_the_window_from_when_it_was_sent() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 120_000, None));
    c.release(
        T0 + 500,
        l.lease_id,
        Some(T0 + 40),
        Outcome::Success { latency_ms: 460 },
    );
    assert_eq!(c.estimate(T0 + 60_000).rate_limit_wait_ms, 40);
}

#[test]
fn the_latency_percentile_starts_at_the_seed_and_follows_observations() {
    let mut c = cap(100, None);
    assert_eq!(c.latency_p95(), 500);
    for ms in 1..=20 {
        let l = lease(c.admit(T0, T0 + 1_000, None));
        c.release(
            T0,
            l.lease_id,
            None,
            Outcome::Success {
                latency_ms: ms * 100,
            },
        );
    }
    // Nearest rank: the 19th of 20 sorted samples.
    assert_eq!(c.latency_p95(), 1_900);
}

#[derive(Debug, Clone)]
enum ViewOp {
    Take,
    Publish,
    Report(usize),
    Step(Millis),
}

fn view_op() -> impl proptest::strategy::Strategy<Value = ViewOp> {
    use proptest::prelude::*;
    prop_oneof![
        3 => Just(ViewOp::Take),
        2 => Just(ViewOp::Publish),
        2 => (0usize..8).prop_map(ViewOp::Report),
        3 => (0i64..25_000).prop_map(ViewOp::Step),
    ]
}

proptest::proptest! {
    /// Plans made right after permits are taken see them: whenever the published view
    /// says a newcomer could start now and no permit is left, the RPM and RPD limits
    /// really allow a call now — counted against every call made so far at the time it
    /// was made, reported to the actor or not.
    #[test]
    fn the_published_view_never_promises_a_start_the_limits_forbid(
        rpm in 1u32..5,
        rpd in 1u32..20,
        conc in proptest::option::of(1u32..3),
        margin in 0i64..400,
        ops in proptest::collection::vec(view_op(), 1..200),
    ) {
        let published = std::sync::Arc::new(crate::key_model::published::Published::default());
        let mut c: KeyModelCapacity<H> = KeyModelCapacity::new(
            RateWindow::new(rpm, rpd, Tz::UTC, T0).with_margin(margin),
            CircuitConfig::default(),
            conc,
            5,
            100,
        )
        .with_fast_grants(published.fast_grants().clone());
        let fast = c.fast_grants().clone();
        let mut now = T0;
        let mut sent: Vec<Millis> = Vec::new();
        let mut out: Vec<Millis> = Vec::new();
        let publish = |c: &mut KeyModelCapacity<H>, now| {
            c.grant_ahead(now);
            let e = c.estimate(now);
            let spent = c.estimate_exhausted(now);
            published.publish_both(now, &e, &spent, c.latency_p95());
        };
        publish(&mut c, now);
        for op in ops {
            match op {
                ViewOp::Take => {
                    if fast.try_take() {
                        published.note_take(now);
                        sent.push(now);
                        out.push(now);
                    }
                }
                ViewOp::Publish => publish(&mut c, now),
                ViewOp::Report(i) => {
                    if !out.is_empty() {
                        let at = out.remove(i % out.len());
                        c.release_fast(now, at, Outcome::Success { latency_ms: 10 });
                    }
                }
                ViewOp::Step(ms) => now += ms,
            }
            let v = published.read(now);
            let says_now = v.unavailable.is_none() && v.rate_limit_wait_ms + v.queue_wait_ms == 0;
            if says_now && fast.available() == 0 {
                let span = crate::key_model::rate_window::WINDOW_MS + margin;
                let in_window = sent.iter().filter(|&&t| t + span > now).count();
                let day = |t: Millis| (t - T0).div_euclid(86_400_000);
                let today = sent.iter().filter(|&&t| day(t) == day(now)).count();
                proptest::prop_assert!(in_window < rpm as usize, "rpm: {sent:?} at {now}");
                proptest::prop_assert!(today < rpd as usize, "rpd: {sent:?} at {now}");
                // A concurrency wait is an estimate of when calls end (the service-time
                // average), not a limit the view can know; it is left out here.
            }
        }
    }
}

fn open_circuit(c: &mut KeyModelCapacity<H>, now: Millis) {
    for i in 0..Millis::from(CircuitConfig::default().consecutive_failures) {
        fail(c, now + i);
    }
}

#[test]
fn a_pair_at_its_concurrency_cap_estimates_one_service_time() {
    let mut c = cap(100, Some(1));
    lease(c.admit(T0, T0 + 10_000, None));
    let e = c.estimate(T0);
    assert_eq!(
        (e.rate_limit_wait_ms, e.queue_wait_ms, e.total_ms),
        (0, 500, 1_000)
    );
    assert_eq!(e.blocker, "concurrency");
    assert_eq!(c.status(T0).estimated_queue_wait_ms, 500);
}

#[test]
fn waiters_behind_a_full_concurrency_cap_wait_whole_rounds_of_service() {
    let mut c = cap(100, Some(2));
    lease(c.admit(T0, T0 + 10_000, None));
    lease(c.admit(T0, T0 + 10_000, None));
    for n in 0..2 {
        assert_eq!(c.admit(T0, T0 + 10_000, None), Admission::Enqueue);
        c.enqueue(T0, T0 + 10_000, None, h(n)).unwrap();
    }
    // Two in flight and two queued ahead on two slots: the newcomer is the fifth call,
    // in the third round, two service times away.
    let e = c.estimate(T0);
    assert_eq!((e.queue_wait_ms, e.blocker), (1_000, "concurrency"));
    // With one slot free the first waiter's call goes at once: no wait.
    let mut c = cap(100, Some(2));
    lease(c.admit(T0, T0 + 10_000, None));
    assert_eq!(c.estimate(T0).queue_wait_ms, 0);
}

#[test]
fn the_budget_boundary_exactly_at_max_wait_is_within_budget() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 120_000, None));
    // The window frees at T0 + 60,000: a start exactly at the latest accepted one fits.
    assert_eq!(
        c.admit(T0 + 1_000, T0 + 120_000, Some(T0 + 60_000)),
        Admission::Enqueue
    );
    assert!(matches!(
        c.admit(T0 + 1_000, T0 + 120_000, Some(T0 + 59_999)),
        Admission::Rejected(Rejection::OverBudget { .. })
    ));
}

#[test]
fn a_start_exactly_at_the_deadline_is_still_queued() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 120_000, None));
    assert_eq!(c.admit(T0 + 1_000, T0 + 60_000, None), Admission::Enqueue);
    assert!(matches!(
        c.admit(T0 + 1_000, T0 + 59_999, None),
        Admission::Rejected(Rejection::WouldMissDeadline {
            available_in_ms: 59_000,
            ..
        })
    ));
}

#[test]
fn a_reload_that_lowers_rpm_below_the_current_count_refuses_the_next_call() {
    let mut c = cap(3, None);
    lease(c.admit(T0, T0 + 1_000, None));
    lease(c.admit(T0, T0 + 1_000, None));
    c.reconfigure(2, 1_000, None, 10, CircuitConfig::default());
    assert!(matches!(
        c.admit(T0, T0 + 1_000, None),
        Admission::Rejected(Rejection::WouldMissDeadline { blocker: "rpm", .. })
    ));
    assert_eq!(c.status(T0).rpm_limit, 2);
}

#[test]
fn a_reload_applies_the_new_concurrency_cap_queue_bound_and_circuit_thresholds() {
    let mut c = cap(100, None);
    lease(c.admit(T0, T0 + 1_000, None));
    c.reconfigure(
        100,
        1_000,
        Some(1),
        1,
        CircuitConfig {
            consecutive_failures: 1,
            ..CircuitConfig::default()
        },
    );
    let s = c.status(T0);
    assert_eq!((s.max_concurrent, s.max_queue), (Some(1), 1));
    // One call in flight on a cap of one: the next one queues, and the queue holds one.
    assert_eq!(c.admit(T0, T0 + 10_000, None), Admission::Enqueue);
    c.enqueue(T0, T0 + 10_000, None, h(1)).unwrap();
    assert!(matches!(
        c.admit(T0, T0 + 10_000, None),
        Admission::Rejected(Rejection::QueueFull { capacity: 1, .. })
    ));
    // A single failure now opens the circuit.
    let mut c = cap(100, None);
    c.reconfigure(
        100,
        1_000,
        None,
        10,
        CircuitConfig {
            consecutive_failures: 1,
            ..CircuitConfig::default()
        },
    );
    fail(&mut c, T0);
    assert_eq!(c.status(T0).circuit_state, "open");
}

#[test]
fn a_reload_with_a_new_key_value_gives_a_key_that_failed_authentication_another_chance() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(T0, l.lease_id, None, Outcome::AuthFailed);
    c.disable("401".into());
    assert_eq!(c.status(T0).circuit_state, "auth_open");
    // The same value: still out.
    c.reconfigure(100, 1_000, None, 10, CircuitConfig::default());
    let s = c.status(T0);
    assert_eq!((s.circuit_state, s.disabled.is_some()), ("auth_open", true));
    assert!(matches!(
        c.admit(T0, T0 + 1_000, None),
        Admission::Rejected(Rejection::Disabled { .. })
    ));
    c.reenable();
    let s = c.status(T0);
    assert_eq!((s.circuit_state, s.disabled), ("closed", None));
    lease(c.admit(T0, T0 + 1_000, None));
}

#[test]
fn a_reload_keeps_a_circuit_opened_by_failures_open() {
    let mut c = cap(100, None);
    open_circuit(&mut c, T0);
    c.reconfigure(100, 1_000, None, 10, CircuitConfig::default());
    c.reenable();
    assert!(matches!(
        c.admit(T0 + 10, T0 + 1_000, None),
        Admission::Rejected(Rejection::CircuitOpen { .. })
    ));
}

#[test]
fn a_restart_restores_counts_and_an_open_circuit() {
    let mut c = cap(5, None);
    open_circuit(&mut c, T0);
    let (rate, circuit) = c.snapshot(T0 + 10);
    let mut d = cap(5, None);
    d.restore(&rate, &circuit, T0 + 10);
    assert_eq!(d.status(T0 + 10).requests_this_minute, 3);
    assert!(matches!(
        d.admit(T0 + 10, T0 + 100_000, None),
        Admission::Rejected(Rejection::CircuitOpen { .. })
    ));
}

#[test]
fn a_restart_does_not_restore_a_circuit_opened_by_an_auth_failure() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(T0, l.lease_id, None, Outcome::AuthFailed);
    let (rate, circuit) = c.snapshot(T0 + 10);
    assert_eq!(circuit.state, CircuitState::AuthOpen);
    let mut d = cap(100, None);
    d.restore(&rate, &circuit, T0 + 10);
    assert_eq!(d.status(T0 + 10).circuit_state, "closed");
    lease(d.admit(T0 + 10, T0 + 1_000, None));
}

#[test]
fn no_permit_for_a_disabled_or_draining_pair() {
    let mut c = cap(100, None);
    c.disable("401".into());
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 0, "disabled");
    let mut c = cap(100, None);
    c.drain();
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 0, "draining");
    let mut c = cap(100, None);
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 100, "a healthy idle pair");
}

#[test]
fn a_successful_probe_lets_an_open_pair_try_at_once() {
    let mut c = cap(100, None);
    open_circuit(&mut c, T0);
    c.record_probe(T0 + 100, false, Some("connection refused".into()));
    assert!(matches!(
        c.admit(T0 + 100, T0 + 10_000, None),
        Admission::Rejected(Rejection::CircuitOpen { .. })
    ));
    assert_eq!(
        c.status(T0 + 100).probe,
        Some(ProbeRecord {
            ok: false,
            at: T0 + 100,
            error: Some("connection refused".to_owned())
        })
    );
    c.record_probe(T0 + 200, true, None);
    assert_eq!(
        c.status(T0 + 200).probe,
        Some(ProbeRecord {
            ok: true,
            at: T0 + 200,
            error: None
        })
    );
    assert!(lease(c.admit(T0 + 200, T0 + 10_000, None)).trial);
}

#[test]
fn a_reset_lifts_a_429_pause() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(
        T0,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.status(T0).paused_until, Some(T0 + 1_000));
    c.reset();
    assert_eq!(c.status(T0).paused_until, None);
    // The default pause starts again from one second.
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(
        T0,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: None,
        },
    );
    assert_eq!(c.status(T0).paused_until, Some(T0 + 1_000));
}

#[test]
fn each_rejection_has_its_label_and_says_when_the_pair_may_return() {
    let all = [
        (Rejection::ShuttingDown, None),
        (
            Rejection::QueueFull {
                capacity: 3,
                available_in_ms: 40,
            },
            Some(40),
        ),
        (
            Rejection::OverBudget {
                available_in_ms: 50,
                blocker: "rpm",
            },
            Some(50),
        ),
        (
            Rejection::WouldMissDeadline {
                available_in_ms: 60,
                blocker: "rpd",
            },
            Some(60),
        ),
        (Rejection::DeadlinePassed, None),
        (
            Rejection::Disabled {
                message: "401".into(),
            },
            None,
        ),
        (Rejection::ActorUnavailable, None),
        (
            Rejection::CircuitOpen {
                available_in_ms: Some(70),
                kind: "timeout",
            },
            Some(70),
        ),
        (Rejection::TrialInProgress, None),
    ];
    let labels: Vec<_> = all.iter().map(|(r, _)| r.label()).collect();
    assert_eq!(labels, Rejection::LABELS);
    for (r, available) in &all {
        assert_eq!(r.available_in_ms(), *available, "{r:?}");
    }
}

#[test]
fn a_circuit_rejection_message_says_when_the_pair_may_return() {
    let open = Rejection::CircuitOpen {
        available_in_ms: Some(5_000),
        kind: "server_error",
    };
    assert_eq!(
        open.to_string(),
        "circuit open (server_error), may return in 5000 ms"
    );
    let auth = Rejection::CircuitOpen {
        available_in_ms: None,
        kind: "auth",
    };
    assert_eq!(auth.to_string(), "circuit open (auth), until reset");
}

#[test]
fn the_latency_percentile_is_taken_over_the_latest_samples_only() {
    let mut c = cap(1_000, None);
    // 32 slow calls, then 32 fast ones: the slow ones have left the ring.
    for ms in [10_000, 100] {
        for _ in 0..32 {
            let l = lease(c.admit(T0, T0 + 1_000, None));
            c.release(T0, l.lease_id, None, Outcome::Success { latency_ms: ms });
        }
    }
    assert_eq!(c.latency_p95(), 100);
}

#[test]
fn the_estimate_once_every_permit_is_taken_counts_all_of_them() {
    let mut c = cap(2, None);
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 2);
    let spent = c.estimate_exhausted(T0);
    assert_eq!((spent.rate_limit_wait_ms, spent.in_flight), (60_000, 2));
    // With no permit out, nothing is counted.
    let mut c = cap(1, None);
    assert_eq!(c.estimate_exhausted(T0).rate_limit_wait_ms, 0);
}

#[test]
fn a_snapshot_without_permits_out_holds_only_the_recorded_calls() {
    let mut c = cap(10, None);
    lease(c.admit(T0, T0 + 1_000, None));
    let (rate, _) = c.snapshot(T0 + 10);
    assert_eq!(rate.recent_runs, vec![(T0, 1)]);
    assert_eq!(rate.day_count, 1);
}

#[test]
fn when_the_window_and_the_concurrency_cap_free_together_the_rate_limit_is_named() {
    let mut c = cap(1, Some(1));
    lease(c.admit(T0, T0 + 1_000, None));
    // At T0 + 59,500 the window frees in 500 ms, and the call in flight is expected to
    // end in one service time, 500 ms.
    let e = c.estimate(T0 + 59_500);
    assert_eq!((e.rate_limit_wait_ms, e.queue_wait_ms), (500, 0));
    assert_eq!(e.blocker, "rpm");
}

#[test]
fn the_status_counts_calls_429s_and_the_open_circuit() {
    let mut c = cap(100, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    c.release(
        T0,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: Some(10),
        },
    );
    let now = T0 + 10;
    c.grant_ahead(now);
    assert!(c.fast_grants().try_take());
    let s = c.status(now);
    assert_eq!((s.dispatched_total, s.rate_limited_total), (2, 1));
    assert_eq!(s.circuit_open_until, None);
    c.release_fast(now, now, Outcome::Success { latency_ms: 5 });
    assert_eq!(c.status(now).dispatched_total, 2);
    open_circuit(&mut c, now);
    let s = c.status(now + 5);
    assert_eq!(s.circuit_state, "open");
    assert!(s.circuit_open_until.is_some_and(|u| u >= now + 5_000));
}

#[test]
fn a_newcomer_does_not_overtake_a_waiter_when_the_window_frees() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 200_000, None));
    assert_eq!(c.admit(T0, T0 + 200_000, None), Admission::Enqueue);
    c.enqueue(T0, T0 + 200_000, None, h(1)).unwrap();
    // The window frees at T0 + 60,000; the waiter has not been pumped yet.
    assert_eq!(c.admit(T0 + 60_000, T0 + 200_000, None), Admission::Enqueue);
    let p = c.pump(T0 + 60_000);
    assert_eq!(
        p.granted.iter().map(|(w, _)| w.0).collect::<Vec<_>>(),
        vec![1]
    );
}

#[test]
fn a_cancelled_waiter_leaves_and_the_others_keep_their_turn() {
    let mut c = cap(1, None);
    lease(c.admit(T0, T0 + 200_000, None));
    let a = c.enqueue(T0, T0 + 200_000, None, h(1)).unwrap();
    let b = c.enqueue(T0, T0 + 200_000, None, h(2)).unwrap();
    assert!(c.cancel(b));
    assert!(!c.cancel(b), "already gone");
    assert_ne!(a, b);
    let p = c.pump(T0 + 60_000);
    assert_eq!(
        p.granted.iter().map(|(w, _)| w.0).collect::<Vec<_>>(),
        vec![1]
    );
    assert_eq!(c.status(T0 + 60_000).queue_length, 0);
}

#[test]
fn a_waiter_held_by_the_window_then_by_the_cap_counts_both_waits_apart() {
    let mut c = cap(1, Some(1));
    let first = lease(c.admit(T0, T0 + 200_000, None));
    c.enqueue(T0, T0 + 200_000, None, h(1)).unwrap();
    assert_eq!(c.pump(T0).wake_in, Some(60_000), "held by RPM");
    // The window frees, but the first call is still running: held by the cap.
    assert!(c.pump(T0 + 60_000).granted.is_empty());
    c.release(
        T0 + 70_000,
        first.lease_id,
        None,
        Outcome::Success { latency_ms: 500 },
    );
    let p = c.pump(T0 + 70_000);
    let (_, l) = &p.granted[0];
    assert_eq!((l.rate_limit_wait_ms, l.queue_wait_ms), (60_000, 10_000));
}

#[test]
fn a_call_that_left_late_holds_the_window_from_when_it_left_while_still_running() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 120_000, None));
    c.sent(T0 + 500, l.lease_id, T0 + 40);
    assert_eq!(c.estimate(T0 + 60_000).rate_limit_wait_ms, 40);
    // A report for a time before the grant moves nothing.
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 120_000, None));
    c.sent(T0 + 500, l.lease_id, T0 - 40);
    assert_eq!(c.estimate(T0 + 60_000).rate_limit_wait_ms, 0);
}

#[test]
fn a_waiter_whose_latest_start_is_exactly_the_end_of_a_pause_keeps_its_place() {
    let mut c = cap(100, Some(1));
    let l = lease(c.admit(T0, T0 + 120_000, None));
    c.enqueue(T0, T0 + 120_000, Some(T0 + 30_100), h(1))
        .unwrap();
    c.enqueue(T0, T0 + 120_000, Some(T0 + 30_099), h(2))
        .unwrap();
    let late = c.release(
        T0 + 100,
        l.lease_id,
        None,
        Outcome::RateLimited {
            retry_after_ms: Some(30_000),
        },
    );
    assert_eq!(late.iter().map(|w| w.0).collect::<Vec<_>>(), vec![2]);
    assert_eq!(c.pump(T0 + 30_100).granted.len(), 1);
}

#[test]
fn the_backoff_jitter_is_fixed_by_the_lease_and_the_time_and_spreads_over_zero_to_one() {
    type C = KeyModelCapacity<H>;
    assert_eq!(C::jitter(1, T0), 0.682_737_115_560_434_6);
    assert_eq!(C::jitter(2, T0), 0.796_323_765_753_398_5);
    assert_eq!(C::jitter(7, 0), 0.072_970_398_580_849_3);
    let values: Vec<f64> = (1..=1_000).map(|id| C::jitter(id, T0)).collect();
    assert!(values.iter().all(|j| (0.0..1.0).contains(j)));
    let mean = values.iter().sum::<f64>() / 1_000.0;
    assert!((0.45..0.55).contains(&mean), "{mean}");
    assert!(values.iter().any(|&j| j < 0.01) && values.iter().any(|&j| j > 0.99));
}

#[test]
fn the_backoff_jitter_of_a_call_on_a_permit_is_fixed_by_its_count_and_send_time() {
    let mut c = cap(100, None);
    c.grant_ahead(T0);
    for _ in 0..3 {
        assert!(c.fast_grants().try_take());
    }
    for _ in 0..3 {
        c.release_fast(
            T0 + 10,
            T0,
            Outcome::Failed {
                latency_ms: 10,
                kind: Some(FailureKind::Server),
            },
        );
    }
    // The third report opens the circuit: 5 s plus 20 % of the jitter for seed
    // (3 rotated by 32 bits) XOR the send time.
    assert_eq!(c.status(T0 + 10).circuit_open_until, Some(T0 + 10 + 5_211));
}

#[test]
fn granting_ahead_again_with_nothing_taken_leaves_the_same_permits() {
    let mut c = cap(3, Some(2));
    c.grant_ahead(T0);
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 2);
    assert_eq!(c.status(T0).in_flight, 0, "nothing was taken");
    assert!(c.fast_grants().try_take());
    c.grant_ahead(T0);
    assert_eq!(c.fast_grants().available(), 1, "one taken, one left of two");
    assert_eq!(c.status(T0).in_flight, 1);
}

#[test]
fn a_pump_with_nobody_waiting_leaves_the_permits_granted_ahead() {
    let mut c = cap(3, None);
    c.grant_ahead(T0);
    assert!(c.pump(T0).granted.is_empty());
    assert_eq!(c.fast_grants().available(), 3);
    // With a waiter, the pump takes the permits back: the waiter goes first.
    c.enqueue(T0, T0 + 1_000, None, h(1)).unwrap();
    let p = c.pump(T0);
    assert_eq!(p.granted.len(), 1);
    assert_eq!(c.fast_grants().available(), 0);
}

#[test]
fn a_send_report_at_the_grant_time_changes_nothing_even_after_the_clock_stepped_back() {
    let mut c = cap(1, None);
    let l = lease(c.admit(T0, T0 + 1_000, None));
    // The clock stepped back 100 ms between the grant and the report.
    c.sent(T0 - 100, l.lease_id, T0);
    c.release(T0 - 100, l.lease_id, None, Outcome::NotSent);
    assert_eq!(
        c.status(T0).requests_this_minute,
        0,
        "the slot is given back"
    );
    lease(c.admit(T0, T0 + 1_000, None));
}
