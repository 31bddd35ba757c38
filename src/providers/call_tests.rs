//! `call` against a tiny in-process server.

use std::time::Duration;

use actix_web::{web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use serde_json::json;

use super::super::{UpstreamError, UpstreamRequest};
use super::call;
use crate::budget::ByteBudget;
use crate::config::ProviderKind;

const LIMIT: usize = 64 * 1024;

fn success_body() -> serde_json::Value {
    json!({"choices": [{"message": {"role": "assistant", "content": "pong"}, "finish_reason": "stop"}],
           "usage": {"prompt_tokens": 3, "completion_tokens": 1}})
}

async fn ok() -> HttpResponse {
    HttpResponse::Ok().json(success_body())
}

async fn echo_auth(
    req: actix_web::HttpRequest,
    body: web::Json<serde_json::Value>,
) -> HttpResponse {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if auth != "Bearer k" || body["model"] != "m" {
        return HttpResponse::BadRequest().finish();
    }
    HttpResponse::Ok().json(success_body())
}

async fn limited() -> HttpResponse {
    HttpResponse::TooManyRequests()
        .insert_header(("retry-after", "17"))
        .json(json!({"error": {"message": "Rate limit reached", "type": "requests"}}))
}

async fn slow() -> HttpResponse {
    actix_web::rt::time::sleep(Duration::from_secs(5)).await;
    HttpResponse::Ok().json(success_body())
}

async fn slow_body() -> HttpResponse {
    let chunks = futures::stream::unfold(0, |n| async move {
        match n {
            0 => Some((
                Ok::<_, actix_web::Error>(Bytes::from_static(b"{\"choices\": [")),
                1,
            )),
            1 => {
                actix_web::rt::time::sleep(Duration::from_secs(5)).await;
                Some((Ok(Bytes::from_static(b"]}")), 2))
            }
            _ => None,
        }
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(chunks)
}

/// A large answer; only served to clients that accept gzip, which the Compress
/// middleware then applies.
async fn huge(req: actix_web::HttpRequest) -> HttpResponse {
    let accepts_gzip = req
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    if !accepts_gzip {
        return HttpResponse::NotAcceptable().finish();
    }
    let text = "x".repeat(LIMIT * 2);
    HttpResponse::Ok()
        .json(json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}]}))
}

/// A streamed answer: plain SSE to a client asking for `identity`, else a compression
/// bomb (64 MiB of zeros gzipped), as a hostile upstream would send whatever was asked.
async fn sse(req: actix_web::HttpRequest) -> HttpResponse {
    let identity = req
        .headers()
        .get("accept-encoding")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim() == "identity");
    if identity && req.path() == "/sse" {
        return HttpResponse::Ok().content_type("text/event-stream").body(
            "data: {\"choices\": [{\"delta\": {\"content\": \"hi\"}}]}\n\n\
             data: {\"choices\": [{\"delta\": {}, \"finish_reason\": \"stop\"}]}\n\ndata: [DONE]\n\n",
        );
    }
    let bomb = compressed(super::Coding::Gzip, &vec![0u8; 64 << 20]);
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("content-encoding", "gzip"))
        .body(bomb)
}

/// A raw server that answers one request with headers promising 1000 bytes, sends 20,
/// and closes the connection: a body cut off mid-way.
fn cut_server() -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cut", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = conn.read(&mut buf).unwrap();
            seen.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&seen).to_ascii_lowercase();
            let Some(end) = text.find("\r\n\r\n") else {
                continue;
            };
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if n == 0 || seen.len() >= end + 4 + length {
                break;
            }
        }
        let head =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
        conn.write_all(head.as_bytes()).unwrap();
        conn.write_all(b"{\"choices\": [{\"mess").unwrap();
    });
    url
}

struct Server {
    base: String,
    handle: actix_web::dev::ServerHandle,
}

