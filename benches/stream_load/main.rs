//! Open-loop load generator for streaming chat completions, driven by `benches/load.sh`.
//!
//! `oha` times a whole response, but what a streaming client feels is the time to the
//! first token (TTFT) and how fast the chunks after it arrive; so this generator POSTs
//! OpenAI-style `"stream": true` requests and reads every SSE event as it comes.
//!
//! It is open loop, like `oha -q RATE --latency-correction`: stream *i* is scheduled at
//! `start + i / rate` whatever happened to the earlier ones, and every time is measured
//! from that scheduled instant. A server (or a connection pool) that falls behind shows up
//! in the percentiles instead of quietly lowering the offered rate. The timer has
//! millisecond resolution, so each stream may start up to ~1 ms after its scheduled
//! instant; that lag is reported (`lag_ms`), is the same for the direct and the bkvy run,
//! and cancels out of their difference. On a busy machine the lag is the generator's own
//! wake-up delay, so `ttft_from_send_ms` (TTFT minus lag) is reported as well. `--rate 0` is a closed-loop saturation run
//! instead: every connection sends its next stream as soon as the previous one ended.
//!
//! A stream counts as a success only with a 2xx status, `data: [DONE]` and no error
//! event; everything else is counted by kind. One JSON object goes to stdout (the fields
//! `benches/load.sh` reads), a one-line summary to stderr.
//!
//! It is a `harness = false` bench target rather than a binary of the package so it is
//! built only for benchmarking and can use the dev-dependencies; the SSE and percentile
//! code is shared with `tests/stream_load.rs`, which checks it against the fake upstream.

mod client;
mod sse;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use serde_json::{json, Value};

use client::{one_stream, StreamResult, Target};
use sse::percentile;

/// Open-loop streaming load generator (TTFT, total stream time, chunk throughput).
#[derive(Debug, Parser)]
#[command(name = "stream_load")]
struct Args {
    /// Streaming endpoint, e.g. http://127.0.0.1:18400/v1/chat/completions.
    #[arg(long)]
    url: Option<String>,
    /// JSON request body (it must ask for `"stream": true`).
    #[arg(long, conflicts_with = "body_file")]
    body: Option<String>,
    /// File holding the JSON request body.
    #[arg(long)]
    body_file: Option<std::path::PathBuf>,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Streams started per second; 0 = closed-loop saturation over all connections.
    #[arg(long, default_value_t = 1000.0)]
    rate: f64,
    /// How long streams are started for (`10s`, `500ms`).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured run at the same rate before the measured one.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Keep-alive connections in the pool (streams beyond that wait for one).
    #[arg(short = 'c', long, default_value_t = 50)]
    connections: usize,
    /// A stream not finished after this long counts as a timeout.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 10s or 500ms)"))?;
    Duration::try_from_secs_f64(v * scale).map_err(|e| format!("{s:?}: {e}"))
}

#[allow(clippy::print_stderr, clippy::print_stdout)]
fn main() -> ExitCode {
    let args = Args::parse();
    let Some(url) = args.url.clone() else {
        // `cargo bench` runs every bench target; this one needs a server to talk to.
        eprintln!("stream_load: no --url; run it through benches/load.sh (see --help)");
        return ExitCode::SUCCESS;
    };
    let body = match (&args.body, &args.body_file) {
        (Some(b), _) => b.clone(),
        (None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("stream_load: {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        },
        (None, None) => {
            eprintln!("stream_load: --body or --body-file is required");
            return ExitCode::FAILURE;
        }
    };
    let mut headers = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            eprintln!("stream_load: header {h:?} is not `Name: value`");
            return ExitCode::FAILURE;
        };
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) || args.connections == 0 {
        eprintln!("stream_load: --rate must be >= 0 and --connections > 0");
        return ExitCode::FAILURE;
    }
    let target = Target {
        url,
        body: Bytes::from(body),
        headers,
    };
    let report = actix_web::rt::System::new().block_on(run(&args, target));
    eprintln!("{}", one_line(&report));
    println!("{report}");
    ExitCode::SUCCESS
}

async fn run(args: &Args, target: Target) -> Value {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = awc::Client::builder()
        .connector(
            awc::Connector::new()
                .limit(args.connections)
                .timeout(Duration::from_secs(5)),
        )
        .timeout(args.timeout)
        .disable_redirects()
        .finish();
    let target = Rc::new(target);
    if !args.warmup.is_zero() {
        drive(args, &client, &target, args.warmup).await;
    }
    let (started, results) = drive(args, &client, &target, args.duration).await;
    summarise(args, &target.url, started, &results)
}

