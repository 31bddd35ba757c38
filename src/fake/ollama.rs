//! Ollama's native API (`POST /api/chat`, `GET /api/version`).
//!
//! Stricter than real Ollama on purpose: real Ollama ignores unknown fields and
//! options, which would hide adapter bugs, so this fake refuses them. Like real Ollama
//! it streams NDJSON unless the request says `"stream": false`.
//!
//! Thinking: `think: true` (or `low`/`medium`/`high`) adds `message.thinking` of
//! [`THINKING_TOKENS`] words, counted in `eval_count` as real Ollama does.
//!
//! [`FLAVOR`] tells the shared exchange where the key is (bearer, when one is sent) and
//! how errors look.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::exchange::{self, Credential, Flavor, Incoming, Reject, Success};
use super::state::Shared;
use super::stream;
use super::text::{self, Answer, Finish, THINKING_TOKENS, THOUGHT};
use super::tools as fake_tools;
use super::FakeApi;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "stream",
    "options",
    "think",
    "format",
    "keep_alive",
    "tools",
];
const OPTIONS: &[&str] = &[
    "num_predict",
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "typical_p",
    "stop",
    "seed",
    "num_ctx",
    "num_keep",
    "repeat_penalty",
    "repeat_last_n",
    "presence_penalty",
    "frequency_penalty",
    "mirostat",
    "mirostat_eta",
    "mirostat_tau",
    "penalize_newline",
    "num_batch",
    "num_gpu",
    "main_gpu",
    "num_thread",
    "use_mmap",
];
const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

/// `POST /api/chat`.
pub(crate) async fn chat(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    exchange::serve(&shared, &req, &body, FakeApi::Ollama, FLAVOR, None, check).await
}

/// `GET /api/version`.
pub(crate) async fn version(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    fn check(_: &Incoming<'_>) -> Result<Success, Reject> {
        let v = json!({"version": "0.9.0"});
        Ok(Success::json(v.clone(), v))
    }
    exchange::serve(&shared, &req, &body, FakeApi::Ollama, FLAVOR, None, check).await
}

/// The bearer token, Ollama's error shape.
pub(crate) const FLAVOR: Flavor = Flavor {
    credential: Credential::Bearer,
    error_body: |r, _| error_body(r),
};

/// Ollama's error shape.
fn error_body(r: &Reject) -> Value {
    json!({ "error": r.message })
}

fn check(i: &Incoming<'_>) -> Result<Success, Reject> {
    let body = i
        .json
        .and_then(Value::as_object)
        .ok_or_else(|| Reject::bad("invalid JSON body"))?;
    if let Some(k) = text::unknown_key(body, KNOWN) {
        return Err(Reject::bad(format!(
            "unknown field \"{k}\" (refused by the fake upstream)"
        )));
    }
    let model = match text::get(body, "model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        Some(Value::String(_)) | None => return Err(Reject::bad("model is required")),
        Some(_) => {
            return Err(Reject::bad(
                "json: cannot unmarshal into field model of type string",
            ))
        }
    };
    // Real Ollama streams unless told `"stream": false`.
    let streaming = match text::get(body, "stream") {
        Some(Value::Bool(b)) => *b,
        None => true,
        Some(_) => {
            return Err(Reject::bad(
                "json: cannot unmarshal into field stream of type bool",
            ))
        }
    };
    let thinking = match text::get(body, "think") {
        None | Some(Value::Bool(false)) => false,
        Some(Value::Bool(true)) => true,
        Some(Value::String(s)) if ["low", "medium", "high"].contains(&s.as_str()) => true,
        Some(v) => return Err(Reject::bad(format!("invalid think value: {v}"))),
    };
    let (input_words, last_user, after_tool) = messages(body)?;
    let offered = tools(body)?;
    let json_mode = match text::get(body, "format") {
        None => None,
        Some(Value::String(f)) if f == "json" => Some(fake_tools::JsonMode::Object),
        Some(schema @ Value::Object(_)) => Some(fake_tools::JsonMode::Schema(schema.clone())),
        Some(v) => return Err(Reject::bad(format!("invalid format: {v}"))),
    };
    let (max_tokens, stops) = match text::get(body, "options") {
        None => (None, Vec::new()),
        Some(Value::Object(o)) => options(o)?,
        Some(_) => {
            return Err(Reject::bad(
                "json: cannot unmarshal into field options of type map",
            ))
        }
    };
    let mut answer = Answer::new(model, &last_user, max_tokens, &stops);
    if let Some(mode) = &json_mode {
        answer.text = fake_tools::json_text(mode, &answer.text);
    }
    let call = fake_tools::decide(&offered, &fake_tools::Choice::Auto, after_tool, &last_user);
    Ok(Success {
        normal: reply(model, input_words, thinking, &answer, call.as_ref()),
        empty: reply(model, input_words, thinking, &Answer::empty(), None),
        stream: streaming.then(stream::ollama),
    })
}

