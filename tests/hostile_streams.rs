//! Streams without an end, clients that stop reading, and a slow model list: every
//! stream ends (at the caller's deadline, after an idle upstream, or after a client that
//! reads nothing), releases its slot and emits one completion event; one slow probe does
//! not hold the others.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bkvy::fake::{FakeApi, FakeOptions, FakeUpstream, Fault};
use bkvy::http::HttpLimits;
use common::*;
use serde_json::{json, Value};

/// One streaming model per provider kind of the test config.
const STREAMERS: [(&str, &str); 5] = [
    ("openai", "gpt-4o"),
    ("anthropic", "claude-haiku"),
    ("gemini", "gemini-2.5-pro"),
    ("ollama", "llama3.2:3b"),
    ("vllm", "qwen3"),
];

/// A streamed request straight to one model, with enough words for a long first half.
fn direct(provider: &str, model: &str) -> Value {
    let words = vec!["word"; 20].join(" ");
    json!({"provider": provider, "model": model, "stream": true,
           "messages": [{"role": "user", "content": words}]})
}

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Posts a streamed request and reads the whole body, failing the test if the stream has
/// not ended within `limit` (a stream without an end).
async fn stream_within(url: &str, body: &Value, limit: Duration, label: &str) -> (u16, String) {
    let read = async {
        let mut res = client().post(url).send_json(body).await.unwrap();
        let status = res.status().as_u16();
        let bytes = res.body().limit(64 << 20).await.unwrap();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    };
    actix_web::rt::time::timeout(limit, read)
        .await
        .unwrap_or_else(|_| panic!("{label}: the stream was still running after {limit:?}"))
}

