//! Anthropic Messages (`POST /v1/messages`).
//!
//! Checks what the real API checks and adapters get wrong: `x-api-key` and
//! `anthropic-version` headers, required `max_tokens`, only `user`/`assistant` roles
//! (the system prompt is a top-level field), non-empty content, and the extended
//! thinking rules (budget ≥ 1024 and below `max_tokens`; temperature only 1 and no
//! `top_k` while thinking).
//!
//! Thinking on: the answer starts with a `thinking` block of [`THINKING_TOKENS`] words,
//! which are included in `output_tokens` as the real API bills them.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::exchange::{self, Flavor, Incoming, Reject, Success};
use super::state::Shared;
use super::stream;
use super::text::{self, Answer, Finish, THINKING_TOKENS, THOUGHT};
use super::FakeApi;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "system",
    "temperature",
    "top_p",
    "top_k",
    "stop_sequences",
    "thinking",
    "metadata",
    "stream",
    "tools",
    "tool_choice",
    "service_tier",
];

/// `anthropic-version` values the API accepts.
const VERSIONS: &[&str] = &["2023-06-01", "2023-01-01"];

/// `POST /v1/messages`.
pub(crate) async fn messages(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    exchange::serve(
        &shared,
        &req,
        &body,
        FakeApi::Anthropic,
        Flavor::Anthropic,
        None,
        check,
    )
    .await
}

/// Anthropic's error shape.
pub(crate) fn error_body(r: &Reject) -> Value {
    let kind = match r.status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 | 503 => "overloaded_error",
        _ if r.status >= 500 => "api_error",
        _ => "invalid_request_error",
    };
    json!({"type": "error", "error": {"type": kind, "message": r.message}})
}

/// Checks `x-api-key` and `anthropic-version`.
pub(crate) fn check_headers(req: &HttpRequest) -> Result<(), Reject> {
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    if header("x-api-key").trim().is_empty() {
        return Err(Reject::new(401, "x-api-key header is required"));
    }
    let version = header("anthropic-version");
    if version.is_empty() {
        return Err(Reject::bad("anthropic-version: header is required"));
    }
    if !VERSIONS.contains(&version) {
        return Err(Reject::bad(format!(
            "anthropic-version: invalid version '{version}'"
        )));
    }
    Ok(())
}

fn check(i: &Incoming<'_>) -> Result<Success, Reject> {
    check_headers(i.req)?;
    let body = i
        .json
        .ok_or_else(|| {
            Reject::bad("There was an error parsing the body of your request: not valid JSON")
        })?
        .as_object()
        .ok_or_else(|| Reject::bad("Input should be a valid dictionary or object"))?;
    if let Some(k) = text::unknown_key(body, KNOWN) {
        return Err(Reject::bad(format!("{k}: Extra inputs are not permitted")));
    }
    let model = match text::get(body, "model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        Some(_) => return Err(Reject::bad("model: Input should be a valid string")),
        None => return Err(Reject::bad("model: Field required")),
    };
    let max_tokens = match text::get(body, "max_tokens") {
        None => return Err(Reject::bad("max_tokens: Field required")),
        Some(v) => match v.as_i64() {
            Some(n) if n >= 1 => n,
            Some(_) => {
                return Err(Reject::bad(
                    "max_tokens: Input should be greater than or equal to 1",
                ))
            }
            None => return Err(Reject::bad("max_tokens: Input should be a valid integer")),
        },
    };
    let system_words = system(body)?;
    let (message_words, last_user) = check_messages(body)?;
    let temperature = text::number_in(body, "temperature", 0.0, 1.0).map_err(field)?;
    text::number_in(body, "top_p", 0.0, 1.0).map_err(field)?;
    let top_k = text::int_in(body, "top_k", 0, i64::MAX).map_err(field)?;
    let stops = text::string_list(body, "stop_sequences", usize::MAX).map_err(field)?;
    metadata(body)?;
    let streaming = text::boolean(body, "stream")
        .map_err(field)?
        .unwrap_or(false);
    let thinking = thinking(body, max_tokens)?;
    if thinking {
        if temperature.is_some_and(|t| t != 1.0) {
            return Err(Reject::bad(
                "`temperature` may only be set to 1 when thinking is enabled. Please consult our documentation.",
            ));
        }
        if top_k.is_some() {
            return Err(Reject::bad(
                "`top_k` is not compatible with thinking. Please consult our documentation.",
            ));
        }
    }
    let max = u64::try_from(max_tokens).ok();
    let answer = Answer::new(model, &last_user, max, &stops);
    let input = system_words + message_words;
    Ok(Success {
        normal: reply(model, input, thinking, &answer),
        empty: reply(model, input, thinking, &Answer::empty()),
        stream: streaming.then(stream::anthropic),
    })
}

fn field(message: String) -> Reject {
    Reject::bad(message)
}

/// `system`: a string or a list of text blocks; returns its word count.
fn system(body: &Map<String, Value>) -> Result<u64, Reject> {
    match text::get(body, "system") {
        None => Ok(0),
        Some(Value::String(s)) => Ok(text::words(s)),
        Some(Value::Array(blocks)) => {
            let mut n = 0;
            for (idx, b) in blocks.iter().enumerate() {
                let t = (b.get("type").and_then(Value::as_str) == Some("text"))
                    .then(|| b.get("text").and_then(Value::as_str))
                    .flatten()
                    .ok_or_else(|| Reject::bad(format!("system.{idx}: expected a text block {{\"type\": \"text\", \"text\": ...}}")))?;
                n += text::words(t);
            }
            Ok(n)
        }
        Some(_) => Err(Reject::bad(
            "system: Input should be a valid string or a list of text blocks",
        )),
    }
}

