//! Anthropic Messages streams.
//!
//! Named SSE events: `message_start` carries the input tokens, `content_block_delta`
//! the text (`text_delta`) and thinking (`thinking_delta`), `message_delta` the stop
//! reason and the (cumulative) output tokens, and `message_stop` ends the answer.
//! `ping`, block starts/stops and event types added later are ignored. An `error` event
//! after the 200 head is classified by its structured `error.type`.

use serde_json::Value;

use super::super::anthropic::{finish_reason, input_tokens};
use super::super::count;
use super::sse::Frame;
use super::{json_of, push_text, Parse, StreamEvent, ToolCallDelta};
use crate::providers::{error::safe_text, UpstreamError};
use crate::types::Usage;

#[derive(Debug, Default)]
pub(super) struct Anthropic {
    input: u64,
    output: u64,
    stop: Option<String>,
    /// The content block index of each `tool_use` block, in order (its position is the
    /// call's index).
    tool_blocks: Vec<u64>,
}

impl Parse for Anthropic {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamError> {
        let json = json_of(&frame)?;
        let name = frame
            .event
            .as_deref()
            .or_else(|| json.get("type").and_then(Value::as_str))
            .unwrap_or_default();
        match name {
            "message_start" => {
                let message = json.get("message").unwrap_or(&Value::Null);
                self.input = input_tokens(message);
                self.output = count(message, "/usage/output_tokens");
            }
            "content_block_start" => {
                let block = json.get("content_block").unwrap_or(&Value::Null);
                if block.get("type").and_then(Value::as_str) == Some("tool_use") {
                    let at = json.get("index").and_then(Value::as_u64).unwrap_or(0);
                    self.tool_blocks.push(at);
                    let text = |f: &str| block.get(f).and_then(Value::as_str).unwrap_or("");
                    // The input arrives in `input_json_delta`s; a non-empty start input
                    // (not sent by the API today) is kept rather than lost.
                    let input = block
                        .get("input")
                        .filter(|i| i.as_object().is_some_and(|o| !o.is_empty()))
                        .map(Value::to_string)
                        .unwrap_or_default();
                    out.push(StreamEvent::ToolCall(ToolCallDelta {
                        index: (self.tool_blocks.len() - 1) as u32,
                        id: Some(text("id").to_owned()),
                        name: Some(text("name").to_owned()),
                        arguments: input,
                    }));
                }
            }
            "content_block_delta" => {
                let delta = json.get("delta").unwrap_or(&Value::Null);
                let field = |f: &str| delta.get(f).and_then(Value::as_str);
                match delta.get("type").and_then(Value::as_str) {
                    Some("text_delta") => push_text(out, field("text"), false),
                    Some("thinking_delta") => push_text(out, field("thinking"), true),
                    Some("input_json_delta") => {
                        let at = json.get("index").and_then(Value::as_u64).unwrap_or(0);
                        let piece = field("partial_json").unwrap_or("");
                        let call = self.tool_blocks.iter().position(|b| *b == at);
                        if let (Some(i), false) = (call, piece.is_empty()) {
                            out.push(StreamEvent::ToolCall(ToolCallDelta {
                                index: i as u32,
                                id: None,
                                name: None,
                                arguments: piece.to_owned(),
                            }));
                        }
                    }
                    _ => {} // signature and citation deltas
                }
            }
            "message_delta" => {
                if let Some(raw) = json.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop = Some(raw.to_string());
                }
                if json.pointer("/usage/output_tokens").is_some() {
                    self.output = count(&json, "/usage/output_tokens");
                }
                // Newer API versions repeat the (cumulative) input counts here.
                self.input = self.input.max(input_tokens(&json));
            }
            "message_stop" => out.push(StreamEvent::Done {
                finish_reason: finish_reason(self.stop.as_deref()),
                raw_finish_reason: self.stop.clone(),
                usage: Usage {
                    input_tokens: self.input,
                    output_tokens: self.output,
                    thinking_tokens: 0,
                },
            }),
            "error" => return Err(error_event(&json)),
            _ => {}
        }
        Ok(())
    }
}

/// `overloaded_error` is the 529 it would have been before the head; `rate_limit_error`
/// a 429 (without a wait hint: there are no headers to take one from).
fn error_event(json: &Value) -> UpstreamError {
    let message = json
        .pointer("/error/message")
        .and_then(Value::as_str)
        .map(safe_text)
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "no message".into());
    match json.pointer("/error/type").and_then(Value::as_str) {
        Some("overloaded_error") => UpstreamError::Server {
            status: 529,
            message,
        },
        Some("rate_limit_error") => UpstreamError::RateLimited {
            retry_after: None,
            message,
        },
        other => UpstreamError::Malformed {
            message: format!(
                "error event mid-stream ({}): {message}",
                safe_text(other.unwrap_or("unknown"))
            ),
        },
    }
}
