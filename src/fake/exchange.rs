//! The flow every call goes through, whatever the API: record what arrived, validate
//! it (API module), count it against the provider-side limits (a call over one gets an
//! immediate 429), pick a scripted or random fault, wait the configured latency (the
//! model's own when `per_model` names it) and answer. Keeping it in one place makes
//! limits, faults and latency behave the same for every API, and means a call is
//! recorded even when it is rejected, refused or faulted.
//!
//! What differs between the APIs comes in with the call: the API module's check, and
//! its [`Flavor`] (where the credential is, what an error body looks like), which each
//! API module declares as its `FLAVOR`. So this module depends on no API module, and
//! the API modules depend on it.

use std::time::{Duration, SystemTime};

use actix_web::http::StatusCode;
use actix_web::rt::time::sleep;
use actix_web::{HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::Value;

use super::state::Shared;
use super::stream::Stream;
use super::{FakeApi, FakeModelOptions, FakeOptions, Fault, RecordedRequest};

/// How long a hanging call sleeps before it finally gives up.
const HANG: Duration = Duration::from_secs(3600);

/// What the flow needs to know of one API beyond its check.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flavor {
    /// Where the credential is read from, for the record and the limits.
    pub(crate) credential: Credential,
    /// The API's error body for a refusal; the second argument is the retry delay in
    /// seconds (Gemini puts it in the body).
    pub(crate) error_body: fn(&Reject, u64) -> Value,
}

/// Where an API carries its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Credential {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// The whole value of this header.
    Header(&'static str),
}

/// A refusal: the status and message, and OpenAI's `param`/`code` where they matter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reject {
    pub(crate) status: u16,
    pub(crate) message: String,
    pub(crate) param: Option<String>,
    pub(crate) code: Option<&'static str>,
}

impl Reject {
    pub(crate) fn new(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// A 400.
    pub(crate) fn bad(message: impl Into<String>) -> Self {
        Self::new(400, message)
    }

    pub(crate) fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub(crate) fn code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
}

impl From<String> for Reject {
    fn from(message: String) -> Self {
        Self::bad(message)
    }
}

/// A valid call's answer: the normal body, the one used for [`Fault::EmptyContent`],
/// and for a streaming call how the body is framed on the wire.
pub(crate) struct Success {
    pub(crate) normal: Value,
    pub(crate) empty: Value,
    pub(crate) stream: Option<Stream>,
}

impl Success {
    /// A plain JSON answer.
    pub(crate) fn json(normal: Value, empty: Value) -> Self {
        Self {
            normal,
            empty,
            stream: None,
        }
    }
}

/// What an API module's check sees.
pub(crate) struct Incoming<'a> {
    pub(crate) req: &'a HttpRequest,
    /// The body, or `None` when it is not valid JSON.
    pub(crate) json: Option<&'a Value>,
}

/// An API module's validation: the answer bodies, or why the call is refused.
pub(crate) type Check = fn(&Incoming<'_>) -> Result<Success, Reject>;

/// What the fake decided to answer.
enum Outcome {
    Error {
        reject: Reject,
        retry_after: Option<String>,
        headers: Vec<(String, String)>,
    },
    Answer(Value, Option<Stream>),
    /// Whether the call asked for a stream.
    Malformed(bool),
    /// The full body, its stream framing and whether the client accepts gzip.
    Truncated(Value, Option<Stream>, bool),
    Stalled(Value, Stream),
    Paced(Value, Stream, Duration),
    Endless(Value, Stream, Duration),
    KeepAliveOnly(Value, Stream, Duration),
    Trickle(Value, Option<Stream>, Duration),
    Hang,
}

impl Outcome {
    fn status(&self) -> u16 {
        match self {
            Self::Error { reject, .. } => reject.status,
            Self::Answer(..)
            | Self::Malformed(_)
            | Self::Truncated(..)
            | Self::Stalled(..)
            | Self::Paced(..)
            | Self::Endless(..)
            | Self::KeepAliveOnly(..)
            | Self::Trickle(..) => 200,
            Self::Hang => 0,
        }
    }
}

/// Latency and random failures of one model: its `per_model` entry, else the global ones.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Behaviour {
    latency: Duration,
    latency_jitter: Duration,
    fail_rate: f64,
    fail_status: u16,
}

