//! Limits a hostile client or web page runs into: the shared budget of request bytes being
//! read and the connection limit (memory exhaustion), the `Host`/`Origin` checks on the
//! admin and dashboard routes (DNS rebinding, cross-site requests), `application/json`
//! on the chat endpoints, and unknown fields inside `/llm/*` messages.

// Test helpers panic on unexpected results by design.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::http::access::{AccessPolicy, HostList};
use bkvy::http::HttpLimits;
use bkvy::server::ConnectionOptions;
use common::*;
use serde_json::{json, Value};

/// Largest body of the gateways below.
const MAX_BODY: usize = 64 * 1024;
/// What their bodies in flight may hold between them: one large body, not two.
const BUDGET: usize = 100 * 1024;
/// A body size of which one fits the budget and two do not.
const LARGE: usize = 60 * 1024;

fn start_limited(limits: HttpLimits, connections: ConnectionOptions) -> Harness {
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        FakeOptions::default(),
    )
    .unwrap();
    let config = config_for(&fake, PROVIDERS, ROUTING);
    start_gateway_full(
        fake,
        config,
        GatewayOpts {
            limits,
            connections,
            ..GatewayOpts::default()
        },
    )
}

fn budgeted() -> Harness {
    start_limited(
        HttpLimits {
            max_request_bytes: MAX_BODY,
            max_messages: 100,
            body_timeout: Duration::from_secs(20),
            max_inflight_request_bytes: BUDGET,
            ..HttpLimits::default()
        },
        ConnectionOptions::default(),
    )
}

/// `body` padded with spaces (still the same JSON) to exactly `len` bytes.
fn padded(body: &Value, len: usize) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(body).unwrap();
    assert!(bytes.len() <= len);
    bytes.resize(len, b' ');
    bytes
}

fn addr(h: &Harness) -> String {
    h.url.trim_start_matches("http://").to_owned()
}

/// Opens a connection that announces a `len`-byte body and sends only its first byte,
/// so the gateway holds the body's share of the budget while it waits for the rest.
fn hold_a_body(h: &Harness, len: usize) -> TcpStream {
    let mut conn = TcpStream::connect(addr(h)).unwrap();
    let head = format!(
        "POST /llm/intelligence HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\n\r\n{{",
        addr(h)
    );
    conn.write_all(head.as_bytes()).unwrap();
    conn
}

