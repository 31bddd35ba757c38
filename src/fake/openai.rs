//! OpenAI Chat Completions (`POST /v1/chat/completions`), also standing in for
//! OpenAI-compatible servers (vLLM, llama.cpp, Ollama's `/v1`).
//!
//! Validation follows the real API closely enough to catch adapter bugs: bearer auth,
//! only documented top-level parameters (plus `chat_template_kwargs`, which vLLM
//! accepts), the six roles, `reasoning_effort` values and numeric ranges. Model-specific
//! rules (e.g. o-series refusing `max_tokens`) are not modelled.
//!
//! The same endpoints under `/keyless` (e.g. `/keyless/v1/chat/completions`) stand in
//! for OpenAI-compatible servers: they accept calls without a key and the extra sampling
//! parameters such servers take (`top_k`, `min_p`, `repetition_penalty`).
//!
//! `stream: true` answers with `chat.completion.chunk` events (see `stream`).
//!
//! Thinking: `reasoning_effort` of `low`, `medium`, `high` or `xhigh` reports
//! [`THINKING_TOKENS`] reasoning tokens; absent, `none` or `minimal` reports 0.
//!
//! [`FLAVOR`] tells the shared exchange where the key is (bearer) and how errors look.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::exchange::{self, Credential, Flavor, Incoming, Reject, Success};
use super::state::Shared;
use super::stream;
use super::text::{self, Answer, Finish, THINKING_TOKENS};
use super::tools;
use super::FakeApi;

const KNOWN: &[&str] = &[
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "n",
    "stream",
    "stream_options",
    "user",
    "tools",
    "tool_choice",
    "response_format",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
    "parallel_tool_calls",
    "metadata",
    "store",
    "service_tier",
    "prediction",
    "modalities",
    "audio",
    "reasoning_effort",
    "verbosity",
    "web_search_options",
    "safety_identifier",
    "prompt_cache_key",
    "chat_template_kwargs",
];

const ROLES: &[&str] = &["system", "developer", "user", "assistant", "tool"];
const MESSAGE_FIELDS: &[&str] = &[
    "role",
    "content",
    "name",
    "tool_calls",
    "tool_call_id",
    "refusal",
    "audio",
    "function_call",
];
const EFFORTS: &[&str] = &["none", "minimal", "low", "medium", "high", "xhigh"];

/// `POST /v1/chat/completions`.
pub(crate) async fn chat(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    exchange::serve(&shared, &req, &body, FakeApi::OpenAi, FLAVOR, None, check).await
}

/// The bearer token, OpenAI's error shape.
pub(crate) const FLAVOR: Flavor = Flavor {
    credential: Credential::Bearer,
    error_body: |r, _| error_body(r),
};

/// OpenAI's error shape.
fn error_body(r: &Reject) -> Value {
    let (kind, code) = match r.status {
        401 => ("invalid_request_error", r.code.or(Some("invalid_api_key"))),
        404 => ("invalid_request_error", r.code),
        429 => ("requests", r.code.or(Some("rate_limit_exceeded"))),
        500..=599 => ("server_error", r.code),
        _ => ("invalid_request_error", r.code),
    };
    json!({"error": {"message": r.message, "type": kind, "param": r.param, "code": code}})
}

/// Path prefix under which the OpenAI endpoints need no key, like a local
/// OpenAI-compatible server (vLLM, Ollama's `/v1`).
pub(crate) const KEYLESS_PREFIX: &str = "/keyless";

/// Sampling parameters OpenAI-compatible servers (vLLM, llama.cpp) accept beyond
/// OpenAI's own; accepted only under [`KEYLESS_PREFIX`].
const COMPATIBLE_EXTRAS: &[&str] = &["top_k", "min_p", "repetition_penalty"];

/// Checks the bearer token: present and non-empty; under [`KEYLESS_PREFIX`] it may be
/// absent, but an `Authorization` header that is sent must still be a bearer token.
pub(crate) fn check_auth(req: &HttpRequest) -> Result<(), Reject> {
    let header = req.headers().get("authorization");
    if header.is_none() && req.path().starts_with(KEYLESS_PREFIX) {
        return Ok(());
    }
    let token = header
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .unwrap_or("");
    if token.is_empty() {
        return Err(Reject::new(
            401,
            "You didn't provide an API key. You need to provide your API key in an \
             Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
        )
        .code("invalid_api_key"));
    }
    Ok(())
}

