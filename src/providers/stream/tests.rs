//! The stream parsers fed realistic bodies split at every byte, and the request variants.

use super::driver::Core;
use super::*;
use crate::providers::test_support::*;
use crate::types::FinishReason;
use serde_json::json;

type Item = Result<StreamEvent, String>;

fn drain(core: &mut Core, out: &mut Vec<Item>) {
    while let Some(item) = core.pop() {
        out.push(item.map_err(|e| format!("{}: {e}", e.kind())));
    }
}

fn run(kind: ProviderKind, chunks: &[&[u8]]) -> Vec<Item> {
    let mut core = Core::new(kind, 4096);
    let mut out = Vec::new();
    for c in chunks {
        core.push(c);
        drain(&mut core, &mut out);
    }
    core.finish();
    drain(&mut core, &mut out);
    out
}

/// The items of `body`, checked to be the same whether it arrives whole, split at any
/// one byte, or byte by byte (UTF-8 sequences and CRLFs included).
fn every_split(kind: ProviderKind, body: &str) -> Vec<Item> {
    let bytes = body.as_bytes();
    let whole = run(kind, &[bytes]);
    for i in 0..=bytes.len() {
        assert_eq!(
            run(kind, &[&bytes[..i], &bytes[i..]]),
            whole,
            "split at {i}"
        );
    }
    let singles: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(kind, &singles), whole, "byte by byte");
    whole
}

fn delta(t: &str) -> Item {
    Ok(StreamEvent::Delta(t.into()))
}

fn thinking(t: &str) -> Item {
    Ok(StreamEvent::ThinkingDelta(t.into()))
}

fn done(finish: FinishReason, raw: &str, usage: (u64, u64, u64)) -> Item {
    Ok(StreamEvent::Done {
        finish_reason: finish,
        raw_finish_reason: Some(raw.into()),
        usage: Usage {
            input_tokens: usage.0,
            output_tokens: usage.1,
            thinking_tokens: usage.2,
        },
    })
}

fn err_with(items: &[Item], text: &str) {
    match items.last() {
        Some(Err(e)) if e.contains(text) => {}
        other => panic!("expected an error with {text:?}, got {other:?} in {items:?}"),
    }
    assert!(!items
        .iter()
        .any(|i| matches!(i, Ok(StreamEvent::Done { .. }))));
}

fn oa_chunk(delta: &str, finish: &str) -> String {
    format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"o4-mini\",\"choices\":[{{\"index\":0,\"delta\":{delta},\"logprobs\":null,\"finish_reason\":{finish}}}],\"usage\":null}}\n\n"
    )
}

const OA_USAGE: &str = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":40,\"total_tokens\":49,\"completion_tokens_details\":{\"reasoning_tokens\":32}}}\n\n";

