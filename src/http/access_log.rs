//! The access log: one line per HTTP request (`ACCESS_LOG`, on by default), written when
//! the response body has been handed over, like actix-web's `Logger` with the format
//! `%a "%r" %s %b %Dms`, which it replaces.
//!
//! Why not that `Logger`: on one core it cost about a tenth of bkvy's CPU per request. It
//! clones and renders a list of format items per request and then goes through
//! `env_logger`, which formats a timestamp, styles the line and strips the styling again
//! for a non-terminal, and writes it with one unbuffered `write(2)`. Here the line is
//! formatted once into a reused buffer with the timestamp of the current second cached,
//! in `env_logger`'s own layout (`[2026-01-31T12:00:00Z INFO  bkvy::access] …`), and the
//! lines are appended to a buffer that is written out at most every
//! [`FLUSH_EVERY`] (or at [`FLUSH_BYTES`]), on the worker's own thread, and at exit.
//! Whether the line is written at all follows `LOG_LEVEL` like every other log line
//! (target `bkvy::access`, level `info`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::future::{ready, Future, Ready};
use std::io::Write as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::body::{BodySize, MessageBody};
use actix_web::dev::{Service, ServiceRequest, ServiceResponse, Transform};
use actix_web::web::Bytes;
use actix_web::Error;

/// The log target of access lines (`LOG_LEVEL=bkvy::access=warn` silences them alone).
pub const TARGET: &str = "bkvy::access";

/// Lines waiting in the buffer are written at least this often.
pub const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// A buffer this large is written at once.
pub const FLUSH_BYTES: usize = 16 * 1024;

/// Where finished lines go before they reach stderr. One per process: every worker
/// appends under the lock (uncontended with one worker; a few hundred nanoseconds with
/// several), and whoever finds it due writes it out.
static PENDING: Mutex<Pending> = Mutex::new(Pending {
    buf: Vec::new(),
    since: None,
});

struct Pending {
    buf: Vec<u8>,
    /// When the oldest unwritten line was added.
    since: Option<Instant>,
}

/// Writes every pending access line to stderr now (at shutdown, and from the flush timer).
pub fn flush() {
    let out = {
        let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        p.since = None;
        std::mem::take(&mut p.buf)
    };
    if !out.is_empty() {
        let _ = std::io::stderr().lock().write_all(&out);
    }
}

/// Appends one finished line; writes the buffer when it is large or old enough.
fn push(line: &str) {
    let due = {
        let mut p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        p.buf.extend_from_slice(line.as_bytes());
        let since = *p.since.get_or_insert_with(Instant::now);
        p.buf.len() >= FLUSH_BYTES || since.elapsed() >= FLUSH_EVERY
    };
    if due {
        flush();
    }
}

/// Starts the timer that writes out lines of a quiet server (call once per worker, inside
/// its runtime): without it the last lines before a pause would wait for the next request.
pub fn start_flush_timer() {
    actix_web::rt::spawn(async {
        let mut tick = actix_web::rt::time::interval(FLUSH_EVERY);
        loop {
            tick.tick().await;
            let due = {
                let p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
                p.since.is_some_and(|s| s.elapsed() >= FLUSH_EVERY)
            };
            if due {
                flush();
            }
        }
    });
}

/// `[2026-01-31T12:00:00Z INFO  bkvy::access] ` for the current second, reused within it.
struct Stamp {
    second: i64,
    prefix: String,
}

thread_local! {
    static STAMP: RefCell<Stamp> = const { RefCell::new(Stamp { second: i64::MIN, prefix: String::new() }) };
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

fn write_line(peer: Option<IpAddr>, request_line: &str, status: u16, sent: u64, ms: f64) {
    LINE.with_borrow_mut(|line| {
        line.clear();
        STAMP.with_borrow_mut(|stamp| {
            let now = chrono::Utc::now();
            if now.timestamp() != stamp.second {
                stamp.second = now.timestamp();
                stamp.prefix.clear();
                let _ = write!(
                    stamp.prefix,
                    "[{} INFO  {TARGET}] ",
                    now.format("%Y-%m-%dT%H:%M:%SZ")
                );
            }
            line.push_str(&stamp.prefix);
        });
        match peer {
            Some(ip) => {
                let _ = write!(line, "{ip}");
            }
            None => line.push('-'),
        }
        let _ = writeln!(line, " \"{request_line}\" {status} {sent} {ms:.3}ms");
        push(line);
    });
}

/// The middleware (`App::wrap`); `/health` is not logged.
#[derive(Debug, Clone, Copy)]
pub struct AccessLog {
    enabled: bool,
}

impl AccessLog {
    /// Logs when the installed logger takes `info` lines of [`TARGET`] (decided once, here,
    /// so a request pays no filter look-up).
    pub fn from_log_level() -> Self {
        Self::enabled(log::log_enabled!(target: TARGET, log::Level::Info))
    }

    /// Logs, or not, whatever the logger says.
    pub fn enabled(enabled: bool) -> Self {
        Self { enabled }
    }

    /// Whether it writes lines at all.
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }
}

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<LoggedBody<B>>;
    type Error = Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService {
            service,
            enabled: self.enabled,
        }))
    }
}

/// The wrapped service.
pub struct AccessLogService<S> {
    service: S,
    enabled: bool,
}

/// What is known of a request when it arrives.
struct Start {
    at: Instant,
    peer: Option<IpAddr>,
    request_line: String,
}

impl<S, B> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    B: MessageBody,
{
    type Response = ServiceResponse<LoggedBody<B>>;
    type Error = Error;
    type Future = AccessLogFuture<S::Future>;

