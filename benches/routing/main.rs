//! Routing benchmark: does bkvy answer with the cheapest model and key that fits each
//! request's wait budget, without ever going over a key's limits?
//!
//! In one process it starts the fake providers, enforcing the same RPM/RPD per key and
//! model as bkvy is configured with (counted by arrival, as a provider does, so every
//! call bkvy lets through beyond them comes back as a 429), with per-model latencies (one
//! slow model, one failing 10 % of its calls), and bkvy in front of them; then it replays
//! a seeded synthetic trace of `/llm/intelligence` requests open loop and reports the
//! share answered within budget, failures, upstream 429s, answers from the wrong tier,
//! and the cost against a reference schedule (see `bound`). Method, figures and targets:
//! docs/ROUTING.md.
//!
//! `cargo bench --bench routing` runs it (about four minutes); options come
//! after `--` or from `ROUTING_*` variables (`--help`). Built and run without `--bench`
//! (as `cargo test --benches` does) it runs its own checks of the pure parts instead,
//! in a second: a `harness = false` target has no test harness, and the checks must not
//! start a three-minute run.

mod bound;
mod catalog;
mod checks;
mod replay;
mod report;
mod trace;

use std::net::TcpListener;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bkvy::fake::{FakeApi, FakeOptions, FakeUpstream};
use clap::Parser;

use catalog::PROVIDERS;
use report::Upstream;
use trace::TraceSpec;

/// Replays a synthetic trace through bkvy in front of rate-limiting fake providers.
#[derive(Debug, Parser)]
#[command(name = "routing")]
struct Args {
    /// Seed of the trace.
    #[arg(long, env = "ROUTING_SEED", default_value_t = 1)]
    seed: u64,
    /// Requests in the trace.
    #[arg(long, env = "ROUTING_REQUESTS", default_value_t = 600)]
    requests: usize,
    /// Seconds the arrivals are spread over.
    #[arg(long, env = "ROUTING_DURATION_S", default_value_t = 180.0)]
    duration: f64,
    /// Bursts in the trace (30 % of the requests, 5 s each).
    #[arg(long, env = "ROUTING_BURSTS", default_value_t = 4)]
    bursts: usize,
    /// Requests outstanding at most; a send waits for a free slot.
    #[arg(long, env = "ROUTING_MAX_IN_FLIGHT", default_value_t = 256)]
    max_in_flight: usize,
    /// Client timeout of one request, seconds (bkvy's own deadline is 120 s).
    #[arg(long, env = "ROUTING_TIMEOUT_S", default_value_t = 130.0)]
    timeout: f64,
    /// Also write the JSON line to this file.
    #[arg(long, env = "ROUTING_JSON_OUT")]
    json_out: Option<std::path::PathBuf>,
    /// Exit with a failure when a target is missed.
    #[arg(long, env = "ROUTING_STRICT")]
    strict: bool,
    /// Run the benchmark (implied by `--bench`, which `cargo bench` passes).
    #[arg(long)]
    run: bool,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
    /// Filters `cargo bench` or `cargo test` may pass; ignored.
    #[arg(hide = true)]
    filters: Vec<String>,
}