fn start() -> Server {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = HttpServer::new(|| {
        App::new()
            .wrap(actix_web::middleware::Compress::default())
            .route("/ok", web::post().to(ok))
            .route("/auth", web::post().to(echo_auth))
            .route("/limited", web::post().to(limited))
            .route("/slow", web::post().to(slow))
            .route("/slow-body", web::post().to(slow_body))
            .route("/huge", web::post().to(huge))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Server { base, handle }
}

fn request(url: String) -> UpstreamRequest {
    UpstreamRequest {
        url,
        headers: vec![
            (awc::http::header::AUTHORIZATION, "Bearer k".into()),
            (awc::http::header::CONTENT_TYPE, "application/json".into()),
        ],
        body: json!({"model": "m", "messages": [{"role": "user", "content": "ping"}]})
            .to_string()
            .into(),
    }
}

async fn run(url: String, timeout: Duration) -> Result<crate::types::ChatResponse, UpstreamError> {
    let client = awc::Client::default();
    call(
        &client,
        ProviderKind::Openai,
        &request(url),
        timeout,
        LIMIT,
        &unlimited(),
    )
    .await
}

const SECOND: Duration = Duration::from_secs(1);

fn unlimited() -> ByteBudget {
    ByteBudget::new(usize::MAX)
}

/// A reservation on a budget without a limit (for calling the decoder alone).
fn free() -> crate::budget::Reservation {
    unlimited().reservation()
}

#[actix_web::test]
async fn success_and_headers_sent() {
    let s = start();
    let r = run(format!("{}/ok", s.base), 5 * SECOND).await.unwrap();
    assert_eq!((r.content.as_str(), r.usage.input_tokens), ("pong", 3));
    let r = run(format!("{}/auth", s.base), 5 * SECOND).await.unwrap();
    assert_eq!(r.content, "pong");
    s.handle.stop(false).await;
}

#[actix_web::test]
async fn gzip_response_is_decoded() {
    let s = start();
    let client = awc::Client::default();
    // awc asks for gzip by itself (the handler refuses other clients) and decodes it.
    let req = request(format!("{}/huge", s.base));
    // Compressed on the wire far below LIMIT; decoded it exceeds LIMIT: the limit is on
    // the decoded size, so a compression bomb cannot get around it.
    let e = call(
        &client,
        ProviderKind::Openai,
        &req,
        5 * SECOND,
        LIMIT,
        &unlimited(),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "malformed_response");
    let r = call(
        &client,
        ProviderKind::Openai,
        &req,
        5 * SECOND,
        LIMIT * 4,
        &unlimited(),
    )
    .await
    .unwrap();
    assert_eq!(r.content.len(), LIMIT * 2);
    s.handle.stop(false).await;
}

#[actix_web::test]
async fn a_stream_is_asked_unencoded_and_an_encoded_one_is_refused_unexpanded() {
    use futures::StreamExt;
    // awc on its own asks for gzip; bkvy asks for `identity` and reads the stream as sent.
    let server = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = HttpServer::new(|| {
            App::new()
                .route("/sse", web::post().to(sse))
                .route("/sse-bomb", web::post().to(sse))
        })
        .workers(1)
        .disable_signals()
        .listen(listener)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Server { base, handle }
    };
    let client = awc::Client::default();
    let stream = |path: &str| {
        let req = request(format!("{}{path}", server.base));
        let client = client.clone();
        async move {
            crate::providers::stream::call_stream(
                &client,
                ProviderKind::Openai,
                &req,
                5 * SECOND,
                5 * SECOND,
                LIMIT,
            )
            .await
        }
    };
    let mut events = stream("/sse").await.unwrap();
    let mut n = 0;
    while let Some(e) = events.next().await {
        e.unwrap();
        n += 1;
    }
    assert!(n >= 2, "{n} events");
    // An encoded stream (not asked for) is refused before a byte of it is expanded.
    let e = match stream("/sse-bomb").await {
        Ok(_) => panic!("an encoded stream was accepted"),
        Err(e) => e,
    };
    assert_eq!(e.kind(), "malformed_response");
    assert!(e.to_string().contains("gzip"), "{e}");
    server.handle.stop(false).await;
}

#[actix_web::test]
async fn rate_limited_with_retry_after() {
    let s = start();
    let e = run(format!("{}/limited", s.base), 5 * SECOND)
        .await
        .unwrap_err();
    match e {
        UpstreamError::RateLimited {
            retry_after,
            message,
        } => {
            assert_eq!(retry_after, Some(Duration::from_secs(17)));
            assert_eq!(message, "Rate limit reached");
        }
        other => panic!("unexpected {other:?}"),
    }
    s.handle.stop(false).await;
}

#[actix_web::test]
async fn timeouts_cover_headers_and_body() {
    let s = start();
    let started = std::time::Instant::now();
    let e = run(format!("{}/slow", s.base), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
    let e = run(format!("{}/slow-body", s.base), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Timeout), "{e:?}");
    assert!(started.elapsed() < 3 * SECOND);
    s.handle.stop(false).await;
}

#[actix_web::test]
async fn connection_refused() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let e = run(format!("http://{addr}/v1?key=secret-in-url"), 5 * SECOND)
        .await
        .unwrap_err();
    assert!(matches!(e, UpstreamError::Connection { .. }), "{e:?}");
    assert!(!e.to_string().contains("secret-in-url"));
}

