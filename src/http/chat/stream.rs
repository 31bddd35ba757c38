//! Streamed answers that never lie.
//!
//! [`crate::gateway::execute_stream`] fails over invisibly until an attempt has produced
//! its first content. From then on `live_body` forwards each piece as it arrives; an
//! upstream failure, a cut connection or a stall ends the stream with an explicit error
//! event and `finish_reason: "error"`, never a clean-looking end. A client
//! that goes away drops the body, which drops the upstream connection and releases the
//! key/model slot; every outcome emits exactly one completion event.

use std::collections::VecDeque;
use std::time::Instant;

use actix_web::web::{self, Bytes};
use bkvy_actors::{LeaseGuard, Millis, Outcome, RequestCompleted};
use futures::stream::{self, Stream};
use futures::StreamExt;

use super::record;
use crate::config::Model;
use crate::gateway::{self, Answered, Probed};
use crate::http::client_auth::Reservation;
use crate::providers::stream::{StreamEvent, ToolCallDelta, UpstreamStream};
use crate::providers::UpstreamError;
use crate::state::AppState;
use crate::types::{FinishReason, Usage};

/// How stream events become Server-Sent Events for one API shape.
pub trait ChunkFormat {
    /// Sent before the first content (e.g. the role chunk), if anything.
    fn start(&mut self) -> Option<String>;
    /// A piece of content.
    fn delta(&mut self, text: &str) -> String;
    /// A piece of a tool call (only requests that offer tools get them).
    fn tool_call(&mut self, piece: &ToolCallDelta) -> String;
    /// The clean end, including any final usage and terminator.
    fn done(&mut self, finish: FinishReason, usage: &Usage, cost_usd: f64) -> String;
    /// The end after a failure: an explicit error, never a clean-looking end.
    fn error(&mut self, message: &str, code: &str) -> String;
}

/// An SSE `data:` line.
pub fn sse(value: &serde_json::Value) -> String {
    format!("data: {value}\n\n")
}

struct LiveStream {
    upstream: UpstreamStream,
    pending: VecDeque<StreamEvent>,
    prefix: Option<String>,
    guard: Option<LeaseGuard>,
    format: Box<dyn ChunkFormat>,
    event: Option<RequestCompleted>,
    state: web::Data<AppState>,
    model: Model,
    request_started: Instant,
    upstream_started_ms: Millis,
    upstream_started: Instant,
    deltas: u64,
    finished: bool,
    reservation: Option<Reservation>,
}

impl LiveStream {
    fn emit(&mut self, fill: impl FnOnce(&mut RequestCompleted)) {
        if let Some(mut e) = self.event.take() {
            fill(&mut e);
            e.total_time_ms = self.request_started.elapsed().as_millis() as Millis;
            e.total_us = self.request_started.elapsed().as_micros() as u64;
            record::upstream_time(
                &mut e,
                self.state.clock.now_ms() - self.upstream_started_ms,
                self.upstream_started.elapsed().as_micros() as u64,
            );
            if let Some(r) = self.reservation.take() {
                r.settle(e.cost_usd);
            }
            self.state.sinks.emit(e);
        }
    }

    /// Counts a forwarded piece; the first one fixes the time to first token.
    fn first_content(&mut self) {
        if self.deltas == 0 {
            let ttft = self.request_started.elapsed().as_millis() as Millis;
            if let Some(e) = self.event.as_mut() {
                e.time_to_first_token_ms = Some(ttft);
            }
        }
        self.deltas += 1;
    }

    async fn next_chunk(&mut self) -> Option<String> {
        if let Some(p) = self.prefix.take() {
            return Some(p);
        }
        while !self.finished {
            let ev = match self.pending.pop_front() {
                Some(ev) => Ok(ev),
                None => match self.upstream.next().await {
                    Some(r) => r,
                    None => Err(UpstreamError::Malformed {
                        message: "stream ended before completion".into(),
                    }),
                },
            };
            match ev {
                Ok(StreamEvent::Delta(text)) if !text.is_empty() => {
                    self.first_content();
                    return Some(self.format.delta(&text));
                }
                Ok(StreamEvent::ToolCall(piece)) => {
                    self.first_content();
                    return Some(self.format.tool_call(&piece));
                }
                Ok(StreamEvent::Delta(_) | StreamEvent::ThinkingDelta(_)) => continue,
                Ok(StreamEvent::Done {
                    finish_reason,
                    usage,
                    ..
                }) => {
                    self.finished = true;
                    let latency = self.state.clock.now_ms() - self.upstream_started_ms;
                    if let Some(g) = self.guard.take() {
                        g.finish(Outcome::Success {
                            latency_ms: latency,
                        });
                    }
                    let cost = gateway::cost_usd(&usage, &self.model);
                    self.emit(|e| {
                        e.http_status = 200;
                        record::completed(e, &usage, cost, finish_reason.as_str());
                    });
                    return Some(self.format.done(finish_reason, &usage, cost));
                }
                Err(err) => {
                    self.finished = true;
                    let latency = self.state.clock.now_ms() - self.upstream_started_ms;
                    if let Some(g) = self.guard.take() {
                        g.finish(Outcome::Failed {
                            latency_ms: latency,
                            kind: gateway::failure_kind(&err),
                        });
                    }
                    let message = format!("upstream stream failed after content was sent: {err}");
                    // No usage arrives on a broken stream: the output token count is
                    // unknown (the number of pieces forwarded is not a token count).
                    self.emit(|e| {
                        e.success = false;
                        e.error_type = Some("stream_interrupted".into());
                        e.error_message = Some(message.clone());
                        e.finish_reason = Some("error".into());
                    });
                    return Some(self.format.error(&message, "stream_interrupted"));
                }
            }
        }
        None
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        if !self.finished {
            // The client went away mid-stream: dropping `upstream` closes the upstream
            // connection and dropping the guard releases the slot as abandoned.
            self.emit(|e| {
                e.success = false;
                e.error_type = Some("client_disconnected".into());
                e.error_message = Some("the client closed the connection mid-stream".into());
            });
        }
    }
}

/// The response body of a streamed answer. `event` is the request's completion event as
/// far as it is known; the stream fills in the rest and emits it when it ends.
pub(super) fn live_body(
    answered: Answered<Probed>,
    mut format: Box<dyn ChunkFormat>,
    mut event: RequestCompleted,
    state: web::Data<AppState>,
    request_started: Instant,
    reservation: Option<Reservation>,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    event.streamed = true;
    record::answered(
        &mut event,
        &answered.candidate,
        answered.guard.lease(),
        &answered.attempts,
        answered.alternatives_tried,
    );
    let live = LiveStream {
        upstream: answered.value.stream,
        pending: answered.value.first,
        prefix: format.start(),
        guard: Some(answered.guard),
        format,
        event: Some(event),
        state,
        model: answered.model,
        request_started,
        upstream_started_ms: answered.started_ms,
        upstream_started: answered.started_mono,
        deltas: 0,
        finished: false,
        reservation,
    };
    stream::unfold(live, |mut live| async move {
        let chunk = live.next_chunk().await?;
        Some((Ok(Bytes::from(chunk)), live))
    })
}
