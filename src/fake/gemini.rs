//! Google Gemini (`POST /v1beta/models/{model}:generateContent`).
//!
//! The model is in the path; the whole `{model}:{method}` segment is matched and split
//! here; `:streamGenerateContent` streams (SSE with `alt=sse`, else a JSON array)
//! and unknown methods get Gemini's 404. The key must come in `x-goog-api-key`: a `key=` query parameter is
//! refused, because bkvy must never put a key into a URL (URLs end up in logs).
//!
//! Field names are accepted in camelCase or snake_case, as the real (protobuf JSON)
//! API does. Thinking: on for a model whose name contains `2.5` or `pro` unless
//! `thinkingBudget` is 0; then `thoughtsTokenCount` is [`THINKING_TOKENS`] and, with
//! `includeThoughts`, a `thought: true` part precedes the answer.
//!
//! [`FLAVOR`] tells the shared exchange where the key is (`x-goog-api-key`) and how
//! errors look.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::exchange::{self, Credential, Flavor, Incoming, Reject, Success};
use super::gemini_request::{
    camel_keys, config, content_words, contents, function_turns, tool_config, tools, Config,
};
use super::state::Shared;
use super::stream;
use super::text::{self, Answer, Finish, THINKING_TOKENS, THOUGHT};
use super::tools as fake_tools;
use super::FakeApi;

/// `POST /v1beta/models/{model}:{method}`.
pub(crate) async fn call(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let (model, _) = split_call(&req);
    exchange::serve(
        &shared,
        &req,
        &body,
        FakeApi::Gemini,
        FLAVOR,
        Some(model),
        check,
    )
    .await
}

/// `{model}:{method}` from the path (method `""` when there is no colon).
fn split_call(req: &HttpRequest) -> (String, String) {
    let call = req.match_info().get("call").unwrap_or("");
    match call.rsplit_once(':') {
        Some((m, method)) => (m.to_owned(), method.to_owned()),
        None => (call.to_owned(), String::new()),
    }
}

/// Whether the query asks for SSE framing (`alt=sse`).
fn alt_sse(req: &HttpRequest) -> bool {
    req.query_string().split('&').any(|pair| pair == "alt=sse")
}

/// `x-goog-api-key`, Google's error shape.
pub(crate) const FLAVOR: Flavor = Flavor {
    credential: Credential::Header("x-goog-api-key"),
    error_body,
};

/// Google's error shape; a 429 carries a `RetryInfo` detail.
fn error_body(r: &Reject, retry_delay_secs: u64) -> Value {
    let status = match r.status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ if r.status >= 500 => "INTERNAL",
        _ => "FAILED_PRECONDITION",
    };
    let mut error = json!({"code": r.status, "message": r.message, "status": status});
    if r.status == 429 {
        error["details"] = json!([{
            "@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": format!("{retry_delay_secs}s"),
        }]);
    }
    json!({ "error": error })
}

/// Refuses `key=` in the URL, then requires `x-goog-api-key`.
pub(crate) fn check_auth(req: &HttpRequest) -> Result<(), Reject> {
    let key_in_url = req
        .query_string()
        .split('&')
        .any(|pair| pair.split('=').next() == Some("key"));
    if key_in_url {
        return Err(Reject::bad(
            "API key passed as a `key=` query parameter; this fake upstream only accepts the \
             x-goog-api-key header (keys must never be put in URLs)",
        ));
    }
    let key = req
        .headers()
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if key.trim().is_empty() {
        return Err(Reject::new(
            401,
            "Method doesn't allow unregistered callers (callers without established identity). \
             Please use API Key or other form of API consumer identity to call this API.",
        ));
    }
    Ok(())
}

