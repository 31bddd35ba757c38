//! Provider adapters: one module per upstream API, plus [`call`], the one place an
//! upstream HTTP call is made.
//!
//! The split keeps each wire format testable without a network: [`build_request`]
//! and [`parse_response`] are pure, so golden tests pin the exact JSON each API gets
//! and every answer/error shape it can send back. Only `call` touches the network.
//! Failures are classified by HTTP status and the provider's structured error body,
//! never by matching words in messages (the original's classifier bugs came from that).

mod anthropic;
mod call;
mod error;
mod gemini;
mod ollama;
mod openai;
pub mod probe;
pub mod redact;
pub mod retry_after;
pub mod stream;
mod tools;

use std::fmt;
use std::time::SystemTime;

use awc::http::header::{self, HeaderName};
use bytes::Bytes;
use serde_json::Value;

pub use call::call;
pub use error::UpstreamError;
pub use openai::call_json as tool_call_json;
pub use redact::Redactor;

use crate::config::{Model, Provider, ProviderKind, Secret};
use crate::types::{ChatMessage, ChatRequest, ChatResponse, FinishReason, Role, ToolCall, Usage};

/// A fully built upstream call. `Debug` never prints header values (they hold the key),
/// the URL's query, or the body's contents (they hold the user's prompt).
pub struct UpstreamRequest {
    /// The full URL to `POST` to.
    pub url: String,
    /// Headers to send, including authentication (names parsed once, not per call).
    pub headers: Vec<(HeaderName, String)>,
    /// The JSON body, serialised once when the call is built (empty for a `GET`).
    pub body: Bytes,
}

impl UpstreamRequest {
    /// The body parsed back (`Null` when empty): for tests and diagnostics, never on
    /// the request path.
    pub fn body_json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// `builder` (a request to this call's URL) with this call's headers.
    fn with_headers(&self, mut builder: awc::ClientRequest) -> awc::ClientRequest {
        for (name, value) in &self.headers {
            builder = builder.insert_header((name.clone(), value.as_str()));
        }
        builder
    }

    /// Sends this call as a `POST` asking for an unencoded answer, which awc leaves as
    /// sent (for streams: awc would expand each piece of a compressed stream whole, one
    /// piece of a compression bomb into many megabytes, before any limit applies).
    fn post(&self, client: &awc::Client) -> awc::SendClientRequest {
        self.with_headers(client.post(self.url.as_str()))
            .no_decompress()
            .insert_header((awc::http::header::ACCEPT_ENCODING, "identity"))
            .send_body(self.body.clone())
    }

    /// Sends this call as a `POST` whose answer awc leaves encoded, for [`call::call`] to
    /// decode within its limit.
    fn post_encoded(&self, client: &awc::Client) -> awc::SendClientRequest {
        self.with_headers(client.post(self.url.as_str()))
            .no_decompress()
            .insert_header_if_none((awc::http::header::ACCEPT_ENCODING, call::ACCEPT_ENCODING))
            .send_body(self.body.clone())
    }
}

impl fmt::Debug for UpstreamRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let url = self.url.split(['?', '#']).next().unwrap_or_default();
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        let body = self.body_json();
        let fields: Vec<&str> = match &body {
            Value::Object(map) => map.keys().map(String::as_str).collect(),
            _ => Vec::new(),
        };
        f.debug_struct("UpstreamRequest")
            .field("url", &url)
            .field("headers", &headers)
            .field("body_fields", &fields)
            .finish()
    }
}

/// Builds the call for one provider/model/key. `key` is None for providers without a key.
pub fn build_request(
    provider: &Provider,
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
) -> UpstreamRequest {
    build(provider, model, key, req, false)
}

/// The call, with the API's stream switch in the body when `stream` (Gemini streams
/// through its URL instead, see [`stream::build_stream_request`]).
fn build(
    provider: &Provider,
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
    stream: bool,
) -> UpstreamRequest {
    match provider.kind {
        ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
            openai::build(provider.kind, model, key, req, stream)
        }
        ProviderKind::Anthropic => anthropic::build(model, key, req, stream),
        ProviderKind::Gemini => gemini::build(model, key, req),
        ProviderKind::Ollama => ollama::build(model, key, req, stream),
    }
}

/// A body serialised to bytes. Serialising these values cannot fail (every map key is a
/// string); were it to, the error is logged and the empty body is refused upstream as a
/// bad request.
fn json_body(body: &impl serde::Serialize) -> Bytes {
    match serde_json::to_vec(body) {
        Ok(bytes) => bytes.into(),
        Err(e) => {
            log::error!("upstream request body could not be serialised: {e}");
            Bytes::new()
        }
    }
}

/// Turns an upstream answer into bkvy's terms, classifying failures by HTTP status and
/// the provider's error body (never by free-text substring matching of messages).
pub fn parse_response(
    kind: ProviderKind,
    status: u16,
    headers: &awc::http::header::HeaderMap,
    body: &[u8],
) -> Result<ChatResponse, UpstreamError> {
    if (200..300).contains(&status) {
        let fast = match kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai::parse_bytes(body),
            _ => None,
        };
        if let Some(parsed) = fast {
            return parsed;
        }
        let json: Value = crate::json::from_bytes(body).map_err(|e| UpstreamError::Malformed {
            message: format!("response body is not JSON: {e}"),
        })?;
        return match kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => openai::parse(&json),
            ProviderKind::Anthropic => anthropic::parse(&json),
            ProviderKind::Gemini => gemini::parse(&json),
            ProviderKind::Ollama => ollama::parse(&json),
        };
    }
    Err(classify_error(kind, status, headers, body))
}

