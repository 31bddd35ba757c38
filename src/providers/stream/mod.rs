//! Streaming upstream calls, normalised to one event vocabulary.
//!
//! Streaming is only worth having if tokens reach the caller as the provider sends
//! them, and failover is only safe if the caller learns of a failure *before* anything
//! was forwarded whenever possible. So [`call_stream`] returns only once the response
//! head is in, classifying a non-2xx answer exactly as [`super::call`] does; after that
//! every chunk is decoded incrementally (`sse`), parsed per API (one module each) and
//! handed on at once. A stream never ends cleanly unless the API said it was complete:
//! a cut, stalled or garbled stream ends in an `Err` item, never in a made-up `Done`.

mod anthropic;
mod driver;
mod gemini;
mod ollama;
mod openai;
mod sse;

use std::time::Duration;

use futures::stream::LocalBoxStream;
use futures::StreamExt;
use serde_json::Value;

use super::{call::send_error, classify_error, UpstreamError, UpstreamRequest};
use crate::config::{Model, Provider, ProviderKind, Secret};
use crate::types::{ChatRequest, FinishReason, Usage};

/// The normalised events of one streamed answer (awc is `!Send`, so a local stream).
pub type UpstreamStream = LocalBoxStream<'static, Result<StreamEvent, UpstreamError>>;

/// One normalised piece of a streamed answer.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Generated text (may be empty for keep-alives; never emit empty deltas upward).
    Delta(String),
    /// A piece of a tool call.
    ToolCall(ToolCallDelta),
    /// Thinking text, where the API streams it separately (Anthropic thinking_delta, Gemini thought parts, Ollama message.thinking); bkvy does not forward it to clients but counts it.
    ThinkingDelta(String),
    /// The end: finish reason (normalised as in the non-streaming parser, raw kept) and usage as reported (zeros where the API did not report).
    Done {
        /// Why generation stopped, normalised.
        finish_reason: FinishReason,
        /// The provider's own finish reason, as sent.
        raw_finish_reason: Option<String>,
        /// Token counts as reported (zeros where the API did not report them).
        usage: Usage,
    },
}

/// A piece of a streamed tool call, in OpenAI's terms. The first piece of a call carries
/// its `id` and `name` (bkvy makes up an id where the API gives none); later pieces only
/// add argument text. Indexes count the answer's calls from 0.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolCallDelta {
    /// Which call of the answer.
    pub index: u32,
    /// The call's id (first piece only).
    pub id: Option<String>,
    /// The function's name (first piece only).
    pub name: Option<String>,
    /// More of the arguments' JSON text.
    pub arguments: String,
}

/// Builds the streaming variant of the provider request: same as `build_request` plus the API's stream switch:
/// OpenAI/compatible `"stream": true, "stream_options": {"include_usage": true}`; Anthropic `"stream": true`; Gemini: the endpoint `:generateContent` → `:streamGenerateContent` with query `alt=sse` (keep any other query params, never a key); Ollama `"stream": true`.
pub fn build_stream_request(
    provider: &Provider,
    model: &Model,
    key: Option<&Secret>,
    req: &ChatRequest,
) -> UpstreamRequest {
    let mut request = super::build(provider, model, key, req, true);
    if provider.kind == ProviderKind::Gemini {
        request.url = gemini_stream_url(&request.url);
    }
    request
}

/// `…:generateContent?x=1` → `…:streamGenerateContent?x=1&alt=sse`. Any `alt` given is
/// replaced; the `key=` parameter was already removed by the Gemini builder.
fn gemini_stream_url(url: &str) -> String {
    let (rest, fragment) = match url.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (url, None),
    };
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let path = match path.strip_suffix(":generateContent") {
        Some(base) => format!("{base}:streamGenerateContent"),
        None => path.to_string(),
    };
    let mut params: Vec<&str> = query
        .split('&')
        .filter(|p| !p.is_empty() && p.split('=').next() != Some("alt"))
        .collect();
    params.push("alt=sse");
    let mut out = format!("{path}?{}", params.join("&"));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Sends it and returns once the response HEAD is in: a non-2xx status is read fully (bounded) and classified exactly like `call` does (same `UpstreamError`, Retry-After included), so callers can fail over before anything was streamed.
