//! The OpenAI-compatible surface: `POST /v1/chat/completions` and `GET /v1/models`, so an
//! application gets bkvy's routing by changing only its SDK's `base_url`.
//!
//! `model` selects the routing: `low`, `medium`, `high` (intelligence), `scenario:<name>`,
//! or `<provider>/<model>` (direct). bkvy's own parameters come as optional body fields or
//! `x-bkvy-*` headers. Every error on this surface uses OpenAI's error shape, so the
//! official SDKs raise their usual exception types.

use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};
use bkvy_actors::{KeyModelId, Plan, RouteTarget, RoutingMethod, Tier};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::parse_json;
use super::chat::stream::{sse, ChunkFormat};
use super::chat::{self, Chat, Ctx, Door, Refusal, Refused};
use super::error::ApiError;
use super::{names, WebState};
use crate::clients::Clients;
use crate::gateway::Success;
use crate::providers::stream::ToolCallDelta;
use crate::providers::tool_call_json as call_json;
use crate::state::AppState;
use crate::types::{
    ChatMessage, ChatOptions, FinishReason, ResponseFormat, Role, ToolCall, ToolChoice, ToolDef,
    Tooling, Usage,
};

/// A message content part.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text {
        text: String,
    },
    #[serde(other)]
    Other,
}

/// String content or a list of parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
struct OaiMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
    #[serde(default)]
    #[allow(dead_code)]
    name: Option<String>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    tool_call_id: Option<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Default, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// The OpenAI Chat Completions request, plus bkvy's optional fields.
#[derive(Debug, Deserialize)]
pub struct OaiRequest {
    model: String,
    messages: Vec<OaiMessage>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    reasoning_effort: Option<String>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    parallel_tool_calls: Option<bool>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    logprobs: Option<bool>,
    #[serde(default)]
    client_id: Option<String>,
    #[serde(default)]
    max_wait_seconds: Option<f64>,
    #[serde(default)]
    timeout_seconds: Option<f64>,
    #[serde(default)]
    disable_thinking: Option<bool>,
    /// Other OpenAI parameters are accepted and ignored when harmless (seed, penalties,
    /// metadata, store, service_tier, …).
    #[serde(flatten)]
    #[allow(dead_code)]
    rest: serde_json::Map<String, Value>,
}

/// OpenAI parameters that bkvy accepts and ignores (they do not change the answer's
/// shape, or have no cross-provider meaning).
const IGNORED: &[&str] = &[
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "metadata",
    "store",
    "service_tier",
    "logit_bias",
    "top_logprobs",
    "safety_identifier",
    "prompt_cache_key",
    "verbosity",
];

/// An error on this surface, in OpenAI's shape.
pub struct OaiError {
    status: StatusCode,
    message: String,
    kind: &'static str,
    param: Option<&'static str>,
    code: String,
    retry_after: Option<u64>,
}

impl OaiError {
    fn invalid(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param),
            code: "invalid_value".into(),
            retry_after: None,
        }
    }

    /// The OpenAI-shaped form of one of bkvy's own errors.
    pub fn from_api(e: &ApiError) -> Self {
        let status = match e {
            ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
            other => other.status_code(),
        };
        let kind = match (status.as_u16(), e) {
            (_, ApiError::InsufficientQuota { .. }) => "insufficient_quota",
            (429, _) => "requests",
            (403, _) => "permission_error",
            (404 | 400 | 401 | 413 | 415 | 422, _) => "invalid_request_error",
            _ => "api_error",
        };
        Self {
            status,
            message: e.to_string(),
            kind,
            param: None,
            code: e.code().to_owned(),
            retry_after: e.retry_after_secs(),
        }
    }

    /// The error response, with the request id header.
    pub fn response(&self, request_id: &str) -> HttpResponse {
        let mut res = HttpResponse::build(self.status);
        res.insert_header((names::REQUEST_ID, request_id));
        if let Some(s) = self.retry_after {
            res.insert_header(("retry-after", s.max(1).to_string()));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        res.json(json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }}))
    }
}

