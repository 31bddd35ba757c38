//! Routing at the edges, end to end: estimates right after a fast-path call, queue waits
//! past a request's budget, short and long `Retry-After`s, hung upstreams abandoned in time,
//! and no self-inflicted 429s from a provider that counts arrivals.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bkvy::fake::{FakeLimit, FakeOptions, Fault};
use common::*;
use serde_json::{json, Value};

/// Two `low` models: `gpt-4.1-nano` is the cheapest but allows one call a minute,
/// `claude-haiku` costs more and allows 100.
const CHEAP_RPM_1: &str = r#"{
  "openai": {
    "keys": {"oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4.1-nano": {"rpm": 1, "rpd": 10000}}}},
    "models": {"gpt-4.1-nano": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0001, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  },
  "anthropic": {
    "keys": {"an1": {"api_key": "env:TEST_ANTHROPIC_KEY_1", "rate_limits": {"claude-haiku": {"rpm": 100, "rpd": 10000}}}},
    "models": {"claude-haiku": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.00025, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  }
}"#;

/// One `low` model on two keys at two calls a minute each.
const TWO_KEYS_RPM_2: &str = r#"{
  "openai": {
    "keys": {
      "oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4.1-nano": {"rpm": 2, "rpd": 10000}}},
      "oa2": {"api_key": "env:TEST_OPENAI_KEY_2", "rate_limits": {"gpt-4.1-nano": {"rpm": 2, "rpd": 10000}}}
    },
    "models": {"gpt-4.1-nano": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0001, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  }
}"#;

/// Two `low` models with room to spare (cases where limits are not the point).
const TWO_LOW_MODELS: &str = r#"{
  "openai": {
    "keys": {"oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4.1-nano": {"rpm": 100, "rpd": 10000}}}},
    "models": {"gpt-4.1-nano": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0001, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  },
  "anthropic": {
    "keys": {"an1": {"api_key": "env:TEST_ANTHROPIC_KEY_1", "rate_limits": {"claude-haiku": {"rpm": 100, "rpd": 10000}}}},
    "models": {"claude-haiku": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.00025, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  }
}"#;

/// One model, one key.
const ONE_MODEL: &str = r#"{
  "anthropic": {
    "keys": {"an1": {"api_key": "env:TEST_ANTHROPIC_KEY_1", "rate_limits": {"claude-haiku": {"rpm": 100, "rpd": 10000}}}},
    "models": {"claude-haiku": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.00025, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  }
}"#;

/// Three (key, model) pairs at 25 calls a minute each: 75 a minute in all.
const THREE_PAIRS_RPM_25: &str = r#"{
  "openai": {
    "keys": {
      "oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4.1-nano": {"rpm": 25, "rpd": 10000}}},
      "oa2": {"api_key": "env:TEST_OPENAI_KEY_2", "rate_limits": {"gpt-4.1-nano": {"rpm": 25, "rpd": 10000}}}
    },
    "models": {"gpt-4.1-nano": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0001, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  },
  "anthropic": {
    "keys": {"an1": {"api_key": "env:TEST_ANTHROPIC_KEY_1", "rate_limits": {"claude-haiku": {"rpm": 25, "rpd": 10000}}}},
    "models": {"claude-haiku": {"endpoint": "{FAKE}/v1/messages", "cost_per_1k_tokens": 0.00025, "intelligence_tier": "low", "avg_response_time_ms": 200}}
  }
}"#;

/// The request deadline at its default (120 s): longer than a 60 s rate window, so a
/// request queued for the next window would wait instead of failing fast.
const EDGE_ROUTING: &str = r#"{
  "request_timeout_seconds": 120,
  "max_attempts_per_candidate": 2,
  "scenarios": {}
}"#;

