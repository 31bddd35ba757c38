//! Google Gemini `generateContent`.
//!
//! The key travels only in the `x-goog-api-key` header: a `key=` query parameter in a
//! configured endpoint is stripped, so keys never reach URLs (and logs of URLs).
//! System messages go to `systemInstruction`, assistant turns get role `model`, and
//! consecutive same-role turns are merged. Thinking off is `thinkingBudget: 0`, except on
//! Pro models, which cannot switch thinking off and reject 0: they get the minimum, 128.
//! A prompt blocked before generation (no candidates, `promptFeedback.blockReason`) is an
//! empty answer with finish reason `content_filter`, like a blocked candidate.

use awc::http::header::{self, HeaderName};
use serde_json::{json, Map, Value};

use super::{
    answer, count, split_and_merge, split_and_merge_parts, stop_sequences, thinking_off, tools,
    UpstreamError, UpstreamRequest,
};
use crate::config::{Model, Secret};
use crate::types::{
    ChatMessage, ChatRequest, ChatResponse, FinishReason, ResponseFormat, Role, ToolCall,
    ToolChoice, Usage,
};

/// The smallest thinking budget Gemini Pro models accept.
const PRO_MIN_THINKING_BUDGET: u32 = 128;

pub(super) fn build(model: &Model, key: Option<&Secret>, req: &ChatRequest) -> UpstreamRequest {
    let (system, contents) = if tools::has_tool_turns(req) {
        let needs_signature = model.name.to_ascii_lowercase().contains("gemini-3");
        let (system, turns) =
            split_and_merge_parts(req, api_role, |m| parts_of(m, req, needs_signature));
        let contents: Vec<Value> = turns
            .into_iter()
            .map(|(role, parts)| json!({"role": role, "parts": parts}))
            .collect();
        (system, contents)
    } else {
        let (system, turns) = split_and_merge(req);
        let contents: Vec<Value> = turns
            .iter()
            .map(|(role, text)| json!({"role": api_role(*role), "parts": [{"text": text}]}))
            .collect();
        (system, contents)
    };
    let mut body = Map::new();
    body.insert("contents".into(), Value::Array(contents));
    if let Some(system) = system {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system}]}),
        );
    }
    let o = &req.options;
    let mut config = Map::new();
    if let Some(n) = o.max_tokens {
        config.insert("maxOutputTokens".into(), json!(n));
    }
    if let Some(t) = o.temperature {
        config.insert("temperature".into(), json!(t.clamp(0.0, 2.0)));
    }
    if let Some(p) = o.top_p {
        config.insert("topP".into(), json!(p.clamp(0.0, 1.0)));
    }
    if let Some(k) = o.top_k {
        config.insert("topK".into(), json!(k));
    }
    if let Some(stop) = stop_sequences(req) {
        config.insert("stopSequences".into(), json!(stop));
    }
    if thinking_off(model, req) {
        let budget = if model.name.to_ascii_lowercase().contains("pro") {
            PRO_MIN_THINKING_BUDGET
        } else {
            0
        };
        config.insert("thinkingConfig".into(), json!({"thinkingBudget": budget}));
    }
    match &req.tooling.response_format {
        ResponseFormat::Text => {}
        ResponseFormat::JsonObject => {
            config.insert("responseMimeType".into(), json!("application/json"));
        }
        ResponseFormat::JsonSchema { schema, .. } => {
            config.insert("responseMimeType".into(), json!("application/json"));
            if let Some(schema) = schema {
                config.insert("responseJsonSchema".into(), schema.clone());
            }
        }
    }
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    insert_tools(&mut body, req);
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push((
            HeaderName::from_static("x-goog-api-key"),
            k.expose().to_string(),
        ));
    }
    headers.push((header::CONTENT_TYPE, "application/json".to_string()));
    UpstreamRequest {
        url: strip_key_param(&model.endpoint),
        headers,
        body: super::json_body(&body),
    }
}

/// Assistant turns are the `model` role; tool results are `user` turns.
fn api_role(role: Role) -> &'static str {
    match role {
        Role::Assistant => "model",
        _ => "user",
    }
}

/// A message as parts: text, a `functionCall` per tool call (with the thought signature
/// its id carries; on Gemini 3 a call without one gets the documented placeholder, as
/// the API refuses unsigned calls in the history), or a `functionResponse`.
fn parts_of(m: &ChatMessage, req: &ChatRequest, needs_signature: bool) -> Vec<Value> {
    if m.role == Role::Tool {
        let name = tools::name_of_call(req, m.tool_call_id.as_deref());
        return vec![json!({"functionResponse": {
            "name": name,
            "response": tools::result_object(&m.content),
        }})];
    }
    let mut parts = Vec::new();
    if !m.content.is_empty() || m.tool_calls.is_empty() {
        parts.push(json!({"text": m.content}));
    }
    for (i, c) in m.tool_calls.iter().enumerate() {
        let mut part = json!({"functionCall": {
            "name": c.name,
            "args": tools::arguments_object(&c.arguments),
        }});
        match tools::signature_of(&c.id) {
            Some(sig) => part["thoughtSignature"] = json!(sig),
            None if needs_signature && i == 0 => {
                part["thoughtSignature"] = json!(SKIP_SIGNATURE);
            }
            None => {}
        }
        parts.push(part);
    }
    parts
}