/// `model` → where to route.
fn target_of(model: &str) -> Result<RouteTarget, OaiError> {
    if let Some(tier) = Tier::parse(model) {
        return Ok(RouteTarget::Intelligence(tier));
    }
    if let Some(name) = model.strip_prefix("scenario:") {
        return Ok(RouteTarget::Scenario(name.to_owned()));
    }
    if let Some((provider, m)) = model.split_once('/') {
        if !provider.is_empty() && !m.is_empty() {
            return Ok(RouteTarget::Direct {
                provider: provider.to_owned(),
                model: m.to_owned(),
                key_id: None,
            });
        }
    }
    Err(OaiError {
        status: StatusCode::NOT_FOUND,
        message: format!(
            "The model `{model}` does not exist: use low, medium, high, scenario:<name> or <provider>/<model> (see GET /v1/models)"
        ),
        kind: "invalid_request_error",
        param: Some("model"),
        code: "model_not_found".into(),
        retry_after: None,
    })
}

fn messages_of(raw: Vec<OaiMessage>) -> Result<Vec<ChatMessage>, OaiError> {
    let mut out: Vec<ChatMessage> = Vec::with_capacity(raw.len());
    for (i, m) in raw.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => {
                return Err(OaiError::invalid(
                    "messages",
                    format!("messages[{i}]: role \"function\" is deprecated and not supported; answer tool calls with role \"tool\""),
                ))
            }
            other => {
                return Err(OaiError::invalid(
                    "messages",
                    format!(
                        "messages[{i}]: invalid role {other:?}: expected system, developer, user, assistant or tool"
                    ),
                ))
            }
        };
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match p {
                        Part::Text { text: t } => text.push_str(&t),
                        Part::Other => {
                            return Err(OaiError::invalid(
                                "messages",
                                format!("messages[{i}]: only text content parts are supported"),
                            ))
                        }
                    }
                }
                text
            }
        };
        let mut message = ChatMessage::new(role, content);
        match (role, m.tool_calls, m.tool_call_id) {
            (Role::Assistant, calls, None) => {
                message.tool_calls = tool_calls_of(i, calls)?;
            }
            (Role::Tool, None, Some(Value::String(id))) if !id.is_empty() => {
                let answered = out
                    .iter()
                    .rev()
                    .take_while(|p| p.role != Role::User)
                    .any(|p| p.tool_calls.iter().any(|c| c.id == id));
                if !answered {
                    return Err(OaiError::invalid(
                        "messages",
                        format!("messages[{i}]: a tool message must answer a tool call of a preceding assistant message; no call has id {id:?}"),
                    ));
                }
                message.tool_call_id = Some(id);
            }
            (Role::Tool, _, _) => {
                return Err(OaiError::invalid(
                    "messages",
                    format!("messages[{i}]: a tool message needs a non-empty string tool_call_id and no tool_calls"),
                ))
            }
            (_, Some(_), _) | (_, _, Some(_)) => {
                return Err(OaiError::invalid(
                    "messages",
                    format!("messages[{i}]: only assistant messages carry tool_calls, and only tool messages a tool_call_id"),
                ))
            }
            (_, None, None) => {}
        }
        out.push(message);
    }
    if out.is_empty() {
        return Err(OaiError::invalid("messages", "messages must not be empty"));
    }
    Ok(out)
}

