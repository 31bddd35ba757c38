//! Checks of the benchmark's pure parts (trace, reference, floor, report, answer
//! parsing, catalog), run when the target is started without `--bench`, e.g. by
//! `cargo test --benches`. A `harness = false` target has no `#[test]`s, so this is a
//! small runner of its own: every check runs, each panic is reported by name, and any
//! failure makes the exit status a failure.

// Checks fail by panicking, like tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::ExitCode;

use serde_json::json;

use crate::bound::{self, earliest_start, fits};
use crate::catalog::{self, Pair, Tier, PROVIDERS};
use crate::replay::{self, Outcome};
use crate::report::{self, Upstream};
use crate::trace::{self, Rng, TraceRequest, TraceSpec};

const CHECKS: &[(&str, fn())] = &[
    ("rng_is_fixed", rng_is_fixed),
    (
        "trace_is_seeded_sorted_and_shaped",
        trace_is_seeded_sorted_and_shaped,
    ),
    (
        "trace_bursts_exceed_cheap_rpm",
        trace_bursts_exceed_cheap_rpm,
    ),
    (
        "window_fits_at_exactly_sixty_seconds",
        window_fits_at_exactly_sixty_seconds,
    ),
    ("fits_sees_later_calls", fits_sees_later_calls),
    (
        "reference_takes_cheapest_that_finishes_in_time",
        reference_takes_cheapest_that_finishes_in_time,
    ),
    (
        "reference_falls_back_to_fastest_and_counts_late",
        reference_falls_back_to_fastest_and_counts_late,
    ),
    ("reference_honours_rpd", reference_honours_rpd),
    ("floor_is_below_reference", floor_is_below_reference),
    ("floor_of_a_small_case", floor_of_a_small_case),
    (
        "answers_are_read_from_the_debug_shape",
        answers_are_read_from_the_debug_shape,
    ),
    (
        "summary_counts_budget_tier_and_cost",
        summary_counts_budget_tier_and_cost,
    ),
    ("percentile_is_nearest_rank", percentile_is_nearest_rank),
    (
        "shortfalls_measure_the_window_edge",
        shortfalls_measure_the_window_edge,
    ),
    (
        "catalog_is_a_valid_bkvy_config",
        catalog_is_a_valid_bkvy_config,
    ),
];

