//! The streaming load generator (`benches/stream_load`) counts what it claims to count:
//! its per-stream code run against the fake upstream directly and through the gateway,
//! with the fake's scripted faults, must tell complete streams from cut, failed, garbled
//! and stalled ones. Its SSE and percentile unit tests run here too (the bench target
//! itself has no test harness).

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used)]

mod common;

#[allow(dead_code)]
#[path = "../benches/stream_load/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "../benches/stream_load/sse.rs"]
mod sse;

use std::time::{Duration, Instant};

use bkvy::fake::Fault;
use bytes::Bytes;
use client::{one_stream, StreamResult, Target};
use common::*;
use serde_json::json;
use sse::{classify, percentile, Event, Failure, SseReader, StreamState};

/// 8 words of prompt: the fake answers `[<model>] <prompt>`, one word per chunk.
const PROMPT: &str = "one two three four five six seven eight";

fn target(url: String, model: &str, key: bool) -> Target {
    let body = json!({"model": model, "stream": true,
        "messages": [{"role": "user", "content": PROMPT}]});
    Target {
        url,
        body: Bytes::from(body.to_string()),
        headers: if key {
            vec![("Authorization".into(), "Bearer test-key".into())]
        } else {
            Vec::new()
        },
    }
}

async fn stream(t: &Target, timeout: Duration) -> StreamResult {
    let c = awc::Client::default();
    one_stream(&c, t, Instant::now(), timeout).await
}

#[actix_web::test]
async fn counts_a_complete_stream_from_the_fake_and_through_the_gateway() {
    let h = start();
    let direct = target(
        format!("{}/v1/chat/completions", h.fake.url()),
        "gpt-4o",
        true,
    );
    let via = target(
        format!("{}/v1/chat/completions", h.url),
        "openai/gpt-4o",
        false,
    );
    for t in [&direct, &via] {
        let r = stream(t, Duration::from_secs(20)).await;
        assert_eq!(r.outcome, Ok(()), "{}", t.url);
        assert_eq!(r.status, Some(200));
        // "[gpt-4o] " plus the 8 prompt words, one chunk each.
        assert_eq!((r.state.chunks, r.state.words), (9, 9), "{}", t.url);
        assert_eq!(r.state.model.as_deref(), Some("gpt-4o"));
        assert!(r.ttft.is_some_and(|ttft| ttft <= r.total));
    }
}

#[actix_web::test]
async fn tells_failed_streams_apart() {
    let h = start();
    let direct = target(
        format!("{}/v1/chat/completions", h.fake.url()),
        "gpt-4o",
        true,
    );
    let cases = [
        (Fault::status(500), Failure::Status(500)),
        (Fault::Truncated, Failure::NoDone),
        (Fault::Malformed, Failure::Malformed),
        (Fault::Stall, Failure::Timeout),
    ];
    for (fault, want) in cases {
        h.fake.script("gpt-4o", [fault.clone()]);
        // The stall never ends; the timeout is what ends it, not something measured.
        let r = stream(&direct, Duration::from_secs(1)).await;
        assert_eq!(r.outcome, Err(want), "{fault:?}");
    }

    // Through the gateway a cut after content becomes an error event without [DONE].
    let via = target(
        format!("{}/v1/chat/completions", h.url),
        "openai/gpt-4o",
        false,
    );
    h.fake.script("gpt-4o", [Fault::Truncated]);
    let r = stream(&via, Duration::from_secs(20)).await;
    assert_eq!(r.outcome, Err(Failure::ErrorEvent));
    assert!(r.state.chunks > 0 && !r.state.done);

    // Nothing listening: a connection error, not a hang.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let dead = target(
        format!("http://127.0.0.1:{port}/v1/chat/completions"),
        "gpt-4o",
        true,
    );
    let r = stream(&dead, Duration::from_secs(20)).await;
    assert!(matches!(r.outcome, Err(Failure::Connect(_))), "{r:?}");
}

// ---------------------------------------------------------------- SSE and percentiles

fn events(chunks: &[&[u8]]) -> Vec<String> {
    let mut r = SseReader::default();
    let mut out = Vec::new();
    for c in chunks {
        r.feed(c, |d| out.push(d.to_owned()));
    }
    out
}

