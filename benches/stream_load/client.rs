//! One measured stream: POST the request on the shared keep-alive pool, read the SSE body
//! as it arrives, and time the first content event and `[DONE]` from the stream's
//! *scheduled* start, so time spent waiting for a free connection or behind a slow
//! server counts as latency (open-loop measurement).

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;

use super::sse::{classify, Failure, SseReader, StreamState};

/// Where and what to send.
#[derive(Debug, Clone)]
pub struct Target {
    /// Full URL of the streaming endpoint.
    pub url: String,
    /// The JSON body (with `"stream": true`).
    pub body: Bytes,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
}

/// What one stream gave.
#[derive(Debug, Clone)]
pub struct StreamResult {
    /// From the scheduled start to the moment the request was handed to the client.
    pub lag: Duration,
    /// From the scheduled start to the first content event.
    pub ttft: Option<Duration>,
    /// From the moment the request was handed to the client to the first content event
    /// (`ttft` minus `lag`): without the generator's own wake-up delay.
    pub ttft_from_send: Option<Duration>,
    /// From the scheduled start to `[DONE]` (or to the end of the body without it).
    pub total: Duration,
    /// When the stream finished (for the achieved rate).
    pub finished: Instant,
    /// Content chunks, words, model and `[DONE]` as seen.
    pub state: StreamState,
    /// The HTTP status, when an answer head arrived.
    pub status: Option<u16>,
    /// `Ok` or why the stream failed.
    pub outcome: Result<(), Failure>,
}

/// Runs one stream; never panics, every failure ends up in `outcome`.
pub async fn one_stream(
    client: &awc::Client,
    target: &Target,
    scheduled: Instant,
    timeout: Duration,
) -> StreamResult {
    let mut state = StreamState::default();
    let mut ttft = None;
    let mut status = None;
    let mut done_at = None;
    let lag = scheduled.elapsed();
    let run = read_stream(
        client,
        target,
        scheduled,
        &mut state,
        &mut ttft,
        &mut status,
        &mut done_at,
    );
    let outcome = match actix_web::rt::time::timeout(timeout, run).await {
        Ok(Ok(())) => state.finish(),
        Ok(Err(f)) => Err(f),
        Err(_) => Err(Failure::Timeout),
    };
    let finished = Instant::now();
    StreamResult {
        lag,
        ttft,
        ttft_from_send: ttft.map(|t| t.saturating_sub(lag)),
        total: done_at.unwrap_or(finished).duration_since(scheduled),
        finished,
        state,
        status,
        outcome,
    }
}

async fn read_stream(
    client: &awc::Client,
    target: &Target,
    scheduled: Instant,
    state: &mut StreamState,
    ttft: &mut Option<Duration>,
    status: &mut Option<u16>,
    done_at: &mut Option<Instant>,
) -> Result<(), Failure> {
    let mut req = client
        .post(&target.url)
        .insert_header(("content-type", "application/json"))
        .insert_header(("accept", "text/event-stream"));
    for (name, value) in &target.headers {
        req = req.insert_header((name.as_str(), value.as_str()));
    }
    let mut res = req
        .send_body(target.body.clone())
        .await
        .map_err(|e| Failure::Connect(e.to_string()))?;
    *status = Some(res.status().as_u16());
    if !res.status().is_success() {
        // Read the error body so the connection goes back to the pool.
        let _ = res.body().await;
        return Err(Failure::Status(res.status().as_u16()));
    }
    let mut reader = SseReader::default();
    while let Some(item) = res.next().await {
        // A broken body ends the stream; whether it counts as cut depends on `[DONE]`.
        let Ok(bytes) = item else { break };
        reader.feed(&bytes, |data| {
            let was_done = state.done;
            if state.apply(classify(data)) {
                *ttft = Some(scheduled.elapsed());
            }
            if state.done && !was_done {
                *done_at = Some(Instant::now());
            }
        });
        // Keep reading after `[DONE]` until the body ends: a body left unread would
        // close the connection instead of returning it to the pool.
    }
    Ok(())
}