fn oa_body() -> String {
    [
        oa_chunk(
            r#"{"role":"assistant","content":"","refusal":null}"#,
            "null",
        ),
        oa_chunk(r#"{"content":"Héllo"}"#, "null"),
        ": keep-alive\n\n".into(),
        oa_chunk(r#"{"content":" wörld 😀"}"#, "null"),
        oa_chunk("{}", "\"stop\""),
        OA_USAGE.into(),
        "data: [DONE]\n\n".into(),
    ]
    .concat()
}

#[test]
fn openai_stream() {
    let items = every_split(ProviderKind::Openai, &oa_body());
    assert_eq!(
        items,
        [
            delta("Héllo"),
            delta(" wörld 😀"),
            done(FinishReason::Stop, "stop", (9, 8, 32))
        ]
    );
    // Bytes after [DONE] are never looked at.
    let mut core = Core::new(ProviderKind::OpenaiCompatible, 4096);
    core.push(format!("{}data: garbage\n\n", oa_body()).as_bytes());
    let mut out = Vec::new();
    drain(&mut core, &mut out);
    assert_eq!(out.len(), 3);
    assert!(core.closed());
}

#[test]
fn openai_ends_and_failures() {
    let kind = ProviderKind::OpenaiCompatible;
    let hi = oa_chunk(r#"{"content":"hi"}"#, "null");
    let stop = oa_chunk("{}", "\"length\"");
    // No [DONE] but a finish reason: done, usage unknown.
    let items = run(kind, &[format!("{hi}{stop}").as_bytes()]);
    assert_eq!(
        items,
        [delta("hi"), done(FinishReason::Length, "length", (0, 0, 0))]
    );
    // Cut before any finish reason.
    err_with(
        &run(kind, &[hi.as_bytes()]),
        "stream ended before completion",
    );
    // [DONE] without a finish reason.
    let items = run(kind, &[format!("{hi}data: [DONE]\n\n").as_bytes()]);
    err_with(&items, "without a finish reason");
    // An error chunk after the head.
    let e =
        "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\"}}\n\n";
    err_with(
        &run(kind, &[hi.as_bytes(), e.as_bytes()]),
        "The server had an error",
    );
    // Not JSON (the fake's Malformed fault).
    let bad = "data: {\"id\": \"fake-malformed\", \"choices\": [\n\ndata: <html>502</html>\n\n";
    err_with(&run(kind, &[bad.as_bytes()]), "malformed_response: ");
    // No text and nothing explains it.
    let items = run(kind, &[stop.replace("length", "stop").as_bytes()]);
    err_with(&items, "empty content (finish reason: stop)");
}

#[test]
fn openai_reasoning_and_tool_calls() {
    let body = [
        oa_chunk(r#"{"role":"assistant","reasoning_content":"hmm"}"#, "null"),
        oa_chunk(
            r#"{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"f","arguments":""}}]}"#,
            "null",
        ),
        oa_chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}"#,
            "null",
        ),
        oa_chunk(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"1}"}},{"index":3,"function":{"name":"g","arguments":"{}"}}]}"#,
            "null",
        ),
        oa_chunk("{}", "\"weird\""),
        "data: [DONE]\n\n".into(),
    ]
    .concat();
    let items = run(ProviderKind::Openai, &[body.as_bytes()]);
    let piece = |index, id: Option<&str>, name: Option<&str>, args: &str| {
        Ok(StreamEvent::ToolCall(ToolCallDelta {
            index,
            id: id.map(str::to_owned),
            name: name.map(str::to_owned),
            arguments: args.to_owned(),
        }))
    };
    assert_eq!(items.len(), 6);
    assert_eq!(items[0], thinking("hmm"));
    assert_eq!(items[1], piece(0, Some("c1"), Some("f"), ""));
    assert_eq!(items[2], piece(0, None, None, "{\"a\":"));
    assert_eq!(items[3], piece(0, None, None, "1}"));
    // A call without an id gets one; upstream index 3 is the answer's second call.
    match &items[4] {
        Ok(StreamEvent::ToolCall(d)) => {
            assert_eq!(
                (d.index, d.name.as_deref(), d.arguments.as_str()),
                (1, Some("g"), "{}")
            );
            assert!(d.id.as_deref().is_some_and(|id| id.starts_with("call_")));
        }
        other => panic!("expected a tool call piece, got {other:?}"),
    }
    assert_eq!(items[5], done(FinishReason::ToolCalls, "weird", (0, 0, 0)));
}

fn an_event(name: &str, data: &str) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

