//! Fake provider servers that speak the real wire formats.
//!
//! One actix-web server answers the OpenAI, Anthropic, Gemini and Ollama APIs by path,
//! so a single fake can stand in for every upstream in the demo, the benchmarks and
//! the gateway's integration tests. It validates requests as strictly as the real APIs
//! (unknown parameters, bad roles, bad thinking settings all get that API's own 400),
//! so a bug in an adapter fails a test instead of silently "working" against a lenient
//! stub. Answers are deterministic (`"[<model>] <last user text>"`, cut to the requested
//! token limit counting words), and faults can be scripted per model or injected at a
//! random rate to exercise retries, failover and timeouts. Latency and the random
//! failures can be set per model, and the fake can enforce a provider's own RPM/RPD per
//! (credential, model), counted by arrival, so a benchmark sees the 429s a real provider
//! would send when a gateway's accounting slips.
//!
//! Layout: `state` holds what the worker threads share, `exchange` runs the common
//! record → validate → limit → fault → latency → answer flow, `limits` holds the
//! provider-side rate limits, `text` makes the deterministic
//! answer, `stream` frames streaming answers, and one module per API (`openai`, `anthropic`, `gemini` with
//! `gemini_request`, `ollama`, `models` for the model lists) does that API's
//! validation and shapes. Each API module hands `exchange` its check and its `FLAVOR`
//! (credential header, error shape), so `exchange` knows none of them; this module
//! routes paths to them, and an unknown path to the API its prefix belongs to.

mod anthropic;
mod exchange;
mod gemini;
mod gemini_request;
mod limits;
mod models;
mod ollama;
mod openai;
mod state;
mod stream;
mod text;
mod tools;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use actix_web::dev::ServerHandle;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use bytes::Bytes;

use exchange::{Incoming, Reject, Success};
use state::Shared;

/// Largest request body the fake accepts (the gateway never sends more).
const MAX_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Behaviour of the whole fake; [`FakeOptions::per_model`] overrides latency and random
/// failures for some models, and [`FakeUpstream::script`] scripts faults per model.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeOptions {
    /// Added before every answer, errors included (but not a refusal by [`FakeOptions::limits`],
    /// which is answered at once, as providers do).
    pub latency: Duration,
    /// A uniform random extra of `0..=latency_jitter` on top of `latency`.
    pub latency_jitter: Duration,
    /// Share (0.0..=1.0) of otherwise valid calls answered with `fail_status`.
    pub fail_rate: f64,
    /// The status of random failures; a 429 carries `Retry-After: retry_after_secs`.
    pub fail_status: u16,
    /// `Retry-After` of random 429s, and Gemini's `retryDelay` when none is scripted.
    pub retry_after_secs: u64,
    /// actix-web worker threads (only read by [`FakeUpstream::start`]).
    pub workers: usize,
    /// Provider-side rate limits per (credential, model), checked when a valid call
    /// arrives; a call over one is answered 429 with `Retry-After` in the API's own error
    /// shape (and is not counted). Empty: no limits.
    pub limits: Vec<FakeLimit>,
    /// Per-model latency and random failures, replacing the global ones for that model
    /// (the first entry naming it wins).
    pub per_model: Vec<FakeModelOptions>,
}

/// A provider-side limit the fake enforces per (credential, model), by arrival time.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeLimit {
    /// The credential as received (bearer token, `x-api-key`, `x-goog-api-key`); `None` matches calls that carry none.
    pub credential: Option<String>,
    /// The model name as the fake sees it (`RecordedRequest::model`).
    pub model: String,
    /// Calls per sliding 60 s (arrivals in (t-60s, t]).
    pub rpm: u32,
    /// Calls per UTC calendar day.
    pub rpd: u32,
}

/// Per-model behaviour overriding the global latency and failure options of FakeOptions.
#[derive(Debug, Clone, PartialEq)]
pub struct FakeModelOptions {
    /// The model name as the fake sees it (`RecordedRequest::model`).
    pub model: String,
    /// Replaces [`FakeOptions::latency`].
    pub latency: Duration,
    /// Replaces [`FakeOptions::latency_jitter`].
    pub latency_jitter: Duration,
    /// Replaces [`FakeOptions::fail_rate`].
    pub fail_rate: f64,
    /// Replaces [`FakeOptions::fail_status`].
    pub fail_status: u16,
}

impl Default for FakeOptions {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            latency_jitter: Duration::ZERO,
            fail_rate: 0.0,
            fail_status: 500,
            retry_after_secs: 1,
            workers: 1,
            limits: Vec::new(),
            per_model: Vec::new(),
        }
    }
}

