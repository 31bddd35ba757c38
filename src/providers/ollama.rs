//! Ollama's native `/api/chat`.
//!
//! Ollama needs no key; an `Authorization: Bearer` header is sent only when a real key is
//! configured (not empty, not the placeholder `none_required`), for Ollama behind an
//! authenticating proxy. Options go in the `options` object under Ollama's names
//! (`num_predict` for max_tokens), and thinking is switched off with top-level `think: false`.

use serde_json::{json, Map, Value};

use super::{answer, count, stop_sequences, thinking_off, tools, UpstreamError, UpstreamRequest};
use crate::config::{Model, Secret};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolChoice, Usage,
};

/// The key value that means "no key" in providers.json.
const NO_KEY: &str = "none_required";

pub(super) fn build(
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
    stream: bool,
) -> UpstreamRequest {
    let mut body = Map::new();
    body.insert("model".into(), json!(model.name));
    let messages: Vec<Value> = req.messages.iter().map(|m| message(m, req)).collect();
    body.insert("messages".into(), Value::Array(messages));
    body.insert("stream".into(), json!(stream));
    insert_tooling(&mut body, req);
    let o = &req.options;
    let mut options = Map::new();
    if let Some(n) = o.max_tokens {
        options.insert("num_predict".into(), json!(n));
    }
    if let Some(t) = o.temperature {
        options.insert("temperature".into(), json!(t.clamp(0.0, 2.0)));
    }
    if let Some(p) = o.top_p {
        options.insert("top_p".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(k) = o.top_k {
        options.insert("top_k".into(), json!(k));
    }
    if let Some(stop) = stop_sequences(req) {
        options.insert("stop".into(), json!(stop));
    }
    if !options.is_empty() {
        body.insert("options".into(), Value::Object(options));
    }
    if thinking_off(model, req) {
        body.insert("think".into(), json!(false));
    }
    let key = key
        .map(Secret::expose)
        .filter(|k| !k.is_empty() && *k != NO_KEY);
    super::bearer_post(model, key, super::json_body(&body))
}

/// One message; tool calls carry their arguments as objects, tool results the name of
/// the function they answer (`tool_name`).
fn message(m: &ChatMessage, req: &ChatRequest) -> Value {
    match m.role {
        Role::Tool => json!({
            "role": "tool",
            "content": m.content,
            "tool_name": tools::name_of_call(req, m.tool_call_id.as_deref()),
        }),
        Role::Assistant if !m.tool_calls.is_empty() => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({"function": {"name": c.name, "arguments": tools::arguments_object(&c.arguments)}})
                })
                .collect();
            json!({"role": "assistant", "content": m.content, "tool_calls": calls})
        }
        role => json!({"role": role.as_str(), "content": m.content}),
    }
}

/// `tools` in OpenAI's shape and `format` (`"json"` or the schema). Ollama cannot force a
/// tool: `tool_choice: none` sends no tools, any other choice sends them all.
fn insert_tooling(body: &mut Map<String, Value>, req: &ChatRequest) {
    let t = &req.tooling;
    if !req.tooling.tools.is_empty() && req.tooling.tool_choice.as_ref() != Some(&ToolChoice::None)
    {
        let list: Vec<Value> = t
            .tools
            .iter()
            .map(|d| json!({"type": "function", "function": tools::declaration(d, "parameters")}))
            .collect();
        body.insert("tools".into(), Value::Array(list));
    }
    match &t.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject | ResponseFormat::JsonSchema { schema: None, .. } => {
            body.insert("format".into(), json!("json"));
        }
        ResponseFormat::JsonSchema {
            schema: Some(schema),
            ..
        } => {
            body.insert("format".into(), schema.clone());
        }
    }
}