/// An assistant message's `tool_calls`: `[{"id", "type": "function", "function":
/// {"name", "arguments"}}]`.
fn tool_calls_of(i: usize, raw: Option<Value>) -> Result<Vec<ToolCall>, OaiError> {
    let bad =
        |what: &str| OaiError::invalid("messages", format!("messages[{i}].tool_calls: {what}"));
    let list = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("expected an array")),
    };
    list.into_iter()
        .enumerate()
        .map(|(j, c)| {
            let id = c.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
            let kind = c.get("type").and_then(Value::as_str).unwrap_or("function");
            let function = c.get("function");
            let name = function
                .and_then(|f| f.get("name"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let arguments = match function.and_then(|f| f.get("arguments")) {
                Some(Value::String(a)) => Some(a.clone()),
                None | Some(Value::Null) => Some("{}".to_owned()),
                Some(_) => None,
            };
            match (id, kind, name, arguments) {
                (Some(id), "function", Some(name), Some(arguments)) => Ok(ToolCall {
                    id: id.to_owned(),
                    name: name.to_owned(),
                    arguments,
                }),
                _ => Err(bad(&format!(
                    "call {j} needs an id, type \"function\" and a function with a name and string arguments"
                ))),
            }
        })
        .collect()
}

/// Whether a function or schema name has the form OpenAI accepts (the other APIs accept it too).
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// `tools`: function tools only.
fn tools_of(raw: Option<Value>) -> Result<Vec<ToolDef>, OaiError> {
    let bad = |m: String| OaiError::invalid("tools", m);
    let list = match raw {
        None | Some(Value::Null) => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(_) => return Err(bad("tools must be an array".into())),
    };
    let mut out: Vec<ToolDef> = Vec::with_capacity(list.len());
    for (i, t) in list.into_iter().enumerate() {
        if t.get("type").and_then(Value::as_str) != Some("function") {
            return Err(bad(format!(
                "tools[{i}]: only tools of type \"function\" are supported"
            )));
        }
        let Some(f) = t.get("function").and_then(Value::as_object) else {
            return Err(bad(format!("tools[{i}]: missing the function object")));
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or_default();
        if !valid_name(name) {
            return Err(bad(format!(
                "tools[{i}].function.name must be 1 to 64 letters, digits, underscores or dashes"
            )));
        }
        if out.iter().any(|d| d.name == name) {
            return Err(bad(format!("tools[{i}]: duplicate function name {name:?}")));
        }
        let description = match f.get("description") {
            None | Some(Value::Null) => None,
            Some(Value::String(d)) => Some(d.clone()),
            Some(_) => {
                return Err(bad(format!(
                    "tools[{i}].function.description must be a string"
                )))
            }
        };
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => None,
            Some(p @ Value::Object(_)) => Some(p.clone()),
            Some(_) => {
                return Err(bad(format!(
                    "tools[{i}].function.parameters must be a JSON Schema object"
                )))
            }
        };
        let strict = match f.get("strict") {
            None | Some(Value::Null) => None,
            Some(Value::Bool(b)) => Some(*b),
            Some(_) => return Err(bad(format!("tools[{i}].function.strict must be a boolean"))),
        };
        out.push(ToolDef {
            name: name.to_owned(),
            description,
            parameters,
            strict,
        });
    }
    Ok(out)
}

/// `tool_choice`: `auto`, `none`, `required` or a named function among `tools`.
fn tool_choice_of(raw: Option<Value>, tools: &[ToolDef]) -> Result<Option<ToolChoice>, OaiError> {
    let bad = |m: &str| OaiError::invalid("tool_choice", m);
    let choice = match raw {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            _ => return Err(bad("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")),
        },
        Some(v) => {
            let name = v
                .pointer("/function/name")
                .and_then(Value::as_str)
                .filter(|_| v.get("type").and_then(Value::as_str) == Some("function"));
            match name {
                Some(n) if tools.iter().any(|t| t.name == n) => ToolChoice::Function(n.to_owned()),
                Some(n) => return Err(bad(&format!("tool_choice names function {n:?}, which is not in tools"))),
                None => return Err(bad("tool_choice must be \"auto\", \"none\", \"required\" or {\"type\": \"function\", \"function\": {\"name\": ...}}")),
            }
        }
    };
    if tools.is_empty() && matches!(choice, ToolChoice::Required | ToolChoice::Function(_)) {
        return Err(bad("tool_choice is only allowed when tools are specified"));
    }
    Ok(Some(choice))
}