/// `bkvy_requests_total` for one outcome, summed over its other labels.
async fn requests_with_outcome(url: &str, outcome: &str) -> u64 {
    let mut res = client().get(format!("{url}/metrics")).send().await.unwrap();
    let text = String::from_utf8(res.body().await.unwrap().to_vec()).unwrap();
    text.lines()
        .filter(|l| l.starts_with("bkvy_requests_total{"))
        .filter(|l| l.contains(&format!("outcome=\"{outcome}\"")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Metrics are counted as events are delivered (in batches within 20 ms): waits until
/// `want` requests have `outcome`, or a second has passed, and returns the count.
async fn settled_count(url: &str, outcome: &str, want: u64) -> u64 {
    let mut seen = 0;
    for _ in 0..20 {
        seen = requests_with_outcome(url, outcome).await;
        if seen >= want {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    seen
}

const DEADLINE_ROUTING: &str = r#"{
  "request_timeout_seconds": 2,
  "max_attempts_per_candidate": 1,
  "stream_idle_timeout_seconds": 1,
  "circuit_breaker": {"consecutive_failures": 1, "window_seconds": 60, "window_failures": 1,
                      "base_backoff_seconds": 60, "max_backoff_seconds": 60},
  "scenarios": {}
}"#;

/// An upstream that keeps sending content forever is cut at the request's deadline with
/// an explicit error event, on every provider; the deadline is the caller's choice, so a
/// circuit that opens after one failure stays closed and the pair answers the next call.
#[actix_web::test]
async fn the_deadline_bounds_a_stream_that_never_ends() {
    let h = start_with(PROVIDERS, DEADLINE_ROUTING, FakeOptions::default());
    let url = format!("{}/llm/direct", h.url);
    for (provider, model) in STREAMERS {
        h.fake
            .script(model, [Fault::Endless(Duration::from_millis(20))]);
        let (status, body) = stream_within(
            &url,
            &direct(provider, model),
            Duration::from_secs(15),
            model,
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        let evs = events(&body);
        assert!(
            body.contains("\"type\":\"delta\""),
            "{model}: content came first"
        );
        let last: Value = serde_json::from_str(evs.last().unwrap()).unwrap();
        assert_eq!(last["type"], "error", "{model}: never a clean end: {last}");
        assert_eq!(last["finish_reason"], "error", "{model}");
        assert_eq!(last["error_code"], "deadline_exceeded", "{model}: {last}");
        // The pair is healthy: its circuit (open after one failure) did not count it.
        let (status, body) = stream_within(
            &url,
            &direct(provider, model),
            Duration::from_secs(15),
            model,
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        assert_eq!(events(&body).last().unwrap(), "[DONE]", "{model}: {body}");
    }
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    assert_eq!(circuits["open_circuits"], 0, "{circuits}");
    // Exactly one completion event per cut stream.
    assert_eq!(
        settled_count(&h.url, "deadline_exceeded", 5).await,
        5,
        "one completion event per stream cut at its deadline"
    );
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(requests_with_outcome(&h.url, "deadline_exceeded").await, 5);
    assert_eq!(settled_count(&h.url, "success", 5).await, 5);
}

/// The same through the OpenAI door: the stream ends with an error chunk in OpenAI's
/// shape, not `[DONE]`.
#[actix_web::test]
async fn the_deadline_bounds_a_stream_on_the_openai_door() {
    let h = start_with(PROVIDERS, DEADLINE_ROUTING, FakeOptions::default());
    h.fake
        .script("gpt-4o", [Fault::Endless(Duration::from_millis(20))]);
    let body = json!({"model": "openai/gpt-4o", "stream": true,
                      "messages": [{"role": "user", "content": vec!["w"; 20].join(" ")}]});
    let (status, text) = stream_within(
        &format!("{}/v1/chat/completions", h.url),
        &body,
        Duration::from_secs(15),
        "v1",
    )
    .await;
    assert_eq!(status, 200, "{text}");
    assert_ne!(events(&text).last().unwrap(), "[DONE]", "{text}");
    assert!(text.contains("deadline_exceeded"), "{text}");
}

const IDLE_ROUTING: &str = r#"{
  "request_timeout_seconds": 30,
  "max_attempts_per_candidate": 1,
  "stream_idle_timeout_seconds": 1,
  "scenarios": {}
}"#;

/// An upstream that sends only keep-alives after its first content is idle: it is ended
/// after `stream_idle_timeout_seconds` (an upstream failure, `stream_interrupted`), long
/// before the 30 s deadline, on every provider.
#[actix_web::test]
async fn keep_alives_do_not_hold_a_stream_open() {
    let h = start_with(PROVIDERS, IDLE_ROUTING, FakeOptions::default());
    let url = format!("{}/llm/direct", h.url);
    for (provider, model) in STREAMERS {
        h.fake
            .script(model, [Fault::KeepAliveOnly(Duration::from_millis(100))]);
        let (status, body) = stream_within(
            &url,
            &direct(provider, model),
            Duration::from_secs(10),
            model,
        )
        .await;
        assert_eq!(status, 200, "{model}: {body}");
        assert!(
            body.contains("\"type\":\"delta\""),
            "{model}: content came first"
        );
        let last: Value = serde_json::from_str(events(&body).last().unwrap()).unwrap();
        assert_eq!(last["type"], "error", "{model}: {last}");
        assert_eq!(last["error_code"], "stream_interrupted", "{model}: {last}");
        assert!(
            last["error"].as_str().unwrap().contains("timed out"),
            "{model}: {last}"
        );
    }
    assert_eq!(settled_count(&h.url, "stream_interrupted", 5).await, 5);
}

const STALL_PROVIDERS: &str = r#"{
  "openai": {
    "keys": {
      "oa1": {"api_key": "env:TEST_OPENAI_KEY_1", "rate_limits": {"gpt-4o": {"rpm": 100, "rpd": 10000, "max_concurrent": 1}}}
    },
    "models": {
      "gpt-4o": {"endpoint": "{FAKE}/v1/chat/completions", "cost_per_1k_tokens": 0.0025, "intelligence_tier": "high", "avg_response_time_ms": 400}
    }
  }
}"#;

const STALL_ROUTING: &str = r#"{
  "request_timeout_seconds": 60,
  "max_attempts_per_candidate": 1,
  "stream_idle_timeout_seconds": 30,
  "circuit_breaker": {"consecutive_failures": 1, "window_seconds": 60, "window_failures": 1,
                      "base_backoff_seconds": 60, "max_backoff_seconds": 60},
  "scenarios": {}
}"#;

/// A client that sends a streamed request and then reads nothing: after
/// `STREAM_WRITE_STALL_SECONDS` bkvy ends the stream and releases the pair's only
/// in-flight slot (`max_concurrent: 1`), so the next request is served; the stalled one is
/// recorded once, as a client disconnect, and the pair's circuit (open after one failure)
/// does not count it.
#[actix_web::test]
async fn a_client_that_stops_reading_releases_its_slot() {
    use actix_web::rt::net::TcpStream;
    use tokio::io::AsyncWriteExt;

    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, STALL_PROVIDERS, STALL_ROUTING);
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            limits: HttpLimits {
                stream_write_stall: Duration::from_secs(1),
                ..GatewayOpts::default().limits
            },
            ..GatewayOpts::default()
        },
    );
    // As fast as the connection takes it, forever.
    h.fake.script("gpt-4o", [Fault::Endless(Duration::ZERO)]);
    let addr: std::net::SocketAddr = h.url.trim_start_matches("http://").parse().unwrap();
    // A small receive window, so that the client's side fills up quickly.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    socket.connect(&addr.into()).unwrap();
    socket.set_nonblocking(true).unwrap();
    let mut stalled = TcpStream::from_std(socket.into()).unwrap();
    let body = serde_json::to_vec(&direct("openai", "gpt-4o")).unwrap();
    let head = format!(
        "POST /llm/direct HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    stalled.write_all(&body).await.unwrap();
    // The stalled stream holds the only slot; the next request gets it once bkvy has
    // given up on the client that reads nothing.
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let next = json!({"provider": "openai", "model": "gpt-4o", "stream": true, "timeout_seconds": 10,
                      "messages": [{"role": "user", "content": "hello"}]});
    let (status, text) = stream_within(
        &format!("{}/llm/direct", h.url),
        &next,
        Duration::from_secs(20),
        "next",
    )
    .await;
    assert_eq!(status, 200, "the slot was released: {text}");
    assert_eq!(events(&text).last().unwrap(), "[DONE]", "{text}");
    assert_eq!(
        settled_count(&h.url, "client_disconnected", 1).await,
        1,
        "the stalled stream is recorded as a client disconnect"
    );
    actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        requests_with_outcome(&h.url, "client_disconnected").await,
        1
    );
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    assert_eq!(circuits["open_circuits"], 0, "{circuits}");
    drop(stalled);
}

