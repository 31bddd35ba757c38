//! `POST /llm/intelligence`, `/llm/scenario`, `/llm/direct`: validate, route, execute,
//! and answer in the simplified or debug shape.
//!
//! Status codes tell the truth (200, 4xx for bad requests, 502/503/504 for upstream
//! trouble) while the body keeps the original's `success` and `error` keys.

use actix_web::{web, HttpRequest, HttpResponse, HttpResponseBuilder};
use bkvy_actors::{KeyModelId, Plan, RouteTarget, RoutingMethod, Tier};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::{parse_json, Object};
use super::chat::stream::{sse, ChunkFormat};
use super::chat::{self, Chat, Ctx, Door, Refused};
use super::error::{respond, ApiError};
use super::{names, WebState};
use crate::clients::Clients;
use crate::gateway::Success;
use crate::state::AppState;
use crate::types::{ChatMessage, ChatOptions, FinishReason, Role, Usage};

/// The request body of all three endpoints; each endpoint checks which routing fields it
/// needs and refuses the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmRequest {
    /// Who is asking (for statistics).
    #[serde(default)]
    pub client_id: Option<String>,
    /// `/llm/intelligence`: `low`, `medium` or `high`.
    #[serde(default)]
    pub intelligence_level: Option<String>,
    /// `/llm/scenario`: the scenario's name.
    #[serde(default)]
    pub scenario: Option<String>,
    /// `/llm/direct`: provider name.
    #[serde(default)]
    pub provider: Option<String>,
    /// `/llm/direct`: model name.
    #[serde(default)]
    pub model: Option<String>,
    /// `/llm/direct`: a key id, or any key when absent/null.
    #[serde(default)]
    pub api_key_id: Option<String>,
    /// Wait budget in seconds, a planning input (absent: the whole request timeout).
    #[serde(default)]
    pub max_wait_seconds: Option<f64>,
    /// Lowers the hard deadline for this request (seconds).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
    /// The conversation.
    #[serde(deserialize_with = "message_objects")]
    pub messages: Vec<ChatMessage>,
    /// Generation options.
    #[serde(default, deserialize_with = "options_object")]
    pub options: Option<ChatOptions>,
    /// Answer in the debug shape.
    #[serde(default)]
    pub debug: Option<bool>,
    /// Stream the answer as Server-Sent Events.
    #[serde(default)]
    pub stream: Option<bool>,
}

/// One message as `/llm/*` takes it: its role and its text, and no other field (a field
/// this door does not know, such as OpenAI's `tool_calls` or a misspelt `contnet`, is
/// refused by name instead of dropped unseen).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LlmMessage {
    role: Role,
    content: String,
}

/// Each message must be a JSON object, not a positional `["user", "hi"]`.
fn message_objects<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ChatMessage>, D::Error> {
    Vec::<Object<LlmMessage>>::deserialize(d).map(|v| {
        v.into_iter()
            .map(|o| ChatMessage::new(o.0.role, o.0.content))
            .collect()
    })
}

/// `options` must be a JSON object (or null), not a positional array.
fn options_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<ChatOptions>, D::Error> {
    Option::<Object<ChatOptions>>::deserialize(d).map(|o| o.map(|o| o.0))
}

/// Which endpoint was called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/llm/intelligence`
    Intelligence,
    /// `/llm/scenario`
    Scenario,
    /// `/llm/direct`
    Direct,
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::Invalid(msg.into())
}

fn refuse_field(present: bool, field: &str, endpoint: &str) -> Result<(), ApiError> {
    if present {
        return Err(invalid(format!(
            "field `{field}` is not accepted by {endpoint}"
        )));
    }
    Ok(())
}

