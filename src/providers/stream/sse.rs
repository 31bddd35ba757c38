//! Incremental framing of a streamed body: Server-Sent Events and NDJSON.
//!
//! Network chunks split lines, events and UTF-8 sequences anywhere, so bytes are
//! buffered only up to the end of the current line and decoded as UTF-8 per whole line.
//! Every buffer is bounded by `max_event_bytes`, so an upstream that never ends a line
//! (or an event) cannot grow memory without limit.

use super::super::UpstreamError;

/// One framed unit of a stream: an SSE event (its `event:` name and joined `data:`
/// lines) or one NDJSON line (no name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Frame {
    /// The SSE `event:` field, if the event had one.
    pub(crate) event: Option<String>,
    /// The event's data (`data:` lines joined with `\n`), or the NDJSON line.
    pub(crate) data: String,
}

/// How a body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `text/event-stream`.
    Sse,
    /// One JSON object per line.
    Ndjson,
}

fn too_big(limit: usize) -> UpstreamError {
    UpstreamError::Malformed {
        message: format!("stream event larger than {limit} bytes"),
    }
}

/// Splits bytes into lines ending in `\n`, `\r\n` or `\r`, across chunk boundaries.
#[derive(Debug)]
struct Lines {
    partial: Vec<u8>,
    /// The previous byte was a `\r`, so a `\n` right after it ends nothing.
    after_cr: bool,
    limit: usize,
}

impl Lines {
    fn push(&mut self, bytes: &[u8], out: &mut Vec<String>) -> Result<(), UpstreamError> {
        for &b in bytes {
            let after_cr = std::mem::replace(&mut self.after_cr, b == b'\r');
            match b {
                b'\n' if after_cr => {}
                b'\n' | b'\r' => out.push(self.take()?),
                _ if self.partial.len() >= self.limit => return Err(too_big(self.limit)),
                _ => self.partial.push(b),
            }
        }
        Ok(())
    }

    /// The unterminated last line, if any.
    fn finish(&mut self) -> Result<Option<String>, UpstreamError> {
        if self.partial.is_empty() {
            return Ok(None);
        }
        self.take().map(Some)
    }

    fn take(&mut self) -> Result<String, UpstreamError> {
        String::from_utf8(std::mem::take(&mut self.partial)).map_err(|_| UpstreamError::Malformed {
            message: "stream line is not valid UTF-8".into(),
        })
    }
}

/// Turns a body, chunk by chunk, into [`Frame`]s.
#[derive(Debug)]
pub(crate) struct Decoder {
    framing: Framing,
    lines: Lines,
    event: Option<String>,
    data: Option<String>,
}

impl Decoder {
    /// A decoder refusing any line or event over `max_event_bytes`.
    pub(crate) fn new(framing: Framing, max_event_bytes: usize) -> Self {
        Self {
            framing,
            lines: Lines {
                partial: Vec::new(),
                after_cr: false,
                limit: max_event_bytes,
            },
            event: None,
            data: None,
        }
    }

    /// Feeds one chunk; complete frames are appended to `out`.
    pub(crate) fn push(&mut self, bytes: &[u8], out: &mut Vec<Frame>) -> Result<(), UpstreamError> {
        let mut lines = Vec::new();
        // Lines completed before a bad one still count, so nothing sent is lost.
        let split = self.lines.push(bytes, &mut lines);
        for line in lines {
            self.line(line, out)?;
        }
        split
    }

    /// The body ended: an unterminated NDJSON line still counts, an SSE event that was
    /// not ended by a blank line is dropped (as the SSE specification says).
    pub(crate) fn finish(&mut self, out: &mut Vec<Frame>) -> Result<(), UpstreamError> {
        if let Some(line) = self.lines.finish()? {
            if self.framing == Framing::Ndjson {
                self.line(line, out)?;
            }
        }
        Ok(())
    }

