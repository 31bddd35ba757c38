//! `POST /llm/intelligence`, `/llm/scenario`, `/llm/direct`: validate, route, execute,
//! and answer in the simplified or debug shape.
//!
//! Status codes tell the truth (200, 4xx for bad requests, 502/503/504 for upstream
//! trouble) while the body keeps the original's `success` and `error` keys.

use actix_web::{web, HttpResponse};
use bkvy_actors::{
    AttemptError, Millis, Plan, RequestCompleted, Route, RouteTarget, RoutingMethod, Tier,
};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::{parse_json, read_limited, Object};
use super::error::{respond, ApiError};
use super::AppState;
use crate::gateway::{self, Failure, FailureKind, Job, Success};
use crate::types::{ChatMessage, ChatOptions};

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
    Ok(target)
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
/// completion event for it, whatever the outcome.
pub async fn handle(
    state: web::Data<AppState>,
    client: web::Data<awc::Client>,
    payload: web::Payload,
    endpoint: Endpoint,
) -> HttpResponse {
    let started = state.clock.now_ms();
    let started_mono = std::time::Instant::now();
    let method = match endpoint {
        Endpoint::Intelligence => RoutingMethod::Intelligence,
        Endpoint::Scenario => RoutingMethod::Scenario,
        Endpoint::Direct => RoutingMethod::Direct,
    };
    let mut event = RequestCompleted::new(
        started,
        uuid::Uuid::new_v4().to_string(),
        ANONYMOUS.to_owned(),
        method,
    );
    let response = run(&state, &client, payload, endpoint, &mut event).await;
    event.http_status = response.status().as_u16();
    event.success = response.status().is_success();
    event.total_time_ms = state.clock.now_ms() - started;
    event.total_us = started_mono.elapsed().as_micros() as u64;
    state.sinks.emit(event);
    response
}

/// Who is asking when the request does not say.
const ANONYMOUS: &str = "anonymous";

async fn run(
    state: &AppState,
    client: &awc::Client,
    payload: web::Payload,
    endpoint: Endpoint,
    event: &mut RequestCompleted,
) -> HttpResponse {
    let started = event.started_at;
    let request_id = event.request_id.clone();
    let fail = |e: ApiError, debug: bool, event: &mut RequestCompleted| {
        event.error_type = Some(e.code().to_owned());
        event.error_message = Some(e.to_string());
        failure_response(&request_id, &e, debug, None, None, started, state)
    };
    let bytes = match read_limited(payload, state.limits.max_request_bytes).await {
        Ok(b) => b,
        Err(e) => return fail(e, false, event),
    };
    let req: LlmRequest = match parse_json(&bytes) {
        Ok(r) => r,
        Err(e) => return fail(e, false, event),
    };
    let debug = req.debug.unwrap_or(false);
    let target = validate(&req, endpoint, state.limits.max_messages);
    // Record what was asked for, as far as it is valid to keep.
    if let Some(id) = req.client_id.as_ref().filter(|_| target.is_ok()) {
        event.client_id = id.clone();
    }
    event.max_wait_seconds = req.max_wait_seconds.filter(|w| w.is_finite());
    match &target {
        Ok(RouteTarget::Intelligence(tier)) => event.intelligence_level = Some(*tier),
        Ok(RouteTarget::Scenario(name)) => event.scenario = Some(name.clone()),
        Ok(RouteTarget::Direct {
            provider, model, ..
        }) => {
            event.requested_provider = Some(provider.clone());
            event.requested_model = Some(model.clone());
        }
        Err(_) => {}
    }
    let target = match target {
        Ok(t) => t,
        Err(e) => return fail(e, debug, event),
    };
    let settings = &state.upstreams.config.settings;
    let timeout_ms = req
        .timeout_seconds
        .map_or(settings.request_timeout.as_millis() as Millis, secs_to_ms)
        .min(settings.request_timeout.as_millis() as Millis);
    let deadline = started + timeout_ms;
    let max_wait_ms = req.max_wait_seconds.map_or(timeout_ms, secs_to_ms);

    let route = Route {
        target,
        max_wait_ms,
        deadline,
        sent_at: std::time::Instant::now(),
    };
    state.router_meter.sent();
    let remaining = std::time::Duration::from_millis((deadline - started).max(1) as u64);
    let plan = match state.router.send(route).timeout(remaining).await {
        Ok(Ok(plan)) => plan,
        Ok(Err(route_err)) => {
            let considered = match &route_err {
                bkvy_actors::RouteError::AllUnavailable { considered, .. } => {
                    Some(json!(considered))
                }
                _ => None,
            };
            let e = ApiError::from(route_err);
            event.error_type = Some(e.code().to_owned());
            event.error_message = Some(e.to_string());
            return failure_response(&request_id, &e, debug, None, considered, started, state);
        }
        Err(actix::MailboxError::Timeout) => {
            let e = ApiError::DeadlineExceeded("routing did not finish before the deadline".into());
            return fail(e, debug, event);
        }
        Err(actix::MailboxError::Closed) => {
            return fail(
                ApiError::Internal("router actor stopped".into()),
                debug,
                event,
            );
        }
    };
    event.decision_reason = Some(plan.decision_reason.to_owned());
    let job = Job {
        messages: req.messages,
        options: req.options.unwrap_or_default(),
        deadline,
    };
    match gateway::execute(&state.upstreams, client, &plan, &job).await {
        Ok(success) => {
            record_success(event, &success);
            success_response(&request_id, &plan, &success, debug, started, state)
        }
        Err(failure) => {
            let e = failure_error(&failure);
            event.error_type = Some(e.code().to_owned());
            event.error_message = Some(e.to_string());
            event.alternatives_tried = failure.alternatives_tried as u32;
            event.fallback_attempts = failure.attempts.len().saturating_sub(1) as u32;
            event.attempt_errors = attempt_errors(&failure.attempts);
            let evaluated = json!(failure.attempts);
            failure_response(
                &request_id,
                &e,
                debug,
                Some(&plan),
                Some(evaluated),
                started,
                state,
            )
        }
    }
}

