//! OpenAI Chat Completions, also spoken by OpenAI-compatible servers (vLLM, llama.cpp,
//! LM Studio, Ollama's `/v1`).
//!
//! The two kinds differ only where the real APIs do: OpenAI wants
//! `max_completion_tokens` (reasoning models reject `max_tokens`), has no `top_k`, and
//! switches reasoning down with `reasoning_effort`; compatible servers take `max_tokens`
//! and `top_k`, and switch Qwen3-style thinking off through `chat_template_kwargs`.

use serde_json::{json, Map, Value};

use super::{answer, stop_sequences, thinking_off, tools, UpstreamError, UpstreamRequest};
use crate::config::{Model, ProviderKind, Secret};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};

/// The request body, serialised straight from the request: no intermediate `Value`
/// tree (whose ordered maps hash every key) for the common fields. Fields are written in
/// this order and only when set.
#[derive(serde::Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: Messages<'a>,
    /// `tools`, `tool_choice`, `parallel_tool_calls`, `response_format` (rare; empty
    /// writes nothing).
    #[serde(flatten)]
    tooling: Map<String, Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    top_k: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stop: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chat_template_kwargs: Option<ThinkingSwitch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stream_options: Option<StreamOptions>,
}

/// `{"enable_thinking": false}` (Qwen3-style chat templates).
#[derive(serde::Serialize)]
struct ThinkingSwitch {
    enable_thinking: bool,
}

/// `{"include_usage": true}`: the usage chunk at the end of a stream.
#[derive(serde::Serialize)]
struct StreamOptions {
    include_usage: bool,
}

/// The conversation, each message written by [`Message`].
struct Messages<'a>(&'a [ChatMessage]);

impl serde::Serialize for Messages<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(Message))
    }
}

/// One message: `{"role", "content"}` written directly, tool calls and results through
/// [`message`].
struct Message<'a>(&'a ChatMessage);

impl serde::Serialize for Message<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let m = self.0;
        if m.role == Role::Tool || !m.tool_calls.is_empty() {
            return message(m).serialize(s);
        }
        let mut map = s.serialize_map(Some(2))?;
        map.serialize_entry("role", m.role.as_str())?;
        map.serialize_entry("content", &m.content)?;
        map.end()
    }
}

/// Builds the call; `stream` adds `"stream": true` and asks for the usage chunk.
pub(super) fn build(
    kind: ProviderKind,
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
    stream: bool,
) -> UpstreamRequest {
    let is_openai = kind == ProviderKind::Openai;
    let o = &req.options;
    let thinking_off = thinking_off(model, req);
    let body = Body {
        model: &model.name,
        messages: Messages(&req.messages),
        tooling: tooling(req),
        max_completion_tokens: o.max_tokens.filter(|_| is_openai),
        max_tokens: o.max_tokens.filter(|_| !is_openai),
        temperature: o.temperature.map(|t| t.clamp(0.0, 2.0)),
        top_p: o.top_p.map(|p| p.clamp(0.0, 1.0)),
        top_k: o.top_k.filter(|_| !is_openai),
        stop: stop_sequences(req).map(Vec::as_slice),
        // gpt-5 accepts "minimal"; o1/o3/o4 only go down to "low".
        reasoning_effort: (thinking_off && is_openai).then(|| {
            if model.name.starts_with("gpt-5") {
                "minimal"
            } else {
                "low"
            }
        }),
        chat_template_kwargs: (thinking_off && !is_openai).then_some(ThinkingSwitch {
            enable_thinking: false,
        }),
        stream: stream.then_some(true),
        stream_options: stream.then_some(StreamOptions {
            include_usage: true,
        }),
    };
    let key = key.map(Secret::expose).filter(|k| !k.is_empty());
    super::bearer_post(model, key, super::json_body(&body))
}