/// `tools`: OpenAI-shaped function tools.
fn tools(body: &Map<String, Value>) -> Result<Vec<fake_tools::Offered>, Reject> {
    let list = match text::get(body, "tools") {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(_) => {
            return Err(Reject::bad(
                "json: cannot unmarshal into field tools of type api.Tools",
            ))
        }
    };
    let mut out = Vec::new();
    for t in list {
        let name = t
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if t.get("type").and_then(Value::as_str) != Some("function") || name.is_empty() {
            return Err(Reject::bad(
                "invalid tool: needs type \"function\" and a function name",
            ));
        }
        out.push(fake_tools::Offered {
            name: name.to_owned(),
            schema: t.pointer("/function/parameters").cloned(),
        });
    }
    Ok(out)
}

fn messages(body: &Map<String, Value>) -> Result<(u64, String, bool), Reject> {
    let list = match text::get(body, "messages") {
        Some(Value::Array(l)) if !l.is_empty() => l,
        Some(Value::Array(_)) | None => {
            return Err(Reject::bad(
                "messages must not be empty (refused by the fake upstream)",
            ))
        }
        Some(_) => {
            return Err(Reject::bad(
                "json: cannot unmarshal into field messages of type []api.Message",
            ))
        }
    };
    let mut input = 0;
    let mut last_user = String::new();
    let mut after_tool = false;
    for m in list {
        let m = m
            .as_object()
            .ok_or_else(|| Reject::bad("json: cannot unmarshal message"))?;
        if let Some(k) = text::unknown_key(
            m,
            &[
                "role",
                "content",
                "images",
                "tool_calls",
                "thinking",
                "tool_name",
            ],
        ) {
            return Err(Reject::bad(format!(
                "unknown message field \"{k}\" (refused by the fake upstream)"
            )));
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(Reject::bad(format!("invalid role: {role}")));
        }
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) => String::new(),
            Some(_) => {
                return Err(Reject::bad(
                    "json: cannot unmarshal into field content of type string",
                ))
            }
        };
        input += text::words(&content);
        if let Some(calls) = m.get("tool_calls") {
            let ok = role == "assistant"
                && calls.as_array().is_some_and(|l| {
                    l.iter().all(|c| {
                        c.pointer("/function/name").is_some_and(Value::is_string)
                            && c.pointer("/function/arguments")
                                .is_some_and(Value::is_object)
                    })
                });
            if !ok {
                return Err(Reject::bad(
                    "json: cannot unmarshal tool_calls: arguments must be an object",
                ));
            }
        }
        match role {
            "user" => {
                last_user = content;
                after_tool = false;
            }
            "tool" => {
                last_user = content;
                after_tool = true;
            }
            _ => {}
        }
    }
    Ok((input, last_user, after_tool))
}

/// Checks `options`; returns the token limit (`num_predict` > 0) and stop strings.
fn options(o: &Map<String, Value>) -> Result<(Option<u64>, Vec<String>), Reject> {
    if let Some(k) = text::unknown_key(o, OPTIONS) {
        return Err(Reject::bad(format!(
            "invalid option provided: {k} (refused by the fake upstream)"
        )));
    }
    let predict = text::int_in(o, "num_predict", -2, i64::MAX)?;
    text::number_in(o, "temperature", 0.0, f64::MAX)?;
    text::number_in(o, "top_p", 0.0, 1.0)?;
    text::int_in(o, "top_k", 0, i64::MAX)?;
    text::int_in(o, "seed", i64::MIN, i64::MAX)?;
    text::int_in(o, "num_ctx", 1, i64::MAX)?;
    let stops = text::string_list(o, "stop", usize::MAX)?;
    let max = predict
        .filter(|n| *n > 0)
        .and_then(|n| u64::try_from(n).ok());
    Ok((max, stops))
}

fn reply(
    model: &str,
    input: u64,
    thinking: bool,
    answer: &Answer,
    call: Option<&fake_tools::FakeCall>,
) -> Value {
    let done_reason = match answer.finish {
        Finish::Length => "length",
        Finish::Stop | Finish::Sequence(_) => "stop",
    };
    let mut message = json!({"role": "assistant", "content": answer.text});
    if thinking {
        message["thinking"] = json!(THOUGHT);
    }
    if let Some(c) = call {
        message["content"] = json!("");
        message["tool_calls"] = json!([{"function": {"name": c.name, "arguments": c.arguments}}]);
    }
    let thought = if thinking { THINKING_TOKENS } else { 0 };
    json!({
        "model": model,
        "created_at": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "message": message,
        "done": true,
        "done_reason": done_reason,
        "total_duration": 1_000_000,
        "load_duration": 100_000,
        "prompt_eval_count": input,
        "prompt_eval_duration": 400_000,
        "eval_count": answer.tokens() + thought,
        "eval_duration": 500_000,
    })
}