/// `response_format`: `text`, `json_object` or `json_schema`.
fn response_format_of(raw: Option<Value>) -> Result<ResponseFormat, OaiError> {
    let bad = |m: String| OaiError::invalid("response_format", m);
    let Some(v) = raw.filter(|v| !v.is_null()) else {
        return Ok(ResponseFormat::Text);
    };
    match v.get("type").and_then(Value::as_str) {
        Some("text") => Ok(ResponseFormat::Text),
        Some("json_object") => Ok(ResponseFormat::JsonObject),
        Some("json_schema") => {
            let Some(spec) = v.get("json_schema").and_then(Value::as_object) else {
                return Err(bad(
                    "json_schema response_format needs a json_schema object".into(),
                ));
            };
            let name = spec.get("name").and_then(Value::as_str).unwrap_or_default();
            if !valid_name(name) {
                return Err(bad(
                    "json_schema.name must be 1 to 64 letters, digits, underscores or dashes"
                        .into(),
                ));
            }
            let schema = match spec.get("schema") {
                None | Some(Value::Null) => None,
                Some(s @ Value::Object(_)) => Some(s.clone()),
                Some(_) => {
                    return Err(bad("json_schema.schema must be a JSON Schema object".into()))
                }
            };
            Ok(ResponseFormat::JsonSchema {
                name: name.to_owned(),
                description: spec
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                schema,
                strict: spec.get("strict").and_then(Value::as_bool),
            })
        }
        _ => Err(bad(
            "response_format type must be \"text\", \"json_object\" or \"json_schema\"".into(),
        )),
    }
}

fn header<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

/// A stable, non-reversible id for a bearer token (never the token itself).
fn bearer_id(req: &HttpRequest) -> Option<String> {
    let token = header(req, "authorization")?
        .strip_prefix("Bearer ")?
        .trim();
    if token.is_empty() {
        return None;
    }
    // FNV-1a 64: enough to tell callers apart, says nothing about the token.
    let hash = token.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    Some(format!("bearer-{:012x}", hash >> 16))
}

/// A request that passed every check, ready for routing.
pub struct Parsed {
    /// What the pipeline gets.
    pub chat: Chat,
    /// Whether a streamed answer ends with a usage chunk.
    pub include_usage: bool,
}

