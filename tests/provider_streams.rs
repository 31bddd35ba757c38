//! Streaming upstream calls over real HTTP against the fake providers: each API's
//! stream normalised to the same text and usage as its non-streaming answer, and every
//! scripted fault turned into an error, never into a clean end.

// Test helpers outside `#[test]` functions panic on purpose, like the tests themselves.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::time::{Duration, Instant};

use bkvy::config::{Model, Provider, ProviderKind, Secret};
use bkvy::fake::{FakeApi, FakeOptions, FakeUpstream, Fault};
use bkvy::providers::stream::{build_stream_request, call_stream, StreamEvent, UpstreamStream};
use bkvy::providers::{build_request, call, UpstreamError};
use bkvy::types::{ChatMessage, ChatOptions, ChatRequest, FinishReason, Role, Tier, Usage};
use futures::StreamExt;

const SECOND: Duration = Duration::from_secs(1);
const LIMIT: usize = 64 * 1024;
const KINDS: [ProviderKind; 5] = [
    ProviderKind::Openai,
    ProviderKind::OpenaiCompatible,
    ProviderKind::Anthropic,
    ProviderKind::Gemini,
    ProviderKind::Ollama,
];

fn start() -> FakeUpstream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    FakeUpstream::start(listener, FakeOptions::default()).unwrap()
}

/// A provider of `kind` with one model (named after the kind) served by the fake.
fn target(fake_url: &str, kind: ProviderKind) -> (Provider, Model, Option<Secret>) {
    let (name, path, key) = match kind {
        ProviderKind::Openai => ("gpt-4o-mini", "/v1/chat/completions".into(), Some("sk-t")),
        ProviderKind::OpenaiCompatible => ("qwen3-8b", "/keyless/v1/chat/completions".into(), None),
        ProviderKind::Anthropic => ("claude-sonnet-4-5", "/v1/messages".into(), Some("ak-t")),
        ProviderKind::Gemini => (
            "gemini-2.5-flash",
            "/v1beta/models/gemini-2.5-flash:generateContent".to_string(),
            Some("gk-t"),
        ),
        ProviderKind::Ollama => ("llama3.2", "/api/chat".into(), None),
    };
    let model = Model {
        name: name.to_string(),
        endpoint: format!("{fake_url}{path}"),
        cost_per_1k_input: 0.001,
        cost_per_1k_output: 0.002,
        cost_per_1k_tokens: 0.0015,
        tier: Tier::Low,
        supports_thinking: false,
        avg_response_time_ms: 1000,
        version: None,
    };
    let provider = Provider {
        name: kind.as_str().to_string(),
        kind,
        keys: Vec::new(),
        models: vec![model.clone()],
        rpd_timezone: chrono_tz::Tz::UTC,
        connect_timeout: SECOND,
        call_timeout: 10 * SECOND,
    };
    (provider, model, key.map(Secret::new))
}

fn request() -> ChatRequest {
    ChatRequest {
        messages: vec![
            ChatMessage::new(Role::System, "be brief"),
            ChatMessage::new(Role::User, "hello big wide world"),
        ]
        .into(),
        options: ChatOptions::default(),
        disable_thinking: false,
        tooling: Default::default(),
    }
}

async fn open(
    fake_url: &str,
    kind: ProviderKind,
    connect: Duration,
    idle: Duration,
) -> Result<UpstreamStream, UpstreamError> {
    let (provider, model, key) = target(fake_url, kind);
    let req = build_stream_request(&provider, &model, key.as_ref(), &request());
    call_stream(&awc::Client::default(), kind, &req, connect, idle, LIMIT).await
}

async fn collect(stream: UpstreamStream) -> Vec<Result<StreamEvent, UpstreamError>> {
    stream.collect().await
}

