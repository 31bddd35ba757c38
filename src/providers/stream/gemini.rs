//! Gemini `streamGenerateContent?alt=sse` streams.
//!
//! Each `data:` event is a whole `GenerateContentResponse` holding the next parts; the
//! last carries the candidate's `finishReason` and the full `usageMetadata`. There is no
//! end marker beyond that, so the body ending after a `finishReason` is the `Done`, and
//! ending without one is a cut stream. Parts marked `thought: true` are thinking text.
//! A prompt blocked before generation (`promptFeedback.blockReason`, no candidates) ends
//! as `content_filter`, as in the non-streaming parser.

use serde_json::Value;

use super::super::gemini::{calls_of, finish_reason, usage};
use super::super::with_tool_calls;
use super::sse::Frame;
use super::{error_event, json_of, push_text, push_whole_calls, Parse, StreamEvent};
use crate::providers::UpstreamError;
use crate::types::{FinishReason, Usage};

#[derive(Debug, Default)]
pub(super) struct Gemini {
    finish: Option<String>,
    blocked: bool,
    usage: Usage,
    /// Tool calls seen so far (each arrives whole, in one part).
    calls: u32,
}

impl Parse for Gemini {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamError> {
        let json = json_of(&frame)?;
        if json.get("error").is_some_and(|e| !e.is_null()) {
            return Err(error_event(&json));
        }
        if json.get("usageMetadata").is_some_and(Value::is_object) {
            self.usage = usage(&json);
        }
        let Some(candidate) = json.pointer("/candidates/0") else {
            if let Some(reason) = json
                .pointer("/promptFeedback/blockReason")
                .and_then(Value::as_str)
            {
                self.finish = Some(reason.to_string());
                self.blocked = true;
            }
            return Ok(());
        };
        let parts = candidate
            .pointer("/content/parts")
            .and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            let thought = part.get("thought").and_then(Value::as_bool) == Some(true);
            push_text(out, part.get("text").and_then(Value::as_str), thought);
            push_whole_calls(out, &mut self.calls, calls_of(std::slice::from_ref(part)));
        }
        if let Some(raw) = candidate.get("finishReason").and_then(Value::as_str) {
            self.finish = Some(raw.to_string());
        }
        Ok(())
    }

    fn end(&mut self) -> Result<StreamEvent, UpstreamError> {
        let Some(raw) = self.finish.clone() else {
            return Err(super::ended_early());
        };
        let finish = if self.blocked {
            FinishReason::ContentFilter
        } else {
            with_tool_calls(finish_reason(Some(&raw)), self.calls > 0)
        };
        Ok(StreamEvent::Done {
            finish_reason: finish,
            raw_finish_reason: Some(raw),
            usage: self.usage,
        })
    }
}
