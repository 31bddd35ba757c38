//! The pure parts of the streaming load generator: an incremental SSE reader, what one
//! OpenAI `chat.completion.chunk` event means for the measurement, and percentiles.
//!
//! They are kept apart from the network code and unit-tested in `tests/stream_load.rs`
//! (a `harness = false` bench runs no `#[test]`): a generator that miscounts chunks or takes a cut stream for a good
//! one would make every streaming figure in docs/PERFORMANCE.md wrong without anyone
//! noticing.

use std::borrow::Cow;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;

/// Splits a byte stream into SSE events and hands over each event's `data` (the `data:`
/// lines joined with `\n`). Lines end in `\n` (a `\r` before it is dropped); a blank line
/// ends an event; `event:`, `id:`, `retry:` and `:` comment lines are skipped. Bytes are
/// kept until their line is complete, so network chunks may split lines and events
/// anywhere.
#[derive(Debug, Default)]
pub struct SseReader {
    pending: Vec<u8>,
    data: Option<String>,
}

impl SseReader {
    /// Feeds the next bytes; calls `on_event` with the data of every event they complete.
    pub fn feed(&mut self, bytes: &[u8], mut on_event: impl FnMut(&str)) {
        self.pending.extend_from_slice(bytes);
        let mut start = 0;
        while let Some(nl) = self.pending[start..].iter().position(|&b| b == b'\n') {
            let end = start + nl;
            let mut line = &self.pending[start..end];
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.is_empty() {
                if let Some(data) = self.data.take() {
                    on_event(&data);
                }
            } else if let Some(value) = line.strip_prefix(b"data:") {
                let value = value.strip_prefix(b" ").unwrap_or(value);
                let value = String::from_utf8_lossy(value);
                match &mut self.data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(&value);
                    }
                    None => self.data = Some(value.into_owned()),
                }
            }
            start = end + 1;
        }
        self.pending.drain(..start);
    }
}

/// What one event of an OpenAI chat completion stream is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// `data: [DONE]`: the stream is complete.
    Done,
    /// A chunk with non-empty `choices[0].delta.content`; the model it names (if any) and
    /// the number of whitespace-separated words (the fake's token count).
    Content { model: Option<String>, words: u32 },
    /// A chunk without content (the role chunk, the finish chunk, the usage chunk).
    Other,
    /// An error event: a JSON object with an `error` member, or `"type": "error"`.
    Error,
    /// Data that is not JSON.
    Malformed,
}

#[derive(Deserialize)]
struct ChunkView<'a> {
    #[serde(default, borrow)]
    choices: Vec<ChoiceView<'a>>,
    #[serde(default)]
    error: Option<IgnoredAny>,
    #[serde(default, rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    model: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ChoiceView<'a> {
    #[serde(default, borrow)]
    delta: Option<DeltaView<'a>>,
}

#[derive(Deserialize)]
struct DeltaView<'a> {
    #[serde(default, borrow)]
    content: Option<Cow<'a, str>>,
}

/// Classifies the data of one event.
pub fn classify(data: &str) -> Event {
    if data.trim() == "[DONE]" {
        return Event::Done;
    }
    let Ok(chunk) = serde_json::from_str::<ChunkView<'_>>(data) else {
        return Event::Malformed;
    };
    if chunk.error.is_some() || chunk.kind.as_deref() == Some("error") {
        return Event::Error;
    }
    let content = chunk
        .choices
        .first()
        .and_then(|c| c.delta.as_ref())
        .and_then(|d| d.content.as_deref())
        .unwrap_or("");
    if content.is_empty() {
        return Event::Other;
    }
    Event::Content {
        model: chunk.model.map(Cow::into_owned),
        words: u32::try_from(content.split_whitespace().count()).unwrap_or(u32::MAX),
    }
}

/// Why a stream did not count as a success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The request could not be sent or its answer head not read (connect error, reset,
    /// timeout before the head).
    Connect(String),
    /// The answer status was not 2xx.
    Status(u16),
    /// The body ended (or broke) before `data: [DONE]`.
    NoDone,
    /// An error event arrived.
    ErrorEvent,
    /// An event's data was not JSON.
    Malformed,
    /// The whole stream took longer than the generator's per-stream timeout.
    Timeout,
}

impl Failure {
    /// The key under `errors` in the generator's JSON.
    pub fn key(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Status(_) => "non_2xx",
            Self::NoDone => "no_done",
            Self::ErrorEvent => "error_event",
            Self::Malformed => "malformed",
            Self::Timeout => "timeout",
        }
    }
}

/// Follows one stream's events: first content, content count, `[DONE]`, errors.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StreamState {
    /// Content events seen (before `[DONE]`).
    pub chunks: u32,
    /// Words in them.
    pub words: u32,
    /// The model named by the first content event.
    pub model: Option<String>,
    /// `data: [DONE]` was seen.
    pub done: bool,
    /// The first error or malformed event, if any.
    pub failure: Option<Failure>,
}

impl StreamState {
    /// Applies one event; returns true if it is the stream's first content event (the
    /// moment TTFT is taken).
    pub fn apply(&mut self, event: Event) -> bool {
        if self.done {
            return false;
        }
        match event {
            Event::Done => self.done = true,
            Event::Content { model, words } => {
                self.chunks += 1;
                self.words = self.words.saturating_add(words);
                if self.chunks == 1 {
                    self.model = model;
                    return true;
                }
            }
            Event::Other => {}
            Event::Error => {
                self.failure.get_or_insert(Failure::ErrorEvent);
            }
            Event::Malformed => {
                self.failure.get_or_insert(Failure::Malformed);
            }
        }
        false
    }

    /// The verdict once the body has ended: an error event wins, then a missing `[DONE]`.
    pub fn finish(&self) -> Result<(), Failure> {
        match &self.failure {
            Some(f) => Err(f.clone()),
            None if !self.done => Err(Failure::NoDone),
            None => Ok(()),
        }
    }
}

/// Nearest-rank percentile (`p` in 0..=100) of sorted values; `None` when empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    // ceil(p/100 * n) as a 1-based rank, clamped to 1..=n.
    let rank = (p / 100.0 * n as f64).ceil();
    let rank = if rank < 1.0 { 1 } else { rank as usize };
    Some(sorted[rank.min(n) - 1])
}
