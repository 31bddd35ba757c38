//! Runs one stream: bytes in, normalised events out.
//!
//! [`Core`] is the synchronous state machine (decode → parse → check), kept apart from
//! the network so the unit tests can feed it any split of a byte stream; [`run`] only
//! moves bytes from the response into it under the idle timeout. Idleness is measured on
//! content, not bytes: the timer restarts only when the bytes made an event (a piece of
//! text, thinking or a tool call, or the end), so keep-alives (SSE comments, blank lines,
//! empty deltas) or a line trickled byte by byte cannot hold a stream open. Once a `Done`
//! or an error is queued nothing more is read, and the response (with its connection) is
//! dropped when the stream ends.

use std::collections::VecDeque;
use std::io;
use std::time::Duration;

use awc::error::PayloadError;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use tokio::time::Instant;

use super::sse::{Decoder, Framing};
use super::{anthropic, gemini, ollama, openai, Parse, StreamEvent};
use crate::config::ProviderKind;
use crate::providers::{empty_is_explained, error::safe_text, UpstreamError};

/// Decoding, parsing and the end-of-stream checks of one stream.
pub(super) struct Core {
    decoder: Decoder,
    parser: Box<dyn Parse>,
    ready: VecDeque<Result<StreamEvent, UpstreamError>>,
    /// A `Done` or an error is queued: the stream is over.
    closed: bool,
    /// Some non-empty text was emitted.
    text_seen: bool,
    /// Events emitted so far (what the idle timeout measures).
    emitted: u64,
}

impl Core {
    pub(super) fn new(kind: ProviderKind, max_event_bytes: usize) -> Self {
        let (framing, parser): (Framing, Box<dyn Parse>) = match kind {
            ProviderKind::Openai | ProviderKind::OpenaiCompatible => {
                (Framing::Sse, Box::<openai::OpenAi>::default())
            }
            ProviderKind::Anthropic => (Framing::Sse, Box::<anthropic::Anthropic>::default()),
            ProviderKind::Gemini => (Framing::Sse, Box::<gemini::Gemini>::default()),
            ProviderKind::Ollama => (Framing::Ndjson, Box::new(ollama::Ollama::default())),
        };
        Self {
            decoder: Decoder::new(framing, max_event_bytes),
            parser,
            ready: VecDeque::new(),
            closed: false,
            text_seen: false,
            emitted: 0,
        }
    }

    /// Feeds one chunk of the body.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.closed {
            return;
        }
        let mut frames = Vec::new();
        let decoded = self.decoder.push(bytes, &mut frames);
        self.frames(frames);
        if let Err(e) = decoded {
            self.fail(e);
        }
    }

    /// The body ended.
    pub(super) fn finish(&mut self) {
        if self.closed {
            return;
        }
        let mut frames = Vec::new();
        let decoded = self.decoder.finish(&mut frames);
        self.frames(frames);
        if let Err(e) = decoded {
            self.fail(e);
        }
        if !self.closed {
            match self.parser.end() {
                Ok(event) => self.emit(event),
                Err(e) => self.fail(e),
            }
        }
    }

    /// Ends the stream with an error (unless it is already over).
    pub(super) fn fail(&mut self, e: UpstreamError) {
        if !self.closed {
            self.closed = true;
            self.ready.push_back(Err(e));
        }
    }

    /// The next item to hand on.
    pub(super) fn pop(&mut self) -> Option<Result<StreamEvent, UpstreamError>> {
        self.ready.pop_front()
    }

    /// How many events have been emitted so far: a change means the stream made progress.
    pub(super) fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether nothing more will be queued.
    pub(super) fn closed(&self) -> bool {
        self.closed
    }

    fn frames(&mut self, frames: Vec<super::sse::Frame>) {
        for frame in frames {
            if self.closed {
                return;
            }
            let mut events = Vec::new();
            let parsed = self.parser.frame(frame, &mut events);
            for event in events {
                self.emit(event);
            }
            if let Err(e) = parsed {
                self.fail(e);
            }
        }
    }

    fn emit(&mut self, event: StreamEvent) {
        if self.closed {
            return;
        }
        match &event {
            StreamEvent::Delta(t) | StreamEvent::ThinkingDelta(t) if t.is_empty() => return,
            StreamEvent::Delta(_) | StreamEvent::ToolCall(_) => self.text_seen = true,
            StreamEvent::ThinkingDelta(_) => {}
            StreamEvent::Done {
                finish_reason,
                raw_finish_reason,
                ..
            } => {
                // The same rule as a non-streamed answer: no text needs an explanation.
                if !self.text_seen && !empty_is_explained(*finish_reason) {
                    let raw = safe_text(raw_finish_reason.as_deref().unwrap_or("none"));
                    return self.fail(UpstreamError::Malformed {
                        message: format!("empty content (finish reason: {raw})"),
                    });
                }
                self.closed = true;
            }
        }
        self.emitted += 1;
        self.ready.push_back(Ok(event));
    }
}

/// Moves the body into `core`, giving up with `Timeout` when no event comes for `idle`
/// (bytes that make no event, such as keep-alives, do not count).
pub(super) fn run<S>(
    body: S,
    core: Core,
    idle: Duration,
) -> impl Stream<Item = Result<StreamEvent, UpstreamError>> + 'static
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let state = (Some(body), core, None::<Instant>);
    futures::stream::unfold(state, move |(mut slot, mut core, mut idle_at)| async move {
        loop {
            if let Some(item) = core.pop() {
                if matches!(item, Ok(StreamEvent::Done { .. })) {
                    // The answer is complete: read what is left of the body (the
                    // chunked encoding's end) off the request's path, so the
                    // connection goes back to the pool instead of being closed.
                    if let Some(body) = slot.take() {
                        actix_web::rt::spawn(drain(body, idle));
                    }
                }
                return Some((item, (slot, core, idle_at)));
            }
            if core.closed() {
                return None;
            }
            let body = slot.as_mut()?;
            let until = *idle_at.get_or_insert_with(|| Instant::now() + idle);
            let before = core.emitted();
            match tokio::time::timeout_at(until, body.next()).await {
                Err(_elapsed) => core.fail(UpstreamError::Timeout),
                Ok(None) => core.finish(),
                Ok(Some(Err(e))) => core.fail(payload_error(e)),
                Ok(Some(Ok(bytes))) => core.push(&bytes),
            }
            if core.emitted() != before {
                idle_at = Some(Instant::now() + idle);
            }
        }
    })
}

/// Most bytes read after an answer's end to let its connection be reused; a body with
/// more than this after the end marker is not worth keeping the connection for.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Reads a finished stream's body to its end (bounded in bytes and time), so awc returns
/// the connection to its pool; dropping a body before its end closes the connection.
async fn drain<S>(mut body: S, idle: Duration)
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin,
{
    let read = async {
        let mut seen = 0;
        while let Some(Ok(bytes)) = body.next().await {
            seen += bytes.len();
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = actix_web::rt::time::timeout(idle.min(Duration::from_secs(5)), read).await;
}

/// A failure reading the body after the head arrived.
fn payload_error(e: PayloadError) -> UpstreamError {
    match e {
        PayloadError::Io(ref io) if io.kind() == io::ErrorKind::TimedOut => UpstreamError::Timeout,
        PayloadError::Io(_) | PayloadError::Incomplete(_) => UpstreamError::Connection {
            message: format!("stream cut off: {e}"),
        },
        PayloadError::EncodingCorrupted => UpstreamError::Malformed {
            message: "stream could not be decoded".into(),
        },
        other => UpstreamError::Malformed {
            message: format!("stream cut off: {other}"),
        },
    }
}
