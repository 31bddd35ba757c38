//! The actors end to end, on a real actix System with a manual clock.

use std::sync::Arc;
use std::time::Duration;

use actix::Actor;
use bkvy_actors::{
    start_key_models, Candidate, KeyAuthFailed, KeyModelHandle, KeyModelId, KeyModelSpec,
    MailboxMeter, ManualClock, Outcome, ProviderNames, Rejection, Route, RouteError, RouteTarget,
    RouterActor, RoutingTable, ScenarioStep, SharedClock, Tier,
};

const T0: i64 = 1_767_225_600_000;

fn spec(
    provider: &str,
    key: &str,
    model: &str,
    rpm: u32,
    max_concurrent: Option<u32>,
) -> KeyModelSpec {
    KeyModelSpec {
        id: KeyModelId::new(provider, key, model),
        rpm,
        rpd: 1_000,
        rpd_timezone: chrono_tz::Tz::UTC,
        max_concurrent,
        max_queue: 100,
        avg_response_time_ms: 1_000,
        circuit: bkvy_actors::key_model::circuit::CircuitConfig::default(),
        rate_margin_ms: 0,
    }
}

fn clock() -> (Arc<ManualClock>, SharedClock) {
    let c = Arc::new(ManualClock::new(T0));
    (c.clone(), c)
}

/// Starts the actor of one key/model pair `p`/`k`/`m` with these limits.
fn one_pair(clock: &SharedClock, rpm: u32, max_concurrent: Option<u32>) -> KeyModelHandle {
    start_key_models(
        vec![spec("p", "k", "m", rpm, max_concurrent)],
        clock,
        &MailboxMeter::new(),
    )
    .remove(0)
}

#[actix::test]
async fn waiters_are_granted_in_arrival_order_as_the_window_frees() {
    let (manual, clock) = clock();
    let h = one_pair(&clock, 1, None);
    let now = {
        let c = clock.clone();
        move || c.now_ms()
    };
    let first = h.acquire(T0 + 600_000, &now).await.unwrap();
    first.finish(Outcome::Success { latency_ms: 10 });

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for n in 0..3 {
        let h = h.clone();
        let now = now.clone();
        let tx = tx.clone();
        actix::spawn(async move {
            let g = h.acquire(T0 + 600_000, now).await.unwrap();
            tx.send((n, g.lease().rate_limit_wait_ms)).unwrap();
            g.finish(Outcome::Success { latency_ms: 10 });
        });
        // Let each waiter reach the queue before the next one.
        actix::clock::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        rx.try_recv().is_err(),
        "nobody may go before the window frees"
    );
    for expected in 0..3 {
        manual.advance(60_000);
        h.nudge();
        let (n, rate_wait) = tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, expected, "FIFO order");
        assert!(rate_wait >= 60_000);
        actix::clock::sleep(Duration::from_millis(20)).await;
        assert!(rx.try_recv().is_err(), "one grant per freed slot");
    }
}

#[actix::test]
async fn a_dropped_lease_gives_its_slot_back() {
    let (_manual, clock) = clock();
    let h = one_pair(&clock, 1, Some(1));
    let now = move || clock.now_ms();
    let g = h.acquire(T0 + 10_000, &now).await.unwrap();
    drop(g); // never sent upstream
    let s = h.status(Duration::from_secs(1)).await.unwrap();
    assert_eq!((s.requests_this_minute, s.in_flight), (0, 0));
    let mut g = h.acquire(T0 + 10_000, &now).await.unwrap();
    g.mark_sent(T0);
    drop(g); // sent, requester gone: still counts against RPM, but frees concurrency
    let s = h.status(Duration::from_secs(1)).await.unwrap();
    assert_eq!((s.requests_this_minute, s.in_flight), (1, 0));
}

