//! Anthropic Messages API.
//!
//! The API takes the system prompt as a top-level `system` string, requires strict
//! user/assistant alternation, and requires `max_tokens`; so system messages are joined,
//! consecutive same-role turns merged, and `max_tokens` always sent (4096 by default).
//! Thinking is off unless a `thinking` object is sent, so "thinking off" sends nothing
//! (`budget_tokens: 0`, as the original sent, is rejected: the minimum is 1024).
//! `top_p` is dropped when `temperature` is also given (current models reject both).
//! A conversation that does not start with a user turn is passed on as it is; the API
//! answers 400 (BadRequest), which is the caller's error to see.

use awc::http::header::{self, HeaderName};
use serde_json::{json, Map, Value};

use super::{
    answer, count, split_and_merge, split_and_merge_parts, stop_sequences, tools, UpstreamError,
    UpstreamRequest,
};
use crate::config::{Model, Secret};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};

/// `max_tokens` when the request does not set one.
const DEFAULT_MAX_TOKENS: u32 = 4096;
/// `anthropic-version` when the model does not set one.
const DEFAULT_VERSION: &str = "2023-06-01";

pub(super) fn build(
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
    stream: bool,
) -> UpstreamRequest {
    let (mut system, messages) = if tools::has_tool_turns(req) {
        let (system, turns) = split_and_merge_parts(req, api_role, content_blocks);
        let messages: Vec<Value> = turns
            .into_iter()
            .map(|(role, blocks)| json!({"role": role, "content": blocks}))
            .collect();
        (system, messages)
    } else {
        let (system, turns) = split_and_merge(req);
        let messages: Vec<Value> = turns
            .iter()
            .map(|(role, text)| json!({"role": role.as_str(), "content": text}))
            .collect();
        (system, messages)
    };
    if req.tooling.response_format == ResponseFormat::JsonObject {
        let s = system.get_or_insert_with(String::new);
        if !s.is_empty() {
            s.push_str("\n\n");
        }
        s.push_str(JSON_OBJECT_INSTRUCTION);
    }
    let mut body = Map::new();
    body.insert("model".into(), json!(model.name));
    let o = &req.options;
    body.insert(
        "max_tokens".into(),
        json!(o.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS)),
    );
    if let Some(system) = system {
        body.insert("system".into(), json!(system));
    }
    body.insert("messages".into(), Value::Array(messages));
    insert_tooling(&mut body, req);
    if let Some(t) = o.temperature {
        body.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
    }
    // Current models (Opus 4.1 and later, Sonnet/Haiku 4.5) reject temperature and
    // top_p together; older ones accept either alone. So top_p goes only without temperature.
    if let (Some(p), None) = (o.top_p, o.temperature) {
        body.insert("top_p".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(k) = o.top_k {
        body.insert("top_k".into(), json!(k));
    }
    if let Some(stop) = stop_sequences(req) {
        body.insert("stop_sequences".into(), json!(stop));
    }
    if stream {
        body.insert("stream".into(), json!(true));
    }
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push((HeaderName::from_static("x-api-key"), k.expose().to_string()));
    }
    let version = model.version.as_deref().unwrap_or(DEFAULT_VERSION);
    headers.push((
        HeaderName::from_static("anthropic-version"),
        version.to_string(),
    ));
    headers.push((header::CONTENT_TYPE, "application/json".to_string()));
    UpstreamRequest {
        url: model.endpoint.clone(),
        headers,
        body: super::json_body(&body),
    }
}

/// Anthropic has no JSON-object mode; the model is told instead (a JSON schema uses the
/// API's structured output, `output_config.format`).
const JSON_OBJECT_INSTRUCTION: &str =
    "Respond with a single valid JSON object only, with no text or code fences around it.";

/// Tool results are user turns.
fn api_role(role: Role) -> &'static str {
    match role {
        Role::Assistant => "assistant",
        _ => "user",
    }
}

/// A message as content blocks: text, `tool_use` for the assistant's calls, and
/// `tool_result` for a tool message. Empty text blocks are left out (the API refuses them).
fn content_blocks(m: &ChatMessage) -> Vec<Value> {
    let mut blocks = Vec::new();
    if m.role == Role::Tool {
        let id = tools::safe_id(m.tool_call_id.as_deref().unwrap_or_default());
        blocks.push(json!({"type": "tool_result", "tool_use_id": id, "content": m.content}));
        return blocks;
    }
    if !m.content.is_empty() || m.tool_calls.is_empty() {
        blocks.push(json!({"type": "text", "text": m.content}));
    }
    for c in &m.tool_calls {
        blocks.push(json!({
            "type": "tool_use",
            "id": tools::safe_id(&c.id),
            "name": c.name,
            "input": tools::arguments_object(&c.arguments),
        }));
    }
    blocks
}