    actix_web::dev::forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let start = (self.enabled && req.path() != "/health").then(|| {
            let mut request_line = String::with_capacity(48);
            let _ = write!(
                request_line,
                "{} {} {:?}",
                req.method(),
                req.uri(),
                req.version()
            );
            Start {
                at: Instant::now(),
                peer: req.peer_addr().map(|a| a.ip()),
                request_line,
            }
        });
        AccessLogFuture {
            fut: self.service.call(req),
            start,
        }
    }
}

pin_project_lite::pin_project! {
    /// The wrapped service's future; hands the request's start to the body.
    pub struct AccessLogFuture<F> {
        #[pin]
        fut: F,
        start: Option<Start>,
    }
}

impl<F, B> Future for AccessLogFuture<F>
where
    F: Future<Output = Result<ServiceResponse<B>, Error>>,
    B: MessageBody,
{
    type Output = Result<ServiceResponse<LoggedBody<B>>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let res = match this.fut.poll(cx) {
            Poll::Ready(Ok(res)) => res,
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        };
        let logged = this.start.take().map(|start| Logged {
            start,
            status: res.response().status().as_u16(),
            sent: 0,
        });
        Poll::Ready(Ok(res.map_body(|_, body| LoggedBody { body, logged })))
    }
}

struct Logged {
    start: Start,
    status: u16,
    sent: u64,
}

impl Drop for Logged {
    /// The line is written when the body is done with (sent, or dropped on a disconnect).
    fn drop(&mut self) {
        let ms = self.start.at.elapsed().as_secs_f64() * 1e3;
        write_line(
            self.start.peer,
            &self.start.request_line,
            self.status,
            self.sent,
            ms,
        );
    }
}

pin_project_lite::pin_project! {
    /// A response body that counts the bytes sent and logs its request when it is dropped.
    pub struct LoggedBody<B> {
        #[pin]
        body: B,
        logged: Option<Logged>,
    }
}

impl<B: MessageBody> MessageBody for LoggedBody<B> {
    type Error = B::Error;

    fn size(&self) -> BodySize {
        self.body.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.project();
        let next = this.body.poll_next(cx);
        if let (Poll::Ready(Some(Ok(chunk))), Some(l)) = (&next, this.logged.as_mut()) {
            l.sent += chunk.len() as u64;
        }
        next
    }

    fn try_into_bytes(self) -> Result<Bytes, Self>
    where
        Self: Sized,
    {
        let LoggedBody { body, mut logged } = self;
        match body.try_into_bytes() {
            Ok(bytes) => {
                if let Some(l) = logged.as_mut() {
                    l.sent += bytes.len() as u64;
                }
                Ok(bytes)
            }
            Err(body) => Err(LoggedBody { body, logged }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, web, App, HttpResponse};
    use futures::stream;

    fn pending() -> String {
        let p = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&p.buf).into_owned()
    }

    /// One test, so nothing else in this binary writes access lines meanwhile.
    #[actix_web::test]
    async fn one_line_per_request_with_status_size_and_time() {
        let app = test::init_service(
            App::new()
                .wrap(AccessLog::enabled(true))
                .route("/al-plain", web::post().to(|| async { "hello" }))
                .route(
                    "/al-stream",
                    web::get().to(|| async {
                        let parts = ["ab", "cde", "f"]
                            .map(|p| Ok::<_, actix_web::Error>(Bytes::from_static(p.as_bytes())));
                        HttpResponse::Ok().streaming(stream::iter(parts))
                    }),
                )
                .route("/health", web::get().to(|| async { "ok" }))
                .route(
                    "/al-missing",
                    web::get().to(|| async { HttpResponse::NotFound().body("nope!!") }),
                ),
        )
        .await;
        let req = test::TestRequest::post()
            .uri("/al-plain?x=1")
            .peer_addr("10.1.2.3:4567".parse().unwrap())
            .to_request();
        assert_eq!(test::call_and_read_body(&app, req).await, "hello");
        let req = test::TestRequest::get().uri("/al-stream").to_request();
        assert_eq!(test::call_and_read_body(&app, req).await, "abcdef");
        let req = test::TestRequest::get().uri("/health").to_request();
        assert_eq!(test::call_and_read_body(&app, req).await, "ok");
        // A body dropped unsent (the client went away) is still logged, with what was sent.
        let req = test::TestRequest::get().uri("/al-missing").to_request();
        drop(test::call_service(&app, req).await);

        let lines = pending();
        let plain = lines
            .lines()
            .find(|l| l.contains("/al-plain"))
            .expect("plain request logged");
        assert!(
            plain.starts_with('[') && plain.contains(" INFO  bkvy::access] 10.1.2.3 "),
            "{plain}"
        );
        assert!(
            plain.contains(" \"POST /al-plain?x=1 HTTP/1.1\" 200 5 "),
            "{plain}"
        );
        assert!(plain.ends_with("ms"), "{plain}");
        let streamed = lines.lines().find(|l| l.contains("/al-stream")).unwrap();
        assert!(
            streamed.contains("] - \"GET /al-stream HTTP/1.1\" 200 6 "),
            "{streamed}"
        );
        let missing = lines.lines().find(|l| l.contains("/al-missing")).unwrap();
        assert!(missing.contains("\" 404 0 "), "{missing}");
        assert!(!lines.contains("/health"), "{lines}");

        flush();
        assert_eq!(pending(), "");
    }

    #[actix_web::test]
    async fn disabled_writes_nothing() {
        let app = test::init_service(
            App::new()
                .wrap(AccessLog::enabled(false))
                .route("/al-off", web::get().to(|| async { "x" })),
        )
        .await;
        let req = test::TestRequest::get().uri("/al-off").to_request();
        assert_eq!(test::call_and_read_body(&app, req).await, "x");
        assert!(!pending().contains("/al-off"));
    }
}