#[actix::test]
async fn batched_releases_are_taken_in_before_any_answer_about_capacity() {
    let (_manual, clock) = clock();
    let h = one_pair(&clock, 100, Some(2));
    let now = move || clock.now_ms();
    // Let the actor leave its permits, then use them: successes join the batch.
    let _ = h.status(Duration::from_secs(1)).await.unwrap();
    for _ in 0..5 {
        let mut a = h.acquire(T0 + 10_000, &now).await.unwrap();
        let mut b = h.acquire(T0 + 10_000, &now).await.unwrap();
        a.mark_sent(T0);
        b.mark_sent(T0);
        a.finish(Outcome::Success { latency_ms: 10 });
        b.finish(Outcome::Success { latency_ms: 10 });
    }
    // A status read takes the batch in first: every call counted, none left in flight.
    let s = h.status(Duration::from_secs(1)).await.unwrap();
    assert_eq!((s.requests_this_minute, s.in_flight), (10, 0));
    // The concurrency cap still holds with releases pending in a batch.
    let mut a = h.acquire(T0 + 10_000, &now).await.unwrap();
    let mut b = h.acquire(T0 + 10_000, &now).await.unwrap();
    a.mark_sent(T0);
    b.mark_sent(T0);
    let third = tokio::time::timeout(Duration::from_millis(200), h.acquire(T0 + 300, &now)).await;
    assert!(
        !matches!(third, Ok(Ok(_))),
        "a third call while two are in flight"
    );
    a.finish(Outcome::Success { latency_ms: 10 });
    b.finish(Outcome::Success { latency_ms: 10 });
    let s = h.status(Duration::from_secs(1)).await.unwrap();
    assert_eq!((s.requests_this_minute, s.in_flight), (12, 0));
}

#[actix::test]
async fn a_queued_request_gives_up_at_its_deadline_and_leaves_the_queue() {
    let (_manual, clock) = clock();
    let h = one_pair(&clock, 100, Some(1));
    let real = || chrono::Utc::now().timestamp_millis();
    // The manual clock stands still; the wait is bounded by real time through `now`.
    let _busy = h.acquire(T0 + 60_000, || T0).await.unwrap();
    let deadline = real() + 200;
    let started = std::time::Instant::now();
    let err = h.acquire(deadline, real).await.unwrap_err();
    assert_eq!(err, Rejection::DeadlinePassed);
    assert!(started.elapsed() < Duration::from_secs(2));
    actix::clock::sleep(Duration::from_millis(50)).await;
    let s = h.status(Duration::from_secs(1)).await.unwrap();
    assert_eq!(s.queue_length, 0, "the cancelled waiter left the queue");
}

fn table(handles: Vec<bkvy_actors::KeyModelHandle>, tiers_costs: &[(Tier, f64)]) -> RoutingTable {
    let candidates = handles
        .into_iter()
        .zip(tiers_costs)
        .map(|(handle, &(tier, cost_per_1k))| {
            Arc::new(Candidate {
                handle,
                tier,
                cost_per_1k,
            })
        })
        .collect();
    RoutingTable {
        candidates,
        providers: vec![
            ProviderNames {
                name: "a".into(),
                models: vec!["cheap".into(), "dear".into()],
                keys: vec!["k1".into(), "k2".into()],
            },
            ProviderNames {
                name: "b".into(),
                models: vec!["mid".into()],
                keys: vec!["k1".into()],
            },
        ],
        scenarios: [(
            "s".to_owned(),
            vec![
                ScenarioStep {
                    provider: "b".into(),
                    model: "mid".into(),
                    priority: 1,
                },
                ScenarioStep {
                    provider: "a".into(),
                    model: "cheap".into(),
                    priority: 2,
                },
            ],
        )]
        .into_iter()
        .collect(),
    }
}

