//! Fault injection under concurrent load: the fake providers misbehave in every way they
//! can while bkvy serves many requests at once. Whatever happens, every request gets
//! exactly one answer within its deadline, no key/model ever receives more than its
//! `rpm` calls in any 60-second window, and traffic returns to a provider once it recovers.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant, UNIX_EPOCH};

use bkvy::fake::{FakeOptions, Fault};
use common::*;
use serde_json::{json, Value};

const RPM: usize = 12;

fn providers() -> String {
    PROVIDERS.replace(
        r#"{"rpm": 100, "rpd": 10000}"#,
        &format!(r#"{{"rpm": {RPM}, "rpd": 10000}}"#),
    )
}

const ROUTING_FAULTS: &str = r#"{
  "request_timeout_seconds": 20,
  "max_attempts_per_candidate": 2,
  "stream_idle_timeout_seconds": 1,
  "circuit_breaker": {"consecutive_failures": 2, "base_backoff_seconds": 0.5, "max_backoff_seconds": 1},
  "scenarios": {"support": [
    {"provider": "anthropic", "model": "claude-haiku", "priority": 1},
    {"provider": "gemini", "model": "gemini-2.5-flash", "priority": 2}
  ]}
}"#;

/// No more than `RPM` calls per (credential, model) in any half-open 60 s window.
fn assert_rpm_respected(h: &Harness) {
    let mut by_pair: HashMap<(String, String), Vec<u128>> = HashMap::new();
    for r in h.fake.requests() {
        let at = r
            .received_at
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis();
        let who = r.credential.clone().unwrap_or_else(|| "none".into());
        by_pair.entry((who, r.model.clone())).or_default().push(at);
    }
    for ((_, model), mut times) in by_pair {
        times.sort_unstable();
        for (i, &t) in times.iter().enumerate() {
            let in_window = times[i..].iter().take_while(|&&u| u < t + 60_000).count();
            assert!(
                in_window <= RPM,
                "{model}: {in_window} calls in 60 s (rpm {RPM})"
            );
        }
    }
}

async fn fire(url: String, body: Value, deadline: Duration) -> (u16, Value, Duration) {
    let started = Instant::now();
    let mut res = client().post(&url).send_json(&body).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(1 << 20).await.unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed <= deadline + Duration::from_millis(1_500),
        "answered in {elapsed:?}"
    );
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        elapsed,
    )
}

#[actix_web::test]
async fn every_request_gets_one_answer_in_time_whatever_the_upstreams_do() {
    let h = start_with(&providers(), ROUTING_FAULTS, FakeOptions::default());
    // A mix of every failure mode, on every low-tier model.
    h.fake.script(
        "gemini-2.5-flash",
        [
            Fault::rate_limited(1),
            Fault::status(500),
            Fault::status(502),
            Fault::Hang,
            Fault::Truncated,
            Fault::Malformed,
            Fault::status(503),
            Fault::EmptyContent,
        ],
    );
    h.fake.script(
        "gpt-4o-mini",
        [
            Fault::Status {
                status: 429,
                retry_after: None,
                headers: Vec::new(),
            },
            Fault::Status {
                status: 429,
                retry_after: None,
                headers: Vec::new(),
            },
            Fault::Delay(Duration::from_millis(700)),
            Fault::status(503),
        ],
    );
    h.fake.script(
        "claude-haiku",
        [Fault::status(529), Fault::Hang, Fault::status(500)],
    );

    let deadline = Duration::from_secs(4);
    let url = format!("{}/llm/intelligence", h.url);
    let mut tasks = Vec::new();
    for i in 0..60 {
        let body = json!({"client_id": format!("load-{i}"), "intelligence_level": "low",
                          "max_wait_seconds": 1, "timeout_seconds": deadline.as_secs_f64(),
                          "messages": [{"role": "user", "content": format!("request {i}")}]});
        tasks.push(actix_web::rt::spawn(fire(url.clone(), body, deadline)));
        if i % 10 == 9 {
            actix_web::rt::time::sleep(Duration::from_millis(150)).await;
        }
    }
    let mut ids = HashSet::new();
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for t in tasks {
        let (status, body, _) = t.await.unwrap();
        *statuses.entry(status).or_default() += 1;
        assert!([200, 502, 503, 504].contains(&status), "{status}: {body}");
        assert!(
            ids.insert(body["request_id"].as_str().unwrap().to_owned()),
            "answered twice"
        );
        if status == 200 {
            assert!(
                body["content"].as_str().unwrap().contains("request "),
                "{body}"
            );
        }
    }
    assert_eq!(
        ids.len(),
        60,
        "every request answered exactly once: {statuses:?}"
    );
    assert!(
        statuses.get(&200).copied().unwrap_or(0) >= 20,
        "{statuses:?}"
    );
    assert_rpm_respected(&h);
}

#[actix_web::test]
async fn traffic_returns_to_a_provider_once_it_recovers() {
    let h = start_with(PROVIDERS, ROUTING_FAULTS, FakeOptions::default());
    // The scenario's first choice fails for a while, then recovers.
    h.fake.script("claude-haiku", vec![Fault::status(503); 5]);
    let url = format!("{}/llm/scenario", h.url);
    let body = json!({"scenario": "support", "messages": [{"role": "user", "content": "x"}]});
    let mut used = Vec::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        let (status, b) = post(&url, &body).await;
        assert_eq!(status, 200, "{b}");
        used.push(b["model_used"].as_str().unwrap().to_owned());
        if used.len() > 3 && used[used.len() - 3..].iter().all(|m| m == "claude-haiku") {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        used.iter().any(|m| m == "gemini-2.5-flash"),
        "failed over while down: {used:?}"
    );
    assert!(
        used[used.len() - 3..].iter().all(|m| m == "claude-haiku"),
        "back on the recovered provider: {used:?}"
    );
}
