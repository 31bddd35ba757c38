//! Streamed answers end to end: tokens as they come, failover before the first token, an
//! explicit error after it, and a client that goes away.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use bkvy::fake::{FakeOptions, Fault};
use common::*;
use futures::StreamExt;
use serde_json::{json, Value};

const STREAM_ROUTING: &str = r#"{
  "request_timeout_seconds": 20,
  "max_attempts_per_candidate": 1,
  "stream_idle_timeout_seconds": 1,
  "scenarios": {"support": [{"provider": "anthropic", "model": "claude-haiku", "priority": 1}]}
}"#;

fn start_stream() -> Harness {
    start_with(PROVIDERS, STREAM_ROUTING, FakeOptions::default())
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

async fn stream_post(url: &str, body: &Value) -> (u16, String, Vec<(String, String)>) {
    let mut res = client().post(url).send_json(body).await.unwrap();
    let status = res.status().as_u16();
    let headers = res
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    let bytes = res.body().limit(1 << 20).await.unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap(), headers)
}

fn direct(provider: &str, model: &str, text: &str) -> Value {
    json!({"provider": provider, "model": model, "stream": true,
           "messages": [{"role": "user", "content": text}]})
}

/// One streaming model per provider kind of the test config.
const STREAMERS: [(&str, &str); 5] = [
    ("openai", "gpt-4o"),
    ("anthropic", "claude-haiku"),
    ("gemini", "gemini-2.5-pro"),
    ("ollama", "llama3.2:3b"),
    ("vllm", "qwen3"),
];