/// One answer, with how long it took.
struct Answer {
    status: u16,
    body: Value,
    text: String,
    headers: awc::http::header::HeaderMap,
    elapsed: Duration,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `provider/model/key` of the debug shape, for messages.
    fn served_by(&self) -> String {
        format!(
            "{}/{}/{}",
            self.body["provider_used"].as_str().unwrap_or("?"),
            self.body["model_used"].as_str().unwrap_or("?"),
            self.body["api_key_used"].as_str().unwrap_or("?")
        )
    }
}

/// A client whose timeout outlasts every deadline used here, with no cap on connections.
fn patient_client() -> awc::Client {
    awc::Client::builder()
        .timeout(Duration::from_secs(150))
        .connector(awc::Connector::new().limit(0))
        .finish()
}

/// POSTs `body` with `client` (so that a caller can keep one pooled connection) and
/// panics, naming `what`, when no answer comes at all.
async fn send(client: &awc::Client, url: &str, body: Value, what: &str) -> Answer {
    let started = Instant::now();
    let mut res = client
        .post(url)
        .send_json(&body)
        .await
        .unwrap_or_else(|e| panic!("{what}: no answer after {:?}: {e}", started.elapsed()));
    let bytes =
        res.body().limit(10 << 20).await.unwrap_or_else(|e| {
            panic!("{what}: body unreadable after {:?}: {e}", started.elapsed())
        });
    let text = String::from_utf8_lossy(&bytes).into_owned();
    Answer {
        status: res.status().as_u16(),
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        text,
        headers: res.headers().clone(),
        elapsed: started.elapsed(),
    }
}

/// A `low` intelligence request with a wait budget, in the debug shape.
fn low(max_wait_seconds: u64, text: &str) -> Value {
    json!({
        "client_id": "edges",
        "intelligence_level": "low",
        "max_wait_seconds": max_wait_seconds,
        "debug": true,
        "messages": [{"role": "user", "content": text}],
    })
}

