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
//!
//! [`FLAVOR`] tells the shared exchange where the key is (`x-api-key`) and how errors
//! look.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::exchange::{self, Credential, Flavor, Incoming, Reject, Success};
use super::state::Shared;
use super::stream;
use super::text::{self, Answer, Finish, THINKING_TOKENS, THOUGHT};
use super::tools;
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
    "output_config",
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
        FLAVOR,
        None,
        check,
    )
    .await
}

/// `x-api-key`, Anthropic's error shape.
pub(crate) const FLAVOR: Flavor = Flavor {
    credential: Credential::Header("x-api-key"),
    error_body: |r, _| error_body(r),
};

/// Anthropic's error shape.
fn error_body(r: &Reject) -> Value {
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
    let after_tool = check_tool_blocks(body)?;
    let offered = tools(body)?;
    let choice = tool_choice(body, &offered)?;
    let json_mode = output_config(body)?.or_else(|| {
        let s = text::get(body, "system")
            .and_then(Value::as_str)
            .unwrap_or("");
        s.contains("single valid JSON object")
            .then_some(tools::JsonMode::Object)
    });
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
    let mut answer = Answer::new(model, &last_user, max, &stops);
    if let Some(mode) = &json_mode {
        answer.text = tools::json_text(mode, &answer.text);
    }
    let call = tools::decide(&offered, &choice, after_tool, &last_user);
    let input = system_words + message_words;
    Ok(Success {
        normal: reply(model, input, thinking, &answer, call.as_ref()),
        empty: reply(model, input, thinking, &Answer::empty(), None),
        stream: streaming.then(stream::anthropic),
    })
}

/// `tools`: custom tools with an object `input_schema`.
fn tools(body: &Map<String, Value>) -> Result<Vec<tools::Offered>, Reject> {
    let list = match text::get(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => return Err(Reject::bad("tools: Input should be a valid list")),
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let t = t
            .as_object()
            .ok_or_else(|| Reject::bad(format!("tools.{i}: Input should be a valid dictionary")))?;
        if let Some(k) = text::unknown_key(
            t,
            &[
                "name",
                "description",
                "input_schema",
                "type",
                "cache_control",
                "strict",
            ],
        ) {
            return Err(Reject::bad(format!(
                "tools.{i}.custom.{k}: Extra inputs are not permitted"
            )));
        }
        let name = t.get("name").and_then(Value::as_str).unwrap_or_default();
        if !tools::valid_name(name, &[]) {
            return Err(Reject::bad(format!(
                "tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
            )));
        }
        let schema = match t.get("input_schema") {
            Some(s @ Value::Object(o))
                if o.get("type").and_then(Value::as_str) == Some("object") =>
            {
                s.clone()
            }
            Some(_) => {
                return Err(Reject::bad(format!(
                    "tools.{i}.custom.input_schema.type: Input should be 'object'"
                )))
            }
            None => {
                return Err(Reject::bad(format!(
                    "tools.{i}.custom.input_schema: Field required"
                )))
            }
        };
        out.push(tools::Offered {
            name: name.to_owned(),
            schema: Some(schema),
        });
    }
    Ok(out)
}

/// `tool_choice`: `auto`, `any`, `tool` (with `name`) or `none`.
fn tool_choice(
    body: &Map<String, Value>,
    offered: &[tools::Offered],
) -> Result<tools::Choice, Reject> {
    let Some(c) = text::get(body, "tool_choice") else {
        return Ok(tools::Choice::Auto);
    };
    let c = c
        .as_object()
        .ok_or_else(|| Reject::bad("tool_choice: Input should be a valid dictionary"))?;
    if offered.is_empty() {
        return Err(Reject::bad(
            "tool_choice may only be specified while providing tools.",
        ));
    }
    let extra: &[&str] = &["type", "name", "disable_parallel_tool_use"];
    if let Some(k) = text::unknown_key(c, extra) {
        return Err(Reject::bad(format!(
            "tool_choice.{k}: Extra inputs are not permitted"
        )));
    }
    text::boolean(c, "disable_parallel_tool_use").map_err(field)?;
    match c.get("type").and_then(Value::as_str) {
        Some("auto") => Ok(tools::Choice::Auto),
        Some("any") => Ok(tools::Choice::Any),
        Some("none") => Ok(tools::Choice::None),
        Some("tool") => {
            let name = c.get("name").and_then(Value::as_str).ok_or_else(|| Reject::bad("tool_choice.tool.name: Field required"))?;
            if !offered.iter().any(|t| t.name == name) {
                return Err(Reject::bad(format!("Tool '{name}' not found in provided tools")));
            }
            Ok(tools::Choice::Named(name.to_owned()))
        }
        _ => Err(Reject::bad("tool_choice: Input tag found using 'type' does not match any of the expected tags: 'auto', 'any', 'tool', 'none'")),
    }
}