/// One message in the Chat Completions shape, tool calls and results included.
fn message(m: &ChatMessage) -> Value {
    match m.role {
        Role::Tool => json!({"role": "tool", "tool_call_id": m.tool_call_id, "content": m.content}),
        Role::Assistant if !m.tool_calls.is_empty() => {
            let calls: Vec<Value> = m.tool_calls.iter().map(call_json).collect();
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        role => json!({"role": role.as_str(), "content": m.content}),
    }
}

/// A tool call as OpenAI sends and takes it.
pub fn call_json(c: &ToolCall) -> Value {
    json!({"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}})
}

/// `tools`, `tool_choice`, `parallel_tool_calls` and `response_format`, passed through
/// in OpenAI's own shape (OpenAI-compatible servers take the same fields).
fn tooling(req: &ChatRequest) -> Map<String, Value> {
    let mut body = Map::new();
    let t = &req.tooling;
    if !t.tools.is_empty() {
        let tools: Vec<Value> = t
            .tools
            .iter()
            .map(|d| json!({"type": "function", "function": d}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = &t.tool_choice {
            body.insert("tool_choice".into(), choice_json(choice));
        }
        if let Some(p) = t.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), json!(p));
        }
    }
    match &t.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        ResponseFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        } => {
            let mut spec = Map::new();
            spec.insert("name".into(), json!(name));
            if let Some(d) = description {
                spec.insert("description".into(), json!(d));
            }
            if let Some(s) = schema {
                spec.insert("schema".into(), s.clone());
            }
            if let Some(s) = strict {
                spec.insert("strict".into(), json!(s));
            }
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": spec}),
            );
        }
    }
    body
}

/// `tool_choice` in OpenAI's shape.
pub(crate) fn choice_json(choice: &ToolChoice) -> Value {
    match choice {
        ToolChoice::Auto => json!("auto"),
        ToolChoice::None => json!("none"),
        ToolChoice::Required => json!("required"),
        ToolChoice::Function(name) => json!({"type": "function", "function": {"name": name}}),
    }
}

/// The fields of an answer bkvy reads, borrowed from the body where possible: reading
/// them without building a `Value` tree is most of the cost of a small answer. Anything
/// unusual (no choices or message, a field of another type, duplicate keys) makes this
/// fail, and [`parse`] then reports it exactly as before.
#[derive(serde::Deserialize)]
struct Typed<'a> {
    #[serde(borrow)]
    choices: Vec<TypedChoice<'a>>,
    #[serde(default)]
    usage: Option<TypedUsage>,
}

#[derive(serde::Deserialize)]
struct TypedChoice<'a> {
    #[serde(borrow)]
    message: Option<TypedMessage<'a>>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct TypedMessage<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
}

#[derive(serde::Deserialize)]
struct TypedUsage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens_details: Option<TypedDetails>,
}

#[derive(serde::Deserialize)]
struct TypedDetails {
    #[serde(default)]
    reasoning_tokens: Option<u64>,
}

/// The answer read straight from the body, or `None` when it needs [`parse`] (see
/// [`Typed`]); both give the same result for every body the typed reading accepts.
pub(super) fn parse_bytes(body: &[u8]) -> Option<Result<ChatResponse, UpstreamError>> {
    let typed: Typed<'_> = crate::json::from_bytes(body).ok()?;
    let choice = typed.choices.into_iter().next()?;
    let message = choice.message?;
    let raw = choice.finish_reason.map(std::borrow::Cow::into_owned);
    let finish = finish_reason(raw.as_deref());
    let calls = tools::calls_from_openai(message.tool_calls.as_ref());
    let usage = typed.usage.map_or_else(Usage::default, |u| {
        let reasoning = u.completion_tokens_details.and_then(|d| d.reasoning_tokens);
        usage_of(u.prompt_tokens, u.completion_tokens, reasoning)
    });
    let content = message
        .content
        .map(std::borrow::Cow::into_owned)
        .unwrap_or_default();
    Some(answer(content, calls, usage, finish, raw))
}

pub(super) fn parse(json: &Value) -> Result<ChatResponse, UpstreamError> {
    let choice = json
        .pointer("/choices/0")
        .ok_or_else(|| UpstreamError::Malformed {
            message: "no choices in response".into(),
        })?;
    let message = choice
        .get("message")
        .ok_or_else(|| UpstreamError::Malformed {
            message: "choice has no message".into(),
        })?;
    let content = match message.get("content") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(UpstreamError::Malformed {
                message: "message content is not a string".into(),
            })
        }
    };
    let raw = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let finish = finish_reason(raw.as_deref());
    let calls = tools::calls_from_openai(message.get("tool_calls"));
    answer(content, calls, usage(json), finish, raw)
}