fn check(i: &Incoming<'_>) -> Result<Success, Reject> {
    check_auth(i.req)?;
    let body = i.json.and_then(Value::as_object).ok_or_else(|| {
        Reject::bad(
            "We could not parse the JSON body of your request. (HINT: This likely means \
             you aren't using your HTTP library correctly. The OpenAI API expects a JSON \
             payload, but what was sent was not valid JSON.)",
        )
    })?;
    let compatible = i.req.path().starts_with(KEYLESS_PREFIX);
    let extras: &[&str] = if compatible { COMPATIBLE_EXTRAS } else { &[] };
    let unknown = body
        .keys()
        .map(String::as_str)
        .find(|k| !KNOWN.contains(k) && !extras.contains(k));
    if let Some(k) = unknown {
        return Err(Reject::bad(format!(
            "Unrecognized request argument supplied: {k}"
        )));
    }
    let model = match text::get(body, "model") {
        Some(Value::String(m)) if !m.is_empty() => m.as_str(),
        Some(v) => {
            return Err(Reject::bad(format!(
                "Invalid type for 'model': expected a string, got {v}"
            ))
            .param("model"))
        }
        None => {
            return Err(Reject::bad("you must provide a model parameter")
                .param("model")
                .code("missing_required_parameter"))
        }
    };
    let (input_words, last_user, after_tool) = messages(body)?;
    let offered = tools(body)?;
    let choice = tool_choice(body, &offered)?;
    text::boolean(body, "parallel_tool_calls").map_err(param_err("parallel_tool_calls"))?;
    let json_mode = response_format(body)?;
    let max = max_tokens(body)?;
    text::number_in(body, "temperature", 0.0, 2.0).map_err(param_err("temperature"))?;
    text::number_in(body, "top_p", 0.0, 1.0).map_err(param_err("top_p"))?;
    text::number_in(body, "presence_penalty", -2.0, 2.0).map_err(param_err("presence_penalty"))?;
    text::number_in(body, "frequency_penalty", -2.0, 2.0)
        .map_err(param_err("frequency_penalty"))?;
    text::int_in(body, "seed", i64::MIN, i64::MAX).map_err(param_err("seed"))?;
    text::boolean(body, "logprobs").map_err(param_err("logprobs"))?;
    text::int_in(body, "top_logprobs", 0, 20).map_err(param_err("top_logprobs"))?;
    text::string(body, "user").map_err(param_err("user"))?;
    let n = text::int_in(body, "n", 1, 128)
        .map_err(param_err("n"))?
        .unwrap_or(1);
    let stops = stop(body)?;
    let streaming = text::boolean(body, "stream")
        .map_err(param_err("stream"))?
        .unwrap_or(false);
    let include_usage = stream_options(body, streaming)?;
    let effort = text::string(body, "reasoning_effort").map_err(param_err("reasoning_effort"))?;
    if let Some(e) = effort.filter(|e| !EFFORTS.contains(e)) {
        return Err(Reject::bad(format!(
            "Invalid value: '{e}'. Supported values are: 'none', 'minimal', 'low', 'medium', 'high', and 'xhigh'."
        ))
        .param("reasoning_effort")
        .code("invalid_value"));
    }
    if let Some(v) = text::string(body, "verbosity").map_err(param_err("verbosity"))? {
        if !["low", "medium", "high"].contains(&v) {
            return Err(Reject::bad(format!(
                "Invalid value: '{v}'. Supported values are: 'low', 'medium', and 'high'."
            ))
            .param("verbosity")
            .code("invalid_value"));
        }
    }
    let thinking = effort.is_some_and(|e| !["none", "minimal"].contains(&e));
    let mut answer = Answer::new(model, &last_user, max, &stops);
    if let Some(mode) = &json_mode {
        answer.text = tools::json_text(mode, &answer.text);
    }
    let call = tools::decide(&offered, &choice, after_tool, &last_user);
    let reply = Reply {
        model,
        input_words,
        thinking,
        n,
        call,
    };
    Ok(Success {
        normal: reply.body(&answer),
        empty: reply.body(&Answer::empty()),
        stream: streaming.then(|| stream::openai(include_usage)),
    })
}

