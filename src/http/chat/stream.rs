//! Streamed answers that never lie, and never run without an end.
//!
//! [`crate::gateway::execute_stream`] fails over invisibly until an attempt has produced
//! its first content. From then on `live_body` forwards each piece as it arrives; an
//! upstream failure, a cut connection or a stall ends the stream with an explicit error
//! event and `finish_reason: "error"`, never a clean-looking end. Every outcome emits
//! exactly one completion event, and three limits end a stream whatever the upstream does:
//!
//! - **The request's deadline** bounds the whole stream, not only its start: an upstream
//!   that keeps sending is cut there with an explicit `deadline_exceeded` error event. The
//!   deadline is the caller's choice, so the pair is released without a failure (its
//!   circuit does not count it).
//! - **Idleness** is measured on content (`stream_idle_timeout_seconds`, in
//!   `providers::stream`): keep-alives do not hold a stream open. That is an upstream
//!   failure (`stream_interrupted`), counted against the pair as any stalled call.
//! - **A client that stops reading** (`HttpLimits::stream_write_stall`,
//!   `STREAM_WRITE_STALL_SECONDS`): actix polls the body only when the connection can take
//!   more, so a client that reads nothing leaves a chunk handed over and no poll since. A
//!   watchdog task (one timer per stream, woken at most once per stall period) notices
//!   that, ends the stream, drops the upstream connection, releases the slot as abandoned
//!   (no failure for the pair) and records a `client_disconnected`; if actix ever polls the
//!   body again it gets an error, which closes the connection.
//!
//! A client that goes away drops the body, which drops the upstream connection and
//! releases the key/model slot the same way.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::web::{self, Bytes};
use bkvy_actors::{LeaseGuard, Millis, Outcome, RequestCompleted};
use futures::stream::Stream;
use futures::{FutureExt, StreamExt};

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
    /// The request's deadline: the stream ends there.
    deadline: Pin<Box<tokio::time::Sleep>>,
    /// When the last chunk was handed to actix, while no poll has come since (the client
    /// has not taken it yet); `None` while the body waits on the upstream.
    handed: Option<tokio::time::Instant>,
    /// The client stopped reading and the stream was ended for it.
    stalled: bool,
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
                r.settle(&e);
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

    /// The next chunk of the body: a piece, the end, or pending on the upstream.
    fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<String>> {
        if let Some(p) = self.prefix.take() {
            return Poll::Ready(Some(p));
        }
        while !self.finished {
            let ev = match self.pending.pop_front() {
                Some(ev) => Ok(ev),
                None => {
                    if self.deadline.poll_unpin(cx).is_ready() {
                        return Poll::Ready(Some(self.deadline_passed()));
                    }
                    match self.upstream.poll_next_unpin(cx) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(r)) => r,
                        Poll::Ready(None) => Err(UpstreamError::Malformed {
                            message: "stream ended before completion".into(),
                        }),
                    }
                }
            };
            match ev {
                Ok(StreamEvent::Delta(text)) if !text.is_empty() => {
                    self.first_content();
                    return Poll::Ready(Some(self.format.delta(&text)));
                }
                Ok(StreamEvent::ToolCall(piece)) => {
                    self.first_content();
                    return Poll::Ready(Some(self.format.tool_call(&piece)));
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
                    return Poll::Ready(Some(self.format.done(finish_reason, &usage, cost)));
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
                    return Poll::Ready(Some(self.format.error(&message, "stream_interrupted")));
                }
            }
        }
        Poll::Ready(None)
    }

    /// Ends the stream at the request's deadline. The deadline is the caller's choice:
    /// the slot is released with no failure kind, so the pair's circuit does not count it.
    fn deadline_passed(&mut self) -> String {
        self.finished = true;
        self.upstream = futures::stream::empty().boxed_local();
        let latency = self.state.clock.now_ms() - self.upstream_started_ms;
        if let Some(g) = self.guard.take() {
            g.finish(Outcome::Failed {
                latency_ms: latency,
                kind: None,
            });
        }
        let message = "the request's deadline passed while the answer was streaming";
        self.emit(|e| {
            e.success = false;
            e.error_type = Some(DEADLINE_CODE.into());
            e.error_message = Some(message.into());
            e.finish_reason = Some("error".into());
        });
        self.format.error(message, DEADLINE_CODE)
    }

    /// Ends the stream of a client that has read nothing for `after`: the upstream
    /// connection is dropped, the slot released as abandoned (the client's doing, not the
    /// pair's) and the request recorded as a client disconnect.
    fn client_stalled(&mut self, after: Duration) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.stalled = true;
        self.upstream = futures::stream::empty().boxed_local();
        self.pending.clear();
        // Dropping the guard releases the slot as `Abandoned`.
        drop(self.guard.take());
        let message = format!(
            "the client read nothing for {} s mid-stream; the stream was ended",
            after.as_secs_f64()
        );
        self.emit(|e| {
            e.success = false;
            e.error_type = Some("client_disconnected".into());
            e.error_message = Some(message);
        });
    }
}