#[actix::test]
async fn router_orders_by_rule_and_reports_what_it_left_out() {
    let (_manual, clock) = clock();
    let meter = MailboxMeter::new();
    let handles = start_key_models(
        vec![
            spec("a", "k1", "cheap", 1, None),
            spec("a", "k2", "cheap", 5, None),
            spec("a", "k1", "dear", 5, None),
            spec("b", "k1", "mid", 5, None),
        ],
        &clock,
        &meter,
    );
    let first = handles[0].clone();
    let t = table(
        handles,
        &[
            (Tier::Low, 0.0),
            (Tier::Low, 0.0),
            (Tier::Low, 0.01),
            (Tier::Medium, 0.001),
        ],
    );
    let now = clock.now_ms();
    // Use up a/k1/cheap's only call this minute.
    first
        .acquire(T0 + 1_000, || T0)
        .await
        .unwrap()
        .finish(Outcome::Success { latency_ms: 5 });

    let plan = t
        .plan(
            &Route {
                target: RouteTarget::Intelligence(Tier::Low),
                max_wait_ms: 30_000,
                deadline: T0 + 30_000,
            },
            now,
        )
        .unwrap();
    let order: Vec<String> = plan
        .ordered
        .iter()
        .map(|p| p.candidate.id().to_string())
        .collect();
    assert_eq!(order, vec!["a_k2_cheap", "a_k1_dear"]);
    assert_eq!(plan.decision_reason, "cheapest_within_estimate");
    let left_out = plan
        .considered()
        .into_iter()
        .find(|c| c.api_key == "k1" && c.model == "cheap")
        .unwrap();
    assert!(left_out
        .reason_not_chosen
        .starts_with("would_miss_deadline"));

    let plan = t
        .plan(
            &Route {
                target: RouteTarget::Scenario("s".into()),
                max_wait_ms: 30_000,
                deadline: T0 + 120_000,
            },
            now,
        )
        .unwrap();
    let order: Vec<String> = plan
        .ordered
        .iter()
        .map(|p| p.candidate.id().to_string())
        .collect();
    assert_eq!(order, vec!["b_k1_mid", "a_k2_cheap", "a_k1_cheap"]);

    let err = t
        .plan(
            &Route {
                target: RouteTarget::Direct {
                    provider: "a".into(),
                    model: "nope".into(),
                    key_id: None,
                },
                max_wait_ms: 1,
                deadline: T0 + 1_000,
            },
            now,
        )
        .unwrap_err();
    assert!(matches!(err, RouteError::ModelNotFound(_)));
    assert_eq!(err.code(), "model_not_found");
}

#[actix::test]
async fn an_auth_failure_takes_the_key_out_for_all_its_models() {
    let (_manual, clock) = clock();
    let handles = start_key_models(
        vec![
            spec("a", "k1", "cheap", 5, None),
            spec("a", "k2", "cheap", 5, None),
            spec("a", "k1", "dear", 5, None),
            spec("b", "k1", "mid", 5, None),
        ],
        &clock,
        &MailboxMeter::new(),
    );
    let all = handles.clone();
    let table = Arc::new(table(
        handles,
        &[
            (Tier::Low, 0.0),
            (Tier::Low, 0.0),
            (Tier::Low, 0.01),
            (Tier::Medium, 0.0),
        ],
    ));
    let router = RouterActor::new(Box::new(move || table.clone()), MailboxMeter::new()).start();
    router
        .send(KeyAuthFailed {
            provider: "a".into(),
            key_id: "k1".into(),
            message: "401".into(),
        })
        .await
        .unwrap();
    actix::clock::sleep(Duration::from_millis(20)).await;
    let mut disabled = Vec::new();
    for h in &all {
        let s = h.status(Duration::from_secs(1)).await.unwrap();
        disabled.push(s.disabled.is_some());
    }
    assert_eq!(disabled, vec![true, false, true, false]);
}

/// Both kinds of lease hold the RPM window from when their call left, not from when they
/// were granted: a provider counts the arrival.
#[actix::test]
async fn the_window_holds_each_call_from_when_it_left() {
    for fast in [true, false] {
        let (manual, clock) = clock();
        let h = one_pair(&clock, 1, None);
        let now = {
            let c = clock.clone();
            move || c.now_ms()
        };
        // The first status read lets the actor leave its permit; without it the first
        // acquire goes through `Reserve`.
        if fast {
            let _ = h.status(Duration::from_secs(1)).await.unwrap();
        }
        let mut g = h.acquire(T0 + 600_000, &now).await.unwrap();
        assert_eq!(
            g.lease().lease_id == bkvy_actors::key_model::capacity::FAST_LEASE,
            fast
        );
        manual.advance(500);
        g.mark_sent(T0 + 500);
        g.finish(Outcome::Success { latency_ms: 10 });
        manual.advance(59_600); // T0 + 60.1 s: 60 s after the grant, not after the send
        let s = h.status(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            (s.requests_this_minute, s.rate_limit_wait_ms),
            (1, 400),
            "fast = {fast}: the call left at T0 + 500 ms"
        );
    }
}
