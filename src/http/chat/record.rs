//! The request's completion event, filled in one place.
//!
//! Every request emits exactly one [`RequestCompleted`]: a complete answer when the
//! handler returns, a streamed one when its stream ends. Both kinds of answer record the
//! attempt that answered with [`answered`] and the finished answer with [`completed`], so
//! the statistics, the dashboard and the metrics see a streamed failover, its usage and its
//! cost the same way as a plain one. A request dropped before its answer (its client
//! closed the connection and actix dropped the handler) emits its event from
//! [`Call`]'s drop, as `client_disconnected`.

use std::time::Instant;

use actix_web::{web, HttpResponse};
use bkvy_actors::{
    AttemptError, Candidate, Lease, Millis, Plan, RequestCompleted, RouteTarget, RoutingMethod,
};

use super::Chat;
use crate::gateway::{AttemptRecord, Failure, FailureKind, Success};
use crate::http::client_auth::Reservation;
use crate::http::error::ApiError;
use crate::state::AppState;
use crate::types::Usage;

/// One request's bookkeeping: its completion event and when it started.
///
/// Dropped before [`finish`](Self::finish) (the client reset the connection and actix
/// dropped the handler), it still emits the event, as `client_disconnected`, and its
/// reservation charges the whole estimate (which attempts reached a provider is unknown).
pub struct Call {
    /// The completion event as far as it is known.
    pub event: RequestCompleted,
    /// Arrival, monotonic.
    pub started: Instant,
    /// The client's reserved budget estimate, settled with the real cost when the event
    /// is emitted (a stream takes it along).
    pub reservation: Option<Reservation>,
    state: web::Data<AppState>,
    /// The event was emitted, or handed to a stream that emits it.
    done: bool,
}

/// A response, and whether a stream inside it will emit the completion event itself.
pub enum Reply {
    /// A complete answer: the handler emits the event.
    Done(HttpResponse),
    /// A streamed answer: the stream emits the event when it ends.
    Streaming(HttpResponse),
}

impl Call {
    /// A new request arriving at a door whose routing method is `method` until its body
    /// says otherwise.
    pub fn begin(state: &web::Data<AppState>, method: RoutingMethod) -> Self {
        Self {
            event: RequestCompleted::new(
                state.clock.now_ms(),
                uuid::Uuid::new_v4().to_string(),
                super::ANONYMOUS.to_owned(),
                method,
            ),
            started: Instant::now(),
            reservation: None,
            state: state.clone(),
            done: false,
        }
    }

    /// Records what a valid request asked for.
    pub fn asked(&mut self, chat: &Chat) {
        let e = &mut self.event;
        e.routing_method = chat.target.method();
        e.client_id.clone_from(&chat.client_id);
        e.max_wait_seconds = chat.max_wait_seconds.filter(|w| w.is_finite());
        match &chat.target {
            RouteTarget::Intelligence(tier) => e.intelligence_level = Some(*tier),
            RouteTarget::Scenario(name) => e.scenario = Some(name.clone()),
            RouteTarget::Direct {
                provider, model, ..
            } => {
                e.requested_provider = Some(provider.clone());
                e.requested_model = Some(model.clone());
            }
        }
    }

    /// Records why the request was refused or failed.
    pub fn error(&mut self, code: &str, message: String) {
        self.event.error_type = Some(code.to_owned());
        self.event.error_message = Some(message);
    }

    /// Records the plan's decision.
    pub fn planned(&mut self, plan: &Plan) {
        self.event.decision_reason = Some(plan.decision_reason.to_owned());
    }

    /// Records a complete, successful answer.
    pub fn succeeded(&mut self, s: &Success) {
        let e = &mut self.event;
        answered(e, &s.candidate, &s.lease, &s.attempts, s.alternatives_tried);
        upstream_time(e, s.upstream_ms, s.upstream_us);
        let r = &s.response;
        completed(e, &r.usage, s.cost_usd, r.finish_reason.as_str());
    }

    /// Records a failed execution and returns its error.
    pub fn failed(&mut self, failure: &Failure) -> ApiError {
        let err = failure_error(failure);
        self.error(err.code(), err.to_string());
        let e = &mut self.event;
        e.alternatives_tried = failure.alternatives_tried as u32;
        e.fallback_attempts = failure.attempts.len().saturating_sub(1) as u32;
        e.attempt_errors = attempt_errors(&failure.attempts);
        err
    }