    fn line(&mut self, line: String, out: &mut Vec<Frame>) -> Result<(), UpstreamError> {
        match self.framing {
            Framing::Ndjson => {
                if !line.trim().is_empty() {
                    out.push(Frame {
                        event: None,
                        data: line,
                    });
                }
            }
            Framing::Sse => self.sse_line(&line, out)?,
        }
        Ok(())
    }

    fn sse_line(&mut self, line: &str, out: &mut Vec<Frame>) -> Result<(), UpstreamError> {
        if line.is_empty() {
            let event = self.event.take();
            if let Some(data) = self.data.take() {
                out.push(Frame { event, data });
            }
            return Ok(());
        }
        if line.starts_with(':') {
            return Ok(()); // a comment (keep-alive)
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_string()),
            "data" => {
                let data = self.data.get_or_insert_with(String::new);
                let extra = usize::from(!data.is_empty()) + value.len();
                if data.len() + extra > self.lines.limit {
                    return Err(too_big(self.lines.limit));
                }
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(value);
            }
            _ => {} // `id`, `retry` and unknown fields mean nothing here
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(framing: Framing, chunks: &[&[u8]], limit: usize) -> Result<Vec<Frame>, String> {
        let mut d = Decoder::new(framing, limit);
        let mut out = Vec::new();
        for c in chunks {
            d.push(c, &mut out).map_err(|e| e.to_string())?;
        }
        d.finish(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    fn frame(event: Option<&str>, data: &str) -> Frame {
        Frame {
            event: event.map(str::to_string),
            data: data.to_string(),
        }
    }

    const SSE: &str = ": keep-alive\r\nevent: a\r\ndata: {\"x\": \"é€😀\"}\r\n\r\nid: 7\ndata:one\ndata: two\n\nevent: lonely\n\ndata: cr\r\rdata: tail-without-blank";

    fn sse_expected() -> Vec<Frame> {
        vec![
            frame(Some("a"), "{\"x\": \"é€😀\"}"),
            frame(None, "one\ntwo"),
            frame(None, "cr"),
        ]
    }

    #[test]
    fn sse_every_split_point_gives_the_same_events() {
        let bytes = SSE.as_bytes();
        for i in 0..=bytes.len() {
            for j in i..=bytes.len() {
                let got = frames(
                    Framing::Sse,
                    &[&bytes[..i], &bytes[i..j], &bytes[j..]],
                    1024,
                );
                assert_eq!(got, Ok(sse_expected()), "split at {i}/{j}");
            }
        }
    }

    #[test]
    fn ndjson_lines_and_unterminated_last_line() {
        let bytes = "{\"a\":\"ü\"}\n\n  \r\n{\"b\":2}\r\n{\"c\":3}".as_bytes();
        for i in 0..=bytes.len() {
            let got = frames(Framing::Ndjson, &[&bytes[..i], &bytes[i..]], 1024).unwrap();
            let data: Vec<&str> = got.iter().map(|f| f.data.as_str()).collect();
            assert_eq!(
                data,
                ["{\"a\":\"ü\"}", "{\"b\":2}", "{\"c\":3}"],
                "split {i}"
            );
        }
    }

    #[test]
    fn limits_lines_and_events() {
        let long = format!("data: {}\n\n", "x".repeat(20));
        let e = frames(Framing::Sse, &[long.as_bytes()], 16).unwrap_err();
        assert!(e.contains("larger than 16 bytes"), "{e}");
        let many = "data: 0123456789\ndata: 0123456789\n\n";
        assert!(frames(Framing::Sse, &[many.as_bytes()], 16).is_err());
        assert!(frames(Framing::Sse, &[many.as_bytes()], 21).is_ok());
        let e = frames(Framing::Ndjson, &["y".repeat(17).as_bytes()], 16).unwrap_err();
        assert!(e.contains("larger than"), "{e}");
    }

    #[test]
    fn invalid_utf8_is_malformed() {
        let e = frames(Framing::Ndjson, &[b"{\"a\": \"\xff\"}\n"], 64).unwrap_err();
        assert!(e.contains("UTF-8"), "{e}");
    }
}