/// Checks the request for its endpoint and returns the routing target.
pub fn validate(
    req: &LlmRequest,
    endpoint: Endpoint,
    max_messages: usize,
) -> Result<RouteTarget, ApiError> {
    let target = match endpoint {
        Endpoint::Intelligence => {
            let path = "/llm/intelligence";
            refuse_field(req.scenario.is_some(), "scenario", path)?;
            refuse_field(req.provider.is_some(), "provider", path)?;
            refuse_field(req.model.is_some(), "model", path)?;
            refuse_field(req.api_key_id.is_some(), "api_key_id", path)?;
            let level = req
                .intelligence_level
                .as_deref()
                .ok_or_else(|| invalid("missing field `intelligence_level`"))?;
            let tier = Tier::parse(level).ok_or_else(|| {
                invalid(format!(
                    "intelligence_level must be one of low, medium, high (got {:?})",
                    truncate(level, 40)
                ))
            })?;
            RouteTarget::Intelligence(tier)
        }
        Endpoint::Scenario => {
            let path = "/llm/scenario";
            refuse_field(req.intelligence_level.is_some(), "intelligence_level", path)?;
            refuse_field(req.provider.is_some(), "provider", path)?;
            refuse_field(req.model.is_some(), "model", path)?;
            refuse_field(req.api_key_id.is_some(), "api_key_id", path)?;
            let name = req
                .scenario
                .clone()
                .ok_or_else(|| invalid("missing field `scenario`"))?;
            RouteTarget::Scenario(name)
        }
        Endpoint::Direct => {
            let path = "/llm/direct";
            refuse_field(req.intelligence_level.is_some(), "intelligence_level", path)?;
            refuse_field(req.scenario.is_some(), "scenario", path)?;
            RouteTarget::Direct {
                provider: req
                    .provider
                    .clone()
                    .ok_or_else(|| invalid("missing field `provider`"))?,
                model: req
                    .model
                    .clone()
                    .ok_or_else(|| invalid("missing field `model`"))?,
                key_id: req.api_key_id.clone(),
            }
        }
    };
    if req.messages.is_empty() {
        return Err(invalid("messages must not be empty"));
    }
    if req.messages.len() > max_messages {
        return Err(invalid(format!(
            "too many messages: {} (at most {max_messages})",
            req.messages.len()
        )));
    }
    chat::check_shared(
        req.client_id.as_deref().unwrap_or(chat::ANONYMOUS),
        req.max_wait_seconds,
        req.timeout_seconds,
        req.options.as_ref().unwrap_or(&ChatOptions::default()),
    )?;
    Ok(target)
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Handler body shared by the three endpoints: the `/llm/*` door over the chat pipeline.
pub async fn handle(
    req: HttpRequest,
    state: web::Data<AppState>,
    web: web::Data<WebState>,
    clients: web::Data<Clients>,
    payload: web::Payload,
    endpoint: Endpoint,
) -> HttpResponse {
    let door = LlmDoor {
        endpoint,
        debug: false,
    };
    chat::serve(door, &req, &state, &web, &clients, payload).await
}

/// The `/llm/*` door: the original's request body, its simplified or debug answer shape,
/// and its `start`/`delta`/`done` stream.
struct LlmDoor {
    endpoint: Endpoint,
    /// Answer in the debug shape (known once the body is parsed).
    debug: bool,
}

impl Door for LlmDoor {
    type Refusal = ApiError;

    fn method(&self) -> RoutingMethod {
        match self.endpoint {
            Endpoint::Intelligence => RoutingMethod::Intelligence,
            Endpoint::Scenario => RoutingMethod::Scenario,
            Endpoint::Direct => RoutingMethod::Direct,
        }
    }

    fn parse(
        &mut self,
        _req: &HttpRequest,
        body: &[u8],
        max_messages: usize,
    ) -> Result<Chat, Refused<ApiError>> {
        let req: LlmRequest = parse_json(body)?;
        self.debug = req.debug.unwrap_or(false);
        let target = validate(&req, self.endpoint, max_messages).map_err(|error| Refused {
            error,
            max_wait_seconds: req.max_wait_seconds,
        })?;
        Ok(Chat {
            target,
            messages: req.messages.into(),
            options: req.options.unwrap_or_default(),
            tooling: std::sync::Arc::default(),
            max_wait_seconds: req.max_wait_seconds,
            timeout_seconds: req.timeout_seconds,
            client_id_declared: req.client_id.is_some(),
            client_id: req.client_id.unwrap_or_else(|| chat::ANONYMOUS.to_owned()),
            stream: req.stream.unwrap_or(false),
        })
    }

    fn refusal(&self, e: &ApiError) -> ApiError {
        e.clone()
    }

    fn refuse(&self, ctx: &Ctx<'_>, e: &ApiError) -> HttpResponse {
        failure_response(ctx, e, self.debug, None, None)
    }

    fn fail(
        &self,
        ctx: &Ctx<'_>,
        e: &ApiError,
        plan: Option<&Plan>,
        details: Option<Value>,
    ) -> HttpResponse {
        failure_response(ctx, e, self.debug, plan, details)
    }

    fn answer(
        &self,
        ctx: &Ctx<'_>,
        plan: &Plan,
        s: &Success,
        res: HttpResponseBuilder,
    ) -> HttpResponse {
        success_response(ctx, plan, s, self.debug, res)
    }

    fn chunks(&self, ctx: &Ctx<'_>, id: &KeyModelId) -> Box<dyn ChunkFormat> {
        Box::new(LlmChunks {
            request_id: ctx.request_id.to_owned(),
            provider: id.provider.clone(),
            model: id.model.clone(),
        })
    }
}

/// The `/llm/*` stream shape: `start`, `delta`…, then `done` and `[DONE]`, or `error`.
struct LlmChunks {
    request_id: String,
    provider: String,
    model: String,
}

impl ChunkFormat for LlmChunks {
    fn start(&mut self) -> Option<String> {
        Some(sse(&json!({
            "type": "start",
            "request_id": self.request_id,
            "provider_used": self.provider,
            "model_used": self.model,
        })))
    }

    fn delta(&mut self, text: &str) -> String {
        sse(&json!({"type": "delta", "content": text}))
    }

    fn tool_call(&mut self, piece: &crate::providers::stream::ToolCallDelta) -> String {
        sse(&json!({
            "type": "tool_call", "index": piece.index, "id": piece.id,
            "name": piece.name, "arguments": piece.arguments,
        }))
    }

    fn done(&mut self, finish: FinishReason, usage: &Usage, cost_usd: f64) -> String {
        let done = sse(&json!({
            "type": "done",
            "finish_reason": finish.as_str(),
            "truncated": finish == FinishReason::Length,
            "usage": {
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "thinking_tokens": usage.thinking_tokens,
                "total_tokens": usage.total(),
            },
            "cost_usd": cost_usd,
        }));
        format!("{done}data: [DONE]\n\n")
    }

    fn error(&mut self, message: &str, code: &str) -> String {
        sse(&json!({
            "type": "error",
            "finish_reason": "error",
            "error": message,
            "error_code": code,
        }))
    }
}

/// `usage` in an answer.
#[derive(Serialize)]
struct UsageBody {
    input_tokens: u64,
    output_tokens: u64,
    thinking_tokens: u64,
    total_tokens: u64,
}

impl UsageBody {
    fn of(s: &Success) -> Self {
        let u = &s.response.usage;
        Self {
            input_tokens: u.input_tokens,
            output_tokens: u.output_tokens,
            thinking_tokens: u.thinking_tokens,
            total_tokens: u.total(),
        }
    }
}

/// The usual (non-debug) success answer, serialised straight from borrowed fields: the
/// same bytes as the `json!` tree it replaces, without building and dropping that tree
/// for every request.
#[derive(Serialize)]
struct PlainSuccess<'a> {
    success: bool,
    request_id: &'a str,
    model_used: &'a str,
    content: &'a str,
    usage: UsageBody,
    finish_reason: &'a str,
    truncated: bool,
    error: Option<()>,
}

