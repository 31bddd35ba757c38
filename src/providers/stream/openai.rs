//! OpenAI Chat Completions streams (also OpenAI-compatible servers).
//!
//! `data:` events carry `chat.completion.chunk`s; the finish reason comes in one chunk,
//! the usage (asked for with `stream_options.include_usage`) in a later one with no
//! choices, and `data: [DONE]` ends the stream. So the finish reason and usage are
//! remembered and `Done` is sent at `[DONE]`, or when the body ends after a finish
//! reason (some compatible servers omit `[DONE]`). `reasoning_content`/`reasoning`
//! deltas (vLLM, DeepSeek, Ollama's `/v1`) are thinking text.

use serde_json::Value;

use super::super::openai::{finish_reason, usage};
use super::sse::Frame;
use super::{error_event, json_of, push_text, Parse, StreamEvent, ToolCallDelta};
use crate::providers::tools;
use crate::providers::UpstreamError;
use crate::types::Usage;

#[derive(Debug, Default)]
pub(super) struct OpenAi {
    finish: Option<String>,
    usage: Option<Usage>,
    tool_call: bool,
    /// The upstream indexes of the calls seen so far, in order.
    calls: Vec<u64>,
}

impl OpenAi {
    fn done(&self) -> Result<StreamEvent, UpstreamError> {
        let Some(raw) = self.finish.clone() else {
            return Err(UpstreamError::Malformed {
                message: "stream ended without a finish reason".into(),
            });
        };
        let finish = super::super::with_tool_calls(finish_reason(Some(&raw)), self.tool_call);
        Ok(StreamEvent::Done {
            finish_reason: finish,
            raw_finish_reason: Some(raw),
            usage: self.usage.unwrap_or_default(),
        })
    }
}

impl OpenAi {
    /// One entry of a delta's `tool_calls`, as a normalised piece.
    fn call_piece(&mut self, pos: usize, call: &Value, out: &mut Vec<StreamEvent>) {
        let upstream_index = call
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or(pos as u64);
        let function = call.get("function");
        let field = |f: &str| function.and_then(|x| x.get(f));
        let arguments = match field("arguments") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => v.to_string(),
        };
        let (index, first) = match self.calls.iter().position(|i| *i == upstream_index) {
            Some(i) => (i, false),
            None => {
                self.calls.push(upstream_index);
                (self.calls.len() - 1, true)
            }
        };
        let (id, name) = if first {
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map_or_else(tools::new_call_id, str::to_owned);
            let name = field("name").and_then(Value::as_str).map(str::to_owned);
            (Some(id), Some(name.unwrap_or_default()))
        } else {
            (None, None)
        };
        if first || !arguments.is_empty() {
            out.push(StreamEvent::ToolCall(ToolCallDelta {
                index: index as u32,
                id,
                name,
                arguments,
            }));
        }
    }
}

/// The common chunk: one choice whose delta holds text (and perhaps the role), read
/// without building a `Value` tree. Any other field with a value makes it refuse, and
/// the general reading below handles the chunk.
#[derive(serde::Deserialize)]
struct PlainChunk<'a> {
    #[serde(borrow)]
    choices: [PlainChoice<'a>; 1],
    #[serde(default)]
    usage: Option<Value>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(serde::Deserialize)]
struct PlainChoice<'a> {
    #[serde(default)]
    index: Option<u64>,
    #[serde(borrow)]
    delta: PlainDelta<'a>,
    #[serde(default, borrow)]
    finish_reason: Option<std::borrow::Cow<'a, str>>,
}

#[derive(serde::Deserialize)]
struct PlainDelta<'a> {
    #[serde(default, borrow)]
    content: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    reasoning_content: Option<Value>,
    #[serde(default)]
    reasoning: Option<Value>,
}

impl OpenAi {
    /// Handles a plain text chunk (see [`PlainChunk`]); `false` when it is not one.
    fn plain_content(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> bool {
        let Ok(chunk) = serde_json::from_str::<PlainChunk<'_>>(data) else {
            return false;
        };
        let [choice] = &chunk.choices;
        let d = &choice.delta;
        let plain = chunk.usage.is_none()
            && chunk.error.is_none()
            && choice.index.unwrap_or(0) == 0
            && d.tool_calls.is_none()
            && d.reasoning_content.is_none()
            && d.reasoning.is_none();
        if !plain {
            return false;
        }
        push_text(out, d.content.as_deref(), false);
        if let Some(raw) = &choice.finish_reason {
            self.finish = Some(raw.to_string());
        }
        true
    }
}

impl Parse for OpenAi {
    fn frame(&mut self, frame: Frame, out: &mut Vec<StreamEvent>) -> Result<(), UpstreamError> {
        if frame.data.trim() == "[DONE]" {
            out.push(self.done()?);
            return Ok(());
        }
        if self.plain_content(&frame.data, out) {
            return Ok(());
        }
        let json = json_of(&frame)?;
        if json.get("error").is_some_and(|e| !e.is_null()) {
            return Err(error_event(&json));
        }
        let first = json.get("choices").and_then(Value::as_array).and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        });
        if let Some(choice) = first {
            let delta = choice.get("delta");
            let text = |field: &str| delta.and_then(|d| d.get(field)).and_then(Value::as_str);
            push_text(out, text("reasoning_content").or(text("reasoning")), true);
            push_text(out, text("content"), false);
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array);
            for (pos, call) in calls.into_iter().flatten().enumerate() {
                self.tool_call = true;
                self.call_piece(pos, call, out);
            }
            if let Some(raw) = choice.get("finish_reason").and_then(Value::as_str) {
                self.finish = Some(raw.to_string());
            }
        }
        if json.get("usage").is_some_and(Value::is_object) {
            self.usage = Some(usage(&json));
        }
        Ok(())
    }

    fn end(&mut self) -> Result<StreamEvent, UpstreamError> {
        match self.finish {
            Some(_) => self.done(),
            None => Err(super::ended_early()),
        }
    }
}