/// Checks the messages; returns the input word count and the last user text.
fn check_messages(body: &Map<String, Value>) -> Result<(u64, String), Reject> {
    let list = match text::get(body, "messages") {
        None => return Err(Reject::bad("messages: Field required")),
        Some(Value::Array(l)) => l,
        Some(_) => return Err(Reject::bad("messages: Input should be a valid list")),
    };
    if list.is_empty() {
        return Err(Reject::bad("messages: at least one message is required"));
    }
    let mut input = 0;
    let mut last_user = String::new();
    for (idx, m) in list.iter().enumerate() {
        let m = m.as_object().ok_or_else(|| {
            Reject::bad(format!(
                "messages.{idx}: Input should be a valid dictionary"
            ))
        })?;
        if let Some(k) = text::unknown_key(m, &["role", "content"]) {
            return Err(Reject::bad(format!(
                "messages.{idx}.{k}: Extra inputs are not permitted"
            )));
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if role != "user" && role != "assistant" {
            return Err(Reject::bad(format!(
                "messages.{idx}.role: Input should be 'user' or 'assistant'"
            )));
        }
        let content = content_text(m.get("content"))
            .map_err(|e| Reject::bad(format!("messages.{idx}.content: {e}")))?;
        let final_assistant = role == "assistant" && idx + 1 == list.len();
        let empty = match m.get("content") {
            Some(Value::Array(blocks)) => blocks.is_empty(),
            _ => content.trim().is_empty(),
        };
        if empty && !final_assistant {
            return Err(Reject::bad(format!(
                "messages.{idx}: all messages must have non-empty content except for the optional final assistant message"
            )));
        }
        input += text::words(&content);
        if role == "user" {
            last_user = content;
        }
    }
    Ok((input, last_user))
}

/// A string, or a list of blocks with a `type` (text of `text` blocks joined).
fn content_text(content: Option<&Value>) -> Result<String, String> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(blocks)) => {
            let mut texts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(
                        b.get("text")
                            .and_then(Value::as_str)
                            .ok_or("a text block needs a string `text`")?,
                    ),
                    Some(_) => {}
                    None => return Err("each content block needs a string `type`".into()),
                }
            }
            Ok(texts.join(" "))
        }
        None => Err("Field required".into()),
        Some(_) => Err("Input should be a valid string or a list of content blocks".into()),
    }
}

fn metadata(body: &Map<String, Value>) -> Result<(), Reject> {
    match text::get(body, "metadata") {
        None => Ok(()),
        Some(Value::Object(m)) => match text::unknown_key(m, &["user_id"]) {
            Some(k) => Err(Reject::bad(format!(
                "metadata.{k}: Extra inputs are not permitted"
            ))),
            None => text::string(m, "user_id").map(|_| ()).map_err(field),
        },
        Some(_) => Err(Reject::bad("metadata: Input should be a valid dictionary")),
    }
}

/// Checks `thinking`; returns whether it is enabled.
fn thinking(body: &Map<String, Value>, max_tokens: i64) -> Result<bool, Reject> {
    let Some(t) = text::get(body, "thinking") else {
        return Ok(false);
    };
    let t = t
        .as_object()
        .ok_or_else(|| Reject::bad("thinking: Input should be a valid dictionary"))?;
    match t.get("type").and_then(Value::as_str) {
        Some("disabled") => match text::unknown_key(t, &["type"]) {
            Some(k) => Err(Reject::bad(format!("thinking.disabled.{k}: Extra inputs are not permitted"))),
            None => Ok(false),
        },
        Some("enabled") => {
            if let Some(k) = text::unknown_key(t, &["type", "budget_tokens"]) {
                return Err(Reject::bad(format!("thinking.enabled.{k}: Extra inputs are not permitted")));
            }
            let budget = match t.get("budget_tokens").and_then(Value::as_i64) {
                Some(b) => b,
                None => return Err(Reject::bad("thinking.enabled.budget_tokens: Field required")),
            };
            if budget < 1024 {
                return Err(Reject::bad(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024",
                ));
            }
            if budget >= max_tokens {
                return Err(Reject::bad(format!(
                    "`max_tokens` must be greater than `thinking.budget_tokens`. Got max_tokens={max_tokens}, budget_tokens={budget}."
                )));
            }
            Ok(true)
        }
        _ => Err(Reject::bad("thinking: Input tag found using 'type' does not match any of the expected tags: 'enabled', 'disabled'")),
    }
}

fn reply(model: &str, input: u64, thinking: bool, answer: &Answer) -> Value {
    let (stop_reason, stop_sequence) = match &answer.finish {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::Sequence(s) => ("stop_sequence", Value::String(s.clone())),
    };
    let mut content = Vec::new();
    if thinking {
        content
            .push(json!({"type": "thinking", "thinking": THOUGHT, "signature": "fake-signature"}));
    }
    content.push(json!({"type": "text", "text": answer.text}));
    let thought = if thinking { THINKING_TOKENS } else { 0 };
    json!({
        "id": format!("msg_{}", uuid::Uuid::new_v4().simple()),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": {
            "input_tokens": input,
            "output_tokens": answer.tokens() + thought,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    })
}