#[actix_web::test]
async fn each_api_streams_the_same_answer_as_without_streaming() {
    let fake = start();
    for kind in KINDS {
        let (provider, model, key) = target(&fake.url(), kind);
        let plain = build_request(&provider, &model, key.as_ref(), &request());
        let client = awc::Client::default();
        let whole = call(
            &client,
            kind,
            &plain,
            10 * SECOND,
            LIMIT,
            &bkvy::budget::ByteBudget::new(usize::MAX),
        )
        .await
        .unwrap();
        let stream = open(&fake.url(), kind, SECOND, SECOND).await.unwrap();
        let items = collect(stream).await;
        let mut text = String::new();
        let mut deltas = 0;
        let mut end: Option<(FinishReason, Option<String>, Usage)> = None;
        for item in items {
            assert!(end.is_none(), "{kind:?}: an item after Done");
            match item.unwrap() {
                StreamEvent::Delta(t) => {
                    assert!(!t.is_empty());
                    deltas += 1;
                    text.push_str(&t);
                }
                StreamEvent::ThinkingDelta(_) => {}
                StreamEvent::ToolCall(c) => panic!("{kind:?}: a tool call nobody asked for: {c:?}"),
                StreamEvent::Done {
                    finish_reason,
                    raw_finish_reason,
                    usage,
                } => end = Some((finish_reason, raw_finish_reason, usage)),
            }
        }
        let expected = format!("[{}] hello big wide world", model.name);
        assert_eq!(text, expected, "{kind:?}");
        assert_eq!(whole.content, expected, "{kind:?}");
        assert!(deltas >= 2, "{kind:?}: {deltas} deltas");
        let (finish, raw, usage) = end.unwrap_or_else(|| panic!("{kind:?}: no Done"));
        assert_eq!(finish, whole.finish_reason, "{kind:?}");
        assert_eq!(raw, whole.raw_finish_reason, "{kind:?}");
        assert_eq!(usage, whole.usage, "{kind:?}");
        assert!(
            usage.input_tokens > 0 && usage.output_tokens > 0,
            "{kind:?}"
        );
    }
    // The stream switch as each API has it (Gemini: another method and alt=sse).
    let reqs = fake.requests();
    let streamed: Vec<_> = reqs.iter().skip(1).step_by(2).collect();
    assert_eq!(streamed[0].body["stream"], true);
    assert_eq!(streamed[0].body["stream_options"]["include_usage"], true);
    assert_eq!(streamed[2].body["stream"], true);
    let gemini = streamed.iter().find(|r| r.api == FakeApi::Gemini).unwrap();
    assert!(gemini.path.ends_with(":streamGenerateContent"));
    assert_eq!(gemini.query, "alt=sse");
    assert_eq!(gemini.credential.as_deref(), Some("gk-t"));
    assert_eq!(streamed[4].body["stream"], true);
    fake.stop().await;
}

#[actix_web::test]
async fn errors_before_the_stream_are_classified_like_call() {
    let fake = start();
    for kind in KINDS {
        let (_, model, _) = target(&fake.url(), kind);
        fake.script(&model.name, [Fault::rate_limited(7), Fault::status(500)]);
        let e = open(&fake.url(), kind, SECOND, SECOND).await.err().unwrap();
        assert!(
            matches!(e, UpstreamError::RateLimited { retry_after: Some(d), .. } if d == 7 * SECOND),
            "{kind:?}: {e:?}"
        );
        let e = open(&fake.url(), kind, SECOND, SECOND).await.err().unwrap();
        assert!(
            matches!(e, UpstreamError::Server { status: 500, .. }),
            "{kind:?}: {e:?}"
        );
    }
    fake.stop().await;
}

