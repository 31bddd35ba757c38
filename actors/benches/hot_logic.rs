//! Micro-benchmarks of the logic every request runs through inside the actors: the
//! rate-window check and update, a FIFO grant cycle, a wait estimate with a queue, and the
//! routing choice. Run with `cargo bench -p bkvy-actors`.

// Benchmark set-up may panic on impossible states; that is not production code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use bkvy_actors::key_model::capacity::{Admission, KeyModelCapacity};
use bkvy_actors::key_model::rate_window::RateWindow;
use bkvy_actors::key_model::waiters::WaiterHandle;
use bkvy_actors::router::choice::{choose, CandidateView, Rule};
use bkvy_actors::{Millis, Outcome, WaitEstimate};
use chrono_tz::Tz;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

/// 2026-01-01T00:00:00Z.
const T0: Millis = 1_767_225_600_000;

/// A waiter that never leaves.
struct Stay;

impl WaiterHandle for Stay {
    fn is_gone(&self) -> bool {
        false
    }
}

/// `RateWindow::wait` + `record` on a window that is exactly full: every step one dispatch
/// leaves the 60 s window and one enters, so the deque stays at `rpm` entries.
fn rate_window(c: &mut Criterion) {
    let mut g = c.benchmark_group("rate_window/wait_and_record_full");
    for rpm in [60_u32, 10_000, 60_000] {
        let step = (60_000 / Millis::from(rpm)).max(1);
        let mut w = RateWindow::new(rpm, u32::MAX, Tz::UTC, T0);
        let mut now = T0;
        for _ in 0..rpm {
            w.record(now);
            now += step;
        }
        g.bench_with_input(BenchmarkId::from_parameter(rpm), &rpm, |b, _| {
            b.iter(|| {
                let wait = w.wait(black_box(now));
                w.record(now);
                now += step;
                black_box(wait)
            });
        });
    }
    g.finish();
}

fn capacity(rpm: u32, max_concurrent: Option<u32>) -> KeyModelCapacity<Stay> {
    let window = RateWindow::new(rpm, u32::MAX, Tz::UTC, T0);
    KeyModelCapacity::new(
        window,
        bkvy_actors::key_model::circuit::CircuitConfig::default(),
        max_concurrent,
        1_000,
        800,
    )
}

/// One full FIFO cycle on a pair with a concurrency cap of 1: a request is admitted and
/// goes at once, a second one is queued, the first is released, the pump grants the
/// second, and the second is released.
fn fifo_grant(c: &mut Criterion) {
    let mut cap = capacity(10_000_000, Some(1));
    let mut now = T0;
    c.bench_function("capacity/admit_enqueue_pump_release", |b| {
        b.iter(|| {
            now += 1;
            let deadline = now + 120_000;
            let Admission::Granted(first) = cap.admit(now, deadline, None) else {
                panic!("first request must go at once");
            };
            assert_eq!(cap.admit(now, deadline, None), Admission::Enqueue);
            cap.enqueue(now, deadline, None, Stay).unwrap();
            cap.release(
                now,
                first.lease_id,
                None,
                Outcome::Success { latency_ms: 1 },
            );
            let pump = cap.pump(now);
            let (_, second) = pump.granted.into_iter().next().unwrap();
            cap.release(
                now,
                second.lease_id,
                None,
                Outcome::Success { latency_ms: 1 },
            );
        });
    });
}

/// The hot path without a cap: admit (granted at once) and release.
fn admit_release(c: &mut Criterion) {
    let mut cap = capacity(10_000_000, None);
    let mut now = T0;
    c.bench_function("capacity/admit_release_uncapped", |b| {
        b.iter(|| {
            now += 1;
            let Admission::Granted(lease) = cap.admit(now, now + 120_000, None) else {
                panic!("uncapped pair must grant");
            };
            cap.release(
                now,
                lease.lease_id,
                None,
                Outcome::Success { latency_ms: 1 },
            );
        });
    });
}

/// `KeyModelCapacity::estimate` with 10 waiters queued behind a concurrency cap, for a
/// window holding `filled` recent dispatches (the estimate simulates the queue against the
/// window, copying the part of it that can still block).
fn estimate(c: &mut Criterion) {
    let mut g = c.benchmark_group("capacity/estimate_queue_10");
    for (rpm, filled) in [(60_u32, 30_u32), (10_000, 5_000), (10_000_000, 300_000)] {
        let mut cap = capacity(rpm, Some(2));
        let now = T0 + 59_000;
        let step = (59_000 / Millis::from(filled)).max(1);
        {
            let w = cap.window_mut();
            let mut t = T0;
            for _ in 0..filled {
                w.record(t.min(now));
                t += step;
            }
        }
        // Two calls in flight fill the cap; the next ten wait.
        for _ in 0..2 {
            assert!(matches!(
                cap.admit(now, now + 120_000, None),
                Admission::Granted(_)
            ));
        }
        for _ in 0..10 {
            assert_eq!(cap.admit(now, now + 120_000, None), Admission::Enqueue);
            cap.enqueue(now, now + 120_000, None, Stay).unwrap();
        }
        let label = format!("rpm_{rpm}_window_{filled}");
        g.bench_function(BenchmarkId::from_parameter(label), |b| {
            b.iter(|| black_box(cap.estimate(black_box(now))));
        });
    }
    g.finish();
}

fn estimate_of(wait: Millis, service: Millis, queue_len: usize) -> WaitEstimate {
    WaitEstimate {
        rate_limit_wait_ms: wait,
        queue_wait_ms: 0,
        service_ms: service,
        total_ms: wait + service,
        queue_len,
        in_flight: 0,
        blocker: if wait > 0 { "rpm" } else { "none" },
        unavailable: None,
    }
}

/// `choice::choose` over 10 candidates with mixed costs and estimates (some beyond the
/// wait budget), for the intelligence rule and the direct rule.
fn routing_choice(c: &mut Criterion) {
    let candidates: Vec<CandidateView> = (0..10)
        .map(|i| CandidateView {
            cost: [0.0015, 0.0003, 0.002, 0.0003, 0.01][i % 5],
            priority: (i % 3) as i64,
            estimate: Some(estimate_of(
                if i % 4 == 0 { 40_000 } else { 0 },
                800 + 100 * i as Millis,
                i % 2,
            )),
        })
        .collect();
    let mut g = c.benchmark_group("choice/choose_10");
    for (name, rule) in [
        ("intelligence", Rule::Intelligence),
        ("scenario", Rule::Scenario),
        ("direct", Rule::Direct),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(choose(
                    rule,
                    black_box(&candidates),
                    black_box(30_000),
                    black_box(120_000),
                ))
            });
        });
    }
    g.finish();
}

criterion_group!(
    benches,
    rate_window,
    fifo_grant,
    admit_release,
    estimate,
    routing_choice
);
criterion_main!(benches);