fn success_response(
    ctx: &Ctx<'_>,
    plan: &Plan,
    s: &Success,
    debug: bool,
    mut res: HttpResponseBuilder,
) -> HttpResponse {
    let request_id = ctx.request_id;
    let id = s.candidate.id();
    let finish = s.response.finish_reason.as_str();
    let truncated = s.response.finish_reason == FinishReason::Length;
    if debug {
        res.json(json!({
            "success": true,
            "request_id": request_id,
            "provider_used": id.provider,
            "model_used": id.model,
            "api_key_used": id.key_id,
            "routing_method": plan.method.as_str(),
            "decision_reason": plan.decision_reason,
            "response": {
                "content": s.response.content,
                "usage": UsageBody::of(s),
                "finish_reason": finish,
                "raw_finish_reason": s.response.raw_finish_reason,
                "truncated": truncated,
                "thinking_disabled": s.thinking_disabled,
            },
            "metadata": {
                "rate_limit_wait_ms": s.lease.rate_limit_wait_ms,
                "queue_wait_ms": s.lease.queue_wait_ms,
                "api_response_time_ms": s.upstream_ms,
                "total_completion_time_ms": ctx.state.clock.now_ms() - ctx.started_ms,
                "cost_usd": s.cost_usd,
                "alternatives_considered": plan.considered(),
                "alternatives_tried": s.alternatives_tried,
                "fallback_attempts": s.attempts.len(),
                "attempts": s.attempts,
            },
            "error_code": null,
            "message": null,
            "retry_suggestion": null,
            "evaluated_combinations": null,
        }))
    } else {
        res.json(PlainSuccess {
            success: true,
            request_id,
            model_used: &id.model,
            content: &s.response.content,
            usage: UsageBody::of(s),
            finish_reason: finish,
            truncated,
            error: None,
        })
    }
}