/// Runs streams for `duration` (open or closed loop); returns the first scheduled start
/// and every stream's result.
async fn drive(
    args: &Args,
    client: &awc::Client,
    target: &Rc<Target>,
    duration: Duration,
) -> (Instant, Vec<StreamResult>) {
    let timeout = args.timeout;
    if args.rate > 0.0 {
        let start = Instant::now() + Duration::from_millis(10);
        // Rounded so that e.g. 1000/s for 10 s is exactly 10,000 streams.
        let n = (args.rate * duration.as_secs_f64()).round() as u64;
        let mut tasks = Vec::with_capacity(usize::try_from(n).unwrap_or(0));
        for i in 0..n {
            let at = start + Duration::from_secs_f64(i as f64 / args.rate);
            actix_web::rt::time::sleep_until(at.into()).await;
            let (c, t) = (client.clone(), Rc::clone(target));
            tasks.push(actix_web::rt::spawn(async move {
                one_stream(&c, &t, at, timeout).await
            }));
        }
        let results = futures::future::join_all(tasks)
            .await
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        (start, results)
    } else {
        let start = Instant::now();
        let end = start + duration;
        let results = Rc::new(RefCell::new(Vec::new()));
        let workers = (0..args.connections).map(|_| {
            let (c, t, out) = (client.clone(), Rc::clone(target), Rc::clone(&results));
            actix_web::rt::spawn(async move {
                while Instant::now() < end {
                    let r = one_stream(&c, &t, Instant::now(), timeout).await;
                    out.borrow_mut().push(r);
                }
            })
        });
        futures::future::join_all(workers.collect::<Vec<_>>()).await;
        let results = results.take();
        (start, results)
    }
}

fn ms(d: Option<Duration>) -> Value {
    d.map_or(Value::Null, |d| {
        json!((d.as_secs_f64() * 1e6).round() / 1e3)
    })
}

fn spread(mut v: Vec<Duration>) -> Value {
    v.sort_unstable();
    let mean = if v.is_empty() {
        None
    } else {
        Some(v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(u32::MAX))
    };
    json!({
        "p50": ms(percentile(&v, 50.0)),
        "p90": ms(percentile(&v, 90.0)),
        "p99": ms(percentile(&v, 99.0)),
        "max": ms(v.last().copied()),
        "mean": ms(mean),
    })
}

fn summarise(args: &Args, url: &str, started: Instant, results: &[StreamResult]) -> Value {
    let end = results.iter().map(|r| r.finished).max().unwrap_or(started);
    let elapsed = end.saturating_duration_since(started).as_secs_f64();
    let per_s = |n: f64| if elapsed > 0.0 { n / elapsed } else { 0.0 };
    let ok: Vec<&StreamResult> = results.iter().filter(|r| r.outcome.is_ok()).collect();
    let mut errors: BTreeMap<&str, u64> = [
        "connect",
        "non_2xx",
        "no_done",
        "error_event",
        "malformed",
        "timeout",
    ]
    .into_iter()
    .map(|k| (k, 0))
    .collect();
    let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
    let mut models: BTreeMap<String, u64> = BTreeMap::new();
    let mut connect_samples: Vec<String> = Vec::new();
    for r in results {
        if let Some(s) = r.status {
            *statuses.entry(s.to_string()).or_default() += 1;
        }
        if let Some(m) = &r.state.model {
            *models.entry(m.clone()).or_default() += 1;
        }
        if let Err(f) = &r.outcome {
            *errors.entry(f.key()).or_default() += 1;
            if let sse::Failure::Connect(msg) = f {
                if connect_samples.len() < 5 && !connect_samples.contains(msg) {
                    connect_samples.push(msg.clone());
                }
            }
        }
    }
    let chunks: u64 = ok.iter().map(|r| u64::from(r.state.chunks)).sum();
    let tokens: u64 = ok.iter().map(|r| u64::from(r.state.words)).sum();
    let error_total: u64 = errors.values().sum();
    json!({
        "url": url,
        "target_rate": args.rate,
        "connections": args.connections,
        "duration_s": args.duration.as_secs_f64(),
        "elapsed_s": elapsed,
        "streams": results.len(),
        "ok": ok.len(),
        "achieved_rate": per_s(results.len() as f64),
        "ttft_ms": spread(ok.iter().filter_map(|r| r.ttft).collect()),
        "ttft_from_send_ms": spread(ok.iter().filter_map(|r| r.ttft_from_send).collect()),
        "total_ms": spread(ok.iter().map(|r| r.total).collect()),
        "lag_ms": spread(results.iter().map(|r| r.lag).collect()),
        "chunks": chunks,
        "tokens": tokens,
        "chunks_per_stream": if ok.is_empty() { 0.0 } else { chunks as f64 / ok.len() as f64 },
        "chunks_per_s": per_s(chunks as f64),
        "tokens_per_s": per_s(tokens as f64),
        "errors": errors,
        "error_total": error_total,
        "status_codes": statuses,
        "models": models,
        "connect_error_samples": connect_samples,
    })
}

fn one_line(r: &Value) -> String {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    format!(
        "stream_load: {:.0} streams/s ({} ok of {}), TTFT p50 {:.3} p99 {:.3} ms, total p99 {:.3} ms, {:.0} chunks/s, errors {}",
        f(&r["achieved_rate"]),
        r["ok"],
        r["streams"],
        f(&r["ttft_ms"]["p50"]),
        f(&r["ttft_ms"]["p99"]),
        f(&r["total_ms"]["p99"]),
        f(&r["chunks_per_s"]),
        r["errors"],
    )
}