/// Which API a recorded request was addressed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FakeApi {
    /// `POST /v1/chat/completions` (also under `/keyless`, where no key is needed).
    OpenAi,
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1beta/models/{model}:generateContent`.
    Gemini,
    /// `POST /api/chat` and `GET /api/version`.
    Ollama,
    /// `GET /v1/models`, `GET /v1beta/models`, `GET /api/tags`.
    ModelList,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// The API it was addressed to (unknown paths are filed under the API of their prefix).
    pub api: FakeApi,
    /// The request path.
    pub path: String,
    /// The model from the body or the Gemini path; `""` when none.
    pub model: String,
    /// The bearer token, `x-api-key` or `x-goog-api-key` value, as received.
    pub credential: Option<String>,
    /// All request headers, lower-case names, in received order.
    pub headers: Vec<(String, String)>,
    /// The raw query string.
    pub query: String,
    /// The caller's address (tells calls on one kept-alive connection apart from new ones).
    pub peer: Option<std::net::SocketAddr>,
    /// The body; `Null` when it is not JSON.
    pub body: serde_json::Value,
    /// When it arrived.
    pub received_at: SystemTime,
    /// The status the fake answered; 0 until decided, and for [`Fault::Hang`].
    pub status: u16,
}

impl RecordedRequest {
    /// The value of a header (name in lower case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A scripted misbehaviour for the next valid call of a model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// An error answer in the API's own error shape, with `Retry-After: retry_after`
    /// when given and the extra headers.
    Status {
        /// HTTP status.
        status: u16,
        /// The `Retry-After` header value, sent as is.
        retry_after: Option<String>,
        /// Extra response headers (e.g. `anthropic-ratelimit-requests-reset`).
        headers: Vec<(String, String)>,
    },
    /// Answer normally after this extra delay.
    Delay(Duration),
    /// Never answer (sleeps an hour); the client's timeout must give up.
    Hang,
    /// 200 with a body that is not valid JSON (for a streaming call, SSE events whose
    /// data is not valid JSON).
    Malformed,
    /// 200, headers sent, then the body is cut off mid-JSON and the connection broken.
    /// If the client accepts gzip the part sent is an unfinished gzip stream, so awc
    /// reports a payload error (awc takes a plain early close as the end of the body).
    /// A streaming call gets the first half of its events.
    Truncated,
    /// 200 in the valid shape, but with empty text.
    EmptyContent,
    /// A streaming call gets the first half of its events, then nothing more (the
    /// connection stays open, silent, for an hour): a stalled stream. A non-streaming call
    /// behaves as [`Fault::Hang`].
    Stall,
    /// A streaming call gets its events paced this far apart (a slow stream); a
    /// non-streaming call is answered normally after this delay.
    Paced(Duration),
    /// An error answer with this status whose message quotes what the call carried, as
    /// real providers do: the credential as received (`Incorrect API key provided: …`)
    /// and, in double quotes, the longest text of the request body (its prompt).
    Quoting(u16),
    /// A streaming call gets the first half of its events, then the last of them (a piece
    /// of content) again and again, this far apart, forever: a stream that never ends. A
    /// non-streaming call behaves as [`Fault::Hang`].
    Endless(Duration),
    /// A streaming call gets the first half of its events, then only keep-alives this far
    /// apart, forever: SSE comments (`: keep-alive`), or blank lines for Ollama's NDJSON.
    /// A non-streaming call behaves as [`Fault::Hang`].
    KeepAliveOnly(Duration),
    /// 200 with the normal answer (a model list, a complete or a streamed answer), sent
    /// one byte at a time this far apart.
    Trickle(Duration),
}

impl Fault {
    /// A `Status` fault without `Retry-After` or extra headers.
    pub fn status(status: u16) -> Self {
        Self::Status {
            status,
            retry_after: None,
            headers: Vec::new(),
        }
    }

    /// A 429 with `Retry-After: <secs>`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Self::Status {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
            headers: Vec::new(),
        }
    }
}

/// A running fake upstream.
pub struct FakeUpstream {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: ServerHandle,
    task: actix_web::rt::task::JoinHandle<std::io::Result<()>>,
}

impl FakeUpstream {
    /// Binds the given listener and serves on the current actix System (spawned;
    /// returns at once). Must be called inside an actix/tokio local runtime.
    pub fn start(listener: TcpListener, opts: FakeOptions) -> std::io::Result<FakeUpstream> {
        let addr = listener.local_addr()?;
        let workers = opts.workers.max(1);
        let shared = Arc::new(Shared::new(opts));
        let server = run_server(Arc::clone(&shared), listener, workers, false)?;
        let handle = server.handle();
        let task = actix_web::rt::spawn(server);
        Ok(FakeUpstream {
            shared,
            addr,
            handle,
            task,
        })
    }

    /// `http://127.0.0.1:PORT` (the loopback address when bound to an unspecified one).
    pub fn url(&self) -> String {
        base_url(self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Forgets the recorded requests (scripts are kept).
    pub fn clear(&self) {
        self.shared.clear();
    }

    /// The next valid calls for this model (any API) get these faults in order, then
    /// normal answers. Model-list calls have the model `""`. Invalid requests get their
    /// 400/401 and do not use up a fault.
    pub fn script(&self, model: &str, faults: impl IntoIterator<Item = Fault>) {
        self.shared.script(model, faults);
    }

    /// Changes latency, fail rate, limits and the rest at run time (`workers` is
    /// ignored). A (credential, model) limited before and after keeps the arrivals it
    /// counted.
    pub fn set_options(&self, opts: FakeOptions) {
        self.shared.set_options(opts);
    }

    /// How many calls [`FakeOptions::limits`] refused since the start.
    pub fn limit_refusals(&self) -> u64 {
        self.shared.limit_refusals()
    }

    /// Stops the server at once, dropping calls in flight.
    pub async fn stop(self) {
        self.handle.stop(false).await;
        if let Ok(Err(e)) = self.task.await {
            log::warn!("fake upstream ended with an error: {e}");
        }
    }
}

/// Binds `host:port` and serves until Ctrl-C/SIGTERM (for `bkvy fake-upstream`).
pub async fn serve_forever(port: u16, host: &str, opts: FakeOptions) -> std::io::Result<()> {
    let listener = TcpListener::bind((host, port))?;
    let addr = listener.local_addr()?;
    let workers = opts.workers.max(1);
    let shared = Arc::new(Shared::new(opts));
    let server = run_server(shared, listener, workers, true)?;
    log::info!("fake upstream listening on {}", base_url(addr));
    server.await
}

fn base_url(addr: SocketAddr) -> String {
    let ip = if addr.ip().is_unspecified() {
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    format!("http://{}", SocketAddr::new(ip, addr.port()))
}

/// Builds and starts the server; `signals` lets it stop itself on Ctrl-C/SIGTERM.
fn run_server(
    shared: Arc<Shared>,
    listener: TcpListener,
    workers: usize,
    signals: bool,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .configure(routes)
    })
    .workers(workers)
    .listen(listener)?;
    let server = if signals {
        server
    } else {
        server.disable_signals()
    };
    Ok(server.run())
}