/// Checks `stream_options` (only with `stream`); returns `include_usage`.
fn stream_options(body: &Map<String, Value>, streaming: bool) -> Result<bool, Reject> {
    let Some(options) = text::get(body, "stream_options") else {
        return Ok(false);
    };
    let reject = |m: String| Reject::bad(m).param("stream_options");
    if !streaming {
        return Err(reject(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.".into(),
        ));
    }
    let options = options
        .as_object()
        .ok_or_else(|| reject("Invalid type for 'stream_options': expected an object".into()))?;
    if let Some(k) = text::unknown_key(options, &["include_usage", "include_obfuscation"]) {
        return Err(reject(format!("Unrecognized stream_options argument: {k}")));
    }
    text::boolean(options, "include_obfuscation").map_err(reject)?;
    Ok(text::boolean(options, "include_usage")
        .map_err(reject)?
        .unwrap_or(false))
}

fn param_err(param: &'static str) -> impl Fn(String) -> Reject {
    move |m| Reject::bad(m).param(param)
}

/// `tools`: function tools as the API takes them; returns what is offered.
fn tools(body: &Map<String, Value>) -> Result<Vec<tools::Offered>, Reject> {
    let list = match text::get(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(l)) => l,
        Some(v) => {
            return Err(Reject::bad(format!(
                "Invalid type for 'tools': expected an array, got {v}"
            ))
            .param("tools"))
        }
    };
    let mut out = Vec::new();
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(Reject::bad(format!(
                "Invalid value for '{at}.type': expected 'function'."
            ))
            .param(format!("{at}.type")));
        }
        let f = t
            .get("function")
            .and_then(Value::as_object)
            .ok_or_else(|| {
                Reject::bad(format!("Missing required parameter: '{at}.function'."))
                    .param(format!("{at}.function"))
            })?;
        if let Some(k) = text::unknown_key(f, &["name", "description", "parameters", "strict"]) {
            return Err(Reject::bad(format!(
                "Unrecognized request argument supplied: {at}.function.{k}"
            )));
        }
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if !tools::valid_name(name, &[]) {
            return Err(Reject::bad(format!(
                "Invalid '{at}.function.name': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            )).param(format!("{at}.function.name")).code("invalid_value"));
        }
        let schema = match f.get("parameters") {
            None => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => {
                return Err(Reject::bad(format!(
                    "Invalid type for '{at}.function.parameters': expected an object."
                ))
                .param(format!("{at}.function.parameters")))
            }
        };
        text::string(f, "description").map_err(param_err("tools"))?;
        text::boolean(f, "strict").map_err(param_err("tools"))?;
        out.push(tools::Offered {
            name: name.to_owned(),
            schema,
        });
    }
    Ok(out)
}

/// `tool_choice`: a mode string or a named function among the tools.
fn tool_choice(
    body: &Map<String, Value>,
    offered: &[tools::Offered],
) -> Result<tools::Choice, Reject> {
    let bad = |m: String| Reject::bad(m).param("tool_choice");
    let choice = match text::get(body, "tool_choice") {
        None => return Ok(tools::Choice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => tools::Choice::Auto,
            "none" => tools::Choice::None,
            "required" => tools::Choice::Any,
            other => {
                return Err(bad(format!(
                "Invalid value: '{other}'. Supported values are: 'none', 'auto', and 'required'."
            )))
            }
        },
        Some(v) => match (
            v.get("type").and_then(Value::as_str),
            v.pointer("/function/name").and_then(Value::as_str),
        ) {
            (Some("function"), Some(name)) => tools::Choice::Named(name.to_owned()),
            _ => return Err(bad("Invalid value for 'tool_choice'.".into())),
        },
    };
    if offered.is_empty() {
        return Err(bad("Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.".into()));
    }
    if let tools::Choice::Named(n) = &choice {
        if !offered.iter().any(|t| &t.name == n) {
            return Err(bad(format!(
                "Invalid value for 'tool_choice': function '{n}' is not among the tools."
            )));
        }
    }
    Ok(choice)
}

/// `response_format`: text, json_object or json_schema (with a name).
fn response_format(body: &Map<String, Value>) -> Result<Option<tools::JsonMode>, Reject> {
    let Some(f) = text::get(body, "response_format") else {
        return Ok(None);
    };
    let bad = |m: &str| Reject::bad(m).param("response_format");
    match f.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(tools::JsonMode::Object)),
        Some("json_schema") => {
            let spec = f.get("json_schema").and_then(Value::as_object).ok_or_else(|| bad("Missing required parameter: 'response_format.json_schema'."))?;
            if let Some(k) = text::unknown_key(spec, &["name", "description", "schema", "strict"]) {
                return Err(bad(&format!("Unrecognized argument: response_format.json_schema.{k}")));
            }
            if !spec.get("name").and_then(Value::as_str).is_some_and(|n| tools::valid_name(n, &[])) {
                return Err(bad("Invalid 'response_format.json_schema.name': expected a string matching '^[a-zA-Z0-9_-]+$'."));
            }
            let schema = spec.get("schema").cloned().unwrap_or_else(|| json!({"type": "object"}));
            Ok(Some(tools::JsonMode::Schema(schema)))
        }
        _ => Err(bad("Invalid value for 'response_format.type': expected 'text', 'json_object' or 'json_schema'.")),
    }
}