#[test]
fn events_survive_any_split() {
    let body =
        b"data: {\"a\":1}\n\n: comment\nevent: x\ndata: two\ndata: lines\r\n\r\ndata: [DONE]\n\n";
    let whole = events(&[body]);
    assert_eq!(whole, vec!["{\"a\":1}", "two\nlines", "[DONE]"]);
    for cut in 1..body.len() {
        let (a, b) = body.split_at(cut);
        assert_eq!(events(&[a, b]), whole, "split at {cut}");
    }
    let bytewise: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(events(&bytewise), whole);
}

#[test]
fn an_unfinished_event_is_not_delivered() {
    let mut r = SseReader::default();
    let mut n = 0;
    r.feed(b"data: {\"a\":1}\n", |_| n += 1);
    assert_eq!(n, 0);
    r.feed(b"\n", |_| n += 1);
    assert_eq!(n, 1);
}

#[test]
fn classifies_openai_chunks() {
    let role = r#"{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#;
    let word = r#"{"id":"c","model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Is \"Santa\" "}}]}"#;
    let finish =
        r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}"#;
    let usage = r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3}}"#;
    assert_eq!(classify(role), Event::Other);
    assert_eq!(
        classify(word),
        Event::Content {
            model: Some("gpt-4o-mini".into()),
            words: 2
        }
    );
    assert_eq!(classify(finish), Event::Other);
    assert_eq!(classify(usage), Event::Other);
    assert_eq!(classify("[DONE]"), Event::Done);
    assert_eq!(
        classify(r#"{"error":{"message":"cut","code":"stream_interrupted"}}"#),
        Event::Error
    );
    assert_eq!(classify(r#"{"type":"error","error":"x"}"#), Event::Error);
    assert_eq!(classify("{not json"), Event::Malformed);
}

fn content() -> Event {
    Event::Content {
        model: Some("m".into()),
        words: 1,
    }
}

#[test]
fn a_complete_stream_counts_its_chunks() {
    let mut s = StreamState::default();
    assert!(!s.apply(Event::Other));
    assert!(s.apply(content()));
    assert!(!s.apply(content()));
    assert!(!s.apply(Event::Other));
    assert!(!s.apply(Event::Done));
    assert!(!s.apply(content()), "nothing counts after [DONE]");
    assert_eq!(s.finish(), Ok(()));
    assert_eq!((s.chunks, s.words, s.model.as_deref()), (2, 2, Some("m")));
}

#[test]
fn a_stream_without_done_or_with_an_error_fails() {
    let mut cut = StreamState::default();
    cut.apply(content());
    assert_eq!(cut.finish(), Err(Failure::NoDone));

    let mut errored = StreamState::default();
    errored.apply(content());
    errored.apply(Event::Error);
    assert_eq!(errored.finish(), Err(Failure::ErrorEvent));
    errored.apply(Event::Done);
    assert_eq!(
        errored.finish(),
        Err(Failure::ErrorEvent),
        "[DONE] does not undo an error"
    );

    let mut garbled = StreamState::default();
    garbled.apply(Event::Malformed);
    garbled.apply(Event::Done);
    assert_eq!(garbled.finish(), Err(Failure::Malformed));
}

#[test]
fn nearest_rank_percentiles() {
    let ms = |v: u64| Duration::from_millis(v);
    let sorted: Vec<Duration> = (1..=100).map(ms).collect();
    assert_eq!(percentile(&sorted, 50.0), Some(ms(50)));
    assert_eq!(percentile(&sorted, 90.0), Some(ms(90)));
    assert_eq!(percentile(&sorted, 99.0), Some(ms(99)));
    assert_eq!(percentile(&sorted, 100.0), Some(ms(100)));
    assert_eq!(percentile(&sorted, 0.0), Some(ms(1)));
    assert_eq!(percentile(&[ms(7)], 99.0), Some(ms(7)));
    let ten: Vec<Duration> = (1..=10).map(ms).collect();
    assert_eq!(percentile(&ten, 99.0), Some(ms(10)));
    assert_eq!(percentile(&ten, 50.0), Some(ms(5)));
    assert_eq!(percentile(&[], 50.0), None);
}
