//! Micro-benchmarks of the request translation every upstream call pays: building the
//! provider request (its body serialised to bytes, as sent) and parsing the
//! provider's answer, for OpenAI, Anthropic, Gemini and Ollama. Run with
//! `cargo bench --bench providers`.

// Benchmark set-up may panic on impossible states; that is not production code.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use bkvy::config::{Model, Provider, ProviderKind, Secret};
use bkvy::providers::{build_request, parse_response};
use bkvy::types::{ChatMessage, ChatOptions, ChatRequest, Role, Tier};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn provider(kind: ProviderKind) -> Provider {
    Provider {
        name: kind.as_str().to_owned(),
        kind,
        keys: Vec::new(),
        models: Vec::new(),
        rpd_timezone: chrono_tz::Tz::UTC,
        connect_timeout: Duration::from_secs(10),
        call_timeout: Duration::from_secs(120),
    }
}

fn model(name: &str, endpoint: &str, supports_thinking: bool) -> Model {
    Model {
        name: name.to_owned(),
        endpoint: endpoint.to_owned(),
        cost_per_1k_input: 0.00015,
        cost_per_1k_output: 0.0006,
        cost_per_1k_tokens: 0.0004,
        tier: Tier::Low,
        supports_thinking,
        avg_response_time_ms: 800,
        version: None,
    }
}

/// The TensorZero benchmark prompt, plus options every adapter maps.
fn small_request() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::new(Role::User, "Is Santa real?".to_owned())].into(),
        options: ChatOptions {
            max_tokens: Some(100),
            temperature: Some(0.7),
            ..ChatOptions::default()
        },
        disable_thinking: true,
        tooling: Default::default(),
    }
}

/// About 10 KB of conversation: a system prompt and 20 alternating turns.
fn large_request() -> ChatRequest {
    let mut messages = vec![ChatMessage::new(
        Role::System,
        "You are a careful assistant. ".repeat(10),
    )];
    for i in 0..20 {
        let role = if i % 2 == 0 {
            Role::User
        } else {
            Role::Assistant
        };
        messages.push(ChatMessage::new(
            role,
            format!("Turn {i}: {}", "lorem ipsum dolor sit amet ".repeat(18)),
        ));
    }
    ChatRequest {
        messages: messages.into(),
        options: ChatOptions {
            max_tokens: Some(512),
            temperature: Some(0.2),
            stop: Some(vec!["END".to_owned()]),
            ..ChatOptions::default()
        },
        disable_thinking: false,
        tooling: Default::default(),
    }
}

const OPENAI_OK: &str = r#"{"id":"chatcmpl-9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e","object":"chat.completion","created":1767225600,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Santa Claus is a legendary figure; the tradition is real, the man at the North Pole is not.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":21,"total_tokens":33,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_0123456789"}"#;

const ANTHROPIC_OK: &str = r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","model":"claude-3-5-haiku-20241022","content":[{"type":"text","text":"Santa Claus is a legendary figure; the tradition is real, the man at the North Pole is not."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":21,"service_tier":"standard"}}"#;

const GEMINI_OK: &str = r#"{"candidates":[{"content":{"parts":[{"text":"Santa Claus is a legendary figure; the tradition is real, the man at the North Pole is not."}],"role":"model"},"finishReason":"STOP","index":0,"safetyRatings":[{"category":"HARM_CATEGORY_HARASSMENT","probability":"NEGLIGIBLE"},{"category":"HARM_CATEGORY_HATE_SPEECH","probability":"NEGLIGIBLE"}]}],"usageMetadata":{"promptTokenCount":12,"candidatesTokenCount":21,"totalTokenCount":33,"promptTokensDetails":[{"modality":"TEXT","tokenCount":12}]},"modelVersion":"gemini-2.5-flash","responseId":"AbCdEfGhIjKlMnOpQrStUv"}"#;

const OLLAMA_OK: &str = r#"{"model":"llama3.2:3b","created_at":"2026-01-01T00:00:00.000000Z","message":{"role":"assistant","content":"Santa Claus is a legendary figure; the tradition is real, the man at the North Pole is not."},"done_reason":"stop","done":true,"total_duration":512345678,"load_duration":1234567,"prompt_eval_count":12,"prompt_eval_duration":23456789,"eval_count":21,"eval_duration":456789012}"#;

const OPENAI_ERROR: &str = r#"{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}"#;

struct Case {
    name: &'static str,
    provider: Provider,
    model: Model,
    key: Option<Secret>,
    ok_body: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "openai",
            provider: provider(ProviderKind::Openai),
            model: model(
                "gpt-4o-mini",
                "https://api.openai.com/v1/chat/completions",
                false,
            ),
            key: Some(Secret::new("sk-bench-0123456789")),
            ok_body: OPENAI_OK,
        },
        Case {
            name: "anthropic",
            provider: provider(ProviderKind::Anthropic),
            model: model(
                "claude-3-5-haiku-latest",
                "https://api.anthropic.com/v1/messages",
                false,
            ),
            key: Some(Secret::new("sk-ant-bench-0123456789")),
            ok_body: ANTHROPIC_OK,
        },
        Case {
            name: "gemini",
            provider: provider(ProviderKind::Gemini),
            model: model(
                "gemini-2.5-flash",
                "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
                true,
            ),
            key: Some(Secret::new("AIza-bench-0123456789")),
            ok_body: GEMINI_OK,
        },
        Case {
            name: "ollama",
            provider: provider(ProviderKind::Ollama),
            model: model("llama3.2:3b", "http://127.0.0.1:11434/api/chat", false),
            key: None,
            ok_body: OLLAMA_OK,
        },
    ]
}

/// `build_request`, which serialises the body to the bytes the HTTP client sends.
fn build(c: &mut Criterion) {
    let requests = [("small", small_request()), ("10kb", large_request())];
    let mut g = c.benchmark_group("providers/build_and_serialise");
    for case in cases() {
        for (size, req) in &requests {
            g.bench_function(BenchmarkId::new(case.name, size), |b| {
                b.iter(|| {
                    black_box(build_request(
                        &case.provider,
                        &case.model,
                        case.key.as_ref(),
                        black_box(req),
                    ))
                });
            });
        }
    }
    g.finish();
}

/// `parse_response` of a 200 answer in each provider's real shape.
fn parse(c: &mut Criterion) {
    let headers = awc::http::header::HeaderMap::new();
    let mut g = c.benchmark_group("providers/parse_response");
    for case in cases() {
        g.throughput(Throughput::Bytes(case.ok_body.len() as u64));
        g.bench_function(case.name, |b| {
            b.iter(|| {
                black_box(
                    parse_response(
                        case.provider.kind,
                        200,
                        &headers,
                        black_box(case.ok_body.as_bytes()),
                    )
                    .unwrap(),
                )
            });
        });
    }
    g.throughput(Throughput::Bytes(OPENAI_ERROR.len() as u64));
    g.bench_function("openai_500_error", |b| {
        b.iter(|| {
            black_box(
                parse_response(
                    ProviderKind::Openai,
                    500,
                    &headers,
                    black_box(OPENAI_ERROR.as_bytes()),
                )
                .unwrap_err(),
            )
        });
    });
    g.finish();
}

criterion_group!(benches, build, parse);
criterion_main!(benches);