#[actix_web::test]
async fn body_cut_off_and_over_limit() {
    let s = start();
    let e = run(cut_server(), 5 * SECOND).await.unwrap_err();
    match e {
        UpstreamError::Malformed { message } => {
            assert!(message.starts_with("response body cut off"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    let e = run(format!("{}/huge", s.base), 5 * SECOND)
        .await
        .unwrap_err();
    match e {
        UpstreamError::Malformed { message } => {
            assert!(message.contains("larger than"), "{message}")
        }
        other => panic!("unexpected {other:?}"),
    }
    s.handle.stop(false).await;
}

/// `data` gzip-compressed (or zlib, for HTTP's `deflate`).
fn compressed(coding: super::Coding, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let level = flate2::Compression::best();
    match coding {
        super::Coding::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
        super::Coding::Deflate => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), level);
            e.write_all(data).unwrap();
            e.finish().unwrap()
        }
    }
}

#[test]
fn a_compression_bomb_stops_at_the_limit_without_decoding_the_rest() {
    use super::{decode_bounded, Coding};
    // 256 MiB of zeros, about 250 KiB compressed: refused after LIMIT + 1 bytes.
    let zeros = vec![0u8; 256 << 20];
    for coding in [Coding::Gzip, Coding::Deflate] {
        let bomb = compressed(coding, &zeros);
        assert!(bomb.len() < 1 << 20);
        match decode_bounded(coding, &bomb, LIMIT, &mut free()) {
            Err(UpstreamError::Malformed { message }) => {
                assert_eq!(message, format!("response body larger than {LIMIT} bytes"))
            }
            other => panic!("{coding:?}: {other:?}"),
        }
        // Exactly the limit is accepted, and decoded whole.
        let ok = decode_bounded(
            coding,
            &compressed(coding, &zeros[..LIMIT]),
            LIMIT,
            &mut free(),
        )
        .unwrap();
        assert_eq!(ok.len(), LIMIT);
        // Cut off, or not that coding at all: refused, never a panic.
        let cut = &bomb[..bomb.len() / 2];
        assert!(decode_bounded(coding, &cut[..100], LIMIT, &mut free()).is_err());
        assert!(decode_bounded(coding, b"not compressed", LIMIT, &mut free()).is_err());
    }
}

#[actix_web::test]
async fn an_encoded_body_shorter_than_its_content_length_is_cut_off() {
    // The body is read as sent, so Content-Length is checked against the encoded bytes.
    let mut headers = awc::http::header::HeaderMap::new();
    headers.insert(
        awc::http::header::CONTENT_ENCODING,
        awc::http::header::HeaderValue::from_static("gzip"),
    );
    headers.insert(
        awc::http::header::CONTENT_LENGTH,
        awc::http::header::HeaderValue::from_static("100"),
    );
    assert!(super::check_complete(&headers, 50).is_err());
    assert!(super::check_complete(&headers, 100).is_ok());
    let e = super::decode(&headers, Bytes::from_static(b"\x1f\x8b"), LIMIT, free())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "malformed_response");
    headers.insert(
        awc::http::header::CONTENT_ENCODING,
        awc::http::header::HeaderValue::from_static("br"),
    );
    let e = super::decode(&headers, Bytes::from_static(b"{}"), LIMIT, free())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("not asked for"), "{e}");
}

/// Every answer being read draws from one shared budget: an answer the budget cannot
/// cover is not read (`gateway_overloaded`), whether its bytes arrive as sent or come out
/// of decoding; the bytes go back when the call ends, and an answer that fits is read.
#[actix_web::test]
async fn answers_in_flight_share_one_budget() {
    let s = start();
    let client = awc::Client::default();
    // `/huge` is LIMIT * 2 of text, far smaller gzipped: the decoded bytes are what count.
    let req = request(format!("{}/huge", s.base));
    let small = ByteBudget::new(LIMIT);
    let e = call(
        &client,
        ProviderKind::Openai,
        &req,
        5 * SECOND,
        LIMIT * 4,
        &small,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "gateway_overloaded", "{e}");
    assert_eq!(small.used(), 0, "the bytes went back");
    // Plain bytes as sent count too.
    let e = call(
        &client,
        ProviderKind::Openai,
        &request(format!("{}/ok", s.base)),
        5 * SECOND,
        LIMIT,
        &ByteBudget::new(16),
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "gateway_overloaded", "{e}");
    // One held elsewhere leaves too little; given back, the same call fits.
    let enough = ByteBudget::new(LIMIT * 8);
    let mut other = enough.reservation();
    assert!(other.grow_to(LIMIT * 7));
    let e = call(
        &client,
        ProviderKind::Openai,
        &req,
        5 * SECOND,
        LIMIT * 4,
        &enough,
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind(), "gateway_overloaded");
    drop(other);
    let r = call(
        &client,
        ProviderKind::Openai,
        &req,
        5 * SECOND,
        LIMIT * 4,
        &enough,
    )
    .await
    .unwrap();
    assert_eq!(r.content.len(), LIMIT * 2);
    assert_eq!(enough.used(), 0);
    s.handle.stop(false).await;
}