/// Every path the fake serves. A known path with the wrong method, or an unknown
/// path, is recorded and answered 404 in the shape of the API its prefix belongs to.
fn routes(cfg: &mut web::ServiceConfig) {
    let fallback = || web::to(not_found);
    cfg.service(
        web::resource("/v1/chat/completions")
            .route(web::post().to(openai::chat))
            .default_service(fallback()),
    )
    .service(
        web::resource("/v1/messages")
            .route(web::post().to(anthropic::messages))
            .default_service(fallback()),
    )
    .service(
        web::resource("/v1/models")
            .route(web::get().to(models::v1_models))
            .default_service(fallback()),
    )
    .service(
        web::scope(openai::KEYLESS_PREFIX)
            .service(
                web::resource("/v1/chat/completions")
                    .route(web::post().to(openai::chat))
                    .default_service(fallback()),
            )
            .service(
                web::resource("/v1/models")
                    .route(web::get().to(models::v1_models))
                    .default_service(fallback()),
            )
            .default_service(fallback()),
    )
    .service(
        web::resource("/v1beta/models")
            .route(web::get().to(models::gemini_models))
            .default_service(fallback()),
    )
    .service(
        web::resource("/v1beta/models/{call}")
            .route(web::post().to(gemini::call))
            .default_service(fallback()),
    )
    .service(
        web::resource("/api/chat")
            .route(web::post().to(ollama::chat))
            .default_service(fallback()),
    )
    .service(
        web::resource("/api/version")
            .route(web::get().to(ollama::version))
            .default_service(fallback()),
    )
    .service(
        web::resource("/api/tags")
            .route(web::get().to(models::ollama_tags))
            .default_service(fallback()),
    )
    .default_service(fallback());
}

/// Unknown paths and wrong methods: recorded, then a 404 in the shape of the API the
/// path prefix belongs to.
async fn not_found(req: HttpRequest, body: Bytes, shared: web::Data<Shared>) -> HttpResponse {
    let path = req.path();
    let (api, flavor) = if path.starts_with("/v1beta") {
        (FakeApi::Gemini, gemini::FLAVOR)
    } else if path.starts_with("/api/") {
        (FakeApi::Ollama, ollama::FLAVOR)
    } else if req.headers().contains_key("x-api-key") {
        (FakeApi::Anthropic, anthropic::FLAVOR)
    } else {
        (FakeApi::OpenAi, openai::FLAVOR)
    };
    fn check(i: &Incoming<'_>) -> Result<Success, Reject> {
        let what = format!("{} {}", i.req.method(), i.req.path());
        Err(Reject::new(
            404,
            format!("fake upstream has no route for {what}"),
        ))
    }
    exchange::serve(&shared, &req, &body, api, flavor, None, check).await
}
