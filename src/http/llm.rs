//! `POST /llm/intelligence`, `/llm/scenario`, `/llm/direct`: validate, route, execute,
//! and answer in the simplified or debug shape.
//!
//! Status codes tell the truth (200, 4xx for bad requests, 502/503/504 for upstream
//! trouble) while the body keeps the original's `success` and `error` keys.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use bkvy_actors::{
    AttemptError, Millis, Plan, RequestCompleted, Route, RouteTarget, RoutingMethod, Tier,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::body::{parse_json, read_limited, Object};
use super::error::{respond, ApiError};
use super::{names, AppState, Live};
use crate::clients::Clients;
use crate::gateway::{self, Failure, FailureKind, Job, Success};
use crate::streaming;
use crate::types::{ChatMessage, ChatOptions, Tooling};
use crate::types::{FinishReason, Usage};

/// Shortest accepted `timeout_seconds`: one millisecond, the deadline's resolution.
const MIN_TIMEOUT_SECONDS: f64 = 0.001;

/// Longest accepted `client_id`.
const MAX_CLIENT_ID_LEN: usize = 256;

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

/// Each message must be a JSON object, not a positional `["user", "hi"]`.
fn message_objects<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<ChatMessage>, D::Error> {
    Vec::<Object<ChatMessage>>::deserialize(d).map(|v| v.into_iter().map(|o| o.0).collect())
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

fn check_unit_interval(v: Option<f64>, name: &str, max: f64) -> Result<(), ApiError> {
    match v {
        Some(x) if !(0.0..=max).contains(&x) => Err(invalid(format!(
            "options.{name} must be between 0 and {max}"
        ))),
        _ => Ok(()),
    }
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
    validate_common(req)?;
    Ok(target)
}

/// The checks every chat endpoint shares: client id, wait budget, timeout, options.
pub fn validate_common(req: &LlmRequest) -> Result<(), ApiError> {
    if let Some(id) = &req.client_id {
        if id.len() > MAX_CLIENT_ID_LEN {
            return Err(invalid(format!(
                "client_id longer than {MAX_CLIENT_ID_LEN} bytes"
            )));
        }
        if id.chars().any(char::is_control) {
            return Err(invalid("client_id must not contain control characters"));
        }
    }
    match req.max_wait_seconds {
        Some(w) if !w.is_finite() || w < 0.0 => {
            return Err(invalid("max_wait_seconds must be a non-negative number"))
        }
        _ => {}
    }
    match req.timeout_seconds {
        Some(t) if !t.is_finite() || t <= 0.0 => {
            return Err(invalid("timeout_seconds must be a positive number"))
        }
        // Anything shorter would be a deadline that has already passed.
        Some(t) if t < MIN_TIMEOUT_SECONDS => {
            return Err(invalid(format!(
                "timeout_seconds must be at least {MIN_TIMEOUT_SECONDS}"
            )))
        }
        _ => {}
    }
    if let Some(o) = &req.options {
        check_unit_interval(o.temperature, "temperature", 2.0)?;
        check_unit_interval(o.top_p, "top_p", 1.0)?;
        if o.max_tokens == Some(0) {
            return Err(invalid("options.max_tokens must be at least 1"));
        }
        if o.top_k == Some(0) {
            return Err(invalid("options.top_k must be at least 1"));
        }
    }
    Ok(())
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

fn secs_to_ms(s: f64) -> Millis {
    (s * 1000.0).min(1e15) as Millis
}

/// Handler body shared by the three endpoints: runs the request and emits exactly one
/// completion event for it, whatever the outcome (a streamed answer emits it when the
/// stream ends).
pub async fn handle(
    state: web::Data<AppState>,
    client: web::Data<Clients>,
    payload: web::Payload,
    endpoint: Endpoint,
) -> HttpResponse {
    let method = match endpoint {
        Endpoint::Intelligence => RoutingMethod::Intelligence,
        Endpoint::Scenario => RoutingMethod::Scenario,
        Endpoint::Direct => RoutingMethod::Direct,
    };
    let mut call = Call::begin(&state, method);
    let reply = run(&state, &client, payload, endpoint, &mut call).await;
    call.finish(&state, reply)
}

/// Who is asking when the request does not say.
pub const ANONYMOUS: &str = "anonymous";

/// One request's bookkeeping: its completion event and when it started.
pub struct Call {
    /// The completion event as far as it is known.
    pub event: RequestCompleted,
    /// Arrival, monotonic.
    pub started: std::time::Instant,
}

/// A response, and whether a stream inside it will emit the completion event itself.
pub enum Reply {
    /// A complete answer: the handler emits the event.
    Done(HttpResponse),
    /// A streamed answer: the stream emits the event when it ends.
    Streaming(HttpResponse),
}

impl Call {
    /// A new request of this routing method.
    pub fn begin(state: &AppState, method: RoutingMethod) -> Self {
        Self {
            event: RequestCompleted::new(
                state.clock.now_ms(),
                uuid::Uuid::new_v4().to_string(),
                ANONYMOUS.to_owned(),
                method,
            ),
            started: std::time::Instant::now(),
        }
    }

    /// Emits the event (unless a stream will) and returns the response.
    pub fn finish(mut self, state: &AppState, reply: Reply) -> HttpResponse {
        match reply {
            Reply::Streaming(response) => response,
            Reply::Done(response) => {
                let e = &mut self.event;
                e.http_status = response.status().as_u16();
                e.success = response.status().is_success();
                e.total_time_ms = state.clock.now_ms() - e.started_at;
                e.total_us = self.started.elapsed().as_micros() as u64;
                state.sinks.emit(self.event);
                response
            }
        }
    }

    /// Records an error in the event.
    pub fn failed(&mut self, e: &ApiError) {
        self.event.error_type = Some(e.code().to_owned());
        self.event.error_message = Some(e.to_string());
    }
}

/// What every chat endpoint hands to routing after its own parsing and validation.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// Where to route.
    pub target: RouteTarget,
    /// The conversation.
    pub messages: Arc<[ChatMessage]>,
    /// Generation options.
    pub options: ChatOptions,
    /// The wait budget (planning input).
    pub max_wait_seconds: Option<f64>,
    /// Lowers the hard deadline.
    pub timeout_seconds: Option<f64>,
    /// Tools and answer format (OpenAI surface only).
    pub tooling: Arc<Tooling>,
}

/// Records the routing target of a valid request in its event.
pub fn record_target(event: &mut RequestCompleted, target: &RouteTarget) {
    match target {
        RouteTarget::Intelligence(tier) => event.intelligence_level = Some(*tier),
        RouteTarget::Scenario(name) => event.scenario = Some(name.clone()),
        RouteTarget::Direct {
            provider, model, ..
        } => {
            event.requested_provider = Some(provider.clone());
            event.requested_model = Some(model.clone());
        }
    }
}

/// A routing failure: the error and, when every candidate was unavailable, why each was.
pub type RouteFailure = (ApiError, Option<Value>);

/// A request's plan, its execution inputs, and the config snapshot both were made from
/// (a reload while the request runs does not change what it sees).
pub type Planned = (Plan, Job, Arc<Live>);

/// Asks the router for a plan and fixes the request's deadline. The live snapshot is
/// loaded once here; execution must use the one returned.
pub async fn plan(
    state: &AppState,
    p: &Prepared,
    event: &mut RequestCompleted,
) -> Result<Planned, RouteFailure> {
    let started = event.started_at;
    let live = state.live();
    let settings = &live.upstreams.config.settings;
    let timeout_ms = p
        .timeout_seconds
        .map_or(settings.request_timeout.as_millis() as Millis, secs_to_ms)
        .min(settings.request_timeout.as_millis() as Millis);
    let deadline = started + timeout_ms;
    let max_wait_ms = p.max_wait_seconds.map_or(timeout_ms, secs_to_ms);
    let route = Route {
        target: p.target.clone(),
        max_wait_ms,
        deadline,
    };
    // The choice is made here from the estimates the key/model actors publish (the same
    // table the RouterActor holds): no round trip on the request path.
    let plan = match live.table.plan(&route, state.clock.now_ms()) {
        Ok(plan) => plan,
        Err(route_err) => {
            let considered = match &route_err {
                bkvy_actors::RouteError::AllUnavailable { considered, .. } => {
                    Some(json!(considered))
                }
                _ => None,
            };
            return Err((ApiError::from(route_err), considered));
        }
    };
    event.decision_reason = Some(plan.decision_reason.to_owned());
    let job = Job {
        messages: p.messages.clone(),
        options: p.options.clone(),
        tooling: p.tooling.clone(),
        deadline,
        budget_end: (started + max_wait_ms).min(deadline),
    };
    Ok((plan, job, live))
}

/// Records a failed execution in the event and returns its error.
pub fn record_failure(event: &mut RequestCompleted, failure: &Failure) -> ApiError {
    let e = failure_error(failure);
    event.error_type = Some(e.code().to_owned());
    event.error_message = Some(e.to_string());
    event.alternatives_tried = failure.alternatives_tried as u32;
    event.fallback_attempts = failure.attempts.len().saturating_sub(1) as u32;
    event.attempt_errors = attempt_errors(&failure.attempts);
    e
}

async fn run(
    state: &web::Data<AppState>,
    client: &Clients,
    payload: web::Payload,
    endpoint: Endpoint,
    call: &mut Call,
) -> Reply {
    let started = call.event.started_at;
    let request_id = call.event.request_id.clone();
    let fail = |e: ApiError, debug: bool, call: &mut Call| {
        call.failed(&e);
        Reply::Done(failure_response(
            &request_id,
            &e,
            debug,
            None,
            None,
            started,
            state,
        ))
    };
    let bytes = match read_limited(payload, &state.limits).await {
        Ok(b) => b,
        Err(e) => return fail(e, false, call),
    };
    let req: LlmRequest = match parse_json(&bytes) {
        Ok(r) => r,
        Err(e) => return fail(e, false, call),
    };
    let debug = req.debug.unwrap_or(false);
    let target = validate(&req, endpoint, state.limits.max_messages);
    call.event.max_wait_seconds = req.max_wait_seconds.filter(|w| w.is_finite());
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(e, debug, call),
    };
    if let Some(id) = &req.client_id {
        call.event.client_id = id.clone();
    }
    record_target(&mut call.event, &target);
    let prepared = Prepared {
        target,
        messages: req.messages.into(),
        options: req.options.unwrap_or_default(),
        max_wait_seconds: req.max_wait_seconds,
        timeout_seconds: req.timeout_seconds,
        tooling: Arc::default(),
    };
    let (plan, job, live) = match plan(state, &prepared, &mut call.event).await {
        Ok(p) => p,
        Err((e, considered)) => {
            call.failed(&e);
            return Reply::Done(failure_response(
                &request_id,
                &e,
                debug,
                None,
                considered,
                started,
                state,
            ));
        }
    };
    if req.stream.unwrap_or(false) {
        return match streaming::execute_stream(&live.upstreams, client, &plan, &job).await {
            Ok(answered) => streaming_reply(answered, plan.decision_reason, call, state, |id| {
                Box::new(LlmChunks {
                    request_id: request_id.clone(),
                    provider: id.provider.clone(),
                    model: id.model.clone(),
                })
            }),
            Err(failure) => {
                let e = record_failure(&mut call.event, &failure);
                Reply::Done(failure_response(
                    &request_id,
                    &e,
                    debug,
                    Some(&plan),
                    Some(json!(failure.attempts)),
                    started,
                    state,
                ))
            }
        };
    }
    match gateway::execute(&live.upstreams, client, &plan, &job).await {
        Ok(success) => {
            record_success(&mut call.event, &success);
            Reply::Done(success_response(
                &request_id,
                &plan,
                &success,
                debug,
                started,
                state,
            ))
        }
        Err(failure) => {
            let e = record_failure(&mut call.event, &failure);
            Reply::Done(failure_response(
                &request_id,
                &e,
                debug,
                Some(&plan),
                Some(json!(failure.attempts)),
                started,
                state,
            ))
        }
    }
}