/// A JSON POST to the model's endpoint with `Authorization: Bearer <key>` when a key is
/// given (OpenAI, OpenAI-compatible and Ollama share this shape).
fn bearer_post(model: &Model, key: Option<&str>, body: Bytes) -> UpstreamRequest {
    let mut headers = Vec::new();
    if let Some(k) = key {
        headers.push((header::AUTHORIZATION, format!("Bearer {k}")));
    }
    headers.push((header::CONTENT_TYPE, "application/json".to_string()));
    UpstreamRequest {
        url: model.endpoint.clone(),
        headers,
        body,
    }
}

/// The error for a non-2xx answer (shared with the streaming call).
fn classify_error(
    kind: ProviderKind,
    status: u16,
    headers: &awc::http::header::HeaderMap,
    body: &[u8],
) -> UpstreamError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let message = error::error_message(json.as_ref(), status);
    match status {
        429 => UpstreamError::RateLimited {
            retry_after: retry_after::from_response(headers, json.as_ref(), SystemTime::now()),
            message,
        },
        401 | 403 => UpstreamError::Auth { status, message },
        500..=599 => UpstreamError::Server { status, message },
        400..=499 if kind == ProviderKind::Gemini && gemini::is_key_invalid(json.as_ref()) => {
            UpstreamError::Auth { status, message }
        }
        _ => UpstreamError::BadRequest { status, message },
    }
}

/// Whether this call must carry the provider's "thinking off" parameter: only when the
/// router decided so *and* the model has a thinking mode (others reject the parameter).
fn thinking_off(model: &Model, req: &ChatRequest) -> bool {
    req.disable_thinking && model.supports_thinking
}

/// The configured stop sequences, if there is at least one.
fn stop_sequences(req: &ChatRequest) -> Option<&Vec<String>> {
    req.options.stop.as_ref().filter(|s| !s.is_empty())
}

/// All system messages joined with a blank line (in order), and the other messages with
/// consecutive same-role turns merged, for APIs that need strict user/assistant alternation.
fn split_and_merge(req: &ChatRequest) -> (Option<String>, Vec<(Role, String)>) {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<(Role, String)> = Vec::new();
    for m in req.messages.iter() {
        match (m.role, turns.last_mut()) {
            (Role::System, _) => system.push(&m.content),
            (role, Some((last, text))) if *last == role => {
                text.push_str("\n\n");
                text.push_str(&m.content);
            }
            (role, _) => turns.push((role, m.content.clone())),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, turns)
}

/// The system messages joined as in [`split_and_merge`], and the other messages as
/// `(api role, parts)` with consecutive same-role turns merged by appending their parts:
/// the structured form APIs need once tool calls and results are in the conversation
/// (a tool result is a user turn for Anthropic and Gemini).
fn split_and_merge_parts(
    req: &ChatRequest,
    role_of: impl Fn(Role) -> &'static str,
    parts_of: impl Fn(&ChatMessage) -> Vec<Value>,
) -> (Option<String>, Vec<(&'static str, Vec<Value>)>) {
    let mut system: Vec<&str> = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for m in req.messages.iter() {
        if m.role == Role::System {
            system.push(&m.content);
            continue;
        }
        let role = role_of(m.role);
        let parts = parts_of(m);
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(parts),
            _ => turns.push((role, parts)),
        }
    }
    let system = (!system.is_empty()).then(|| system.join("\n\n"));
    (system, turns)
}

/// A non-negative integer at a JSON pointer; 0 when missing (never estimated).
fn count(v: &Value, pointer: &str) -> u64 {
    v.pointer(pointer).and_then(Value::as_u64).unwrap_or(0)
}

/// Builds the normalised answer, rejecting an empty text that nothing explains.
///
/// Empty content is a valid answer when the model hit the token limit, was stopped by a
/// content filter, or asked for a tool; otherwise it is a malformed response (retryable).
/// An answer with tool calls finishes with `tool_calls` whatever natural end the API
/// reported (Gemini and Ollama say `STOP`/`stop`, OpenAI `stop` for a forced call).
fn answer(
    content: String,
    tool_calls: Vec<ToolCall>,
    usage: Usage,
    finish_reason: FinishReason,
    raw_finish_reason: Option<String>,
) -> Result<ChatResponse, UpstreamError> {
    let finish_reason = with_tool_calls(finish_reason, !tool_calls.is_empty());
    if content.is_empty() && !empty_is_explained(finish_reason) {
        return Err(UpstreamError::Malformed {
            message: format!(
                "empty content (finish reason: {})",
                error::safe_text(raw_finish_reason.as_deref().unwrap_or("none"))
            ),
        });
    }
    Ok(ChatResponse {
        content,
        usage,
        finish_reason,
        raw_finish_reason,
        tool_calls,
    })
}

/// The finish reason of an answer that does (or does not) carry tool calls.
pub(super) fn with_tool_calls(finish_reason: FinishReason, has_calls: bool) -> FinishReason {
    match finish_reason {
        FinishReason::Stop | FinishReason::Other if has_calls => FinishReason::ToolCalls,
        other => other,
    }
}

/// Whether this finish reason explains an answer without text (token limit, content
/// filter, tool call); shared by the streaming parsers.
fn empty_is_explained(finish_reason: FinishReason) -> bool {
    matches!(
        finish_reason,
        FinishReason::Length | FinishReason::ContentFilter | FinishReason::ToolCalls
    )
}

#[cfg(test)]
pub(crate) mod test_support;