fn an_body(end: bool) -> String {
    let mut events = vec![
        an_event(
            "message_start",
            r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"claude-sonnet-4-5","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":10,"cache_creation_input_tokens":5,"cache_read_input_tokens":100,"output_tokens":1}}}"#,
        ),
        an_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me think…"}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
        ),
        an_event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        an_event("ping", r#"{"type": "ping"}"#),
        an_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Grüß "}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"dich"}}"#,
        ),
        an_event(
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        an_event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"max_tokens","stop_sequence":null},"usage":{"output_tokens":57}}"#,
        ),
    ];
    if end {
        events.push(an_event("message_stop", r#"{"type":"message_stop"}"#));
    }
    events.concat()
}

#[test]
fn anthropic_stream() {
    let items = every_split(ProviderKind::Anthropic, &an_body(true));
    assert_eq!(
        items,
        [
            thinking("Let me think…"),
            delta("Grüß "),
            delta("dich"),
            done(FinishReason::Length, "max_tokens", (115, 57, 0))
        ]
    );
    let items = run(ProviderKind::Anthropic, &[an_body(false).as_bytes()]);
    assert_eq!(items.len(), 4);
    err_with(&items, "stream ended before completion");
}

#[test]
fn anthropic_error_events_are_classified() {
    let error = |kind: &str| {
        let data =
            format!(r#"{{"type":"error","error":{{"type":"{kind}","message":"{kind} now"}}}}"#);
        let mut core = Core::new(ProviderKind::Anthropic, 4096);
        core.push(an_event("error", &data).as_bytes());
        core.pop().and_then(Result::err)
    };
    assert!(matches!(
        error("overloaded_error"),
        Some(UpstreamError::Server { status: 529, ref message }) if message == "overloaded_error now"
    ));
    assert!(matches!(
        error("rate_limit_error"),
        Some(UpstreamError::RateLimited {
            retry_after: None,
            ..
        })
    ));
    assert!(matches!(
        error("api_error"),
        Some(UpstreamError::Malformed { ref message }) if message.contains("(api_error): api_error now")
    ));
}

fn gm_chunk(parts: &str, last: bool) -> String {
    let tail = if last {
        r#","finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":3,"totalTokenCount":30,"thoughtsTokenCount":20}"#
    } else {
        r#"}],"usageMetadata":{"promptTokenCount":7}"#
    };
    format!(
        "data: {{\"candidates\":[{{\"content\":{{\"parts\":{parts},\"role\":\"model\"}},\"index\":0{tail},\"modelVersion\":\"gemini-2.5-flash\"}}\r\n\r\n"
    )
}

#[test]
fn gemini_stream() {
    let body = [
        gm_chunk(r#"[{"text":"pondering","thought":true}]"#, false),
        gm_chunk(r#"[{"text":"日本"}]"#, false),
        gm_chunk(r#"[{"text":"語 ok"}]"#, true),
    ]
    .concat();
    let items = every_split(ProviderKind::Gemini, &body);
    assert_eq!(
        items,
        [
            thinking("pondering"),
            delta("日本"),
            delta("語 ok"),
            done(FinishReason::Stop, "STOP", (7, 3, 20))
        ]
    );
    // Cut before the chunk with the finish reason.
    let cut = gm_chunk(r#"[{"text":"日本"}]"#, false);
    err_with(
        &run(ProviderKind::Gemini, &[cut.as_bytes()]),
        "ended before completion",
    );
    // A blocked prompt.
    let blocked = "data: {\"promptFeedback\":{\"blockReason\":\"PROHIBITED_CONTENT\"},\"usageMetadata\":{\"promptTokenCount\":4}}\r\n\r\n";
    assert_eq!(
        run(ProviderKind::Gemini, &[blocked.as_bytes()]),
        [done(
            FinishReason::ContentFilter,
            "PROHIBITED_CONTENT",
            (4, 0, 0)
        )]
    );
    let e = "data: {\"error\":{\"code\":500,\"message\":\"Internal error\",\"status\":\"INTERNAL\"}}\r\n\r\n";
    err_with(
        &run(ProviderKind::Gemini, &[e.as_bytes()]),
        "Internal error",
    );
}

const OL_BODY: &str = concat!(
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-05-01T10:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\",\"thinking\":\"hm\"},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-05-01T10:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"Ça \"},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-05-01T10:00:00Z\",\"message\":{\"role\":\"assistant\",\"content\":\"va\"},\"done\":false}\n",
    "{\"model\":\"qwen3:8b\",\"created_at\":\"2025-05-01T10:00:01Z\",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\",\"done\":true,\"total_duration\":1,\"prompt_eval_count\":11,\"eval_count\":3}\n",
);

#[test]
fn ollama_stream() {
    let items = every_split(ProviderKind::Ollama, OL_BODY);
    assert_eq!(
        items,
        [
            thinking("hm"),
            delta("Ça "),
            delta("va"),
            done(FinishReason::Stop, "stop", (11, 3, 0))
        ]
    );
    // The final line may come without its newline.
    let items = run(ProviderKind::Ollama, &[OL_BODY.trim_end().as_bytes()]);
    assert_eq!(items.len(), 4);
    let cut: String = OL_BODY.lines().take(3).map(|l| format!("{l}\n")).collect();
    err_with(
        &run(ProviderKind::Ollama, &[cut.as_bytes()]),
        "ended before completion",
    );
    let e = "{\"error\":\"an error was encountered while running the model\"}\n";
    err_with(
        &run(ProviderKind::Ollama, &[e.as_bytes()]),
        "while running the model",
    );
}

#[test]
fn events_over_the_limit_fail() {
    // The first three lines fit in 160 bytes, the last does not: what came first is kept.
    let mut core = Core::new(ProviderKind::Ollama, 160);
    core.push(OL_BODY.as_bytes());
    let mut out = Vec::new();
    drain(&mut core, &mut out);
    assert_eq!(out.len(), 4);
    err_with(&out, "larger than 160 bytes");
    assert!(core.closed());
}

#[test]
fn stream_requests() {
    let req = simple();
    let body = |kind: ProviderKind, url: &str| {
        build_stream_request(&provider(kind), &model("m", url, false), None, &req)
    };
    let r = body(ProviderKind::Openai, "http://x/v1/chat/completions");
    assert_eq!(r.body_json()["stream"], json!(true));
    assert_eq!(
        r.body_json()["stream_options"],
        json!({"include_usage": true})
    );
    let r = body(
        ProviderKind::OpenaiCompatible,
        "http://x/v1/chat/completions",
    );
    assert_eq!(
        r.body_json()["stream_options"]["include_usage"],
        json!(true)
    );
    let r = body(ProviderKind::Anthropic, "http://x/v1/messages");
    assert_eq!(r.body_json()["stream"], json!(true));
    assert!(r.body_json().get("stream_options").is_none());
    let r = body(ProviderKind::Ollama, "http://x/api/chat");
    assert_eq!(r.body_json()["stream"], json!(true));
    let base = "https://g/v1beta/models/gemini-2.5-flash";
    let r = body(ProviderKind::Gemini, &format!("{base}:generateContent"));
    assert_eq!(r.url, format!("{base}:streamGenerateContent?alt=sse"));
    assert!(r.body_json().get("stream").is_none());
    let r = body(
        ProviderKind::Gemini,
        &format!("{base}:generateContent?key=AIza&x=1&alt=json#f"),
    );
    assert_eq!(r.url, format!("{base}:streamGenerateContent?x=1&alt=sse#f"));
    assert_eq!(
        gemini_stream_url(&format!("{base}:streamGenerateContent")),
        format!("{base}:streamGenerateContent?alt=sse")
    );
}

fn piece(index: u32, id: Option<&str>, name: Option<&str>, args: &str) -> Item {
    Ok(StreamEvent::ToolCall(ToolCallDelta {
        index,
        id: id.map(str::to_owned),
        name: name.map(str::to_owned),
        arguments: args.to_owned(),
    }))
}

#[test]
fn anthropic_tool_use_blocks_become_tool_call_pieces() {
    let body = [
        an_event(
            "message_start",
            r#"{"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":1}}}"#,
        ),
        an_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me check."}}"#,
        ),
        an_event(
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"f","input":{}}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\""}}"#,
        ),
        an_event(
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":": 1}"}}"#,
        ),
        an_event(
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":9}}"#,
        ),
        an_event("message_stop", r#"{"type":"message_stop"}"#),
    ]
    .concat();
    let items = run(ProviderKind::Anthropic, &[body.as_bytes()]);
    assert_eq!(
        items,
        [
            delta("Let me check."),
            piece(0, Some("toolu_1"), Some("f"), ""),
            piece(0, None, None, "{\"a\""),
            piece(0, None, None, ": 1}"),
            done(FinishReason::ToolCalls, "tool_use", (5, 9, 0)),
        ]
    );
}

#[test]
fn gemini_and_ollama_calls_arrive_whole_and_finish_as_tool_calls() {
    let part = r#"[{"functionCall":{"name":"f","args":{"a":1}},"thoughtSignature":"AB+/"}]"#;
    let body = gm_chunk(part, true);
    let items = run(ProviderKind::Gemini, &[body.as_bytes()]);
    assert_eq!(items.len(), 2, "{items:?}");
    match &items[0] {
        Ok(StreamEvent::ToolCall(d)) => {
            assert_eq!((d.index, d.name.as_deref()), (0, Some("f")));
            assert_eq!(d.arguments, r#"{"a":1}"#);
            assert!(d.id.as_deref().is_some_and(|id| id.ends_with("__ts_AB-_")));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        items[1],
        Ok(StreamEvent::Done {
            finish_reason: FinishReason::ToolCalls,
            ..
        })
    ));

    let lines = concat!(
        r#"{"message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f","arguments":{"a":1}}}]},"done":false}"#,
        "\n",
        r#"{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":3,"eval_count":4}"#,
        "\n"
    );
    let items = run(ProviderKind::Ollama, &[lines.as_bytes()]);
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        matches!(&items[0], Ok(StreamEvent::ToolCall(d)) if d.arguments == r#"{"a":1}"# && d.id.is_some())
    );
    assert_eq!(items[1], done(FinishReason::ToolCalls, "stop", (3, 4, 0)));
}

/// A body that sends one piece of content, then only keep-alives (SSE comments), forever.
fn content_then_keep_alives(
) -> impl futures::Stream<Item = Result<bytes::Bytes, awc::error::PayloadError>> + Unpin {
    let first = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\n";
    let head =
        futures::stream::once(async move { Ok(bytes::Bytes::from_static(first.as_bytes())) });
    let beats = futures::stream::repeat(()).then(|()| async {
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        Ok(bytes::Bytes::from_static(b": keep-alive\n\n"))
    });
    Box::pin(head.chain(beats))
}

#[actix_web::test]
async fn idleness_is_measured_on_content_not_on_keep_alives() {
    let core = Core::new(ProviderKind::Openai, 4096);
    let stream = super::driver::run(content_then_keep_alives(), core, Duration::from_millis(200));
    let items: Vec<_> = actix_web::rt::time::timeout(Duration::from_secs(5), stream.collect())
        .await
        .expect("keep-alives held the stream open past its idle timeout");
    assert_eq!(items.len(), 2, "{items:?}");
    assert!(
        matches!(&items[0], Ok(StreamEvent::Delta(t)) if t == "hi"),
        "{items:?}"
    );
    assert!(matches!(items[1], Err(UpstreamError::Timeout)), "{items:?}");
}