/// The `text/event-stream` reply of a streamed answer in the given chunk format; the
/// stream emits the request's completion event when it ends.
pub fn streaming_reply(
    answered: gateway::Answered<streaming::Probed>,
    decision: &str,
    call: &Call,
    state: &web::Data<AppState>,
    format: impl FnOnce(&bkvy_actors::KeyModelId) -> Box<dyn streaming::ChunkFormat>,
) -> Reply {
    let id = answered.candidate.id().clone();
    let mut res = HttpResponse::Ok();
    // No cost header: the cost is known only at the end.
    answer_headers(&mut res, &call.event.request_id, &id, decision)
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"));
    let body = streaming::live_body(
        answered,
        format(&id),
        call.event.clone(),
        state.clone(),
        call.started,
    );
    Reply::Streaming(res.content_type("text/event-stream").streaming(body))
}

/// The `x-bkvy-*` headers every answer carries: request id, where it went and why.
pub fn answer_headers<'r>(
    res: &'r mut actix_web::HttpResponseBuilder,
    request_id: &str,
    id: &bkvy_actors::KeyModelId,
    decision: &str,
) -> &'r mut actix_web::HttpResponseBuilder {
    res.insert_header((names::REQUEST_ID, request_id))
        .insert_header((names::PROVIDER, id.provider.as_str()))
        .insert_header((names::MODEL, id.model.as_str()))
        .insert_header((names::DECISION, decision))
}