fn failure_response(
    ctx: &Ctx<'_>,
    err: &ApiError,
    debug: bool,
    plan: Option<&Plan>,
    evaluated: Option<Value>,
) -> HttpResponse {
    let request_id = ctx.request_id;
    let body = if debug {
        json!({
            "success": false,
            "request_id": request_id,
            "provider_used": null,
            "model_used": null,
            "api_key_used": null,
            "routing_method": plan.map(|p| p.method.as_str()),
            "decision_reason": plan.map(|p| p.decision_reason),
            "response": null,
            "metadata": {
                "total_completion_time_ms": ctx.state.clock.now_ms() - ctx.started_ms,
                "alternatives_considered": plan.map(|p| json!(p.considered())),
            },
            "error_code": err.code(),
            "message": err.to_string(),
            "retry_suggestion": err.retry_after_secs().map(|s| json!({"retry_after_seconds": s})),
            "evaluated_combinations": evaluated,
            "error": err.to_string(),
        })
    } else {
        json!({
            "success": false,
            "request_id": request_id,
            "model_used": null,
            "content": null,
            "usage": null,
            "finish_reason": null,
            "truncated": null,
            "error": err.to_string(),
            "error_code": err.code(),
        })
    };
    let mut res = respond(err, body);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(request_id) {
        res.headers_mut().insert(names::REQUEST_ID, v);
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(json: &str) -> LlmRequest {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn each_endpoint_takes_only_its_routing_fields() {
        let r = req(r#"{"intelligence_level":"low","messages":[{"role":"user","content":"hi"}]}"#);
        assert_eq!(
            validate(&r, Endpoint::Intelligence, 10).unwrap(),
            RouteTarget::Intelligence(Tier::Low)
        );
        assert!(validate(&r, Endpoint::Scenario, 10).is_err());
        let r =
            req(r#"{"intelligence_level":"ultra","messages":[{"role":"user","content":"hi"}]}"#);
        let e = validate(&r, Endpoint::Intelligence, 10).unwrap_err();
        assert!(e.to_string().contains("low, medium, high"));
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            (
                r#"{"intelligence_level":"low","messages":[]}"#,
                "messages must not be empty",
            ),
            (
                r#"{"intelligence_level":"low","max_wait_seconds":-1,"messages":[{"role":"user","content":"x"}]}"#,
                "max_wait_seconds",
            ),
            (
                r#"{"intelligence_level":"low","options":{"temperature":3},"messages":[{"role":"user","content":"x"}]}"#,
                "temperature",
            ),
            (
                r#"{"intelligence_level":"low","timeout_seconds":0,"messages":[{"role":"user","content":"x"}]}"#,
                "timeout_seconds",
            ),
            (
                r#"{"intelligence_level":"low","timeout_seconds":1e-300,"messages":[{"role":"user","content":"x"}]}"#,
                "timeout_seconds must be at least 0.001",
            ),
        ];
        for (body, expected) in cases {
            let e = validate(&req(body), Endpoint::Intelligence, 10).unwrap_err();
            assert!(e.to_string().contains(expected), "{body}: {e}");
        }
        let many = format!(
            r#"{{"intelligence_level":"low","messages":[{}]}}"#,
            [r#"{"role":"user","content":"x"}"#; 11].join(",")
        );
        assert!(validate(&req(&many), Endpoint::Intelligence, 10).is_err());
    }

    #[test]
    fn messages_and_options_are_objects_not_arrays() {
        let ok = r#"{"intelligence_level":"low","options":{"max_tokens":5},"messages":[{"role":"user","content":"x"}]}"#;
        assert!(parse_json::<LlmRequest>(ok.as_bytes()).is_ok());
        for body in [
            r#"{"intelligence_level":"low","options":[],"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"intelligence_level":"low","options":[5],"messages":[{"role":"user","content":"x"}]}"#,
            r#"{"intelligence_level":"low","messages":[["user","x"]]}"#,
            r#"[null,"low",null,null,null,null,null,null,[{"role":"user","content":"x"}]]"#,
        ] {
            assert!(
                matches!(
                    parse_json::<LlmRequest>(body.as_bytes()),
                    Err(ApiError::Invalid(_))
                ),
                "{body}"
            );
        }
        let null_options = r#"{"intelligence_level":"low","options":null,"messages":[{"role":"user","content":"x"}]}"#;
        assert!(parse_json::<LlmRequest>(null_options.as_bytes())
            .unwrap()
            .options
            .is_none());
    }
}