/// A model list that trickles one byte every 300 ms (about a minute for the whole list)
/// neither holds the other keys' probes nor goes unreported: the other keys are probed
/// every interval, and the slow one is reported failed once its probe's time is up.
#[actix_web::test]
async fn one_slow_model_list_does_not_hold_the_other_probes() {
    let fake = FakeUpstream::start(
        std::net::TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    // The first model-list call, whichever key it probes, trickles.
    fake.script("", [Fault::Trickle(Duration::from_millis(300))]);
    let config = config_for(&fake, PROVIDERS, ROUTING);
    let h = start_gateway_full(
        fake,
        config,
        GatewayOpts {
            probes: bkvy::probes::ProbeOptions {
                enabled: true,
                interval: Duration::from_secs(1),
            },
            ..GatewayOpts::default()
        },
    );
    let mut slow_reported = false;
    for _ in 0..40 {
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
        slow_reported |= circuits["circuits"].as_object().unwrap().values().any(|c| {
            c["health_probe"]["ok"] == false
                && c["health_probe"]["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("timed out"))
        });
    }
    assert!(slow_reported, "the trickling probe was cut and reported");
    let mut per_key: HashMap<(String, Option<String>), usize> = HashMap::new();
    for r in h.fake.requests() {
        assert_eq!(r.api, FakeApi::ModelList, "probes never make a paid call");
        *per_key
            .entry((r.path.clone(), r.credential.clone()))
            .or_default() += 1;
    }
    let most = per_key.values().copied().max().unwrap_or(0);
    assert!(
        most >= 3,
        "the other keys were probed every interval while one trickled: {per_key:?}"
    );
}