/// On 2xx returns a stream of normalised events. The stream yields `Err(UpstreamError::Malformed{..})` for an event that does not parse or an API error event mid-stream (Anthropic `event: error`, OpenAI `{"error":..}` chunk), `Err(UpstreamError::Malformed{"stream ended before completion"})` when the body ends without the API's end marker (OpenAI `data: [DONE]` or a chunk with finish_reason, Anthropic `message_stop`, Gemini a candidate with finishReason, Ollama `done: true`), `Err(UpstreamError::Timeout)` when no event arrives for `idle_timeout` (keep-alives and bytes that complete no event do not count), and `Err(UpstreamError::Connection{..})`/`Malformed` when the connection is cut (awc payload error). After `Done` the stream ends.
///
/// `connect_timeout` bounds the time until the response head arrives; an error body is
/// read for at most `idle_timeout` and `max_event_bytes` (beyond either, the error is
/// classified by its status and headers alone).
pub async fn call_stream(
    client: &awc::Client,
    kind: ProviderKind,
    req: &UpstreamRequest,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_event_bytes: usize,
) -> Result<UpstreamStream, UpstreamError> {
    let send = async {
        // The head must arrive within `connect_timeout` (the timeout around this block);
        // the body has no deadline of its own here (the idle timeout below is the stream's).
        req.post(client).await.map_err(send_error)
    };
    let mut response = match actix_web::rt::time::timeout(connect_timeout, send).await {
        Ok(result) => result?,
        Err(_elapsed) => return Err(UpstreamError::Timeout),
    };
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        // Asked for `identity`: an encoded stream is refused rather than expanded.
        let coding = response
            .headers()
            .get(awc::http::header::CONTENT_ENCODING)
            .map(|v| v.to_str().unwrap_or("?").trim().to_owned())
            .filter(|c| !c.is_empty() && !c.eq_ignore_ascii_case("identity"));
        if let Some(coding) = coding {
            return Err(UpstreamError::Malformed {
                message: format!(
                    "streamed answer in an encoding not asked for: {:?}",
                    coding.chars().take(40).collect::<String>()
                ),
            });
        }
    }
    if !(200..300).contains(&status) {
        let read = response.body().limit(max_event_bytes);
        let body = match actix_web::rt::time::timeout(idle_timeout, read).await {
            Ok(Ok(body)) => body,
            Ok(Err(_)) | Err(_) => bytes::Bytes::new(),
        };
        return Err(classify_error(kind, status, response.headers(), &body));
    }
    let core = driver::Core::new(kind, max_event_bytes);
    Ok(driver::run(response, core, idle_timeout).boxed_local())
}

/// What a per-API parser does with the frames of one stream.
trait Parse {
    /// Handles one SSE event or NDJSON line, appending what it means to `out`
    /// (a [`StreamEvent::Done`] ends the stream).
    fn frame(&mut self, frame: sse::Frame, out: &mut Vec<StreamEvent>)
        -> Result<(), UpstreamError>;

    /// The body ended without a `Done`: the `Done` the API implies by ending there
    /// (OpenAI after a finish reason, Gemini after a `finishReason`), or an error.
    fn end(&mut self) -> Result<StreamEvent, UpstreamError> {
        Err(ended_early())
    }
}

/// The error of a body that ended before the API said the answer was complete.
fn ended_early() -> UpstreamError {
    UpstreamError::Malformed {
        message: "stream ended before completion".into(),
    }
}

/// A frame's data as JSON, or the error saying it is not.
fn json_of(frame: &sse::Frame) -> Result<Value, UpstreamError> {
    serde_json::from_str(&frame.data).map_err(|e| UpstreamError::Malformed {
        message: format!("stream event is not JSON: {e}"),
    })
}

/// An error object sent mid-stream (after a 2xx head), made into a safe message.
fn error_event(json: &Value) -> UpstreamError {
    let message = json
        .pointer("/error/message")
        .and_then(Value::as_str)
        .or_else(|| json.get("error").and_then(Value::as_str))
        .map(super::error::safe_text)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no message".into());
    UpstreamError::Malformed {
        message: format!("error event mid-stream: {message}"),
    }
}

/// Appends tool calls that arrive whole (Gemini, Ollama) as one piece each, numbering
/// them on from `seen`.
fn push_whole_calls(
    out: &mut Vec<StreamEvent>,
    seen: &mut u32,
    calls: Vec<crate::types::ToolCall>,
) {
    for call in calls {
        out.push(StreamEvent::ToolCall(ToolCallDelta {
            index: *seen,
            id: Some(call.id),
            name: Some(call.name),
            arguments: call.arguments,
        }));
        *seen += 1;
    }
}

/// Appends a delta, skipping empty ones (keep-alives, role-only chunks).
fn push_text(out: &mut Vec<StreamEvent>, text: Option<&str>, thinking: bool) {
    match text {
        Some(t) if !t.is_empty() && thinking => out.push(StreamEvent::ThinkingDelta(t.into())),
        Some(t) if !t.is_empty() => out.push(StreamEvent::Delta(t.into())),
        _ => {}
    }
}

#[cfg(test)]
mod tests;