/// An assistant message's `tool_calls`; returns their ids.
fn call_ids(calls: &Value, at: &str) -> Result<Vec<String>, Reject> {
    let list = calls.as_array().ok_or_else(|| {
        Reject::bad(format!(
            "Invalid type for '{at}.tool_calls': expected an array"
        ))
        .param(format!("{at}.tool_calls"))
    })?;
    let mut ids = Vec::new();
    for (j, c) in list.iter().enumerate() {
        let here = format!("{at}.tool_calls[{j}]");
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty());
        let kind = c.get("type").and_then(Value::as_str);
        let name = c.pointer("/function/name").and_then(Value::as_str);
        let args = c.pointer("/function/arguments").and_then(Value::as_str);
        match (id, kind, name, args) {
            (Some(id), Some("function"), Some(_), Some(_)) => ids.push(id.to_owned()),
            _ => return Err(Reject::bad(format!("Invalid '{here}': needs 'id', 'type': 'function' and 'function' with string 'name' and 'arguments'.")).param(here)),
        }
    }
    Ok(ids)
}

/// Checks the messages; returns the input word count, the last user text (or tool
/// result) and whether the conversation ends with a tool result.
fn messages(body: &Map<String, Value>) -> Result<(u64, String, bool), Reject> {
    let list = match text::get(body, "messages") {
        None => {
            return Err(Reject::bad("Missing required parameter: 'messages'.")
                .param("messages")
                .code("missing_required_parameter"))
        }
        Some(Value::Array(l)) => l,
        Some(v) => {
            return Err(Reject::bad(format!(
                "Invalid type for 'messages': expected an array, got {v}"
            ))
            .param("messages"))
        }
    };
    if list.is_empty() {
        return Err(Reject::bad("[] is too short - 'messages'").param("messages"));
    }
    let mut input = 0;
    let mut last_user = String::new();
    let mut after_tool = false;
    let mut open_calls: Vec<String> = Vec::new();
    for (idx, m) in list.iter().enumerate() {
        let at = format!("messages[{idx}]");
        let m = m.as_object().ok_or_else(|| {
            Reject::bad(format!("Invalid type for '{at}': expected an object")).param(&at)
        })?;
        if let Some(k) = text::unknown_key(m, MESSAGE_FIELDS) {
            return Err(Reject::bad(format!(
                "Additional properties are not allowed ('{k}' was unexpected) - '{at}'"
            ))
            .param(&at));
        }
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !ROLES.contains(&role) {
            return Err(Reject::bad(format!(
                "Invalid value: '{role}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
            ))
            .param(format!("{at}.role"))
            .code("invalid_value"));
        }
        let content = content_text(m.get("content"), role)
            .map_err(|e| Reject::bad(e).param(format!("{at}.content")))?;
        input += text::words(&content);
        match (role, m.get("tool_calls")) {
            ("assistant", Some(calls)) => open_calls = call_ids(calls, &at)?,
            ("tool", _) => {
                let id = m
                    .get("tool_call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if !open_calls.iter().any(|c| c == id) {
                    return Err(Reject::bad(format!(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'. ('{at}.tool_call_id' = '{id}')"
                    )).param(format!("{at}.tool_call_id")));
                }
                last_user = content;
                after_tool = true;
                continue;
            }
            (_, Some(_)) => {
                return Err(Reject::bad(format!(
                    "Invalid parameter: only assistant messages can have 'tool_calls' ('{at}')."
                ))
                .param(format!("{at}.tool_calls")))
            }
            _ => {}
        }
        if role == "user" {
            last_user = content;
            after_tool = false;
        }
    }
    Ok((input, last_user, after_tool))
}