/// Checks a parsed body (and bkvy's `x-bkvy-*` and `authorization` headers) as
/// `POST /v1/chat/completions` does before routing.
pub fn parse(req: &HttpRequest, body: OaiRequest, max_messages: usize) -> Result<Parsed, OaiError> {
    let target = target_of(&body.model)?;
    if body.n.is_some_and(|n| n != 1) {
        return Err(OaiError::invalid("n", "only n = 1 is supported"));
    }
    let tools = tools_of(body.tools)?;
    let tool_choice = tool_choice_of(body.tool_choice, &tools)?;
    let tooling = Tooling {
        tools,
        tool_choice,
        parallel_tool_calls: body.parallel_tool_calls,
        response_format: response_format_of(body.response_format)?,
    };
    if body.logprobs == Some(true) {
        return Err(OaiError::invalid("logprobs", "logprobs are not supported"));
    }
    if let Some(k) = body.rest.keys().find(|k| !IGNORED.contains(&k.as_str())) {
        return Err(OaiError {
            code: "unknown_parameter".into(),
            ..OaiError::invalid(
                "messages",
                format!("Unrecognized request argument supplied: {k}"),
            )
        });
    }
    let thinking_from_effort = match body.reasoning_effort.as_deref() {
        None => None,
        Some("none" | "minimal") => Some(true),
        Some("low" | "medium" | "high" | "xhigh") => Some(false),
        Some(other) => {
            return Err(OaiError::invalid(
                "reasoning_effort",
                format!("invalid reasoning_effort {other:?}: expected none, minimal, low, medium, high or xhigh"),
            ))
        }
    };
    let header_thinking = header(req, "x-bkvy-disable-thinking").map(|v| v == "true");
    let max_wait = match body.max_wait_seconds {
        Some(w) => Some(w),
        None => match header(req, "x-bkvy-max-wait-seconds") {
            Some(v) => Some(v.trim().parse::<f64>().map_err(|_| {
                OaiError::invalid("x-bkvy-max-wait-seconds", "expected a number of seconds")
            })?),
            None => None,
        },
    };
    let stop = body.stop.map(|s| match s {
        Stop::One(s) => vec![s],
        Stop::Many(v) => v,
    });
    let options = ChatOptions {
        max_tokens: body.max_completion_tokens.or(body.max_tokens),
        temperature: body.temperature,
        top_p: body.top_p,
        top_k: None,
        stop,
        disable_thinking: body
            .disable_thinking
            .or(header_thinking)
            .or(thinking_from_effort),
    };
    let client_id_declared = body.client_id.is_some() || header(req, "x-bkvy-client-id").is_some();
    let client_id = body
        .client_id
        .or_else(|| header(req, "x-bkvy-client-id").map(str::to_owned))
        .or_else(|| bearer_id(req))
        .unwrap_or_else(|| chat::ANONYMOUS.to_owned());
    chat::check_shared(&client_id, max_wait, body.timeout_seconds, &options)
        .map_err(|e| OaiError::from_api(&e))?;
    let messages = messages_of(body.messages)?;
    if messages.len() > max_messages {
        return Err(OaiError::invalid(
            "messages",
            format!(
                "too many messages: {} (at most {max_messages})",
                messages.len()
            ),
        ));
    }
    Ok(Parsed {
        chat: Chat {
            target,
            messages: messages.into(),
            options,
            max_wait_seconds: max_wait,
            timeout_seconds: body.timeout_seconds,
            tooling: std::sync::Arc::new(tooling),
            client_id,
            client_id_declared,
            stream: body.stream.unwrap_or(false),
        },
        include_usage: body
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
    })
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn finish_str(f: FinishReason) -> &'static str {
    match f {
        FinishReason::Length => "length",
        FinishReason::ContentFilter => "content_filter",
        FinishReason::ToolCalls => "tool_calls",
        FinishReason::Stop | FinishReason::Other => "stop",
    }
}

fn usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.input_tokens,
        "completion_tokens": u.output_tokens + u.thinking_tokens,
        "total_tokens": u.total(),
        "completion_tokens_details": {"reasoning_tokens": u.thinking_tokens},
    })
}

fn completion(request_id: &str, s: &Success) -> Value {
    let id = s.candidate.id();
    let calls = &s.response.tool_calls;
    let mut message = json!({"role": "assistant", "content": s.response.content, "refusal": null});
    if !calls.is_empty() {
        if s.response.content.is_empty() {
            message["content"] = Value::Null;
        }
        let list: Vec<Value> = calls.iter().map(call_json).collect();
        message["tool_calls"] = Value::Array(list);
    }
    json!({
        "id": format!("chatcmpl-{request_id}"),
        "object": "chat.completion",
        "created": unix_now(),
        "model": id.model,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": null,
            "finish_reason": finish_str(s.response.finish_reason),
        }],
        "usage": usage_json(&s.response.usage),
        "system_fingerprint": null,
    })
}

/// `chat.completion.chunk` events, `data: [DONE]` at the end.
struct OpenAiChunks {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    /// The bytes of a content chunk around its text, made once per stream: content
    /// chunks are nearly all of a stream, and only their text changes.
    content_frame: Option<(String, &'static str)>,
}

impl OpenAiChunks {
    fn new(id: String, created: u64, model: String, include_usage: bool) -> Self {
        Self {
            id,
            created,
            model,
            include_usage,
            content_frame: None,
        }
    }