/// `tools` with `input_schema`, `tool_choice` (`auto`, `any`, `tool`, `none`; parallel
/// calls switched off inside it), and a JSON schema as `output_config.format`.
fn insert_tooling(body: &mut Map<String, Value>, req: &ChatRequest) {
    let t = &req.tooling;
    if !req.tooling.tools.is_empty() {
        let list: Vec<Value> = t
            .tools
            .iter()
            .map(|d| {
                let mut tool = tools::declaration(d, "input_schema");
                tool.entry("input_schema")
                    .or_insert_with(|| json!({"type": "object", "properties": {}}));
                Value::Object(tool)
            })
            .collect();
        body.insert("tools".into(), Value::Array(list));
        let mut choice = match req.tooling.tool_choice.as_ref() {
            None => None,
            Some(ToolChoice::Auto) => Some(json!({"type": "auto"})),
            Some(ToolChoice::None) => Some(json!({"type": "none"})),
            Some(ToolChoice::Required) => Some(json!({"type": "any"})),
            Some(ToolChoice::Function(name)) => Some(json!({"type": "tool", "name": name})),
        };
        if t.parallel_tool_calls == Some(false)
            && choice.as_ref().is_none_or(|c| c["type"] != "none")
        {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            c["disable_parallel_tool_use"] = json!(true);
        }
        if let Some(c) = choice {
            body.insert("tool_choice".into(), c);
        }
    }
    if let ResponseFormat::JsonSchema {
        schema: Some(schema),
        ..
    } = &t.response_format
    {
        body.insert(
            "output_config".into(),
            json!({"format": {"type": "json_schema", "schema": schema}}),
        );
    }
}

pub(super) fn parse(json: &Value) -> Result<ChatResponse, UpstreamError> {
    let blocks = json
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| UpstreamError::Malformed {
            message: "no content array in response".into(),
        })?;
    let content: String = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let calls: Vec<ToolCall> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("tool_use"))
        .filter_map(|b| {
            Some(ToolCall {
                id: b.get("id").and_then(Value::as_str)?.to_owned(),
                name: b.get("name").and_then(Value::as_str)?.to_owned(),
                arguments: tools::arguments_text(b.get("input")),
            })
        })
        .collect();
    let raw = json
        .get("stop_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let finish = finish_reason(raw.as_deref());
    let usage = Usage {
        input_tokens: input_tokens(json),
        output_tokens: count(json, "/usage/output_tokens"),
        thinking_tokens: 0,
    };
    answer(content, calls, usage, finish, raw)
}

