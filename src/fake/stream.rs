//! Streaming answers: each API's stream is built from its own non-streaming answer, so
//! both carry the same text and usage and only the framing differs.
//!
//! The text is sent one word (with its trailing space) per delta. Frames are whole
//! SSE events (or NDJSON lines for Ollama); [`crate::fake::Fault::Truncated`] sends
//! the first half of them and then breaks the connection.

use serde_json::{json, Value};

use super::text::THOUGHT;

/// Turns a non-streaming body into the frames sent on the wire.
pub(crate) type Framer = Box<dyn Fn(&Value) -> Vec<String>>;

/// How a streamed answer is framed.
pub(crate) struct Stream {
    /// The response content type.
    pub(crate) content_type: &'static str,
    /// Makes the frames.
    pub(crate) frames: Framer,
}

/// The text in streaming pieces (concatenated they give the text back).
fn pieces(text: &str) -> impl Iterator<Item = &str> {
    text.split_inclusive(' ')
}

/// JSON text in two pieces (a real stream splits arguments anywhere, even mid-token).
fn halves(text: &str) -> Vec<&str> {
    let mid = text
        .char_indices()
        .map(|(i, _)| i)
        .find(|i| *i >= text.len() / 2)
        .unwrap_or(text.len());
    [&text[..mid], &text[mid..]]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect()
}

fn sse(data: &Value) -> String {
    format!("data: {data}\n\n")
}

fn event(name: &str, data: &Value) -> String {
    format!("event: {name}\ndata: {data}\n\n")
}

/// OpenAI `chat.completion.chunk` events ending in `data: [DONE]`; with
/// `stream_options.include_usage` a last chunk carries the usage.
pub(crate) fn openai(include_usage: bool) -> Stream {
    let frames = move |b: &Value| {
        let chunk = |index: &Value, delta: Value, finish: &Value| {
            let mut c = json!({
                "id": b["id"], "object": "chat.completion.chunk", "created": b["created"],
                "model": b["model"], "system_fingerprint": b["system_fingerprint"],
                "choices": [{"index": index, "delta": delta, "logprobs": null, "finish_reason": finish}],
            });
            if include_usage {
                c["usage"] = Value::Null;
            }
            sse(&c)
        };
        let mut out = Vec::new();
        for choice in b["choices"].as_array().into_iter().flatten() {
            let index = &choice["index"];
            out.push(chunk(
                index,
                json!({"role": "assistant", "content": "", "refusal": null}),
                &Value::Null,
            ));
            let text = choice["message"]["content"].as_str().unwrap_or("");
            for p in pieces(text) {
                out.push(chunk(index, json!({"content": p}), &Value::Null));
            }
            for (i, call) in choice["message"]["tool_calls"]
                .as_array()
                .into_iter()
                .flatten()
                .enumerate()
            {
                out.push(chunk(
                    index,
                    json!({"tool_calls": [{"index": i, "id": call["id"], "type": "function",
                        "function": {"name": call["function"]["name"], "arguments": ""}}]}),
                    &Value::Null,
                ));
                let args = call["function"]["arguments"].as_str().unwrap_or("");
                for piece in halves(args) {
                    out.push(chunk(
                        index,
                        json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        &Value::Null,
                    ));
                }
            }
            out.push(chunk(index, json!({}), &choice["finish_reason"]));
        }
        if include_usage {
            let last = json!({
                "id": b["id"], "object": "chat.completion.chunk", "created": b["created"],
                "model": b["model"], "system_fingerprint": b["system_fingerprint"],
                "choices": [], "usage": b["usage"],
            });
            out.push(sse(&last));
        }
        out.push("data: [DONE]\n\n".to_owned());
        out
    };
    Stream {
        content_type: "text/event-stream",
        frames: Box::new(frames),
    }
}

/// Anthropic's event sequence: `message_start`, `ping`, per block start/deltas/stop,
/// `message_delta` with the stop reason and output tokens, `message_stop`.
pub(crate) fn anthropic() -> Stream {
    let frames = |m: &Value| {
        let mut out = Vec::new();
        let mut start = m.clone();
        start["content"] = json!([]);
        start["stop_reason"] = Value::Null;
        start["stop_sequence"] = Value::Null;
        start["usage"]["output_tokens"] = json!(1);
        out.push(event(
            "message_start",
            &json!({"type": "message_start", "message": start}),
        ));
        out.push(event("ping", &json!({"type": "ping"})));
        for (index, block) in m["content"].as_array().into_iter().flatten().enumerate() {
            let delta = |d: Value| {
                event(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index, "delta": d}),
                )
            };
            if block["type"] == "tool_use" {
                let mut start = block.clone();
                start["input"] = json!({});
                out.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": start}),
                ));
                for piece in halves(&block["input"].to_string()) {
                    out.push(delta(
                        json!({"type": "input_json_delta", "partial_json": piece}),
                    ));
                }
            } else if block["type"] == "thinking" {
                let empty = json!({"type": "thinking", "thinking": "", "signature": ""});
                out.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": empty}),
                ));
                out.push(delta(
                    json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                ));
                out.push(delta(
                    json!({"type": "signature_delta", "signature": block["signature"]}),
                ));
            } else {
                let empty = json!({"type": "text", "text": ""});
                out.push(event(
                    "content_block_start",
                    &json!({"type": "content_block_start", "index": index, "content_block": empty}),
                ));
                for p in pieces(block["text"].as_str().unwrap_or("")) {
                    out.push(delta(json!({"type": "text_delta", "text": p})));
                }
            }
            out.push(event(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
        let end = json!({
            "type": "message_delta",
            "delta": {"stop_reason": m["stop_reason"], "stop_sequence": m["stop_sequence"]},
            "usage": {"output_tokens": m["usage"]["output_tokens"]},
        });
        out.push(event("message_delta", &end));
        out.push(event("message_stop", &json!({"type": "message_stop"})));
        out
    };
    Stream {
        content_type: "text/event-stream",
        frames: Box::new(frames),
    }
}