/// The `/llm/*` stream shape: `start`, `delta`…, then `done` and `[DONE]`, or `error`.
struct LlmChunks {
    request_id: String,
    provider: String,
    model: String,
}

impl streaming::ChunkFormat for LlmChunks {
    fn start(&mut self) -> Option<String> {
        Some(streaming::sse(&json!({
            "type": "start",
            "request_id": self.request_id,
            "provider_used": self.provider,
            "model_used": self.model,
        })))
    }

    fn delta(&mut self, text: &str) -> String {
        streaming::sse(&json!({"type": "delta", "content": text}))
    }

    fn tool_call(&mut self, piece: &crate::providers::stream::ToolCallDelta) -> String {
        streaming::sse(&json!({
            "type": "tool_call", "index": piece.index, "id": piece.id,
            "name": piece.name, "arguments": piece.arguments,
        }))
    }

    fn done(&mut self, finish: FinishReason, usage: &Usage, cost_usd: f64) -> String {
        let done = streaming::sse(&json!({
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
        streaming::sse(&json!({
            "type": "error",
            "finish_reason": "error",
            "error": message,
            "error_code": code,
        }))
    }
}

/// The failed tries of a request as its completion event records them.
pub(crate) fn attempt_errors(attempts: &[gateway::AttemptRecord]) -> Vec<AttemptError> {
    attempts
        .iter()
        .map(|a| AttemptError {
            provider: a.provider.clone(),
            model: a.model.clone(),
            kind: a.error_type.clone(),
        })
        .collect()
}

/// Records a successful execution in the event.
pub fn record_success(event: &mut RequestCompleted, s: &Success) {
    let id = s.candidate.id();
    let usage = &s.response.usage;
    event.provider_used = Some(id.provider.clone());
    event.model_used = Some(id.model.clone());
    event.api_key_used = Some(id.key_id.clone());
    event.tier_used = Some(s.candidate.tier);
    event.queue_wait_ms = Some(s.lease.queue_wait_ms);
    event.rate_limit_wait_ms = Some(s.lease.rate_limit_wait_ms);
    event.upstream_ms = Some(s.upstream_ms);
    event.upstream_us = Some(s.upstream_us);
    event.input_tokens = Some(usage.input_tokens);
    event.output_tokens = Some(usage.output_tokens);
    event.thinking_tokens = Some(usage.thinking_tokens);
    event.cost_usd = Some(s.cost_usd);
    event.finish_reason = Some(s.response.finish_reason.as_str().to_owned());
    event.alternatives_tried = s.alternatives_tried as u32;
    event.fallback_attempts = s.attempts.len() as u32;
    event.attempt_errors = attempt_errors(&s.attempts);
}

fn failure_error(f: &Failure) -> ApiError {
    match f.kind {
        FailureKind::NoneAvailable { retry_after_ms } => ApiError::Unavailable {
            code: "all_candidates_unavailable",
            message: f.message(),
            retry_after_secs: retry_after_ms.map(|ms| (ms.max(0) as u64).div_ceil(1000)),
        },
        FailureKind::AllFailed => ApiError::AllFailed(f.message()),
        FailureKind::Deadline => ApiError::DeadlineExceeded(f.message()),
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
    request_id: &str,
    plan: &Plan,
    s: &Success,
    debug: bool,
    started: Millis,
    state: &AppState,
) -> HttpResponse {
    let id = s.candidate.id();
    let finish = s.response.finish_reason.as_str();
    let truncated = s.response.finish_reason == crate::types::FinishReason::Length;
    let mut res = HttpResponse::Ok();
    answer_headers(&mut res, request_id, id, plan.decision_reason)
        .insert_header((names::COST_USD, format!("{:.8}", s.cost_usd)));
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
                "total_completion_time_ms": state.clock.now_ms() - started,
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
    request_id: &str,
    err: &ApiError,
    debug: bool,
    plan: Option<&Plan>,
    evaluated: Option<Value>,
    started: Millis,
    state: &AppState,
) -> HttpResponse {
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
                "total_completion_time_ms": state.clock.now_ms() - started,
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
