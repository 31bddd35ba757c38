//! Ollama `/api/chat` streams: one JSON object per line.
//!
//! Lines with `done: false` carry `message.content` (and `message.thinking` for
//! thinking models); the line with `done: true` carries the done reason and the token
//! counts. An `{"error": "..."}` line is Ollama's way of failing after the 200 head.

use serde_json::Value;

use super::super::ollama::{finish_reason, usage};
use super::super::with_tool_calls;
use super::sse::Frame;
use super::{error_event, json_of, push_text, push_whole_calls, Parse, StreamEvent};
use crate::providers::tools;
use crate::providers::UpstreamError;

#[derive(Debug, Default)]
pub(super) struct Ollama {
    /// Tool calls seen so far (each arrives whole).
    calls: u32,
}

impl Parse for Ollama {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamError> {
        let json = json_of(&frame)?;
        if json.get("error").is_some_and(|e| !e.is_null()) {
            return Err(error_event(&json));
        }
        let field = |f: &str| json.pointer(f).and_then(Value::as_str);
        push_text(out, field("/message/thinking"), true);
        push_text(out, field("/message/content"), false);
        let calls = tools::calls_from_openai(json.pointer("/message/tool_calls"));
        push_whole_calls(out, &mut self.calls, calls);
        if json.get("done").and_then(Value::as_bool) == Some(true) {
            let raw = field("/done_reason").map(str::to_string);
            out.push(StreamEvent::Done {
                finish_reason: with_tool_calls(finish_reason(raw.as_deref(), true), self.calls > 0),
                raw_finish_reason: raw,
                usage: usage(&json),
            });
        }
        Ok(())
    }
}
