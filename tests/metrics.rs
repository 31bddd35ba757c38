//! `/metrics` parsed with a Prometheus text parser and checked against a known sequence of
//! requests.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use serde_json::json;

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let matching: Vec<_> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert!(!matching.is_empty(), "no sample {name} {labels:?}");
    matching
        .iter()
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> u64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match &s.value {
            prometheus_parse::Value::Histogram(h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max) as u64
            }
            _ => 0,
        })
        .sum()
}

#[actix_web::test]
async fn metrics_count_a_known_sequence_of_requests() {
    let h = start();
    let marker = "MARKER-5f1c2e-never-in-metrics";
    h.fake.script(
        "gemini-2.5-flash",
        [bkvy::fake::Fault::Status {
            status: 429,
            retry_after: Some("1".into()),
            headers: Vec::new(),
        }],
    );
    let intel = format!("{}/llm/intelligence", h.url);
    // 1: 429 on gemini flash whose pause is longer than the caller waits, answered by
    // gpt-4o-mini.
    let mut hurried = ask("low", marker);
    hurried["max_wait_seconds"] = serde_json::json!(0.5);
    let (s, first) = post(&intel, &hurried).await;
    assert_eq!(s, 200);
    assert_eq!(first["model_used"], "gpt-4o-mini");
    // 2 and 3: high tier, answered by gemini-2.5-pro.
    let mut tokens: HashMap<&str, f64> = HashMap::new();
    for _ in 0..2 {
        let (s, b) = post(&intel, &ask("high", marker)).await;
        assert_eq!(s, 200);
        assert_eq!(b["model_used"], "gemini-2.5-pro");
        for k in ["input_tokens", "output_tokens"] {
            *tokens.entry(k).or_default() += b["response"]["usage"][k].as_f64().unwrap();
        }
    }
    // 4: a validation failure.
    let (s, _, _) = post_raw(
        &intel,
        br#"{"intelligence_level":"low","messages":[]}"#.to_vec(),
    )
    .await;
    assert_eq!(s, 422);
    // 5: unknown scenario.
    let (s, _) = post(
        &format!("{}/llm/scenario", h.url),
        &json!({"scenario": "nope", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 404);
    let text = scrape_text(&h).await;
    assert!(!text.contains(marker));
    for (_, secret) in SECRETS {
        assert!(!text.contains(secret));
    }
    let m = parse(&text);

    let req = "bkvy_requests_total";
    assert_eq!(value(&m, req, &[]), 5.0);
    assert_eq!(value(&m, req, &[("outcome", "success")]), 3.0);
    assert_eq!(
        value(
            &m,
            req,
            &[
                ("outcome", "success"),
                ("model", "gemini-2.5-pro"),
                ("intelligence_level", "high")
            ]
        ),
        2.0
    );
    assert_eq!(
        value(
            &m,
            req,
            &[
                ("outcome", "invalid_request"),
                ("routing_method", "intelligence")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            req,
            &[
                ("outcome", "scenario_not_found"),
                ("routing_method", "scenario")
            ]
        ),
        1.0
    );
    assert_eq!(
        value(
            &m,
            "bkvy_upstream_errors_total",
            &[("model", "gemini-2.5-flash"), ("kind", "rate_limited")]
        ),
        1.0
    );
    for (kind, key) in [("input", "input_tokens"), ("output", "output_tokens")] {
        assert_eq!(
            value(
                &m,
                "bkvy_tokens_total",
                &[("model", "gemini-2.5-pro"), ("kind", kind)]
            ),
            tokens[key]
        );
    }
    assert!(value(&m, "bkvy_cost_usd_total", &[("model", "gemini-2.5-pro")]) > 0.0);
    assert_eq!(histogram_count(&m, "bkvy_request_duration_seconds", &[]), 5);
    assert_eq!(
        histogram_count(&m, "bkvy_upstream_duration_seconds", &[]),
        3
    );
    assert_eq!(histogram_count(&m, "bkvy_gateway_overhead_seconds", &[]), 3);
    // Live key/model state.
    let flash = [
        ("provider", "gemini"),
        ("key_id", "ge1"),
        ("model", "gemini-2.5-flash"),
    ];
    assert_eq!(value(&m, "bkvy_key_model_rpm_used", &flash), 1.0);
    assert_eq!(value(&m, "bkvy_key_model_rpm_remaining", &flash), 99.0);
    assert!(value(&m, "bkvy_key_model_paused_until_seconds", &flash) > 0.0);
    assert_eq!(value(&m, "bkvy_key_model_queue_length", &flash), 0.0);
    assert_eq!(value(&m, "bkvy_key_model_disabled", &flash), 0.0);
    // Mailboxes.
    assert!(
        value(
            &m,
            "bkvy_actor_messages_handled_total",
            &[("actor", "key_model")]
        ) > 0.0
    );
    assert_eq!(
        value(
            &m,
            "bkvy_actor_messages_handled_total",
            &[("actor", "router")]
        ),
        0.0,
        "routing reads published estimates: no message to the router on the request path"
    );
    // Attempts take the permits their key/model actor granted ahead, without a message:
    // of the 8 attempts (the 429 and its fail-over, and per high-tier request two tries on
    // the unreachable `deadai` model before `gemini-2.5-pro` answers) only one can need a
    // `Reserve`: the last try on `deadai`, whose circuit the third failure opened.
    let reserve_wait = histogram_count(
        &m,
        "bkvy_actor_mailbox_wait_seconds",
        &[("actor", "key_model")],
    );
    assert!(
        reserve_wait <= 1,
        "{}",
        text.lines()
            .filter(|l| l.contains("mailbox_wait"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert_eq!(value(&m, "bkvy_completion_events_dropped", &[]), 0.0);
    // The 5 completion events reach the statistics actor in batches (one message per
    // batch; tests/statistics.rs checks that every request is counted there).
    let stats_messages = value(
        &m,
        "bkvy_actor_messages_handled_total",
        &[("actor", "stats")],
    );
    assert!(
        (1.0..=5.0).contains(&stats_messages),
        "{stats_messages} messages for 5 events"
    );
    assert_eq!(
        value(&m, "bkvy_actor_mailbox_backlog", &[("actor", "stats")]),
        0.0
    );
}

/// `/metrics` as text, after every request answered so far is in it.
async fn scrape_text(h: &Harness) -> String {
    // Completion events reach the statistics actor in batches; a statistics read delivers
    // the pending ones and answers after the actor has handled them.
    let (s, _) = get(&format!("{}/statistics/summary", h.url)).await;
    assert_eq!(s, 200);
    let mut res = client()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ct = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    String::from_utf8(res.body().limit(1 << 22).await.unwrap().to_vec()).unwrap()
}

async fn scrape(h: &Harness) -> prometheus_parse::Scrape {
    parse(&scrape_text(h).await)
}

async fn stream_post(url: &str, body: &serde_json::Value) -> (u16, String) {
    let mut res = client().post(url).send_json(body).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

/// A streamed request that fails over before its first token counts its failed tries in
/// the upstream-error metrics, as a plain request does.
#[actix_web::test]
async fn a_streamed_failover_counts_its_failed_tries() {
    let h = start();
    h.fake.script(
        "gemini-2.5-flash",
        [
            bkvy::fake::Fault::status(500),
            bkvy::fake::Fault::status(500),
        ],
    );
    let (status, body) = stream_post(
        &format!("{}/llm/intelligence", h.url),
        &serde_json::json!({"intelligence_level": "low", "stream": true,
            "messages": [{"role": "user", "content": "hello"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("gpt-4o-mini"), "failed over: {body}");
    let m = scrape(&h).await;
    assert_eq!(
        value(
            &m,
            "bkvy_upstream_errors_total",
            &[("model", "gemini-2.5-flash"), ("kind", "server_error")]
        ),
        2.0,
        "both 500s of the streamed request"
    );
}

/// A stream cut after content has no usage: nothing is added to the output token count
/// (the number of pieces forwarded is not a number of tokens).
#[actix_web::test]
async fn a_cut_stream_adds_no_made_up_output_tokens() {
    let h = start();
    h.fake.script("gpt-4o", [bkvy::fake::Fault::Truncated]);
    let (status, body) = stream_post(
        &format!("{}/llm/direct", h.url),
        &serde_json::json!({"provider": "openai", "model": "gpt-4o", "stream": true,
            "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("stream_interrupted"), "{body}");
    let m = scrape(&h).await;
    let counted = m.samples.iter().any(|s| {
        s.metric == "bkvy_tokens_total"
            && s.labels.get("model") == Some("gpt-4o")
            && s.labels.get("kind") == Some("output")
    });
    assert!(!counted, "output tokens counted for a stream without usage");
}