/// The normalised `finish_reason` (shared with the streaming parser).
pub(super) fn finish_reason(raw: Option<&str>) -> FinishReason {
    match raw {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        Some("content_filter") => FinishReason::ContentFilter,
        Some("tool_calls" | "function_call") => FinishReason::ToolCalls,
        _ => FinishReason::Other,
    }
}

/// The `usage` object of an answer or of a stream's last chunk.
pub(super) fn usage(json: &Value) -> Usage {
    let get = |p: &str| json.pointer(p).and_then(Value::as_u64);
    usage_of(
        get("/usage/prompt_tokens"),
        get("/usage/completion_tokens"),
        get("/usage/completion_tokens_details/reasoning_tokens"),
    )
}

/// The counts OpenAI reports, missing ones as 0. `completion_tokens` includes the
/// reasoning tokens; bkvy reports them separately.
fn usage_of(prompt: Option<u64>, completion: Option<u64>, reasoning: Option<u64>) -> Usage {
    let reasoning = reasoning.unwrap_or(0);
    Usage {
        input_tokens: prompt.unwrap_or(0),
        output_tokens: completion.unwrap_or(0).saturating_sub(reasoning),
        thinking_tokens: reasoning,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{build_request, parse_response};
    use crate::config::{ProviderKind, Secret};
    use crate::types::{FinishReason, Role};
    use serde_json::json;

    const URL: &str = "https://api.openai.com/v1/chat/completions";

    fn key() -> Secret {
        Secret::new("sk-test-123")
    }

    #[test]
    fn openai_no_options() {
        let p = provider(ProviderKind::Openai);
        let m = model("gpt-4o-mini", URL, false);
        let r = build_request(&p, &m, Some(&key()), &simple());
        assert_eq!(r.url, URL);
        assert_eq!(
            r.body_json(),
            json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]})
        );
        assert_eq!(header(&r, "Authorization"), Some("Bearer sk-test-123"));
        assert_eq!(header(&r, "Content-Type"), Some("application/json"));
        assert_eq!(r.headers.len(), 2);
        assert!(!format!("{r:?}").contains("sk-test-123"));
        // The bytes sent, compact and in a fixed field order.
        assert_eq!(
            std::str::from_utf8(&r.body).unwrap(),
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Hi"}]}"#
        );
    }

    #[test]
    fn openai_all_options_and_system() {
        let p = provider(ProviderKind::Openai);
        let m = model("gpt-4o-mini", URL, false);
        let mut req = with_messages(vec![msg(Role::System, "Be brief."), msg(Role::User, "Hi")]);
        req.options = all_options();
        let r = build_request(&p, &m, Some(&key()), &req);
        assert_eq!(
            r.body_json(),
            json!({
                "model": "gpt-4o-mini",
                "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                "max_completion_tokens": 256, "temperature": 0.5, "top_p": 0.9, "stop": ["END"]
            })
        );
    }

    #[test]
    fn compatible_all_options_without_key() {
        let p = provider(ProviderKind::OpenaiCompatible);
        let m = model(
            "qwen3-8b",
            "http://localhost:8000/v1/chat/completions",
            false,
        );
        let mut req = simple();
        req.options = all_options();
        req.options.temperature = Some(3.5);
        let r = build_request(&p, &m, None, &req);
        assert_eq!(
            r.body_json(),
            json!({
                "model": "qwen3-8b", "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": 256, "temperature": 2.0, "top_p": 0.9, "top_k": 40, "stop": ["END"]
            })
        );
        assert_eq!(
            r.headers,
            vec![(
                awc::http::header::CONTENT_TYPE,
                "application/json".to_string()
            )]
        );
        let r = build_request(&p, &m, Some(&key()), &simple());
        assert_eq!(header(&r, "authorization"), Some("Bearer sk-test-123"));
    }

    #[test]
    fn thinking_off() {
        let p = provider(ProviderKind::Openai);
        let body = |name: &str, thinking: bool| {
            build_request(
                &p,
                &model(name, URL, thinking),
                Some(&key()),
                &no_thinking(),
            )
            .body_json()
        };
        assert_eq!(
            body("gpt-5-mini", true)["reasoning_effort"],
            json!("minimal")
        );
        assert_eq!(body("o4-mini", true)["reasoning_effort"], json!("low"));
        assert_eq!(
            body("gpt-4o", false),
            json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}]})
        );
        assert!(body("o3", true).get("reasoning").is_none());
        let p = provider(ProviderKind::OpenaiCompatible);
        let m = model("qwen3-8b", URL, true);
        assert_eq!(
            build_request(&p, &m, None, &no_thinking()).body_json(),
            json!({"model": "qwen3-8b", "messages": [{"role": "user", "content": "Hi"}],
                   "chat_template_kwargs": {"enable_thinking": false}})
        );
        let m = model("llama3", URL, false);
        assert!(build_request(&p, &m, None, &no_thinking())
            .body_json()
            .get("chat_template_kwargs")
            .is_none());
    }

    fn ok(body: serde_json::Value) -> Result<crate::types::ChatResponse, super::UpstreamError> {
        parse_response(
            ProviderKind::Openai,
            200,
            &no_headers(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn parses_success_with_reasoning_tokens() {
        let r = ok(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": "o4-mini",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!", "refusal": null},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 90, "total_tokens": 102,
                      "completion_tokens_details": {"reasoning_tokens": 64}}
        }))
        .unwrap();
        assert_eq!(r.content, "Hello!");
        assert_eq!(r.finish_reason, FinishReason::Stop);
        assert_eq!(r.raw_finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            (
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.thinking_tokens
            ),
            (12, 26, 64)
        );
    }

    #[test]
    fn parses_length_filter_tools_and_empty() {
        let choice = |content: serde_json::Value, finish: &str| json!({"choices": [{"message": {"role": "assistant", "content": content}, "finish_reason": finish}]});
        let r = ok(choice(json!(null), "length")).unwrap();
        assert_eq!(
            (r.content.as_str(), r.finish_reason),
            ("", FinishReason::Length)
        );
        assert_eq!(r.usage.total(), 0);
        let r = ok(choice(json!(""), "content_filter")).unwrap();
        assert_eq!(r.finish_reason, FinishReason::ContentFilter);
        let r = ok(choice(json!(null), "tool_calls")).unwrap();
        assert_eq!(r.finish_reason, FinishReason::ToolCalls);
        let e = ok(choice(json!(""), "stop")).unwrap_err();
        assert_eq!(e.kind(), "malformed_response");
        assert_eq!(
            ok(json!({"choices": []})).unwrap_err().kind(),
            "malformed_response"
        );
        let e = parse_response(ProviderKind::Openai, 200, &no_headers(), b"{\"choices\": [")
            .unwrap_err();
        assert_eq!(e.kind(), "malformed_response");
    }

    #[test]
    fn classifies_errors() {
        let err = |status: u16, body: &str| {
            parse_response(ProviderKind::Openai, status, &no_headers(), body.as_bytes())
                .unwrap_err()
        };
        let e = err(
            401,
            r#"{"error": {"message": "Incorrect API key provided: sk-abc***xyz.", "type": "invalid_request_error", "code": "invalid_api_key"}}"#,
        );
        assert!(matches!(e, super::UpstreamError::Auth { status: 401, .. }));
        assert_eq!(
            e.to_string(),
            "upstream refused the credentials (401): Incorrect API key provided: sk-abc***xyz."
        );
        let e = err(
            400,
            r#"{"error": {"message": "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens; rate exceeded", "type": "invalid_request_error", "code": "context_length_exceeded"}}"#,
        );
        assert_eq!(e.kind(), "bad_request");
        let e = err(
            429,
            r#"{"error": {"message": "Rate limit reached for gpt-4o", "type": "requests", "code": "rate_limit_exceeded"}}"#,
        );
        assert!(
            matches!(e, super::UpstreamError::RateLimited { retry_after: None, ref message } if message == "Rate limit reached for gpt-4o")
        );
        let mut h = awc::http::header::HeaderMap::new();
        for (name, value) in [
            ("x-ratelimit-remaining-requests", "0"),
            ("x-ratelimit-reset-requests", "6m0s"),
            ("x-ratelimit-remaining-tokens", "1000"),
            ("x-ratelimit-reset-tokens", "250ms"),
        ] {
            h.insert(
                awc::http::header::HeaderName::from_static(name),
                awc::http::header::HeaderValue::from_static(value),
            );
        }
        let e = parse_response(ProviderKind::Openai, 429, &h, b"{}").unwrap_err();
        assert!(matches!(
            e,
            super::UpstreamError::RateLimited { retry_after: Some(d), ref message }
                if d == std::time::Duration::from_secs(360) && message == "HTTP 429"
        ));
        h.insert(
            awc::http::header::HeaderName::from_static("retry-after-ms"),
            awc::http::header::HeaderValue::from_static("1500"),
        );
        let e = parse_response(ProviderKind::Openai, 429, &h, b"{}").unwrap_err();
        assert!(matches!(
            e,
            super::UpstreamError::RateLimited { retry_after: Some(d), .. }
                if d == std::time::Duration::from_millis(1500)
        ));
        assert_eq!(
            err(500, "<html>oops 500</html>").to_string(),
            "upstream server error (500): HTTP 500"
        );
        assert_eq!(err(503, "").kind(), "server_error");
        assert_eq!(
            err(
                404,
                r#"{"error": {"message": "The model `x` does not exist"}}"#
            )
            .kind(),
            "bad_request"
        );
        assert_eq!(err(302, "").kind(), "bad_request");
    }
}