/// The value Gemini documents for calls whose thought signature is unknown (history
/// made by another model).
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// `tools` as `functionDeclarations` (schemas as `parametersJsonSchema`, which takes
/// JSON Schema as OpenAI clients write it) and `toolConfig.functionCallingConfig`.
fn insert_tools(body: &mut Map<String, Value>, req: &ChatRequest) {
    if req.tooling.tools.is_empty() {
        return;
    }
    let declarations: Vec<Value> = req
        .tooling
        .tools
        .iter()
        .map(|d| Value::Object(tools::declaration(d, "parametersJsonSchema")))
        .collect();
    body.insert(
        "tools".into(),
        json!([{ "functionDeclarations": declarations }]),
    );
    let config = match req.tooling.tool_choice.as_ref() {
        None => return,
        Some(ToolChoice::Auto) => json!({"mode": "AUTO"}),
        Some(ToolChoice::None) => json!({"mode": "NONE"}),
        Some(ToolChoice::Required) => json!({"mode": "ANY"}),
        Some(ToolChoice::Function(name)) => {
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
    };
    body.insert(
        "toolConfig".into(),
        json!({ "functionCallingConfig": config }),
    );
}

/// The tool calls among a candidate's parts, ids carrying any thought signature.
pub(super) fn calls_of(parts: &[Value]) -> Vec<ToolCall> {
    parts
        .iter()
        .filter_map(|p| {
            let call = p.get("functionCall")?;
            let name = call.get("name").and_then(Value::as_str)?;
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .map(tools::safe_id)
                .filter(|s| !s.is_empty())
                .unwrap_or_else(tools::new_call_id);
            let signature = p.get("thoughtSignature").and_then(Value::as_str);
            Some(ToolCall {
                id: tools::id_with_signature(&id, signature),
                name: name.to_owned(),
                arguments: tools::arguments_text(call.get("args")),
            })
        })
        .collect()
}

/// The URL without any `key=` query parameter (other parameters are kept in order).
fn strip_key_param(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let mut out = match rest.split_once('?') {
        None => rest.to_string(),
        Some((base, query)) => {
            let kept: Vec<&str> = query
                .split('&')
                .filter(|p| !p.is_empty() && p.split('=').next() != Some("key"))
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
    };
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

pub(super) fn parse(json: &Value) -> Result<ChatResponse, UpstreamError> {
    let usage = usage(json);
    let Some(candidate) = json.pointer("/candidates/0") else {
        let block = json
            .pointer("/promptFeedback/blockReason")
            .and_then(Value::as_str);
        return match block {
            Some(reason) => answer(
                String::new(),
                Vec::new(),
                usage,
                FinishReason::ContentFilter,
                Some(reason.into()),
            ),
            None => Err(UpstreamError::Malformed {
                message: "no candidates in response".into(),
            }),
        };
    };
    let parts = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let content: String = parts
        .iter()
        .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
        .filter_map(|p| p.get("text").and_then(Value::as_str))
        .collect();
    let calls = calls_of(parts);
    let raw = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let finish = finish_reason(raw.as_deref());
    answer(content, calls, usage, finish, raw)
}

/// The normalised `finishReason` (shared with the streaming parser).
pub(super) fn finish_reason(raw: Option<&str>) -> FinishReason {
    match raw {
        Some("STOP") => FinishReason::Stop,
        Some("MAX_TOKENS") => FinishReason::Length,
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => FinishReason::ContentFilter,
        _ => FinishReason::Other,
    }
}

/// The `usageMetadata` of an answer or of a streamed chunk.
pub(super) fn usage(json: &Value) -> Usage {
    Usage {
        input_tokens: count(json, "/usageMetadata/promptTokenCount"),
        output_tokens: count(json, "/usageMetadata/candidatesTokenCount"),
        thinking_tokens: count(json, "/usageMetadata/thoughtsTokenCount"),
    }
}

/// Gemini answers an invalid key with 400 `INVALID_ARGUMENT` whose `ErrorInfo` detail
/// carries the structured reason `API_KEY_INVALID`; that is an authentication failure.
pub(super) fn is_key_invalid(body: Option<&Value>) -> bool {
    body.and_then(|b| b.pointer("/error/details"))
        .and_then(Value::as_array)
        .is_some_and(|details| {
            details
                .iter()
                .any(|d| d.get("reason").and_then(Value::as_str) == Some("API_KEY_INVALID"))
        })
}

#[cfg(test)]
#[path = "gemini_tests.rs"]
mod tests;