#[actix_web::test]
async fn every_provider_streams_its_answer_in_pieces() {
    let h = start_stream();
    for (provider, model) in STREAMERS {
        let (status, body, headers) = stream_post(
            &format!("{}/llm/direct", h.url),
            &direct(provider, model, "tell me a short story please"),
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        assert!(headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("text/event-stream")));
        let evs = events(&body);
        let parsed: Vec<Value> = evs
            .iter()
            .filter(|e| *e != "[DONE]")
            .map(|e| serde_json::from_str(e).unwrap())
            .collect();
        assert_eq!(parsed[0]["type"], "start", "{model}");
        assert_eq!(parsed[0]["model_used"], model);
        let deltas: Vec<&str> = parsed
            .iter()
            .filter(|e| e["type"] == "delta")
            .map(|e| e["content"].as_str().unwrap())
            .collect();
        assert!(deltas.len() > 3, "{model}: several pieces, got {deltas:?}");
        assert_eq!(
            deltas.concat(),
            format!("[{model}] tell me a short story please")
        );
        let done = parsed.last().unwrap();
        assert_eq!(done["type"], "done", "{model}");
        assert_eq!(done["finish_reason"], "stop");
        assert!(
            done["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}: {done}"
        );
        assert_eq!(evs.last().unwrap(), "[DONE]");
    }
}

#[actix_web::test]
async fn finished_streams_leave_their_upstream_connection_open_for_the_next_call() {
    let h = start_stream();
    for (provider, model) in STREAMERS {
        for _ in 0..3 {
            let (status, body, _) = stream_post(
                &format!("{}/llm/direct", h.url),
                &direct(provider, model, "one two three"),
            )
            .await;
            assert_eq!(status, 200, "{model}: {body}");
            // The rest of the body is read off the request's path; give it a moment.
            actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        }
        let peers: std::collections::HashSet<_> =
            received(&h, model).iter().map(|r| r.peer).collect();
        assert_eq!(
            peers.len(),
            1,
            "{model}: one kept-alive connection, got {peers:?}"
        );
    }
}

#[actix_web::test]
async fn failures_before_the_first_token_fail_over_invisibly() {
    for fault in [
        Fault::status(500),
        Fault::rate_limited(3),
        Fault::Malformed,
        Fault::Hang,
    ] {
        let h = start_stream();
        let label = format!("{fault:?}");
        h.fake.script("gemini-2.5-flash", [fault]);
        let (status, body, _) = stream_post(
            &format!("{}/llm/intelligence", h.url),
            &json!({"intelligence_level": "low", "stream": true,
                    "messages": [{"role": "user", "content": "hello there"}]}),
        )
        .await;
        assert_eq!(status, 200, "{label}: {body}");
        let evs = events(&body);
        let start: Value = serde_json::from_str(&evs[0]).unwrap();
        assert_eq!(start["model_used"], "gpt-4o-mini", "{label}: failed over");
        assert!(!body.contains("\"type\":\"error\""), "{label}: {body}");
        assert_eq!(evs.last().unwrap(), "[DONE]", "{label}");
    }
}

#[actix_web::test]
async fn a_failure_after_content_ends_with_an_explicit_error() {
    let providers = [
        ("openai", "gpt-4o"),
        ("anthropic", "claude-sonnet"),
        ("gemini", "gemini-2.5-pro"),
        ("ollama", "llama3.2:3b"),
        ("vllm", "qwen3"),
    ];
    for (provider, model) in providers {
        for fault in [Fault::Truncated, Fault::Stall, Fault::Malformed] {
            let label = format!("{model} {fault:?}");
            let malformed = matches!(fault, Fault::Malformed);
            let h = start_stream();
            h.fake.script(model, [fault]);
            let started = Instant::now();
            let (status, body, _) = stream_post(
                &format!("{}/llm/direct", h.url),
                &direct(provider, model, "one two three four five six seven eight"),
            )
            .await;
            if malformed {
                // Garbage before any content: nothing was sent yet, so it fails over (to
                // the other key where there is one) or fails plainly — never an error
                // inside a stream.
                let ok = status == 200 && events(&body).last().is_some_and(|e| e == "[DONE]");
                assert!(ok || status == 502, "{label}: {status} {body}");
                assert!(!body.contains("\"type\":\"error\""), "{label}: {body}");
                continue;
            }
            assert_eq!(status, 200, "{label}");
            let evs = events(&body);
            assert_ne!(
                evs.last().unwrap(),
                "[DONE]",
                "{label}: never a clean end: {body}"
            );
            let last: Value = serde_json::from_str(evs.last().unwrap()).unwrap();
            assert_eq!(last["type"], "error", "{label}: {body}");
            assert_eq!(last["finish_reason"], "error");
            assert_eq!(last["error_code"], "stream_interrupted");
            assert!(
                body.contains("\"type\":\"delta\""),
                "{label}: content came first"
            );
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "{label}: bounded"
            );
        }
    }
}

#[actix_web::test]
async fn a_client_that_disconnects_releases_its_slot() {
    let h = start_stream();
    let words = vec!["word"; 30].join(" ");
    h.fake
        .script("gpt-4o", [Fault::Paced(Duration::from_millis(150))]);
    let mut res = client()
        .post(format!("{}/llm/direct", h.url))
        .send_json(&direct("openai", "gpt-4o", &words))
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    // Read the start and the first piece, then go away.
    let first = res.next().await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&first).contains("start"));
    let _ = res.next().await;
    drop(res);
    let mut in_flight = 1;
    for _ in 0..40 {
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
        let (_, q) = get(&format!("{}/queue/status", h.url)).await;
        in_flight = q["queue_states"]["openai_oa1_gpt-4o"]["in_flight"]
            .as_u64()
            .unwrap_or(0)
            + q["queue_states"]["openai_oa2_gpt-4o"]["in_flight"]
                .as_u64()
                .unwrap_or(0);
        if in_flight == 0 {
            break;
        }
    }
    assert_eq!(in_flight, 0, "the slot was released when the client left");
    // The disconnect is counted like any other request.
    let mut res = client()
        .get(format!("{}/metrics", h.url))
        .send()
        .await
        .unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    assert!(
        text.lines().any(|l| l.starts_with("bkvy_requests_total")
            && l.contains("outcome=\"client_disconnected\"")),
        "{text}"
    );
}