/// The error code of a stream cut at the request's deadline.
const DEADLINE_CODE: &str = "deadline_exceeded";

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

/// The body actix sends: the live stream, shared with its write-stall watchdog.
struct Body {
    live: Rc<RefCell<LiveStream>>,
    watchdog: Option<actix_web::rt::task::JoinHandle<()>>,
}

impl Stream for Body {
    type Item = Result<Bytes, actix_web::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut live = self.live.borrow_mut();
        // Polled again: the client took what was handed before.
        live.handed = None;
        if live.stalled {
            return Poll::Ready(Some(Err(actix_web::error::ErrorRequestTimeout(
                "the client stopped reading the stream",
            ))));
        }
        match live.poll_chunk(cx) {
            Poll::Ready(Some(chunk)) => {
                live.handed = Some(tokio::time::Instant::now());
                Poll::Ready(Some(Ok(Bytes::from(chunk))))
            }
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        if let Some(w) = self.watchdog.take() {
            w.abort();
        }
    }
}

/// Ends the stream when a chunk handed to actix has waited `stall` for the client to take
/// it. Holds the stream weakly: a body dropped (the client left, the stream ended) ends it.
async fn watch_writes(live: Weak<RefCell<LiveStream>>, stall: Duration) {
    let mut check = tokio::time::Instant::now() + stall;
    loop {
        tokio::time::sleep_until(check).await;
        let Some(live) = live.upgrade() else { return };
        let Ok(mut live) = live.try_borrow_mut() else {
            check = tokio::time::Instant::now() + stall;
            continue;
        };
        if live.finished {
            return;
        }
        let now = tokio::time::Instant::now();
        match live.handed {
            Some(at) if now >= at + stall => return live.client_stalled(stall),
            Some(at) => check = at + stall,
            None => check = now + stall,
        }
    }
}

/// Limits of a streamed answer beyond the upstream's own (see the module docs).
pub(super) struct StreamLimits {
    /// The request's deadline (Unix ms, on the state's clock).
    pub(super) deadline_ms: Millis,
    /// How long a chunk may wait for the client to take it.
    pub(super) write_stall: Duration,
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
    limits: StreamLimits,
) -> impl Stream<Item = Result<Bytes, actix_web::Error>> {
    event.streamed = true;
    record::answered(
        &mut event,
        &answered.candidate,
        answered.guard.lease(),
        &answered.attempts,
        answered.alternatives_tried,
    );
    let left = (limits.deadline_ms - state.clock.now_ms()).max(0) as u64;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(left);
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
        deadline: Box::pin(tokio::time::sleep_until(deadline)),
        handed: None,
        stalled: false,
    };
    let live = Rc::new(RefCell::new(live));
    let watchdog = actix_web::rt::spawn(watch_writes(
        Rc::downgrade(&live),
        limits.write_stall.max(Duration::from_millis(1)),
    ));
    Body {
        live,
        watchdog: Some(watchdog),
    }
}
