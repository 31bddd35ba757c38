//! Google Gemini `generateContent`.
//!
//! The key travels only in the `x-goog-api-key` header: a `key=` query parameter in a
//! configured endpoint is stripped, so keys never reach URLs (and logs of URLs).
//! System messages go to `systemInstruction`, assistant turns get role `model`, and
//! consecutive same-role turns are merged. Thinking off is `thinkingBudget: 0`, except on
//! Pro models, which cannot switch thinking off and reject 0: they get the minimum, 128.
//! A prompt blocked before generation (no candidates, `promptFeedback.blockReason`) is an
//! empty answer with finish reason `content_filter`, like a blocked candidate.

use serde_json::{json, Map, Value};

use super::{
    answer, count, split_and_merge, stop_sequences, thinking_off, UpstreamError, UpstreamRequest,
};
use crate::config::{Model, Secret};
use crate::types::{ChatRequest, ChatResponse, FinishReason, Role, Usage};

/// The smallest thinking budget Gemini Pro models accept.
const PRO_MIN_THINKING_BUDGET: u32 = 128;

pub(super) fn build(model: &Model, key: Option<&Secret>, req: &ChatRequest) -> UpstreamRequest {
    let (system, turns) = split_and_merge(req);
    let mut body = Map::new();
    let contents: Vec<Value> = turns
        .iter()
        .map(|(role, text)| {
            let role = if *role == Role::Assistant {
                "model"
            } else {
                "user"
            };
            json!({"role": role, "parts": [{"text": text}]})
        })
        .collect();
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
    if !config.is_empty() {
        body.insert("generationConfig".into(), Value::Object(config));
    }
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push(("x-goog-api-key", k.expose().to_string()));
    }
    headers.push(("Content-Type", "application/json".to_string()));
    UpstreamRequest {
        url: strip_key_param(&model.endpoint),
        headers,
        body: Value::Object(body),
    }
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
                usage,
                FinishReason::ContentFilter,
                Some(reason.into()),
            ),
            None => Err(UpstreamError::Malformed {
                message: "no candidates in response".into(),
            }),
        };
    };
    let content: String = candidate
        .pointer("/content/parts")
        .and_then(Value::as_array)
        .map(|parts| {
            parts
                .iter()
                .filter(|p| p.get("thought").and_then(Value::as_bool) != Some(true))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let raw = candidate
        .get("finishReason")
        .and_then(Value::as_str)
        .map(str::to_string);
    let finish = finish_reason(raw.as_deref());
    answer(content, usage, finish, raw)
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