/// `output_config.format`: a JSON schema the answer must follow.
fn output_config(body: &Map<String, Value>) -> Result<Option<tools::JsonMode>, Reject> {
    let Some(c) = text::get(body, "output_config") else {
        return Ok(None);
    };
    let c = c
        .as_object()
        .ok_or_else(|| Reject::bad("output_config: Input should be a valid dictionary"))?;
    if let Some(k) = text::unknown_key(c, &["format", "effort"]) {
        return Err(Reject::bad(format!(
            "output_config.{k}: Extra inputs are not permitted"
        )));
    }
    let Some(f) = c.get("format") else {
        return Ok(None);
    };
    match (f.get("type").and_then(Value::as_str), f.get("schema")) {
        (Some("json_schema"), Some(schema @ Value::Object(_))) => {
            Ok(Some(tools::JsonMode::Schema(schema.clone())))
        }
        _ => Err(Reject::bad(
            "output_config.format: expected {\"type\": \"json_schema\", \"schema\": {...}}",
        )),
    }
}

/// Checks `tool_use` blocks (assistant only, object input) and `tool_result` blocks
/// (user only, answering the `tool_use` blocks of the assistant message just before,
/// every one of them); returns whether the conversation ends with tool results.
fn check_tool_blocks(body: &Map<String, Value>) -> Result<bool, Reject> {
    let list = text::get(body, "messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut pending: Vec<String> = Vec::new();
    let mut after_tool = false;
    for (idx, m) in list.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let blocks = m
            .get("content")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let mut answered: Vec<String> = Vec::new();
        let mut used: Vec<String> = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            let at = format!("messages.{idx}.content.{b}");
            match block.get("type").and_then(Value::as_str) {
                Some("tool_use") => {
                    if role != "assistant" {
                        return Err(Reject::bad(format!(
                            "{at}: tool_use blocks may only appear in assistant messages"
                        )));
                    }
                    let id = block.get("id").and_then(Value::as_str).unwrap_or_default();
                    if id.is_empty()
                        || !id
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                    {
                        return Err(Reject::bad(format!(
                            "{at}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                        )));
                    }
                    if !block.get("input").is_some_and(Value::is_object)
                        || block.get("name").and_then(Value::as_str).is_none()
                    {
                        return Err(Reject::bad(format!(
                            "{at}.tool_use: needs a string name and an object input"
                        )));
                    }
                    used.push(id.to_owned());
                }
                Some("tool_result") => {
                    if role != "user" {
                        return Err(Reject::bad(format!(
                            "{at}: tool_result blocks may only appear in user messages"
                        )));
                    }
                    let id = block
                        .get("tool_use_id")
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if !pending.iter().any(|p| p == id) {
                        return Err(Reject::bad(format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {id}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                        )));
                    }
                    answered.push(id.to_owned());
                }
                _ => {}
            }
        }
        if let Some(missing) = pending.iter().find(|p| !answered.contains(p)) {
            return Err(Reject::bad(format!(
                "messages.{idx}: `tool_use` ids were found without `tool_result` blocks immediately after: {missing}. Each `tool_use` block must have a corresponding `tool_result` block in the next message."
            )));
        }
        if role == "user" {
            after_tool = !answered.is_empty();
        }
        pending = used;
    }
    Ok(after_tool)
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
                    Some("tool_result") => match b.get("content") {
                        Some(Value::String(s)) => texts.push(s),
                        Some(Value::Array(inner)) => texts.extend(
                            inner
                                .iter()
                                .filter_map(|i| i.get("text").and_then(Value::as_str)),
                        ),
                        _ => {}
                    },
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

fn reply(
    model: &str,
    input: u64,
    thinking: bool,
    answer: &Answer,
    call: Option<&tools::FakeCall>,
) -> Value {
    let (mut stop_reason, stop_sequence) = match &answer.finish {
        Finish::Stop => ("end_turn", Value::Null),
        Finish::Length => ("max_tokens", Value::Null),
        Finish::Sequence(s) => ("stop_sequence", Value::String(s.clone())),
    };
    let mut content = Vec::new();
    if thinking {
        content
            .push(json!({"type": "thinking", "thinking": THOUGHT, "signature": "fake-signature"}));
    }
    match call {
        Some(c) => {
            stop_reason = "tool_use";
            content.push(json!({"type": "tool_use", "id": tools::call_id("toolu_"), "name": c.name, "input": c.arguments}));
        }
        None => content.push(json!({"type": "text", "text": answer.text})),
    }
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