    /// `data: ` + the chunk JSON up to the content string, and what follows it.
    fn content_frame(&self) -> (String, &'static str) {
        let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        let head = format!(
            "data: {{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},\"system_fingerprint\":null,\"choices\":[{{\"index\":0,\"delta\":{{\"content\":",
            quoted(&self.id),
            self.created,
            quoted(&self.model),
        );
        let tail = if self.include_usage {
            "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
        } else {
            "},\"logprobs\":null,\"finish_reason\":null}]}\n\n"
        };
        (head, tail)
    }

    fn chunk(&self, delta: Value, finish: Value) -> Value {
        let mut c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "system_fingerprint": null,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        c
    }
}

impl ChunkFormat for OpenAiChunks {
    fn start(&mut self) -> Option<String> {
        Some(sse(&self.chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )))
    }

    fn delta(&mut self, text: &str) -> String {
        if self.content_frame.is_none() {
            self.content_frame = Some(self.content_frame());
        }
        let (head, tail) = self
            .content_frame
            .as_ref()
            .map_or(("", ""), |(h, t)| (h.as_str(), *t));
        let mut out = String::with_capacity(head.len() + text.len() + tail.len() + 8);
        out.push_str(head);
        out.push_str(&serde_json::to_string(text).unwrap_or_default());
        out.push_str(tail);
        out
    }

    fn tool_call(&mut self, piece: &ToolCallDelta) -> String {
        let mut call = json!({"index": piece.index});
        if let Some(id) = &piece.id {
            call["id"] = json!(id);
            call["type"] = json!("function");
        }
        let mut function = json!({"arguments": piece.arguments});
        if let Some(name) = &piece.name {
            function["name"] = json!(name);
        }
        call["function"] = function;
        sse(&self.chunk(json!({"tool_calls": [call]}), Value::Null))
    }

    fn done(&mut self, finish: FinishReason, usage: &Usage, _cost_usd: f64) -> String {
        let mut out = sse(&self.chunk(json!({}), json!(finish_str(finish))));
        if self.include_usage {
            out.push_str(&sse(&json!({
                "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "system_fingerprint": null,
                "choices": [], "usage": usage_json(usage),
            })));
        }
        out.push_str("data: [DONE]\n\n");
        out
    }

    fn error(&mut self, message: &str, code: &str) -> String {
        let mut out = sse(&self.chunk(json!({}), json!("error")));
        out.push_str(&sse(&json!({"error": {
            "message": message, "type": "api_error", "param": null, "code": code,
        }})));
        out
    }
}

/// `POST /v1/chat/completions`: the OpenAI door over the chat pipeline.
pub async fn chat_completions(
    req: HttpRequest,
    state: web::Data<AppState>,
    web: web::Data<WebState>,
    clients: web::Data<Clients>,
    payload: web::Payload,
) -> HttpResponse {
    let door = OpenAiDoor {
        include_usage: false,
    };
    chat::serve(door, &req, &state, &web, &clients, payload).await
}

/// The OpenAI door: Chat Completions in, `chat.completion` (or its chunks) and OpenAI's
/// error shape out.
struct OpenAiDoor {
    /// Whether a streamed answer ends with a usage chunk (known once parsed).
    include_usage: bool,
}

impl Refusal for OaiError {
    fn code(&self) -> &str {
        &self.code
    }

    fn message(&self) -> String {
        self.message.clone()
    }
}

impl Door for OpenAiDoor {
    type Refusal = OaiError;

    fn method(&self) -> RoutingMethod {
        RoutingMethod::Intelligence
    }

    fn parse(
        &mut self,
        req: &HttpRequest,
        body: &[u8],
        max_messages: usize,
    ) -> Result<Chat, Refused<OaiError>> {
        let body: OaiRequest = parse_json(body).map_err(|e| OaiError::from_api(&e))?;
        let parsed = parse(req, body, max_messages)?;
        self.include_usage = parsed.include_usage;
        Ok(parsed.chat)
    }

    fn refusal(&self, e: &ApiError) -> OaiError {
        OaiError::from_api(e)
    }