/// The text of a message's content: a string or a list of `text` parts (other part
/// types are accepted and ignored); only assistant messages may omit it.
fn content_text(content: Option<&Value>, role: &str) -> Result<String, String> {
    match content {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut texts = Vec::new();
            for p in parts {
                let kind = p
                    .get("type")
                    .and_then(Value::as_str)
                    .ok_or("each content part needs a string `type`")?;
                if kind == "text" {
                    let t = p
                        .get("text")
                        .and_then(Value::as_str)
                        .ok_or("a text part needs a string `text`")?;
                    texts.push(t);
                }
            }
            Ok(texts.join(" "))
        }
        None | Some(Value::Null) if role == "assistant" => Ok(String::new()),
        None | Some(Value::Null) => Err(format!(
            "Missing required parameter: content of a '{role}' message"
        )),
        Some(v) => Err(format!(
            "Invalid type for content: expected a string or an array, got {v}"
        )),
    }
}

fn max_tokens(body: &Map<String, Value>) -> Result<Option<u64>, Reject> {
    let a = text::int_in(body, "max_tokens", 1, i64::MAX).map_err(param_err("max_tokens"))?;
    let b = text::int_in(body, "max_completion_tokens", 1, i64::MAX)
        .map_err(param_err("max_completion_tokens"))?;
    Ok(b.or(a).and_then(|n| u64::try_from(n).ok()))
}

fn stop(body: &Map<String, Value>) -> Result<Vec<String>, Reject> {
    match text::get(body, "stop") {
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(_) => text::string_list(body, "stop", 4).map_err(param_err("stop")),
        None => Ok(Vec::new()),
    }
}

struct Reply<'a> {
    model: &'a str,
    input_words: u64,
    thinking: bool,
    n: i64,
    call: Option<tools::FakeCall>,
}

impl Reply<'_> {
    fn body(&self, answer: &Answer) -> Value {
        let mut finish = match answer.finish {
            Finish::Length => "length",
            Finish::Stop | Finish::Sequence(_) => "stop",
        };
        let mut message = json!({"role": "assistant", "content": answer.text, "refusal": null, "annotations": []});
        if let Some(call) = &self.call {
            finish = "tool_calls";
            message["content"] = Value::Null;
            message["tool_calls"] = json!([{
                "id": tools::call_id("call_"),
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments.to_string()},
            }]);
        }
        let choices: Vec<Value> = (0..self.n)
            .map(|index| {
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": finish,
                })
            })
            .collect();
        let count = u64::try_from(self.n).unwrap_or(1);
        let reasoning = if self.thinking { THINKING_TOKENS } else { 0 };
        let completion = answer.tokens() * count + reasoning;
        json!({
            "id": format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
            "object": "chat.completion",
            "created": chrono::Utc::now().timestamp(),
            "model": self.model,
            "choices": choices,
            "usage": {
                "prompt_tokens": self.input_words,
                "completion_tokens": completion,
                "total_tokens": self.input_words + completion,
                "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
                "completion_tokens_details": {"reasoning_tokens": reasoning, "audio_tokens": 0},
            },
            "service_tier": "default",
            "system_fingerprint": "fp_fake",
        })
    }
}