fn attempt_errors(attempts: &[gateway::AttemptRecord]) -> Vec<AttemptError> {
    attempts
        .iter()
        .map(|a| AttemptError {
            provider: a.provider.clone(),
            model: a.model.clone(),
            kind: a.error_type.clone(),
        })
        .collect()
}

fn record_success(event: &mut RequestCompleted, s: &Success) {
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

fn usage_json(s: &Success) -> Value {
    let u = &s.response.usage;
    json!({
        "input_tokens": u.input_tokens,
        "output_tokens": u.output_tokens,
        "thinking_tokens": u.thinking_tokens,
        "total_tokens": u.total(),
    })
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
    let body = if debug {
        json!({
            "success": true,
            "request_id": request_id,
            "provider_used": id.provider,
            "model_used": id.model,
            "api_key_used": id.key_id,
            "routing_method": plan.method.as_str(),
            "decision_reason": plan.decision_reason,
            "response": {
                "content": s.response.content,
                "usage": usage_json(s),
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
                "alternatives_considered": plan.considered,
                "alternatives_tried": s.alternatives_tried,
                "fallback_attempts": s.attempts.len(),
                "attempts": s.attempts,
            },
            "error_code": null,
            "message": null,
            "retry_suggestion": null,
            "evaluated_combinations": null,
        })
    } else {
        json!({
            "success": true,
            "request_id": request_id,
            "model_used": id.model,
            "content": s.response.content,
            "usage": usage_json(s),
            "finish_reason": finish,
            "truncated": truncated,
            "error": null,
        })
    };
    HttpResponse::Ok()
        .insert_header(("x-bkvy-request-id", request_id))
        .insert_header(("x-bkvy-provider", id.provider.as_str()))
        .insert_header(("x-bkvy-model", id.model.as_str()))
        .insert_header(("x-bkvy-decision", plan.decision_reason))
        .insert_header(("x-bkvy-cost-usd", format!("{:.8}", s.cost_usd)))
        .json(body)
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
                "alternatives_considered": plan.map(|p| json!(p.considered)),
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
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-bkvy-request-id"),
            v,
        );
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