    /// Emits the event (unless a stream will) and returns the response.
    pub fn finish(mut self, reply: Reply) -> HttpResponse {
        match reply {
            Reply::Streaming(response) => {
                self.done = true;
                response
            }
            Reply::Done(response) => {
                self.event.http_status = response.status().as_u16();
                self.event.success = response.status().is_success();
                self.emit(true);
                response
            }
        }
    }

    /// Emits the event once, settling the reservation by it (`settled`) or in full.
    fn emit(&mut self, settled: bool) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let state = &self.state;
        let e = &mut self.event;
        e.total_time_ms = state.clock.now_ms() - e.started_at;
        e.total_us = self.started.elapsed().as_micros() as u64;
        if let Some(r) = self.reservation.take() {
            if settled {
                r.settle(e);
            } else {
                drop(r);
            }
        }
        let event = std::mem::replace(
            e,
            RequestCompleted::new(0, String::new(), String::new(), e.routing_method),
        );
        state.sinks.emit(event);
    }
}

/// What a dropped request's event records.
pub const DISCONNECTED_STATUS: u16 = 499;

impl Drop for Call {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.event.http_status = DISCONNECTED_STATUS;
        self.event.success = false;
        self.error(
            "client_disconnected",
            "the client closed the connection before the answer".into(),
        );
        self.emit(false);
    }
}

/// Records the attempt that answered: where it went, how long it waited, and the tries
/// that failed before it (a plain answer and a stream alike).
pub fn answered(
    e: &mut RequestCompleted,
    candidate: &Candidate,
    lease: &Lease,
    attempts: &[AttemptRecord],
    alternatives_tried: usize,
) {
    let id = candidate.id();
    e.provider_used = Some(id.provider.clone());
    e.model_used = Some(id.model.clone());
    e.api_key_used = Some(id.key_id.clone());
    e.tier_used = Some(candidate.tier);
    e.queue_wait_ms = Some(lease.queue_wait_ms);
    e.rate_limit_wait_ms = Some(lease.rate_limit_wait_ms);
    e.alternatives_tried = alternatives_tried as u32;
    e.fallback_attempts = attempts.len() as u32;
    // The tries that failed before the answer count in the upstream-error and
    // capacity-rejection metrics and in the statistics.
    e.attempt_errors = attempt_errors(attempts);
}

/// Records a finished answer: its usage, cost and finish reason. A stream that breaks
/// before its end records none of these (its token count is unknown, not zero).
pub fn completed(e: &mut RequestCompleted, usage: &Usage, cost_usd: f64, finish_reason: &str) {
    e.success = true;
    e.input_tokens = Some(usage.input_tokens);
    e.output_tokens = Some(usage.output_tokens);
    e.thinking_tokens = Some(usage.thinking_tokens);
    e.cost_usd = Some(cost_usd);
    e.finish_reason = Some(finish_reason.to_owned());
}

/// Records how long the upstream call took.
pub fn upstream_time(e: &mut RequestCompleted, ms: Millis, us: u64) {
    e.upstream_ms = Some(ms);
    e.upstream_us = Some(us);
}

/// The failed tries of a request as its completion event records them.
fn attempt_errors(attempts: &[AttemptRecord]) -> Vec<AttemptError> {
    attempts
        .iter()
        .map(|a| AttemptError {
            provider: a.provider.clone(),
            model: a.model.clone(),
            kind: a.error_type.clone(),
        })
        .collect()
}

/// The error a failed execution answers with.
fn failure_error(f: &Failure) -> ApiError {
    match f.kind {
        FailureKind::NoneAvailable { retry_after_ms } => ApiError::Unavailable {
            code: "all_candidates_unavailable",
            message: f.message(),
            retry_after_secs: retry_after_ms.map(|ms| (ms.max(0) as u64).div_ceil(1000)),
        },
        FailureKind::AllFailed => ApiError::AllFailed(f.message()),
        FailureKind::Refused => ApiError::RequestRefused(f.message()),
        FailureKind::Deadline => ApiError::DeadlineExceeded(f.message()),
    }
}
