//! Client connections: an idle kept-alive connection outlives a pooled client's idle time,
//! and a burst of new connections fits in the listen backlog.

// Test helpers panic on unexpected input by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::server::ConnectionOptions;
use common::*;

/// One answer read off a raw connection.
#[derive(Debug)]
struct RawAnswer {
    status: u16,
    head: String,
    body: String,
}

/// Reads one HTTP/1.1 answer (with a `content-length`) off `stream`; `Err` says why none
/// came (the server closed the connection, a timeout, ...).
fn read_answer(stream: &mut TcpStream) -> Result<RawAnswer, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(format!(
                    "the server closed the connection ({} bytes of an answer read)",
                    buf.len()
                ))
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    while buf.len() < head_end + length {
        match stream.read(&mut chunk) {
            Ok(0) => return Err("the server closed the connection mid-body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("reading the body failed: {e}")),
        }
    }
    Ok(RawAnswer {
        status,
        head,
        body: String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned(),
    })
}

/// Writes `GET path` on `stream` and reads the answer.
fn get_on(stream: &mut TcpStream, addr: SocketAddr, path: &str) -> Result<RawAnswer, String> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\naccept: */*\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("writing the request failed: {e}"))?;
    read_answer(stream)
}

fn gateway_addr(h: &Harness) -> SocketAddr {
    h.url.trim_start_matches("http://").parse().unwrap()
}

fn start_with_connections(connections: ConnectionOptions) -> Harness {
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
            connections,
            ..GatewayOpts::default()
        },
    )
}

/// Two requests on one connection with `idle` between them; the blocking client runs off
/// the test's thread, where bkvy's actors live.
async fn two_requests_on_one_connection(
    addr: SocketAddr,
    idle: Duration,
) -> (RawAnswer, Result<RawAnswer, String>) {
    let (stream, first) = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let first = get_on(&mut stream, addr, "/health").expect("the first request is answered");
        (stream, first)
    })
    .await
    .unwrap();
    actix_web::rt::time::sleep(idle).await;
    let second = actix_web::rt::task::spawn_blocking(move || {
        let mut stream = stream;
        get_on(&mut stream, addr, "/health")
    })
    .await
    .unwrap();
    (first, second)
}

#[actix_web::test]
async fn a_connection_idle_longer_than_actix_default_keep_alive_is_still_served() {
    let h = start();
    let (first, second) =
        two_requests_on_one_connection(gateway_addr(&h), Duration::from_secs(7)).await;
    assert_eq!(first.status, 200, "first answer: {first:?}");
    assert!(
        !first
            .head
            .to_ascii_lowercase()
            .contains("connection: close"),
        "the first answer must keep the connection open: {}",
        first.head
    );
    let second = second.unwrap_or_else(|e| {
        panic!(
            "a request on a connection idle for 7 s was not answered ({e}); the keep-alive \
             timeout must be longer than a pooled client's idle time (actix's default is 5 s)"
        )
    });
    assert_eq!(
        second.status, 200,
        "second answer on the kept-alive connection: {second:?}"
    );
    assert!(
        second.body.contains("healthy"),
        "second answer: {}",
        second.body
    );
}

#[actix_web::test]
async fn the_keep_alive_timeout_is_the_configured_one() {
    let h = start_with_connections(ConnectionOptions {
        keep_alive: Duration::from_secs(1),
        ..ConnectionOptions::default()
    });
    let (first, second) =
        two_requests_on_one_connection(gateway_addr(&h), Duration::from_millis(2_500)).await;
    assert_eq!(first.status, 200, "first answer: {first:?}");
    assert!(
        second.is_err(),
        "with keep_alive = 1 s a connection idle for 2.5 s must have been closed, but it \
         answered: {second:?}"
    );
}

/// `net.core.somaxconn`, the kernel's cap on any backlog (Linux), if readable.
fn somaxconn() -> Option<usize> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Opens up to `n` connections to `addr` that nobody accepts and keeps them; returns how
/// many completed before the first one that did not (a full accept queue drops the SYN,
/// so that connect times out).
fn connect_many(addr: SocketAddr, n: usize) -> (usize, Option<String>) {
    let mut open = Vec::with_capacity(n);
    for _ in 0..n {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(1_500)) {
            Ok(s) => open.push(s),
            Err(e) => return (open.len(), Some(e.to_string())),
        }
    }
    (open.len(), None)
}

/// How many connections a backlog of 2,000 must hold here: all of them, unless the
/// kernel caps backlogs lower (then the cap, and the test proves less).
fn burst_size() -> usize {
    somaxconn().map_or(2_000, |cap| cap.min(2_000))
}

#[actix_web::test]
async fn the_listen_backlog_is_applied_to_a_listener() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    bkvy::server::apply_listen_backlog(&listener, 4096).unwrap();
    let want = burst_size();
    let started = Instant::now();
    let (opened, error) = actix_web::rt::task::spawn_blocking(move || connect_many(addr, want))
        .await
        .unwrap();
    assert_eq!(
        opened,
        want,
        "a listener with a backlog of 4096 must queue {want} unaccepted connections; the \
         connection after {opened} failed ({error:?}) after {:?}: the backlog was not applied",
        started.elapsed()
    );
    drop(listener);
}

#[actix_web::test]
async fn a_burst_of_new_connections_fits_in_the_backlog_of_the_listener_bkvy_serves() {
    let h = start();
    let addr = gateway_addr(&h);
    // bkvy stops accepting, so the burst stays in the kernel's accept queue: the queue's
    // length is the listener's backlog.
    h.server.pause().await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let want = burst_size();
    let (opened, error) = actix_web::rt::task::spawn_blocking(move || connect_many(addr, want))
        .await
        .unwrap();
    assert_eq!(
        opened, want,
        "bkvy's listener (default LISTEN_BACKLOG 4096) must queue {want} connections it has \
         not accepted yet; the connection after {opened} failed ({error:?}), so the backlog is \
         still the listener creator's (std's 128?)"
    );
    h.server.resume().await;
}