#[allow(clippy::print_stdout, clippy::print_stderr)] // a command-line tool's output
fn main() -> ExitCode {
    let args = Args::parse();
    if !(args.bench || args.run) {
        return checks::run_all();
    }
    let spec = TraceSpec {
        seed: args.seed,
        requests: args.requests,
        duration_s: args.duration.max(1.0),
        bursts: args.bursts,
        ..TraceSpec::default()
    };
    let trace = trace::generate(&spec);
    let pairs = catalog::pairs(PROVIDERS);
    let reference = bound::reference(&trace, &pairs);
    let floor = bound::floor(&trace, &pairs);
    eprintln!(
        "routing: {} requests over {:.0} s (seed {}, {} bursts), {} key/model pairs",
        trace.len(),
        spec.duration_s,
        spec.seed,
        spec.bursts,
        pairs.len()
    );
    let timeout = Duration::from_secs_f64(args.timeout.max(1.0));
    let run = actix_web::rt::System::new().block_on(run(&trace, args.max_in_flight, timeout));
    let (outcomes, upstream) = match run {
        Ok(r) => r,
        Err(e) => {
            eprintln!("routing: could not start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let summary = report::summarize(
        &trace, &outcomes, &reference, floor, &pairs, PROVIDERS, &upstream,
    );
    print!("{}", report::render(&summary));
    let mut line = serde_json::json!({
        "bench": "routing",
        "seed": spec.seed,
        "duration_s": spec.duration_s,
        "bursts": spec.bursts,
    });
    if let (Some(obj), Ok(serde_json::Value::Object(fields))) =
        (line.as_object_mut(), serde_json::to_value(&summary))
    {
        obj.extend(fields);
    }
    println!("{line}");
    if let Some(path) = &args.json_out {
        if let Err(e) = std::fs::write(path, format!("{line}\n")) {
            eprintln!("routing: {}: {e}", path.display());
        }
    }
    let missed = report::targets(&summary).iter().any(|(_, met)| !met);
    if args.strict && missed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Starts the fake and bkvy, replays the trace, and returns what each request got and
/// what the upstream saw.
async fn run(
    trace: &[trace::TraceRequest],
    max_in_flight: usize,
    timeout: Duration,
) -> Result<(Vec<replay::Outcome>, Upstream), String> {
    let limits = catalog::fake_limits(PROVIDERS);
    let fake = FakeUpstream::start(
        TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
        FakeOptions {
            workers: 2,
            limits: limits.clone(),
            per_model: catalog::fake_models(PROVIDERS),
            ..FakeOptions::default()
        },
    )
    .map_err(|e| e.to_string())?;
    let providers = catalog::providers_json(PROVIDERS, &fake.url());
    let config = bkvy::config::load_from_strs(&providers, catalog::ROUTING_JSON, &|_| None)
        .map_err(|p| format!("config: {p:?}"))?;
    let running = bkvy::server::start(
        TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?,
        bkvy::server::ServerOptions {
            config,
            clock: Arc::new(bkvy_actors::SystemClock),
            limits: bkvy::http::HttpLimits::default(),
            workers: 2,
            access: bkvy::http::access::AccessPolicy::default(),
            state_dir: None,
            stats: bkvy::server::StatsOptions::disabled(),
            shutdown_grace: Duration::from_secs(5),
            config_dir: None,
            probes: bkvy::probes::ProbeOptions::disabled(),
            dashboard: bkvy::server::DashboardOptions::disabled(),
            access_log: false,
            connections: bkvy::server::ConnectionOptions::default(),
            require_client_keys: false,
        },
    )
    .map_err(|e| e.to_string())?;
    let url = format!("http://{}/llm/intelligence", running.addr);
    let handle = running.handle();
    actix_web::rt::spawn(running.run(futures::future::pending()));

    let outcomes = replay::replay(&url, trace, max_in_flight, timeout).await;

    let calls: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.api != FakeApi::ModelList)
        .collect();
    let pairs = catalog::pairs(PROVIDERS);
    let limited: Vec<report::Arrival> = calls
        .iter()
        .filter_map(|r| {
            let pair = limits
                .iter()
                .position(|l| l.model == r.model && l.credential == r.credential)?;
            let at_us = r
                .received_at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
            Some(report::Arrival {
                pair,
                at_us,
                status: r.status,
            })
        })
        .collect();
    let rpm: Vec<u32> = limits.iter().map(|l| l.rpm).collect();
    let refusals = report::shortfalls(&limited, &rpm)
        .into_iter()
        .map(|(i, short)| (format!("{}/{}", pairs[i].model, pairs[i].key), short))
        .collect();
    let upstream = Upstream {
        refusals,
        calls: calls.len(),
        status_429: calls.iter().filter(|r| r.status == 429).count(),
        limit_refusals: fake.limit_refusals(),
        status_5xx: calls.iter().filter(|r| r.status >= 500).count(),
        unlimited_calls: calls
            .iter()
            .filter(|r| {
                !limits
                    .iter()
                    .any(|l| l.model == r.model && l.credential == r.credential)
            })
            .count(),
    };
    handle.stop(false).await;
    fake.stop().await;
    Ok((outcomes, upstream))
}