pub(super) fn parse(json: &Value) -> Result<ChatResponse, UpstreamError> {
    let content = json
        .pointer("/message/content")
        .and_then(Value::as_str)
        .ok_or_else(|| UpstreamError::Malformed {
            message: "no message content in response".into(),
        })?
        .to_string();
    let raw = json
        .get("done_reason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let done = json.get("done").and_then(Value::as_bool) == Some(true);
    let finish = finish_reason(raw.as_deref(), done);
    let calls = tools::calls_from_openai(json.pointer("/message/tool_calls"));
    answer(content, calls, usage(json), finish, raw)
}

/// The normalised `done_reason` (shared with the streaming parser).
pub(super) fn finish_reason(raw: Option<&str>, done: bool) -> FinishReason {
    match raw {
        Some("stop") => FinishReason::Stop,
        Some("length") => FinishReason::Length,
        // Older Ollama versions send `done: true` without a reason.
        None if done => FinishReason::Stop,
        _ => FinishReason::Other,
    }
}

/// The counts of an answer or of a stream's final line.
pub(super) fn usage(json: &Value) -> Usage {
    Usage {
        input_tokens: count(json, "/prompt_eval_count"),
        output_tokens: count(json, "/eval_count"),
        thinking_tokens: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::{build_request, parse_response, UpstreamError};
    use crate::config::{ProviderKind, Secret};
    use crate::types::{FinishReason, Role};
    use serde_json::json;

    const URL: &str = "http://localhost:11434/api/chat";

    fn build(
        req: &crate::types::ChatRequest,
        thinking: bool,
        key: Option<&str>,
    ) -> super::UpstreamRequest {
        let p = provider(ProviderKind::Ollama);
        let secret = key.map(Secret::new);
        build_request(&p, &model("qwen3:8b", URL, thinking), secret.as_ref(), req)
    }

    #[test]
    fn no_options_and_auth_rules() {
        let r = build(&simple(), false, None);
        assert_eq!(r.url, URL);
        assert_eq!(
            r.body_json(),
            json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "Hi"}], "stream": false})
        );
        assert_eq!(
            r.headers,
            vec![(
                awc::http::header::CONTENT_TYPE,
                "application/json".to_string()
            )]
        );
        assert!(header(
            &build(&simple(), false, Some("none_required")),
            "authorization"
        )
        .is_none());
        assert!(header(&build(&simple(), false, Some("")), "authorization").is_none());
        let r = build(&simple(), false, Some("proxy-token"));
        assert_eq!(header(&r, "Authorization"), Some("Bearer proxy-token"));
        assert!(!format!("{r:?}").contains("proxy-token"));
    }

    #[test]
    fn all_options_system_kept_and_thinking() {
        let mut req = with_messages(vec![msg(Role::System, "Be brief."), msg(Role::User, "Hi")]);
        req.options = all_options();
        assert_eq!(
            build(&req, false, None).body_json(),
            json!({"model": "qwen3:8b",
                   "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
                   "stream": false,
                   "options": {"num_predict": 256, "temperature": 0.5, "top_p": 0.9, "top_k": 40, "stop": ["END"]}})
        );
        assert_eq!(
            build(&no_thinking(), true, None).body_json(),
            json!({"model": "qwen3:8b", "messages": [{"role": "user", "content": "Hi"}], "stream": false, "think": false})
        );
        assert!(build(&no_thinking(), false, None)
            .body_json()
            .get("think")
            .is_none());
    }

    fn ok(body: serde_json::Value) -> Result<crate::types::ChatResponse, UpstreamError> {
        parse_response(
            ProviderKind::Ollama,
            200,
            &no_headers(),
            body.to_string().as_bytes(),
        )
    }

    #[test]
    fn parses_answers() {
        let r = ok(json!({
            "model": "qwen3:8b", "created_at": "2025-05-01T10:00:00Z",
            "message": {"role": "assistant", "content": "Hello", "thinking": "hmm"},
            "done_reason": "stop", "done": true, "total_duration": 123456,
            "prompt_eval_count": 11, "eval_count": 3
        }))
        .unwrap();
        assert_eq!(r.content, "Hello");
        assert_eq!(
            (r.finish_reason, r.raw_finish_reason.as_deref()),
            (FinishReason::Stop, Some("stop"))
        );
        assert_eq!((r.usage.input_tokens, r.usage.output_tokens), (11, 3));
        let r = ok(json!({"message": {"role": "assistant", "content": ""}, "done_reason": "length", "done": true})).unwrap();
        assert_eq!(r.finish_reason, FinishReason::Length);
        let r =
            ok(json!({"message": {"role": "assistant", "content": "x"}, "done": true})).unwrap();
        assert_eq!(
            (r.finish_reason, r.raw_finish_reason),
            (FinishReason::Stop, None)
        );
        let e = ok(
            json!({"message": {"role": "assistant", "content": ""}, "done_reason": "stop", "done": true}),
        );
        assert_eq!(e.unwrap_err().kind(), "malformed_response");
        assert_eq!(
            ok(json!({"done": true})).unwrap_err().kind(),
            "malformed_response"
        );
    }

    #[test]
    fn classifies_errors() {
        let err = |status: u16, body: &str| {
            parse_response(ProviderKind::Ollama, status, &no_headers(), body.as_bytes())
                .unwrap_err()
        };
        let e = err(
            404,
            r#"{"error": "model \"qwen9\" not found, try pulling it first"}"#,
        );
        assert!(
            matches!(e, UpstreamError::BadRequest { status: 404, ref message } if message.starts_with("model"))
        );
        assert_eq!(
            err(500, r#"{"error": "llama runner process has terminated"}"#).kind(),
            "server_error"
        );
        assert_eq!(
            err(429, r#"{"error": "too many requests"}"#).kind(),
            "rate_limited"
        );
    }
}