#[cfg(test)]
mod typed_tests {
    use proptest::prelude::*;
    use serde_json::{json, Value};

    /// The typed reading, when it accepts a body, says what the `Value` reading says.
    fn agree(body: &[u8]) {
        if let Some(fast) = super::parse_bytes(body) {
            let json: Value = serde_json::from_slice(body).unwrap();
            let slow = super::parse(&json);
            // Made-up tool call ids differ; everything else must match.
            let strip = |r: Result<crate::types::ChatResponse, super::UpstreamError>| {
                r.map(|mut a| {
                    for c in &mut a.tool_calls {
                        c.id.clear();
                    }
                    a
                })
                .map_err(|e| e.to_string())
            };
            assert_eq!(
                strip(fast),
                strip(slow),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    fn any_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            (0u64..1_000).prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            "[a-z\"\\\\ ]{0,8}".prop_map(Value::from),
            Just(json!([])),
            Just(json!({})),
        ]
    }

    proptest! {
        #[test]
        fn typed_and_tree_readings_agree(
            content in any_value(),
            finish in any_value(),
            prompt in any_value(),
            completion in any_value(),
            reasoning in any_value(),
            with_message in any::<bool>(),
            with_usage in any::<bool>(),
            calls in prop_oneof![Just(Value::Null), Just(json!([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])), Just(json!("x"))],
        ) {
            let mut choice = json!({"index": 0, "finish_reason": finish});
            if with_message {
                choice["message"] = json!({"role": "assistant", "content": content, "tool_calls": calls});
            }
            let mut body = json!({"id": "x", "choices": [choice]});
            if with_usage {
                body["usage"] = json!({"prompt_tokens": prompt, "completion_tokens": completion,
                    "completion_tokens_details": {"reasoning_tokens": reasoning}});
            }
            agree(body.to_string().as_bytes());
        }
    }

    #[test]
    fn odd_bodies_agree_or_fall_back() {
        for body in [
            r#"{"choices":[]}"#,
            r#"{"choices":[{"message":null,"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"message":{"content":"a","content":"b"},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"message":{"content":"caf\u00e9 \"q\""},"finish_reason":"stop"}],"usage":null}"#,
            r#"[1,2]"#,
            r#"not json"#,
        ] {
            agree(body.as_bytes());
        }
        let answer = super::parse_bytes(
            br#"{"choices":[{"message":{"content":"caf\u00e9"},"finish_reason":"length"}],"usage":{"prompt_tokens":3,"completion_tokens":9,"completion_tokens_details":{"reasoning_tokens":4}}}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(answer.content, "café");
        assert_eq!(
            (
                answer.usage.input_tokens,
                answer.usage.output_tokens,
                answer.usage.thinking_tokens
            ),
            (3, 5, 4)
        );
    }
}