/// The failed attempts of a debug answer as `model:error_type` strings.
fn attempts(a: &Answer) -> Vec<String> {
    a.body["metadata"]["attempts"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|t| {
                    format!(
                        "{}:{}",
                        t["model"].as_str().unwrap_or("?"),
                        t["error_type"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------
// 1. Stale estimates after a fast-path call
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn after_the_cheap_models_only_call_of_the_minute_the_next_request_goes_elsewhere_at_once() {
    let h = start_with(CHEAP_RPM_1, EDGE_ROUTING, FakeOptions::default());
    let url = format!("{}/llm/intelligence", h.url);
    // One client, requests one after the other: one kept-alive connection.
    let client = patient_client();

    let first = send(&client, &url, low(5, "first"), "first request").await;
    assert_eq!(
        first.status, 200,
        "first request failed ({:?}): {}",
        first.elapsed, first.text
    );
    assert_eq!(
        first.body["model_used"],
        "gpt-4.1-nano",
        "the first request should take the cheapest model's one call of the minute, got {}",
        first.served_by()
    );

    let second = send(&client, &url, low(5, "second"), "second request").await;
    assert_eq!(
        second.status, 200,
        "the second request, sent right after the first, failed after {:?}: {}",
        second.elapsed, second.text
    );
    assert_eq!(
        second.body["model_used"],
        "claude-haiku",
        "the cheap model has used its 1 rpm, so the second request must go to claude-haiku; \
         it went to {} after {:?} (a stale estimate of the cheap model after the fast-path \
         call?): {}",
        second.served_by(),
        second.elapsed,
        second.body["metadata"]
    );
    assert!(
        second.elapsed < Duration::from_millis(2_500),
        "the second request must not wait (budget 5 s, another model free): took {:?}",
        second.elapsed
    );
    assert_eq!(
        received(&h, "gpt-4.1-nano").len(),
        1,
        "the 1-rpm model must be called once"
    );
    assert_eq!(
        received(&h, "claude-haiku").len(),
        1,
        "claude-haiku must be called once"
    );
}

#[actix_web::test]
async fn sequential_requests_spread_over_two_keys_at_two_rpm_without_waiting() {
    let h = start_with(TWO_KEYS_RPM_2, EDGE_ROUTING, FakeOptions::default());
    let url = format!("{}/llm/intelligence", h.url);
    let client = patient_client();
    let mut per_key: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..4 {
        let a = send(
            &client,
            &url,
            low(5, &format!("n{i}")),
            &format!("request {i}"),
        )
        .await;
        assert_eq!(
            a.status, 200,
            "request {i} of 4 (two keys at 2 rpm: room for all four) failed after {:?}: {}",
            a.elapsed, a.text
        );
        assert!(
            a.elapsed < Duration::from_millis(2_500),
            "request {i} of 4 waited {:?} although a key had room (served by {})",
            a.elapsed,
            a.served_by()
        );
        *per_key
            .entry(a.body["api_key_used"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        per_key,
        BTreeMap::from([("oa1".to_owned(), 2), ("oa2".to_owned(), 2)]),
        "four calls must be spread two per key"
    );
    let sent = received(&h, "gpt-4.1-nano");
    for key in ["TEST_OPENAI_KEY_1", "TEST_OPENAI_KEY_2"] {
        let n = sent
            .iter()
            .filter(|r| r.credential.as_deref() == Some(secret(key)))
            .count();
        assert_eq!(n, 2, "the fake must see two calls with {key}, saw {n}");
    }
}

// ---------------------------------------------------------------------------------------
// 2. Queue wait past the budget
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn two_concurrent_requests_take_one_model_each_instead_of_queueing_for_a_minute() {
    let h = start_with(
        CHEAP_RPM_1,
        EDGE_ROUTING,
        FakeOptions {
            latency: Duration::from_millis(300),
            ..FakeOptions::default()
        },
    );
    let url = format!("{}/llm/intelligence", h.url);
    let client = patient_client();
    let (a, b) = futures::join!(
        send(&client, &url, low(5, "a"), "request a"),
        send(&client, &url, low(5, "b"), "request b"),
    );
    for (name, x) in [("a", &a), ("b", &b)] {
        assert_eq!(
            x.status, 200,
            "request {name} failed after {:?} (the cheap model allows 1 rpm; waiting for its \
             next window exceeds the 5 s budget, so one request must go to claude-haiku): {}",
            x.elapsed, x.text
        );
        assert!(
            x.elapsed < Duration::from_secs(5),
            "request {name} took {:?}, more than its 5 s budget (served by {})",
            x.elapsed,
            x.served_by()
        );
    }
    let mut models = vec![
        a.body["model_used"].as_str().unwrap_or("?").to_owned(),
        b.body["model_used"].as_str().unwrap_or("?").to_owned(),
    ];
    models.sort();
    assert_eq!(
        models,
        vec!["claude-haiku", "gpt-4.1-nano"],
        "one request per model (a: {}, b: {})",
        a.served_by(),
        b.served_by()
    );
    assert_eq!(
        received(&h, "gpt-4.1-nano").len(),
        1,
        "never more than 1 call a minute to the 1-rpm model"
    );
}

// ---------------------------------------------------------------------------------------
// 3. Retry-After
// ---------------------------------------------------------------------------------------

fn direct_haiku(max_wait_seconds: u64) -> Value {
    json!({
        "client_id": "edges",
        "provider": "anthropic",
        "model": "claude-haiku",
        "max_wait_seconds": max_wait_seconds,
        "debug": true,
        "messages": [{"role": "user", "content": "x"}],
    })
}

#[actix_web::test]
async fn a_short_retry_after_within_the_budget_is_waited_out_on_the_same_model() {
    let h = start_with(ONE_MODEL, EDGE_ROUTING, FakeOptions::default());
    h.fake.script("claude-haiku", [Fault::rate_limited(2)]);
    let url = format!("{}/llm/direct", h.url);
    let a = send(&patient_client(), &url, direct_haiku(15), "direct request").await;
    assert_eq!(
        a.status, 200,
        "a 429 with Retry-After: 2 and a budget of 15 s must be waited out and retried, got \
         {} after {:?}: {}",
        a.status, a.elapsed, a.text
    );
    assert!(
        a.elapsed >= Duration::from_millis(1_900) && a.elapsed < Duration::from_secs(6),
        "the answer should come about 2 s after the 429, took {:?}",
        a.elapsed
    );
    let calls = received(&h, "claude-haiku");
    assert_eq!(
        calls.len(),
        2,
        "the fake must see the refused call and one retry, saw {}",
        calls.len()
    );
    let gap = calls[1]
        .received_at
        .duration_since(calls[0].received_at)
        .unwrap_or_default();
    assert!(
        gap >= Duration::from_millis(1_900),
        "the retry came {gap:?} after the 429, before its Retry-After of 2 s"
    );
    assert_eq!(
        attempts(&a),
        vec!["claude-haiku:rate_limited"],
        "the debug answer must list the 429 as the one failed attempt"
    );
}

#[actix_web::test]
async fn a_retry_after_beyond_the_budget_with_no_other_candidate_is_a_503_with_retry_after() {
    let h = start_with(ONE_MODEL, EDGE_ROUTING, FakeOptions::default());
    h.fake.script("claude-haiku", [Fault::rate_limited(30)]);
    let url = format!("{}/llm/direct", h.url);
    let a = send(&patient_client(), &url, direct_haiku(5), "direct request").await;
    assert_eq!(
        a.status, 503,
        "the only candidate is paused for 30 s and the budget is 5 s: that is 'unavailable' \
         (503 with Retry-After), not 'failed upstream' (502); got {} after {:?}: {}",
        a.status, a.elapsed, a.text
    );
    let retry_after = a.header("retry-after");
    let secs: Option<u64> = retry_after.and_then(|v| v.parse().ok());
    assert!(
        secs.is_some_and(|s| (1..=31).contains(&s)),
        "the 503 must carry Retry-After in whole seconds up to the provider's 30, got {retry_after:?}"
    );
    assert!(
        a.elapsed < Duration::from_secs(7),
        "the 503 must come within the 5 s budget, took {:?}",
        a.elapsed
    );
    assert_eq!(
        received(&h, "claude-haiku").len(),
        1,
        "no second call while the provider asked for 30 s"
    );
}

// ---------------------------------------------------------------------------------------
// 4. A hung upstream is abandoned in time
// ---------------------------------------------------------------------------------------

/// Provider and request timeouts left long; only the attempt timeout's floor is short.
const ROUTING_ATTEMPT_FLOOR_1S: &str = r#"{
  "request_timeout_seconds": 120,
  "max_attempts_per_candidate": 2,
  "attempt_timeout_floor_seconds": 1,
  "scenarios": {}
}"#;

#[actix_web::test]
async fn a_hung_cheap_candidate_is_abandoned_for_the_next_one_long_before_the_provider_timeout() {
    let h = start_with(
        TWO_LOW_MODELS,
        ROUTING_ATTEMPT_FLOOR_1S,
        FakeOptions::default(),
    );
    // Two, so that a retry on the same candidate hangs too.
    h.fake.script("gpt-4.1-nano", [Fault::Hang, Fault::Hang]);
    let url = format!("{}/llm/intelligence", h.url);
    let a = send(&patient_client(), &url, low(120, "x"), "request").await;
    assert_eq!(
        a.status, 200,
        "a hung candidate must be given up for the next one; got {} after {:?}: {}",
        a.status, a.elapsed, a.text
    );
    assert_eq!(
        a.body["model_used"],
        "claude-haiku",
        "the other candidate must answer, got {}",
        a.served_by()
    );
    assert!(
        a.elapsed < Duration::from_secs(10),
        "the hung call must be abandoned after the per-attempt timeout (floor 1 s, p95 of \
         avg_response_time_ms 200), not the provider's 120 s: took {:?}",
        a.elapsed
    );
    let tried = attempts(&a);
    assert!(
        tried.iter().any(|t| t == "gpt-4.1-nano:timeout"),
        "the debug attempts must show a timeout on the hung model, got {tried:?}"
    );
    assert!(
        tried.iter().all(|t| t.starts_with("gpt-4.1-nano:")),
        "only the hung model failed, got {tried:?}"
    );
}

#[actix_web::test]
async fn a_hung_first_upstream_of_a_stream_is_abandoned_for_the_next_candidate() {
    let h = start_with(
        TWO_LOW_MODELS,
        ROUTING_ATTEMPT_FLOOR_1S,
        FakeOptions::default(),
    );
    h.fake.script("gpt-4.1-nano", [Fault::Hang, Fault::Hang]);
    let url = format!("{}/v1/chat/completions", h.url);
    let body = json!({
        "model": "low",
        "stream": true,
        "messages": [{"role": "user", "content": "hello there"}],
    });
    let a = send(&patient_client(), &url, body, "streamed request").await;
    assert_eq!(
        a.status, 200,
        "a stream whose first upstream hangs must fail over before the first token; got {} \
         after {:?}: {}",
        a.status, a.elapsed, a.text
    );
    assert_eq!(
        a.header("x-bkvy-model"),
        Some("claude-haiku"),
        "the other candidate must stream the answer (headers {:?})",
        a.headers
    );
    assert!(
        a.elapsed < Duration::from_secs(10),
        "the hung upstream must be abandoned after the per-attempt timeout (floor 1 s), not \
         the provider's 120 s: took {:?}",
        a.elapsed
    );
    assert!(
        a.text.trim_end().ends_with("data: [DONE]"),
        "the stream must end with [DONE]: {}",
        a.text
    );
    assert!(
        !a.text.contains("\"error\""),
        "the failover must be invisible to the client: {}",
        a.text
    );
    let hung = received(&h, "gpt-4.1-nano");
    assert!(
        !hung.is_empty() && hung.iter().all(|r| r.body["stream"] == true),
        "the hung model must have been called (streaming) first, saw {} call(s)",
        hung.len()
    );
}

// ---------------------------------------------------------------------------------------
// 5. No self-inflicted 429s
// ---------------------------------------------------------------------------------------

#[actix_web::test]
async fn a_provider_counting_arrivals_never_refuses_what_bkvy_sends_under_a_burst() {
    let limit = |key: &str, model: &str| FakeLimit {
        credential: Some(secret(key).to_owned()),
        model: model.to_owned(),
        rpm: 25,
        rpd: 10_000,
    };
    let h = start_with(
        THREE_PAIRS_RPM_25,
        r#"{"request_timeout_seconds": 90, "max_attempts_per_candidate": 2, "scenarios": {}}"#,
        FakeOptions {
            latency: Duration::from_millis(50),
            latency_jitter: Duration::from_millis(100),
            limits: vec![
                limit("TEST_OPENAI_KEY_1", "gpt-4.1-nano"),
                limit("TEST_OPENAI_KEY_2", "gpt-4.1-nano"),
                limit("TEST_ANTHROPIC_KEY_1", "claude-haiku"),
            ],
            ..FakeOptions::default()
        },
    );
    let url = format!("{}/llm/intelligence", h.url);
    let client = patient_client();
    let started = Instant::now();
    let answers = futures::future::join_all(
        (0..200).map(|i| send(&client, &url, low(90, &format!("b{i}")), "burst request")),
    )
    .await;
    let total = started.elapsed();

    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for a in &answers {
        *by_status.entry(a.status).or_default() += 1;
    }
    let summary = format!("statuses {by_status:?} after {total:?}");
    let refused = h.fake.limit_refusals();
    let recorded_429 = h.fake.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(
        refused, 0,
        "the fake refused {refused} call(s) over its 25 rpm per key/model, counted by arrival: \
         bkvy sent calls the provider would refuse ({summary})"
    );
    assert_eq!(
        recorded_429, 0,
        "the fake answered {recorded_429} call(s) with 429 ({summary})"
    );
    for a in &answers {
        assert!(
            a.status == 200 || a.status == 503,
            "every request must be answered 200 or 503 (never 502/504): got {} after {:?}: {} \
             ({summary})",
            a.status,
            a.elapsed,
            a.text
        );
        if a.status == 503 {
            assert!(
                a.header("retry-after").is_some(),
                "a 503 must say when to retry: {}",
                a.text
            );
        }
    }
    let ok = by_status.get(&200).copied().unwrap_or(0);
    assert!(
        ok >= 75,
        "three pairs at 25 rpm serve at least 75 requests in the first minute; {ok} were \
         answered ({summary})"
    );
    assert!(
        answers
            .iter()
            .any(|a| a.status == 200 && a.elapsed > Duration::from_secs(55)),
        "with a 90 s budget some requests must wait for the window to roll and be answered \
         in the second minute; none was ({summary})"
    );
}

// ---------------------------------------------------------------------------------------
// Waiting out a pause only while it fits; a caller's deadline is not the provider's fault
// ---------------------------------------------------------------------------------------

/// The cheap model answers 429 with a short Retry-After, but the call it refused still
/// fills its one-a-minute window: waiting out the pause would mean waiting a minute, so
/// the request moves to the dearer model that answers within the budget.
#[actix_web::test]
async fn a_pause_within_the_budget_is_not_waited_out_when_the_window_holds_the_pair_longer() {
    let h = start_with(CHEAP_RPM_1, EDGE_ROUTING, FakeOptions::default());
    h.fake.script("gpt-4.1-nano", [Fault::rate_limited(2)]);
    let url = format!("{}/llm/intelligence", h.url);
    let a = send(&patient_client(), &url, low(5, "pause"), "low request").await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.body["model_used"], "claude-haiku",
        "after the 429 the cheap model could start only in a minute: {}",
        a.text
    );
    assert!(
        a.elapsed < Duration::from_secs(5),
        "answered within the 5 s budget, took {:?}",
        a.elapsed
    );
    assert_eq!(
        attempts(&a),
        vec!["gpt-4.1-nano:rate_limited", "gpt-4.1-nano:over_budget"],
        "the debug answer shows the wait being tried and given up"
    );
}

/// Requests whose own deadline is shorter than the model's answer time run out of time on
/// every attempt; that is the callers' choice and must not open the pair's circuit.
#[actix_web::test]
async fn a_callers_short_deadline_does_not_count_against_the_provider() {
    let slow = FakeOptions {
        per_model: vec![bkvy::fake::FakeModelOptions {
            model: "claude-haiku".into(),
            latency: Duration::from_millis(800),
            latency_jitter: Duration::ZERO,
            fail_rate: 0.0,
            fail_status: 500,
        }],
        ..FakeOptions::default()
    };
    let h = start_with(ONE_MODEL, EDGE_ROUTING, slow);
    let url = format!("{}/llm/direct", h.url);
    let client = patient_client();
    for n in 0..5 {
        let mut body = direct_haiku(1);
        body["timeout_seconds"] = json!(0.2);
        let a = send(&client, &url, body, "hurried request").await;
        assert_eq!(a.status, 504, "request {n}: {}", a.text);
    }
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    let c = &circuits["circuits"]["anthropic_claude-haiku_an1"];
    assert_eq!(c["state"], "closed", "{c}");
    assert_eq!(c["consecutive_failures"], 0, "{c}");
    let a = send(&client, &url, direct_haiku(10), "patient request").await;
    assert_eq!(a.status, 200, "{}", a.text);
}