/// Runs every check; a failure if any panicked.
#[allow(clippy::print_stderr)]
pub fn run_all() -> ExitCode {
    let mut failed = 0;
    for (name, check) in CHECKS {
        match std::panic::catch_unwind(check) {
            Ok(()) => eprintln!("check {name} ... ok"),
            Err(_) => {
                eprintln!("check {name} ... FAILED");
                failed += 1;
            }
        }
    }
    eprintln!(
        "routing checks: {} passed, {failed} failed (run the benchmark with `cargo bench --bench routing`)",
        CHECKS.len() - failed
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn pair(model: &'static str, tier: Tier, price: f64, rpm: u32, rpd: u32, latency: u64) -> Pair {
    Pair {
        provider: "p",
        key: "k",
        model,
        tier,
        price_per_1k: price,
        rpm,
        rpd,
        worst_latency_ms: latency,
    }
}

fn request(id: usize, at_ms: u64, tier: Tier, budget_s: f64) -> TraceRequest {
    TraceRequest {
        id,
        at_ms,
        tier,
        budget_s,
        prompt_words: 10,
    }
}

fn rng_is_fixed() {
    // The first outputs of SplitMix64 seeded with 0 (the reference implementation's).
    let mut r = Rng::new(0);
    assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
    assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    let u = Rng::new(7).unit();
    assert!((0.0..1.0).contains(&u));
}

fn trace_is_seeded_sorted_and_shaped() {
    let spec = TraceSpec {
        requests: 5000,
        duration_s: 600.0,
        ..TraceSpec::default()
    };
    let t = trace::generate(&spec);
    assert_eq!(t, trace::generate(&spec));
    assert_ne!(
        t,
        trace::generate(&TraceSpec {
            seed: 2,
            ..spec.clone()
        })
    );
    assert_eq!(t.len(), 5000);
    assert!(t.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
    assert!(t.iter().enumerate().all(|(i, r)| r.id == i));
    assert!(t.iter().all(|r| r.at_ms < 600_000));
    assert!(t.iter().all(|r| (2.0..=60.0).contains(&r.budget_s)));
    assert!(t.iter().all(|r| (5..=60).contains(&r.prompt_words)));
    let share = |tier| t.iter().filter(|r| r.tier == tier).count() as f64 / 5000.0;
    assert!((share(Tier::Low) - 0.6).abs() < 0.03);
    assert!((share(Tier::Medium) - 0.3).abs() < 0.03);
    assert!((share(Tier::High) - 0.1).abs() < 0.02);
    let short = t.iter().filter(|r| r.budget_s < 5.0).count() as f64 / 5000.0;
    assert!((short - 0.25).abs() < 0.03);
    let r = &t[17];
    assert_eq!(
        r.prompt().split_whitespace().count(),
        r.prompt_words as usize
    );
    assert!(r.prompt().starts_with("request-17 "));
    assert_eq!(r.tokens(), 2 * u64::from(r.prompt_words) + 1);
}

fn trace_bursts_exceed_cheap_rpm() {
    // The default trace must push some 60-second window of low-tier arrivals past the
    // cheapest low model's combined RPM, or routing never has to spill over.
    let t = trace::generate(&TraceSpec::default());
    let low: Vec<u64> = t
        .iter()
        .filter(|r| r.tier == Tier::Low)
        .map(|r| r.at_ms)
        .collect();
    let cheapest: u32 = catalog::pairs(PROVIDERS)
        .iter()
        .filter(|p| p.model == "gemini-2.0-flash-lite")
        .map(|p| p.rpm)
        .sum();
    let busiest = low
        .iter()
        .map(|&s| {
            low.iter()
                .filter(|&&x| x > s.saturating_sub(60_000) && x <= s)
                .count()
        })
        .max()
        .unwrap();
    assert!(busiest > 3 * cheapest as usize, "{busiest} vs {cheapest}");
}

fn window_fits_at_exactly_sixty_seconds() {
    let times = [1_000, 2_000];
    assert!(!fits(&times, 60_999, 2));
    assert!(fits(&times, 61_000, 2));
    assert_eq!(earliest_start(&times, 5_000, 2), 61_000);
    assert_eq!(earliest_start(&times, 5_000, 3), 5_000);
    assert_eq!(earliest_start(&[], 5_000, 1), 5_000);
}

fn fits_sees_later_calls() {
    // Calls already placed at 50 s and 70 s (rpm 2): one at 20 s would make
    // (10 s, 70 s] hold three.
    let times = [50_000, 70_000];
    assert!(!fits(&times, 20_000, 2));
    assert!(fits(&times, 9_000, 2));
    assert_eq!(earliest_start(&times, 20_000, 2), 110_000);
}

fn reference_takes_cheapest_that_finishes_in_time() {
    let pairs = [
        pair("slow-free", Tier::Low, 0.0, 100, 1000, 6_000),
        pair("cheap", Tier::Low, 0.001, 1, 1000, 500),
        pair("dear", Tier::Low, 0.01, 100, 1000, 500),
        pair("high", Tier::High, 0.0001, 100, 1000, 100),
    ];
    let trace = [
        request(0, 0, Tier::Low, 3.0),      // cheap (slow-free would take 6 s)
        request(1, 1_000, Tier::Low, 3.0),  // cheap is full for 59 s: dear
        request(2, 2_000, Tier::Low, 60.0), // slow-free fits 60 s
        request(3, 3_000, Tier::Low, 5.0),  // dear again
    ];
    let r = bound::reference(&trace, &pairs);
    let chosen: Vec<&str> = r
        .assignments
        .iter()
        .map(|a| pairs[a.as_ref().unwrap().pair].model)
        .collect();
    assert_eq!(chosen, ["cheap", "dear", "slow-free", "dear"]);
    assert_eq!(r.late, 0);
    let tokens = 21.0;
    let want = tokens * (0.001 + 0.01 + 0.0 + 0.01) / 1000.0;
    assert!((r.cost - want).abs() < 1e-12);

    // With 65 s of budget the second request can wait for the cheap key's window.
    let trace = [
        request(0, 0, Tier::Low, 3.0),
        request(1, 1_000, Tier::Low, 65.0),
    ];
    let pairs = [
        pair("cheap", Tier::Low, 0.001, 1, 1000, 500),
        pair("dear", Tier::Low, 0.01, 100, 1000, 500),
    ];
    let r = bound::reference(&trace, &pairs);
    let second = r.assignments[1].as_ref().unwrap();
    assert_eq!((second.pair, second.start_ms), (0, 60_000));
}

fn reference_falls_back_to_fastest_and_counts_late() {
    let pairs = [
        pair("a", Tier::Medium, 0.0, 100, 1000, 9_000),
        pair("b", Tier::Medium, 0.1, 100, 1000, 4_000),
    ];
    let r = bound::reference(&[request(0, 0, Tier::Medium, 2.0)], &pairs);
    let a = r.assignments[0].as_ref().unwrap();
    assert_eq!((a.pair, a.late), (1, true));
    assert_eq!(r.late, 1);
    // A tier without pairs: nothing assigned, late.
    let r = bound::reference(&[request(0, 0, Tier::High, 2.0)], &pairs);
    assert_eq!((r.assignments[0].clone(), r.late), (None, 1));
}

fn reference_honours_rpd() {
    let pairs = [
        pair("cheap", Tier::Low, 0.001, 100, 2, 100),
        pair("dear", Tier::Low, 0.01, 100, 1000, 100),
    ];
    let trace: Vec<TraceRequest> = (0..4)
        .map(|i| request(i, i as u64 * 1000, Tier::Low, 5.0))
        .collect();
    let r = bound::reference(&trace, &pairs);
    let chosen: Vec<usize> = r
        .assignments
        .iter()
        .map(|a| a.as_ref().unwrap().pair)
        .collect();
    assert_eq!(chosen, [0, 0, 1, 1]);
}

fn floor_is_below_reference() {
    let pairs = catalog::pairs(PROVIDERS);
    for seed in 1..4 {
        let t = trace::generate(&TraceSpec {
            seed,
            ..TraceSpec::default()
        });
        let r = bound::reference(&t, &pairs);
        let f = bound::floor(&t, &pairs);
        assert!(
            f > 0.0 && f <= r.cost + 1e-12,
            "seed {seed}: floor {f} reference {}",
            r.cost
        );
    }
}

fn floor_of_a_small_case() {
    // Three low requests within one minute; the cheap pair takes one (rpm 1).
    let pairs = [
        pair("cheap", Tier::Low, 0.001, 1, 1000, 100),
        pair("dear", Tier::Low, 0.01, 100, 1000, 100),
    ];
    let mut trace: Vec<TraceRequest> = (0..3)
        .map(|i| request(i, i as u64 * 1000, Tier::Low, 10.0))
        .collect();
    trace[2].prompt_words = 20; // 41 tokens: the big one goes on the cheap pair
    let f = bound::floor(&trace, &pairs);
    let want = (41.0 * 0.001 + 21.0 * 0.01 * 2.0) / 1000.0;
    assert!((f - want).abs() < 1e-12, "{f} vs {want}");
}

fn answers_are_read_from_the_debug_shape() {
    let ok = json!({
        "success": true, "provider_used": "openai", "model_used": "gpt-4.1-nano",
        "api_key_used": "ok2", "decision_reason": "cheapest_within_estimate",
        "response": {"usage": {"total_tokens": 21}},
        "metadata": {"rate_limit_wait_ms": 5, "queue_wait_ms": 0, "api_response_time_ms": 410,
                     "cost_usd": 0.0000021,
                     "attempts": [{"error_type": "rate_limited"}]},
    });
    let o = replay::read_answer(200, &ok);
    assert_eq!(o.status, Some(200));
    assert_eq!(o.error, None);
    assert_eq!(o.model.as_deref(), Some("gpt-4.1-nano"));
    assert_eq!(o.key.as_deref(), Some("ok2"));
    assert_eq!(o.tokens, Some(21));
    assert_eq!(o.attempts, ["rate_limited"]);
    assert!((o.cost_usd - 0.0000021).abs() < 1e-15);
    assert!((o.rate_limit_wait_ms - 5.0).abs() < 1e-9);

    let failed = json!({
        "success": false, "error_code": "all_alternatives_failed", "model_used": null,
        "evaluated_combinations": [{"error_type": "server_error"}, {"error_type": "timeout"}],
    });
    let o = replay::read_answer(502, &failed);
    assert_eq!(o.error.as_deref(), Some("all_alternatives_failed"));
    assert_eq!(o.attempts, ["server_error", "timeout"]);
    assert_eq!(o.model, None);

    let body = replay::body(&request(3, 0, Tier::High, 12.5));
    assert_eq!(body["intelligence_level"], "high");
    assert_eq!(body["max_wait_seconds"], 12.5);
    assert_eq!(body["debug"], true);
}

fn summary_counts_budget_tier_and_cost() {
    let pairs = [
        pair("gpt-4.1-nano", Tier::Low, 0.0001, 100, 1000, 700),
        pair("claude-opus-4", Tier::High, 0.015, 100, 1000, 1500),
    ];
    let trace = [
        request(0, 0, Tier::Low, 2.0),
        request(1, 0, Tier::Low, 2.0),
        request(2, 0, Tier::Low, 2.0),
        request(3, 0, Tier::High, 2.0),
    ];
    let reference = bound::reference(&trace, &pairs);
    let answer = |model: &str, ms: f64, cost: f64| Outcome {
        status: Some(200),
        model: Some(model.to_owned()),
        elapsed_ms: ms,
        cost_usd: cost,
        tokens: Some(21),
        decision: Some("cheapest_within_estimate".to_owned()),
        ..Outcome::default()
    };
    let outcomes = [
        answer("gpt-4.1-nano", 1999.0, 0.0000021),
        answer("gpt-4.1-nano", 2001.0, 0.0000021), // late
        Outcome {
            status: Some(503),
            error: Some("all_candidates_unavailable".to_owned()),
            ..Outcome::default()
        },
        answer("gpt-4.1-nano", 100.0, 0.0000021), // wrong tier (asked high)
    ];
    let upstream = Upstream {
        calls: 3,
        status_429: 1,
        limit_refusals: 1,
        ..Upstream::default()
    };
    let s = report::summarize(
        &trace, &outcomes, &reference, 0.0, &pairs, PROVIDERS, &upstream,
    );
    assert_eq!(
        (s.requests, s.ok, s.within_budget, s.ok_over_budget),
        (4, 3, 2, 1)
    );
    assert_eq!(s.failures_by_status.get("503"), Some(&1));
    assert_eq!(s.wrong_tier, 1);
    assert_eq!(s.upstream_429s, 1);
    assert_eq!(
        s.over_budget_causes.get("late: upstream call"),
        Some(&1),
        "{:?}",
        s.over_budget_causes
    );
    assert_eq!(
        s.over_budget_causes.get("503: all_candidates_unavailable"),
        Some(&1)
    );
    // Reference of the answered ones: two low at 0.0001 and one high at 0.015.
    let bound = 21.0 * (2.0 * 0.0001 + 0.015) / 1000.0;
    assert!((s.bound_answered_usd - bound).abs() < 1e-15);
    assert!((s.cost_ratio - 3.0 * 0.0000021 / bound).abs() < 1e-9);
    let missed: Vec<&str> = report::targets(&s)
        .into_iter()
        .filter(|(_, met)| !met)
        .map(|(t, _)| t)
        .collect();
    assert_eq!(
        missed,
        [
            "within budget >= 99.5 %",
            "upstream 429s == 0",
            "wrong tier == 0"
        ]
    );
    assert!(report::render(&s).contains("wrong tier: 1"));
    assert_eq!(s.over_budget_examples.len(), 2);
    assert!(s.over_budget_examples[0]
        .starts_with("#1 low budget 2.0 s at 0.0 s: 200 in 2001 ms via -/gpt-4.1-nano/-"));
}

fn percentile_is_nearest_rank() {
    let v: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(report::percentile(&v, 50.0), 50.0);
    assert_eq!(report::percentile(&v, 99.0), 99.0);
    assert_eq!(report::percentile(&v, 100.0), 100.0);
    assert_eq!(report::percentile(&[], 50.0), 0.0);
}

fn catalog_is_a_valid_bkvy_config() {
    let providers = catalog::providers_json(PROVIDERS, "http://127.0.0.1:9");
    let config = bkvy::config::load_from_strs(&providers, catalog::ROUTING_JSON, &|_| None);
    assert!(config.is_ok(), "{:?}", config.err());
    let pairs = catalog::pairs(PROVIDERS);
    let limits = catalog::fake_limits(PROVIDERS);
    assert_eq!(limits.len(), pairs.len());
    for (p, l) in pairs.iter().zip(&limits) {
        assert_eq!((p.model, p.rpm, p.rpd), (l.model.as_str(), l.rpm, l.rpd));
    }
    // Each (credential, model) is limited once; keyless ones carry no credential.
    for (i, l) in limits.iter().enumerate() {
        assert!(!limits[..i]
            .iter()
            .any(|m| m.model == l.model && m.credential == l.credential));
    }
    assert!(limits.iter().any(|l| l.credential.is_none()));
    let models = catalog::fake_models(PROVIDERS);
    assert_eq!(models.iter().filter(|m| m.fail_rate > 0.0).count(), 1);
    assert!(models
        .iter()
        .any(|m| m.latency >= std::time::Duration::from_secs(4)));
    for tier in Tier::ALL {
        let n = pairs.iter().filter(|p| p.tier == tier).count();
        assert!(n >= 3, "{tier:?} has {n} pairs");
    }
    assert!(pairs.iter().any(|p| p.rpm <= 5));
}

fn shortfalls_measure_the_window_edge() {
    let call = |pair, at_ms: u64, status| report::Arrival {
        pair,
        at_us: at_ms * 1000,
        status,
    };
    let calls = [
        call(0, 1_000, 200),
        call(1, 1_500, 200),
        call(0, 2_000, 500),  // failed, but it counts
        call(0, 60_997, 429), // rpm 2: 3 ms before the call at 1 s leaves
        call(1, 61_400, 429), // rpm 1: 100 ms early
        call(0, 62_000, 200),
        call(1, 200_000, 429), // the minute was not full
    ];
    let s = report::shortfalls(&calls, &[2, 1]);
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].0, 0);
    assert!((s[0].1.unwrap() - 3.0).abs() < 1e-9);
    assert!((s[1].1.unwrap() - 100.0).abs() < 1e-9);
    assert_eq!(s[2], (1, None));
}