fn check(i: &Incoming<'_>) -> Result<Success, Reject> {
    check_auth(i.req)?;
    let (model, method) = split_call(i.req);
    match method.as_str() {
        "generateContent" | "streamGenerateContent" => {}
        _ => {
            return Err(Reject::new(
                404,
                format!("Method not found: {method:?} on models/{model}"),
            ))
        }
    }
    if model.is_empty() {
        return Err(Reject::new(
            404,
            "models/ is not found for API version v1beta",
        ));
    }
    let body = i
        .json
        .and_then(Value::as_object)
        .ok_or_else(|| Reject::bad("Invalid JSON payload received. Expected an object."))?;
    let body = camel_keys(body, None)?;
    let (input_words, mut last_user) = contents(&body)?;
    let tool_result = function_turns(&body, &model)?;
    let offered = tools(&body)?;
    let choice = tool_config(&body, &offered)?;
    let system_words = match text::get(&body, "systemInstruction") {
        None => 0,
        Some(v) => content_words(v, "systemInstruction")?.0,
    };
    if let Some(s) = text::get(&body, "safetySettings") {
        let ok = s.as_array().is_some_and(|l| {
            l.iter().all(|e| {
                e.get("category").is_some_and(Value::is_string)
                    && e.get("threshold").is_some_and(Value::is_string)
            })
        });
        if !ok {
            return Err(Reject::bad(
                "safety_settings: expected a list of {category, threshold}",
            ));
        }
    }
    let config = match text::get(&body, "generationConfig") {
        None => Config::default(),
        Some(Value::Object(c)) => config(&camel_keys(c, Some("generation_config"))?, &model)?,
        Some(_) => return Err(Reject::bad("generation_config: expected an object")),
    };
    let thinking = {
        let name = model.to_ascii_lowercase();
        (name.contains("2.5") || name.contains("pro")) && config.budget != Some(0)
    };
    if let Some(r) = &tool_result {
        last_user.clone_from(r);
    }
    let mut answer = Answer::new(&model, &last_user, config.max_tokens, &config.stops);
    if let Some(mode) = &config.json {
        answer.text = fake_tools::json_text(mode, &answer.text);
    }
    let call = fake_tools::decide(&offered, &choice, tool_result.is_some(), &last_user);
    let reply = Reply {
        call,
        model: &model,
        input_words: input_words + system_words,
        thinking,
        show_thoughts: thinking && config.include_thoughts,
        candidates: config.candidates,
    };
    Ok(Success {
        normal: reply.body(&answer),
        empty: reply.body(&Answer::empty()),
        stream: (method == "streamGenerateContent").then(|| stream::gemini(alt_sse(i.req))),
    })
}

struct Reply<'a> {
    call: Option<fake_tools::FakeCall>,
    model: &'a str,
    input_words: u64,
    thinking: bool,
    show_thoughts: bool,
    candidates: i64,
}

impl Reply<'_> {
    fn body(&self, answer: &Answer) -> Value {
        let finish = match answer.finish {
            Finish::Length => "MAX_TOKENS",
            Finish::Stop | Finish::Sequence(_) => "STOP",
        };
        let mut parts = Vec::new();
        if self.show_thoughts {
            parts.push(json!({"text": THOUGHT, "thought": true}));
        }
        match &self.call {
            Some(call) => {
                let mut part = json!({"functionCall": {"name": call.name, "args": call.arguments}});
                if self.model.to_ascii_lowercase().contains("gemini-3") {
                    // Real signatures are base64 with `+`, `/` and padding.
                    part["thoughtSignature"] = json!("CiQB+fake/signat+w==");
                }
                parts.push(part);
            }
            None => parts.push(json!({"text": answer.text})),
        }
        let candidates: Vec<Value> = (0..self.candidates)
            .map(|index| {
                json!({
                    "content": {"parts": parts, "role": "model"},
                    "finishReason": finish,
                    "index": index,
                })
            })
            .collect();
        let output = answer.tokens() * u64::try_from(self.candidates).unwrap_or(1);
        let thoughts = if self.thinking { THINKING_TOKENS } else { 0 };
        let mut usage = json!({
            "promptTokenCount": self.input_words,
            "candidatesTokenCount": output,
            "totalTokenCount": self.input_words + output + thoughts,
        });
        if self.thinking {
            usage["thoughtsTokenCount"] = json!(thoughts);
        }
        json!({
            "candidates": candidates,
            "usageMetadata": usage,
            "modelVersion": self.model,
            "responseId": uuid::Uuid::new_v4().simple().to_string(),
        })
    }
}