impl Behaviour {
    fn of(opts: &FakeOptions, model: &str) -> Self {
        match opts.per_model.iter().find(|m| m.model == model) {
            Some(FakeModelOptions {
                latency,
                latency_jitter,
                fail_rate,
                fail_status,
                ..
            }) => Self {
                latency: *latency,
                latency_jitter: *latency_jitter,
                fail_rate: *fail_rate,
                fail_status: *fail_status,
            },
            None => Self {
                latency: opts.latency,
                latency_jitter: opts.latency_jitter,
                fail_rate: opts.fail_rate,
                fail_status: opts.fail_status,
            },
        }
    }
}

/// Serves one call: record, check, limit, fault, latency, answer.
pub(crate) async fn serve(
    shared: &Shared,
    req: &HttpRequest,
    body: &Bytes,
    api: FakeApi,
    flavor: Flavor,
    path_model: Option<String>,
    check: Check,
) -> HttpResponse {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let model = path_model
        .or_else(|| {
            json.as_ref()
                .and_then(|v| v.get("model"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let credential = credential(flavor, req);
    let arrived = SystemTime::now();
    let id = shared.record(RecordedRequest {
        api,
        path: req.path().to_owned(),
        model: model.clone(),
        credential: credential.clone(),
        headers: req
            .headers()
            .iter()
            .map(|(n, v)| {
                let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_owned(), value)
            })
            .collect(),
        query: req.query_string().to_owned(),
        peer: req.peer_addr(),
        body: json.clone().unwrap_or(Value::Null),
        received_at: arrived,
        status: 0,
    });
    let opts = shared.options();
    let behaviour = Behaviour::of(&opts, &model);
    let incoming = Incoming {
        req,
        json: json.as_ref(),
    };
    let mut refused = false;
    let (outcome, delay) = match check(&incoming) {
        Err(reject) => (
            Outcome::Error {
                reject,
                retry_after: None,
                headers: Vec::new(),
            },
            Duration::ZERO,
        ),
        Ok(success) => {
            let limited = if opts.limits.is_empty() {
                Ok(())
            } else {
                shared.arrive(credential.as_deref(), &model, arrived)
            };
            match limited {
                Err(r) => {
                    refused = true;
                    let outcome = Outcome::Error {
                        reject: Reject::new(429, r.message(&model)).code("rate_limit_exceeded"),
                        retry_after: Some(r.retry_after_secs.to_string()),
                        headers: Vec::new(),
                    };
                    (outcome, Duration::ZERO)
                }
                Ok(()) => {
                    let fault = shared
                        .next_fault(&model)
                        .or_else(|| random_failure(&behaviour, opts.retry_after_secs));
                    match fault {
                        Some(Fault::Quoting(status)) => {
                            let message = quoting(credential.as_deref(), json.as_ref());
                            let outcome = Outcome::Error {
                                reject: Reject::new(status, message),
                                retry_after: None,
                                headers: Vec::new(),
                            };
                            (outcome, Duration::ZERO)
                        }
                        other => apply(other, success, accepts_gzip(req)),
                    }
                }
            }
        }
    };
    shared.set_status(id, outcome.status());
    // A provider refuses a call over its limit at once, without doing the work.
    let wait = if refused {
        Duration::ZERO
    } else {
        latency(&behaviour) + delay
    };
    if !wait.is_zero() {
        sleep(wait).await;
    }
    respond(outcome, flavor, &opts).await
}

/// The message of a [`Fault::Quoting`]: the credential as received and, in double
/// quotes, the longest text of the request body.
fn quoting(credential: Option<&str>, body: Option<&Value>) -> String {
    let mut text = "";
    if let Some(body) = body {
        longest_text(body, &mut text);
    }
    format!(
        "Incorrect API key provided: {}. Request text: \"{text}\"",
        credential.unwrap_or("none")
    )
}

/// The longest string anywhere in `v`.
fn longest_text<'v>(v: &'v Value, best: &mut &'v str) {
    match v {
        Value::String(s) if s.len() > best.len() => *best = s,
        Value::Array(items) => items.iter().for_each(|i| longest_text(i, best)),
        Value::Object(map) => map.values().for_each(|i| longest_text(i, best)),
        _ => {}
    }
}

/// The credential as the API carries it.
fn credential(flavor: Flavor, req: &HttpRequest) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let bearer = || {
        header("authorization").and_then(|v| v.strip_prefix("Bearer ").map(|t| t.trim().to_owned()))
    };
    match flavor.credential {
        Credential::Bearer => bearer(),
        Credential::Header(name) => header(name),
    }
}

/// A random failure per `fail_rate`; a 429 carries `Retry-After`.
fn random_failure(b: &Behaviour, retry_after_secs: u64) -> Option<Fault> {
    let rate = b.fail_rate.clamp(0.0, 1.0);
    if rate <= 0.0 || !rand::random_bool(rate) {
        return None;
    }
    let retry_after = (b.fail_status == 429).then(|| retry_after_secs.to_string());
    Some(Fault::Status {
        status: b.fail_status,
        retry_after,
        headers: Vec::new(),
    })
}

fn apply(fault: Option<Fault>, success: Success, gzip: bool) -> (Outcome, Duration) {
    let outcome = match fault {
        None => Outcome::Answer(success.normal, success.stream),
        Some(Fault::Status {
            status,
            retry_after,
            headers,
        }) => {
            let reason = StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("error");
            let reject = Reject::new(status, format!("{reason} (injected by the fake upstream)"));
            Outcome::Error {
                reject,
                retry_after,
                headers,
            }
        }
        Some(Fault::Delay(d)) => return (Outcome::Answer(success.normal, success.stream), d),
        Some(Fault::Hang) => Outcome::Hang,
        Some(Fault::Malformed) => Outcome::Malformed(success.stream.is_some()),
        Some(Fault::Truncated) => Outcome::Truncated(success.normal, success.stream, gzip),
        Some(Fault::EmptyContent) => Outcome::Answer(success.empty, success.stream),
        Some(Fault::Stall) => match success.stream {
            Some(stream) => Outcome::Stalled(success.normal, stream),
            None => Outcome::Hang,
        },
        // Answered in `serve`, where the call's credential and body are known.
        Some(Fault::Quoting(status)) => Outcome::Error {
            reject: Reject::new(status, "quoting fault"),
            retry_after: None,
            headers: Vec::new(),
        },
        Some(Fault::Paced(gap)) => match success.stream {
            Some(stream) => Outcome::Paced(success.normal, stream, gap),
            None => return (Outcome::Answer(success.normal, None), gap),
        },
        Some(Fault::Endless(gap)) => match success.stream {
            Some(stream) => Outcome::Endless(success.normal, stream, gap),
            None => Outcome::Hang,
        },
        Some(Fault::KeepAliveOnly(gap)) => match success.stream {
            Some(stream) => Outcome::KeepAliveOnly(success.normal, stream, gap),
            None => Outcome::Hang,
        },
        Some(Fault::Trickle(gap)) => Outcome::Trickle(success.normal, success.stream, gap),
    };
    (outcome, Duration::ZERO)
}

fn latency(b: &Behaviour) -> Duration {
    let jitter = u64::try_from(b.latency_jitter.as_nanos()).unwrap_or(u64::MAX);
    let extra = if jitter == 0 {
        0
    } else {
        rand::random_range(0..=jitter)
    };
    b.latency + Duration::from_nanos(extra)
}

async fn respond(outcome: Outcome, flavor: Flavor, opts: &FakeOptions) -> HttpResponse {
    match outcome {
        Outcome::Answer(v, None) => HttpResponse::Ok().json(v),
        Outcome::Answer(v, Some(stream)) => {
            let frames = (stream.frames)(&v)
                .into_iter()
                .map(|f| Ok::<_, std::io::Error>(Bytes::from(f)));
            HttpResponse::Ok()
                .content_type(stream.content_type)
                .insert_header(("cache-control", "no-cache"))
                .streaming(futures::stream::iter(frames))
        }
        Outcome::Error {
            reject,
            retry_after,
            headers,
        } => {
            let delay = retry_after
                .as_deref()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(opts.retry_after_secs);
            let status =
                StatusCode::from_u16(reject.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut resp = HttpResponse::build(status);
            if let Some(ra) = retry_after {
                resp.insert_header(("retry-after", ra));
            }
            for (name, value) in headers {
                resp.append_header((name, value));
            }
            resp.json((flavor.error_body)(&reject, delay))
        }
        Outcome::Malformed(false) => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"id\": \"fake-malformed\", \"choices\": [ <html>502 Bad Gateway</html>"),
        Outcome::Malformed(true) => HttpResponse::Ok().content_type("text/event-stream").body(
            "data: {\"id\": \"fake-malformed\", \"choices\": [\n\ndata: <html>502</html>\n\n",
        ),
        Outcome::Stalled(v, stream) => {
            let frames = (stream.frames)(&v);
            let half = frames[..frames.len() / 2].concat();
            let head =
                futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(half)) });
            let silence = futures::stream::once(async {
                sleep(Duration::from_secs(3600)).await;
                Err(std::io::Error::other(
                    "fake upstream: stalled stream gave up",
                ))
            });
            HttpResponse::Ok()
                .content_type(stream.content_type)
                .streaming(futures::StreamExt::chain(head, silence))
        }
        Outcome::Paced(v, stream, gap) => {
            let frames = (stream.frames)(&v);
            let paced =
                futures::StreamExt::then(futures::stream::iter(frames), move |f| async move {
                    sleep(gap).await;
                    Ok::<_, std::io::Error>(Bytes::from(f))
                });
            HttpResponse::Ok()
                .content_type(stream.content_type)
                .streaming(paced)
        }
        Outcome::Endless(v, stream, gap) => {
            let frames = (stream.frames)(&v);
            let half = frames[..frames.len() / 2].to_vec();
            let again = half.last().cloned().unwrap_or_default();
            let head = futures::stream::iter(half);
            let more = futures::stream::repeat(again);
            let endless = futures::StreamExt::then(
                futures::StreamExt::chain(head, more),
                move |f| async move {
                    if !gap.is_zero() {
                        sleep(gap).await;
                    }
                    Ok::<_, std::io::Error>(Bytes::from(f))
                },
            );
            HttpResponse::Ok()
                .content_type(stream.content_type)
                .streaming(endless)
        }
        Outcome::KeepAliveOnly(v, stream, gap) => {
            let frames = (stream.frames)(&v);
            let half = frames[..frames.len() / 2].concat();
            let beat = if stream.content_type == "text/event-stream" {
                ": keep-alive\n\n"
            } else {
                "\n"
            };
            let head =
                futures::stream::once(async move { Ok::<_, std::io::Error>(Bytes::from(half)) });
            let beats =
                futures::StreamExt::then(futures::stream::repeat(beat), move |b| async move {
                    sleep(gap).await;
                    Ok::<_, std::io::Error>(Bytes::from_static(b.as_bytes()))
                });
            HttpResponse::Ok()
                .content_type(stream.content_type)
                .streaming(futures::StreamExt::chain(head, beats))
        }
        Outcome::Trickle(v, stream, gap) => {
            let (content_type, body) = match stream {
                Some(stream) => (stream.content_type, (stream.frames)(&v).concat()),
                None => ("application/json", v.to_string()),
            };
            let bytes = Bytes::from(body.into_bytes());
            let trickle =
                futures::StreamExt::then(futures::stream::iter(0..bytes.len()), move |i| {
                    let byte = bytes.slice(i..=i);
                    async move {
                        sleep(gap).await;
                        Ok::<_, std::io::Error>(byte)
                    }
                });
            HttpResponse::Ok()
                .content_type(content_type)
                .streaming(trickle)
        }
        Outcome::Truncated(v, stream, gzip) => {
            let mut resp = HttpResponse::Ok();
            let (half, gzip) = match stream {
                None => {
                    resp.content_type("application/json");
                    let full = Bytes::from(v.to_string().into_bytes());
                    (full.slice(..full.len() / 2), gzip)
                }
                Some(stream) => {
                    resp.content_type(stream.content_type);
                    let frames = (stream.frames)(&v);
                    let half = frames[..frames.len() / 2].concat();
                    (Bytes::from(half.into_bytes()), false)
                }
            };
            let head = if gzip {
                resp.insert_header(("content-encoding", "gzip"));
                gzip_unfinished(&half)
            } else {
                half
            };
            let head = futures::stream::once(async move { Ok::<_, std::io::Error>(head) });
            let broken = futures::stream::once(async {
                // Let the headers and the first part reach the client before breaking off.
                sleep(Duration::from_millis(50)).await;
                Err(std::io::Error::other("fake upstream: body truncated"))
            });
            resp.streaming(futures::StreamExt::chain(head, broken))
        }
        Outcome::Hang => {
            sleep(HANG).await;
            let reject = Reject::new(504, "the fake upstream hung for an hour");
            HttpResponse::GatewayTimeout().json((flavor.error_body)(&reject, opts.retry_after_secs))
        }
    }
}

/// Whether the request's `Accept-Encoding` allows gzip.
fn accepts_gzip(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("accept-encoding")
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")))
}

/// A gzip stream holding `data` in one stored deflate block and then ending early:
/// no final block and no CRC trailer. A client that decompresses (as awc does by
/// default) then reports a payload error, where a plain cut-off body would look like a
/// normal end of body to it (awc takes EOF as the end of a chunked body).
fn gzip_unfinished(data: &[u8]) -> Bytes {
    let data = &data[..data.len().min(usize::from(u16::MAX))];
    let len = u16::try_from(data.len()).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(data.len() + 15);
    out.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
    out.push(0); // BFINAL = 0, BTYPE = stored
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(data);
    Bytes::from(out)
}