/// The normalised `stop_reason` (shared with the streaming parser).
pub(super) fn finish_reason(raw: Option<&str>) -> FinishReason {
    match raw {
        Some("end_turn" | "stop_sequence") => FinishReason::Stop,
        Some("max_tokens" | "model_context_window_exceeded") => FinishReason::Length,
        Some("tool_use") => FinishReason::ToolCalls,
        Some("refusal") => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

/// Prompt tokens of a value holding a `usage` object. Cached prompt tokens are reported
/// apart from `input_tokens`; all of them were read.
pub(super) fn input_tokens(json: &Value) -> u64 {
    count(json, "/usage/input_tokens")
        + count(json, "/usage/cache_creation_input_tokens")
        + count(json, "/usage/cache_read_input_tokens")
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{build_request, parse_response, UpstreamError};
    use crate::config::{ProviderKind, Secret};
    use crate::types::{FinishReason, Role};
    use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
    use serde_json::json;
    use std::time::Duration;

    const URL: &str = "https://api.anthropic.com/v1/messages";

    fn build(req: &crate::types::ChatRequest, thinking: bool) -> super::UpstreamRequest {
        let p = provider(ProviderKind::Anthropic);
        let m = model("claude-sonnet-4-5", URL, thinking);
        build_request(&p, &m, Some(&Secret::new("sk-ant-secret")), req)
    }

    #[test]
    fn no_options_and_headers() {
        let r = build(&simple(), false);
        assert_eq!(r.url, URL);
        assert_eq!(
            r.body_json(),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
                   "messages": [{"role": "user", "content": "Hi"}]})
        );
        assert_eq!(header(&r, "x-api-key"), Some("sk-ant-secret"));
        assert_eq!(header(&r, "anthropic-version"), Some("2023-06-01"));
        assert_eq!(header(&r, "content-type"), Some("application/json"));
        assert!(header(&r, "authorization").is_none());
        assert!(!format!("{r:?}").contains("sk-ant-secret"));
        let p = provider(ProviderKind::Anthropic);
        let mut m = model("claude-3-5-haiku", URL, false);
        m.version = Some("2024-01-01".into());
        let r = build_request(&p, &m, Some(&Secret::new("k")), &simple());
        assert_eq!(header(&r, "anthropic-version"), Some("2024-01-01"));
    }

    #[test]
    fn all_options_clamped() {
        let mut req = simple();
        req.options = all_options();
        req.options.temperature = Some(1.7);
        assert_eq!(
            build(&req, false).body_json(),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 256,
                   "messages": [{"role": "user", "content": "Hi"}],
                   "temperature": 1.0, "top_k": 40, "stop_sequences": ["END"]})
        );
        req.options.temperature = None;
        assert_eq!(build(&req, false).body_json()["top_p"], json!(0.9));
    }

    #[test]
    fn systems_joined_and_turns_merged() {
        let req = with_messages(vec![
            msg(Role::System, "Be brief."),
            msg(Role::User, "Hi"),
            msg(Role::User, "Are you there?"),
            msg(Role::System, "Answer in French."),
            msg(Role::Assistant, "Oui."),
            msg(Role::Assistant, "Bonjour."),
            msg(Role::User, "Thanks"),
        ]);
        assert_eq!(
            build(&req, false).body_json(),
            json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
                   "system": "Be brief.\n\nAnswer in French.",
                   "messages": [
                       {"role": "user", "content": "Hi\n\nAre you there?"},
                       {"role": "assistant", "content": "Oui.\n\nBonjour."},
                       {"role": "user", "content": "Thanks"}]})
        );
    }

    #[test]
    fn thinking_off_sends_nothing() {
        let expected = json!({"model": "claude-sonnet-4-5", "max_tokens": 4096,
                              "messages": [{"role": "user", "content": "Hi"}]});
        assert_eq!(build(&no_thinking(), true).body_json(), expected);
        assert_eq!(build(&no_thinking(), false).body_json(), expected);
    }

    fn ok(body: serde_json::Value) -> Result<crate::types::ChatResponse, UpstreamError> {
        parse_response(
            ProviderKind::Anthropic,
            200,
            &no_headers(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn parses_text_blocks_usage_and_reasons() {
        let r = ok(json!({
            "id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "x"},
                        {"type": "text", "text": "Hello"}, {"type": "text", "text": " there"}],
            "stop_reason": "end_turn", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5,
                      "cache_read_input_tokens": 100, "output_tokens": 7}
        }))
        .unwrap();
        assert_eq!(r.content, "Hello there");
        assert_eq!(
            (r.finish_reason, r.raw_finish_reason.as_deref()),
            (FinishReason::Stop, Some("end_turn"))
        );
        assert_eq!(
            (
                r.usage.input_tokens,
                r.usage.output_tokens,
                r.usage.thinking_tokens
            ),
            (115, 7, 0)
        );
        let reason = |stop: &str, text: &str| {
            ok(json!({"content": [{"type": "text", "text": text}], "stop_reason": stop}))
                .map(|r| r.finish_reason)
        };
        assert_eq!(reason("stop_sequence", "a").unwrap(), FinishReason::Stop);
        assert_eq!(reason("max_tokens", "").unwrap(), FinishReason::Length);
        assert_eq!(reason("refusal", "").unwrap(), FinishReason::ContentFilter);
        assert_eq!(reason("tool_use", "").unwrap(), FinishReason::ToolCalls);
        assert_eq!(reason("pause_turn", "a").unwrap(), FinishReason::Other);
        assert_eq!(
            reason("end_turn", "").unwrap_err().kind(),
            "malformed_response"
        );
        assert_eq!(
            ok(json!({"type": "message"})).unwrap_err().kind(),
            "malformed_response"
        );
    }

    #[test]
    fn classifies_errors() {
        let err = |status: u16, kind: &str, headers: &HeaderMap| {
            let body = json!({"type": "error", "error": {"type": kind, "message": format!("{kind} happened")}});
            parse_response(
                ProviderKind::Anthropic,
                status,
                headers,
                body.to_string().as_bytes(),
            )
            .unwrap_err()
        };
        let h = no_headers();
        assert!(matches!(
            err(401, "authentication_error", &h),
            UpstreamError::Auth { status: 401, .. }
        ));
        assert!(matches!(
            err(403, "permission_error", &h),
            UpstreamError::Auth { status: 403, .. }
        ));
        assert!(matches!(
            err(529, "overloaded_error", &h),
            UpstreamError::Server { status: 529, .. }
        ));
        assert!(matches!(
            err(500, "api_error", &h),
            UpstreamError::Server { status: 500, .. }
        ));
        assert!(matches!(
            err(413, "request_too_large", &h),
            UpstreamError::BadRequest { status: 413, .. }
        ));
        let e = err(400, "invalid_request_error", &h);
        assert_eq!(
            e.to_string(),
            "upstream rejected the request (400): invalid_request_error happened"
        );
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_static("retry-after"),
            HeaderValue::from_static("12"),
        );
        let e = err(429, "rate_limit_error", &h);
        assert!(
            matches!(e, UpstreamError::RateLimited { retry_after: Some(d), .. } if d == Duration::from_secs(12))
        );
        let mut h = HeaderMap::new();
        let reset = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc3339();
        h.insert(
            HeaderName::from_static("anthropic-ratelimit-requests-reset"),
            HeaderValue::from_str(&reset).unwrap(),
        );
        match err(429, "rate_limit_error", &h) {
            UpstreamError::RateLimited {
                retry_after: Some(d),
                ..
            } => {
                assert!(d > Duration::from_secs(25) && d <= Duration::from_secs(30));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