/// A stream that must fail: the number of deltas that came first, and the error last.
async fn failing(fake: &FakeUpstream, kind: ProviderKind, fault: Fault) -> (usize, UpstreamError) {
    let (_, model, _) = target(&fake.url(), kind);
    fake.script(&model.name, [fault.clone()]);
    let stream = open(&fake.url(), kind, SECOND, 5 * SECOND).await.unwrap();
    let mut items = collect(stream).await;
    let last = items
        .pop()
        .unwrap_or_else(|| panic!("{kind:?} {fault:?}: empty"));
    for item in &items {
        assert!(
            matches!(
                item,
                Ok(StreamEvent::Delta(_) | StreamEvent::ThinkingDelta(_))
            ),
            "{kind:?} {fault:?}: {item:?}"
        );
    }
    let e = last
        .err()
        .unwrap_or_else(|| panic!("{kind:?} {fault:?}: ended without an error"));
    (items.len(), e)
}

#[actix_web::test]
async fn broken_streams_end_in_an_error_never_in_done() {
    let fake = start();
    for kind in KINDS {
        let (_, e) = failing(&fake, kind, Fault::Malformed).await;
        assert!(
            matches!(e, UpstreamError::Malformed { .. }),
            "{kind:?}: {e:?}"
        );
        // The first half of the answer arrives as it was sent, then the error.
        let (deltas, e) = failing(&fake, kind, Fault::Truncated).await;
        assert!(deltas >= 1, "{kind:?}: no delta before the cut");
        assert!(
            matches!(
                e,
                UpstreamError::Malformed { .. } | UpstreamError::Connection { .. }
            ),
            "{kind:?}: {e:?}"
        );
        let (_, e) = failing(&fake, kind, Fault::EmptyContent).await;
        assert!(
            matches!(e, UpstreamError::Malformed { ref message } if message.starts_with("empty content")),
            "{kind:?}: {e:?}"
        );
    }
    fake.stop().await;
}

#[actix_web::test]
async fn a_hanging_upstream_times_out_before_the_head() {
    let fake = start();
    for kind in [ProviderKind::Openai, ProviderKind::Gemini] {
        let (_, model, _) = target(&fake.url(), kind);
        fake.script(&model.name, [Fault::Hang]);
        let started = Instant::now();
        let e = open(&fake.url(), kind, Duration::from_millis(300), SECOND)
            .await
            .err()
            .unwrap();
        assert!(matches!(e, UpstreamError::Timeout), "{kind:?}: {e:?}");
        assert!(started.elapsed() < 3 * SECOND);
    }
    fake.stop().await;
}

#[actix_web::test]
async fn a_refused_connection_is_a_connection_error() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let e = open(&url, ProviderKind::Ollama, SECOND, SECOND)
        .await
        .err()
        .unwrap();
    assert!(matches!(e, UpstreamError::Connection { .. }), "{e:?}");
}

/// One OpenAI chunk, then silence for longer than any test waits.
async fn stalls() -> actix_web::HttpResponse {
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"},\"finish_reason\":null}]}\n\n";
    let body = futures::stream::once(async move {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(first.as_bytes()))
    })
    .chain(futures::stream::once(async {
        actix_web::rt::time::sleep(Duration::from_secs(30)).await;
        Ok(bytes::Bytes::from_static(b"data: [DONE]\n\n"))
    }));
    actix_web::HttpResponse::Ok()
        .content_type("text/event-stream")
        .streaming(body)
}

#[actix_web::test]
async fn a_stall_mid_stream_is_an_idle_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = actix_web::HttpServer::new(|| {
        actix_web::App::new().route("/v1/chat/completions", actix_web::web::post().to(stalls))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    let url = format!("http://{addr}");
    let started = Instant::now();
    let stream = open(
        &url,
        ProviderKind::Openai,
        SECOND,
        Duration::from_millis(300),
    )
    .await
    .unwrap();
    let items = collect(stream).await;
    assert!(
        matches!(&items[0], Ok(StreamEvent::Delta(t)) if t == "partial"),
        "{items:?}"
    );
    assert!(matches!(items[1], Err(UpstreamError::Timeout)), "{items:?}");
    assert_eq!(items.len(), 2);
    assert!(started.elapsed() < 3 * SECOND);
    handle.stop(false).await;
}
