//! Facts consumed by several actors: one [`RequestCompleted`] per request, success or
//! failure, validation failures included. Handlers fill it in from what they measured and
//! send it without waiting; consumers (statistics, dashboard) never see message content
//! or secrets, because the event has no field that could hold them.

use std::sync::Arc;

use actix::Message;
use serde::Serialize;

use crate::clock::Millis;
use crate::ids::{RoutingMethod, Tier};

/// One failed try on the way to the outcome (for error metrics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttemptError {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Stable error label (`rate_limited`, `server_error`, `timeout`, …).
    pub kind: String,
}

/// Completion events handed over together: the HTTP handlers collect them and deliver a
/// batch as one message, so a consumer's thread is woken once per batch rather than once
/// per request. Shared, so every consumer reads the same events without a copy.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct CompletedBatch(pub Arc<[RequestCompleted]>);

impl From<Vec<RequestCompleted>> for CompletedBatch {
    fn from(events: Vec<RequestCompleted>) -> Self {
        Self(events.into())
    }
}

/// Everything known about a finished request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestCompleted {
    /// When the request arrived (Unix ms).
    pub started_at: Millis,
    /// The API request id.
    pub request_id: String,
    /// The caller's `client_id` (or `anonymous`).
    pub client_id: String,
    /// Which endpoint family.
    pub routing_method: RoutingMethod,
    /// Intelligence mode only.
    pub intelligence_level: Option<Tier>,
    /// Scenario mode only.
    pub scenario: Option<String>,
    /// Direct mode only.
    pub requested_provider: Option<String>,
    /// Direct mode only.
    pub requested_model: Option<String>,
    /// The caller's wait budget, if given.
    pub max_wait_seconds: Option<f64>,
    /// Whether an answer was returned.
    pub success: bool,
    /// HTTP status answered.
    pub http_status: u16,
    /// Who answered (success only).
    pub provider_used: Option<String>,
    /// Which model answered (success only).
    pub model_used: Option<String>,
    /// Which key id answered (success only).
    pub api_key_used: Option<String>,
    /// Tier of the model that answered.
    pub tier_used: Option<Tier>,
    /// Wall time from arrival to answer.
    pub total_time_ms: Millis,
    /// Measured queue wait of the answering call.
    pub queue_wait_ms: Option<Millis>,
    /// Measured rate-limit wait of the answering call.
    pub rate_limit_wait_ms: Option<Millis>,
    /// Measured upstream time of the answering call.
    pub upstream_ms: Option<Millis>,
    /// Wall time from arrival to answer, microseconds (monotonic clock).
    pub total_us: u64,
    /// Upstream time of the answering call, microseconds (monotonic clock).
    pub upstream_us: Option<u64>,
    /// Streamed answers: time from arrival to the first content sent to the client.
    pub time_to_first_token_ms: Option<Millis>,
    /// Whether the answer was streamed.
    pub streamed: bool,
    /// Tokens in.
    pub input_tokens: Option<u64>,
    /// Tokens out.
    pub output_tokens: Option<u64>,
    /// Thinking tokens.
    pub thinking_tokens: Option<u64>,
    /// Cost in USD at the model's input/output prices.
    pub cost_usd: Option<f64>,
    /// Normalised finish reason.
    pub finish_reason: Option<String>,
    /// The routing rule that decided.
    pub decision_reason: Option<String>,
    /// Stable error code (failure only).
    pub error_type: Option<String>,
    /// Error message (failure only; never content or secrets).
    pub error_message: Option<String>,
    /// Tries after the first.
    pub fallback_attempts: u32,
    /// Distinct candidates tried.
    pub alternatives_tried: u32,
    /// Every failed upstream try.
    pub attempt_errors: Vec<AttemptError>,
}

impl RequestCompleted {
    /// A record for a request that has just arrived; the handler fills in the rest.
    pub fn new(
        started_at: Millis,
        request_id: String,
        client_id: String,
        routing_method: RoutingMethod,
    ) -> Self {
        Self {
            started_at,
            request_id,
            client_id,
            routing_method,
            intelligence_level: None,
            scenario: None,
            requested_provider: None,
            requested_model: None,
            max_wait_seconds: None,
            success: false,
            http_status: 0,
            provider_used: None,
            model_used: None,
            api_key_used: None,
            tier_used: None,
            total_time_ms: 0,
            queue_wait_ms: None,
            rate_limit_wait_ms: None,
            upstream_ms: None,
            total_us: 0,
            upstream_us: None,
            time_to_first_token_ms: None,
            streamed: false,
            input_tokens: None,
            output_tokens: None,
            thinking_tokens: None,
            cost_usd: None,
            finish_reason: None,
            decision_reason: None,
            error_type: None,
            error_message: None,
            fallback_attempts: 0,
            alternatives_tried: 0,
            attempt_errors: Vec::new(),
        }
    }
}