/// Gemini `streamGenerateContent`: partial `GenerateContentResponse`s, as SSE with
/// `alt=sse`, else as one JSON array; the last one has the finish reason and usage.
pub(crate) fn gemini(alt_sse: bool) -> Stream {
    let frames = move |r: &Value| {
        let cand = &r["candidates"][0];
        let chunk = |parts: Value, last: bool| {
            let mut c = json!({
                "candidates": [{"content": {"parts": parts, "role": "model"}, "index": 0}],
                "usageMetadata": {"promptTokenCount": r["usageMetadata"]["promptTokenCount"]},
                "modelVersion": r["modelVersion"], "responseId": r["responseId"],
            });
            if last {
                c["candidates"][0]["finishReason"] = cand["finishReason"].clone();
                c["usageMetadata"] = r["usageMetadata"].clone();
            }
            c
        };
        let parts = cand["content"]["parts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut chunks = Vec::new();
        for part in parts.iter().filter(|p| p["thought"] == true) {
            chunks.push(chunk(json!([part]), false));
        }
        for part in parts.iter().filter(|p| p.get("functionCall").is_some()) {
            chunks.push(chunk(json!([part]), false));
        }
        let text = parts
            .iter()
            .filter(|p| p["thought"] != true)
            .filter_map(|p| p["text"].as_str())
            .collect::<String>();
        let words: Vec<&str> = pieces(&text).collect();
        if words.is_empty() {
            chunks.push(chunk(json!([{"text": ""}]), true));
        }
        for (i, p) in words.iter().enumerate() {
            chunks.push(chunk(json!([{ "text": p }]), i + 1 == words.len()));
        }
        if alt_sse {
            chunks
                .iter()
                .map(|c| format!("data: {c}\r\n\r\n"))
                .collect()
        } else {
            let n = chunks.len();
            let mut out: Vec<String> = chunks
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{}{c}", if i == 0 { "[" } else { ",\r\n" }))
                .collect();
            out.push(if n == 0 {
                "[]".to_owned()
            } else {
                "]".to_owned()
            });
            out
        }
    };
    Stream {
        content_type: if alt_sse {
            "text/event-stream"
        } else {
            "application/json"
        },
        frames: Box::new(frames),
    }
}

/// Ollama NDJSON: one line per piece with `done: false`, then the final object with
/// `done: true`, the done reason and the counts (and empty content).
pub(crate) fn ollama() -> Stream {
    let frames = |o: &Value| {
        let line = |message: Value| {
            let l = json!({"model": o["model"], "created_at": o["created_at"], "message": message, "done": false});
            format!("{l}\n")
        };
        let mut out = Vec::new();
        if o["message"]["thinking"].is_string() {
            out.push(line(
                json!({"role": "assistant", "content": "", "thinking": THOUGHT}),
            ));
        }
        for p in pieces(o["message"]["content"].as_str().unwrap_or("")) {
            out.push(line(json!({"role": "assistant", "content": p})));
        }
        if o["message"]["tool_calls"].is_array() {
            out.push(line(json!({"role": "assistant", "content": "",
                "tool_calls": o["message"]["tool_calls"]})));
        }
        let mut last = o.clone();
        last["message"] = json!({"role": "assistant", "content": ""});
        out.push(format!("{last}\n"));
        out
    };
    Stream {
        content_type: "application/x-ndjson",
        frames: Box::new(frames),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_rebuild_the_text() {
        let t = "[m] one  two three";
        assert_eq!(pieces(t).collect::<String>(), t);
        assert_eq!(pieces("").count(), 0);
    }

    #[test]
    fn openai_stream_ends_with_done_and_usage() {
        let body = json!({"id": "x", "created": 1, "model": "m", "system_fingerprint": "fp",
            "choices": [{"index": 0, "message": {"content": "[m] hi there"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2}});
        let frames = (openai(true).frames)(&body);
        assert_eq!(frames.last().map(String::as_str), Some("data: [DONE]\n\n"));
        assert!(frames[frames.len() - 2].contains("\"prompt_tokens\":2"));
        assert_eq!(frames.len(), 1 + 3 + 1 + 1 + 1);
    }

    #[test]
    fn gemini_array_form_is_valid_json() {
        let body = json!({"candidates": [{"content": {"parts": [{"text": "[g] a b"}], "role": "model"},
            "finishReason": "STOP", "index": 0}], "usageMetadata": {"promptTokenCount": 2}});
        let joined: String = (gemini(false).frames)(&body).concat();
        let v: Value = serde_json::from_str(&joined).unwrap();
        assert_eq!(v.as_array().map(Vec::len), Some(3));
        assert_eq!(v[2]["candidates"][0]["finishReason"], "STOP");
    }
}