    fn refuse(&self, ctx: &Ctx<'_>, e: &OaiError) -> HttpResponse {
        e.response(ctx.request_id)
    }

    fn fail(
        &self,
        ctx: &Ctx<'_>,
        e: &ApiError,
        _plan: Option<&Plan>,
        _details: Option<Value>,
    ) -> HttpResponse {
        OaiError::from_api(e).response(ctx.request_id)
    }

    fn answer(
        &self,
        ctx: &Ctx<'_>,
        _plan: &Plan,
        s: &Success,
        mut res: HttpResponseBuilder,
    ) -> HttpResponse {
        res.json(completion(ctx.request_id, s))
    }

    fn chunks(&self, ctx: &Ctx<'_>, id: &KeyModelId) -> Box<dyn ChunkFormat> {
        Box::new(OpenAiChunks::new(
            format!("chatcmpl-{}", ctx.request_id),
            unix_now(),
            id.model.clone(),
            self.include_usage,
        ))
    }
}

/// `GET /v1/models`: every routable name in OpenAI's list format; with client keys, the
/// names the caller's key may ask for.
pub async fn models(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let cfg = &state.live().upstreams.config;
    let client = match &cfg.clients {
        Some(keys) => match crate::http::client_auth::authenticate(&req, keys) {
            Ok(c) => Some(c),
            Err(e) => return OaiError::from_api(&e).response(&uuid::Uuid::new_v4().to_string()),
        },
        None => None,
    };
    let allowed = |name: &str| client.is_none_or(|c| target_of(name).is_ok_and(|t| c.allows(&t)));
    let entry = |id: String, owner: &str| json!({"id": id, "object": "model", "created": 0, "owned_by": owner});
    let mut data: Vec<Value> = Tier::ALL
        .iter()
        .filter(|t| state.live().table.candidates.iter().any(|c| c.tier == **t))
        .map(|t| entry(t.as_str().to_owned(), "bkvy"))
        .collect();
    data.extend(
        cfg.scenarios
            .keys()
            .map(|s| entry(format!("scenario:{s}"), "bkvy")),
    );
    for p in &cfg.providers {
        for m in &p.models {
            let routable = p.keys.iter().any(|k| k.limits_for(&m.name).is_some());
            if routable {
                data.push(entry(format!("{}/{}", p.name, m.name), &p.name));
            }
        }
    }
    data.retain(|m| m["id"].as_str().is_some_and(allowed));
    HttpResponse::Ok().json(json!({"object": "list", "data": data}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_chunks_are_the_same_json_as_the_general_chunk() {
        for include_usage in [false, true] {
            let mut f = OpenAiChunks::new("chatcmpl-\"x\"".into(), 7, "m/é".into(), include_usage);
            for text in ["plain", "quote \" and \\ and \n and é 🙂", ""] {
                let fast = f.delta(text);
                let general = sse(&f.chunk(json!({"content": text}), Value::Null));
                let parse = |s: &str| -> Value {
                    serde_json::from_str(s.strip_prefix("data: ").unwrap().trim_end()).unwrap()
                };
                assert_eq!(parse(&fast), parse(&general));
                assert!(fast.ends_with("\n\n"));
            }
        }
    }

    #[test]
    fn model_names_select_the_routing() {
        assert_eq!(
            target_of("low").ok(),
            Some(RouteTarget::Intelligence(Tier::Low))
        );
        assert_eq!(
            target_of("scenario:bulk").ok(),
            Some(RouteTarget::Scenario("bulk".into()))
        );
        assert_eq!(
            target_of("vllm/Qwen/Qwen3-8B").ok(),
            Some(RouteTarget::Direct {
                provider: "vllm".into(),
                model: "Qwen/Qwen3-8B".into(),
                key_id: None,
            })
        );
        assert_eq!(
            target_of("gpt-4o").err().map(|e| e.status.as_u16()),
            Some(404)
        );
    }
}