/// POSTs `body` as JSON (optionally chunked) and returns (status, Retry-After, body).
async fn send(url: &str, body: Vec<u8>, chunked: bool) -> (u16, Option<String>, Value) {
    let req = client()
        .post(url)
        .insert_header(("content-type", "application/json"));
    let mut res = if chunked {
        let chunks = futures::stream::iter(
            body.chunks(8 * 1024)
                .map(|c| Ok::<_, std::io::Error>(actix_web::web::Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        );
        req.send_stream(chunks).await.unwrap()
    } else {
        req.send_body(body).await.unwrap()
    };
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let bytes = res.body().limit(1 << 20).await.unwrap();
    (
        status,
        retry,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sends until the answer is not a 200 (the held body may take a moment to be read) and
/// returns it; a 200 after 10 s is returned as it is.
async fn first_refusal(url: &str, body: &[u8], chunked: bool) -> (u16, Option<String>, Value) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = send(url, body.to_vec(), chunked).await;
        if answer.0 != 200 || Instant::now() > deadline {
            return answer;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn bodies_past_the_inflight_budget_are_refused_with_503_in_each_doors_shape() {
    let h = budgeted();
    let llm = format!("{}/llm/intelligence", h.url);
    let v1 = format!("{}/v1/chat/completions", h.url);
    let llm_body = padded(&ask("low", "hi"), LARGE);
    let v1_body = padded(
        &json!({"model": "low", "messages": [{"role": "user", "content": "hi"}]}),
        LARGE,
    );
    // Alone, a large body is served.
    let (status, _, body) = send(&llm, llm_body.clone(), false).await;
    assert_eq!(status, 200, "{body}");

    let held = hold_a_body(&h, LARGE);
    let (status, retry, body) = first_refusal(&llm, &llm_body, false).await;
    assert_eq!(
        status, 503,
        "a second large body beside the held one: {body}"
    );
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error_code"], "server_busy", "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    // Without Content-Length the budget is taken as the chunks arrive.
    let (status, _, body) = first_refusal(&llm, &llm_body, true).await;
    assert_eq!(status, 503, "chunked: {body}");
    assert_eq!(body["error_code"], "server_busy", "{body}");
    // The OpenAI door answers in OpenAI's shape.
    let (status, retry, body) = first_refusal(&v1, &v1_body, false).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    assert_eq!(body["error"]["type"], "api_error", "{body}");
    assert_eq!(retry.as_deref(), Some("1"));
    // Small bodies still fit beside the held one.
    let (status, body) = post(&llm, &ask("low", "small")).await;
    assert_eq!(status, 200, "{body}");

    // The held body's share comes back when its client goes away.
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = send(&llm, llm_body.clone(), false).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "budget never given back: {body}");
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn a_worker_at_max_connections_answers_a_new_connection_only_when_one_closes() {
    // The harness runs one worker, so its limit is the server's.
    let h = start_limited(
        HttpLimits::default(),
        ConnectionOptions {
            max_connections: 1,
            ..ConnectionOptions::default()
        },
    );
    let addr = addr(&h);
    // Blocking socket calls off the test's runtime thread.
    actix_web::rt::task::spawn_blocking(move || held_until_one_closes(&addr))
        .await
        .unwrap();
}

fn held_until_one_closes(addr: &str) {
    let request = format!("GET /health HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let answered = |conn: &mut TcpStream| -> bool {
        let mut buf = [0u8; 64];
        matches!(conn.read(&mut buf), Ok(n) if n > 0 && buf.starts_with(b"HTTP/1.1 200"))
    };
    let mut first = TcpStream::connect(addr).unwrap();
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    first.write_all(request.as_bytes()).unwrap();
    assert!(answered(&mut first), "the first connection is served");
    // `first` stays open (kept alive): the worker is at its limit.
    let mut second = TcpStream::connect(addr).unwrap();
    second.write_all(request.as_bytes()).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    match second.read(&mut buf) {
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) => {}
        other => panic!(
            "a second connection was served while the first was open: {other:?} {:?}",
            String::from_utf8_lossy(&buf)
        ),
    }
    drop(first);
    second
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert!(
        answered(&mut second),
        "the waiting connection is served once the first closes"
    );
}

/// POSTs `body` with these headers; returns (status, body).
async fn post_with(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    let mut req = client().post(url);
    for (k, v) in headers {
        req = req.insert_header((*k, *v));
    }
    let mut res = req.send_body(body.to_owned()).await.unwrap();
    let status = res.status().as_u16();
    let bytes = res.body().limit(1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[actix_web::test]
async fn cross_site_posts_to_admin_and_circuit_routes_are_refused() {
    let h = start();
    let reload = format!("{}/admin/reload", h.url);
    let reset = format!("{}/circuits/reset/openai/gpt-4o/oa1", h.url);
    let own = h.url.clone();
    // What a page on another site sends with a plain form or `fetch(.., {mode: "no-cors"})`.
    let evil = [
        ("origin", "https://evil.example"),
        ("content-type", "text/plain"),
    ];
    for url in [&reload, &reset] {
        let (status, body) = post_with(url, &evil, "{}").await;
        assert_eq!(status, 403, "{url}: {body}");
        assert_eq!(body["error_code"], "access_denied", "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("Origin"),
            "the refusal names the header: {body}"
        );
        let (status, body) = post_with(url, &[("origin", "null")], "").await;
        assert_eq!(status, 403, "{url} from a sandboxed page: {body}");
    }
    // bkvy's own origin, and a client that sends no Origin at all, pass.
    let (status, body) = post_with(&reset, &[("origin", own.as_str())], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = post_with(&reset, &[], "").await;
    assert_eq!(status, 200, "{body}");
    // (No config directory in the harness: a reload that passes the checks is a 503.)
    let (status, body) = post_with(&reload, &[("origin", own.as_str())], "").await;
    assert_eq!(
        (status, body["error_code"].as_str()),
        (503, Some("reload_unavailable")),
        "{body}"
    );
}

#[actix_web::test]
async fn a_rebound_host_name_cannot_read_the_dashboard_unless_listed() {
    let h = start_dashboard(AccessPolicy::default(), None, FakeOptions::default());
    let data = format!("{}/dashboard/data?hours=1", h.url);
    let (status, _, body) = get_text(&data, &[("host", "rebind.evil.example")]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("Host"),
        "the refusal names the header: {body}"
    );
    let (status, _, body) = get_text(&data, &[("host", "rebind.evil.example:10006")]).await;
    assert_eq!(status, 403, "{body}");
    for host in [
        addr(&h),
        "localhost:10006".to_owned(),
        "[::1]:10006".to_owned(),
    ] {
        let (status, _, body) = get_text(&data, &[("host", host.as_str())]).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    // A page of another origin that is not rebound but sends its Origin is refused too.
    let (status, _, body) = get_text(&data, &[("origin", "https://evil.example")]).await;
    assert_eq!(status, 403, "{body}");

    let listed = start_dashboard(
        AccessPolicy {
            allowed_hosts: HostList::parse("bkvy.internal").unwrap(),
            ..AccessPolicy::default()
        },
        None,
        FakeOptions::default(),
    );
    let data = format!("{}/dashboard/data?hours=1", listed.url);
    let (status, _, body) = get_text(&data, &[("host", "bkvy.internal:8080")]).await;
    assert_eq!(status, 200, "a name in ALLOWED_HOSTS: {body}");
    let (status, _, body) = get_text(&data, &[("host", "rebind.evil.example")]).await;
    assert_eq!(status, 403, "{body}");
}

#[actix_web::test]
async fn chat_endpoints_take_only_application_json() {
    let h = start();
    let llm = format!("{}/llm/intelligence", h.url);
    let v1 = format!("{}/v1/chat/completions", h.url);
    let llm_body = ask("low", "hi").to_string();
    let v1_body =
        json!({"model": "low", "messages": [{"role": "user", "content": "hi"}]}).to_string();
    for ct in [
        Some("text/plain"),
        Some("text/plain;charset=UTF-8"),
        Some("application/x-www-form-urlencoded"),
        Some("multipart/form-data; boundary=x"),
        Some("application/jsonx"),
        None,
    ] {
        let headers: Vec<(&str, &str)> = ct.map(|c| ("content-type", c)).into_iter().collect();
        let (status, body) = post_with(&llm, &headers, &llm_body).await;
        assert_eq!(status, 415, "{ct:?}: {body}");
        assert_eq!(body["success"], false, "{body}");
        assert_eq!(body["error_code"], "unsupported_media_type", "{body}");
        let (status, body) = post_with(&v1, &headers, &v1_body).await;
        assert_eq!(status, 415, "{ct:?}: {body}");
        assert_eq!(body["error"]["code"], "unsupported_media_type", "{body}");
        assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    }
    assert!(
        h.fake.requests().is_empty(),
        "nothing refused reached upstream"
    );
    for ct in ["application/json", "Application/JSON; charset=utf-8"] {
        let (status, body) = post_with(&llm, &[("content-type", ct)], &llm_body).await;
        assert_eq!(status, 200, "{ct}: {body}");
        let (status, body) = post_with(&v1, &[("content-type", ct)], &v1_body).await;
        assert_eq!(status, 200, "{ct}: {body}");
    }
}

#[actix_web::test]
async fn unknown_fields_inside_llm_messages_are_refused_by_name() {
    let h = start();
    let url = format!("{}/llm/intelligence", h.url);
    for (field, value) in [
        ("contnet", json!("typo")),
        ("tool_calls", json!([])),
        ("name", json!("bob")),
    ] {
        let mut body = ask("low", "hi");
        body["messages"][0][field] = value;
        let (status, answer) = post(&url, &body).await;
        assert_eq!(status, 422, "{field}: {answer}");
        assert_eq!(answer["error_code"], "invalid_request", "{answer}");
        assert!(
            answer["error"]
                .as_str()
                .unwrap()
                .contains(&format!("unknown field `{field}`")),
            "{answer}"
        );
    }
    assert!(
        h.fake.requests().is_empty(),
        "nothing refused reached upstream"
    );
    let (status, answer) = post(&url, &ask("low", "hi")).await;
    assert_eq!(status, 200, "{answer}");
}

/// The server speaks HTTP/1.1 only: an HTTP/2 prior-knowledge preface is not served as
/// HTTP/2 (h2 0.3's server code, RUSTSEC-2026-0258, is never reached; docs/SECURITY.md).
#[actix_web::test]
async fn an_http2_preface_is_not_served_as_http2() {
    let h = start_limited(HttpLimits::default(), ConnectionOptions::default());
    let addr = h.url.trim_start_matches("http://").to_owned();
    let answer = actix_web::rt::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        // An empty SETTINGS frame, as an HTTP/2 client sends next.
        s.write_all(&[0, 0, 0, 4, 0, 0, 0, 0, 0]).unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    })
    .await
    .unwrap();
    // An HTTP/2 server would answer with its own SETTINGS frame (type 4) first; an
    // HTTP/1.1 server answers with a status line, or closes.
    let http2 = answer.len() >= 9 && answer[3] == 4;
    assert!(!http2, "answered as HTTP/2: {answer:?}");
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 "),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
}

/// Answers being read share `MAX_INFLIGHT_RESPONSE_BYTES`: with too little for one
/// answer, every attempt ends `gateway_overloaded` without holding the answer, and since
/// that is bkvy's own limit, no pair's circuit counts it.
#[actix_web::test]
async fn answers_past_the_inflight_response_budget_are_not_read_and_no_circuit_counts_them() {
    let h = start_limited(
        HttpLimits {
            max_inflight_response_bytes: 16,
            ..HttpLimits::default()
        },
        ConnectionOptions::default(),
    );
    for _ in 0..3 {
        let (status, body) = post(&format!("{}/llm/intelligence", h.url), &ask("low", "hi")).await;
        assert_eq!(status, 502, "{body}");
        assert!(body.to_string().contains("gateway_overloaded"), "{body}");
    }
    assert!(!h.fake.requests().is_empty(), "the calls were made");
    let (_, circuits) = get(&format!("{}/circuits/status", h.url)).await;
    assert_eq!(circuits["open_circuits"], 0, "{circuits}");
}
