//! The `bkvy` binary: parse the command line, load and validate the config, start.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bkvy::config::{self, Config};
#[cfg(feature = "fake")]
use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::http::access::AccessPolicy;
use bkvy::http::HttpLimits;
use bkvy::server::{
    self, ConnectionOptions, DashboardOptions, Running, ServerOptions, StatsOptions,
};
use bkvy_actors::SystemClock;
use clap::{Args, Parser, Subcommand};

/// jemalloc instead of glibc's malloc: a request allocates and frees a few hundred small
/// blocks on one thread, which glibc pays for in `malloc_consolidate` and chunk unlinking
/// (about a seventh of bkvy's CPU time at saturation). Peak memory stays in the same range
/// (see docs/PERFORMANCE.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// A self-hosted LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "bkvy", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    Serve(ServeArgs),
    /// Run the gateway against built-in fake providers: no API keys, no internet.
    #[cfg(feature = "fake")]
    Demo(DemoArgs),
    /// Validate the config and print every problem with its JSON path.
    CheckConfig {
        /// Directory holding providers.json and routing.json.
        #[arg(long, default_value = "config")]
        config_dir: PathBuf,
    },
    /// Run fake provider servers (OpenAI, Anthropic, Gemini, Ollama wire formats).
    #[cfg(feature = "fake")]
    FakeUpstream(FakeArgs),
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Directory holding providers.json and routing.json.
    #[arg(long, default_value = "config")]
    config_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on.
    #[arg(long, env = "PORT", default_value_t = 10006)]
    port: u16,
    /// HTTP worker threads (0 = one per core).
    #[arg(long, env = "WORKERS", default_value_t = 0)]
    workers: usize,
    /// Largest accepted request body in bytes.
    #[arg(long, env = "MAX_REQUEST_BYTES", default_value_t = 10 * 1024 * 1024)]
    max_request_bytes: usize,
    /// Directory where rate, pause and circuit state survives restarts.
    #[arg(long, env = "STATE_DIR", default_value = "state")]
    state_dir: PathBuf,
    /// Seconds a request body may take to arrive.
    #[arg(long, env = "BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    body_timeout_seconds: u64,
    /// Seconds in-flight requests may run on after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    #[command(flatten)]
    connections: ConnectionArgs,
}

/// Client connection settings, shared by `serve` and `demo`.
#[derive(Debug, Args)]
struct ConnectionArgs {
    /// Seconds an idle kept-alive client connection stays open (0 = no keep-alive).
    /// Keep it longer than the idle timeout of the clients' connection pools.
    #[arg(
        long,
        env = "KEEP_ALIVE_SECONDS",
        default_value_t = ConnectionOptions::DEFAULT_KEEP_ALIVE_SECONDS,
        value_parser = clap::value_parser!(u64).range(0..=3600)
    )]
    keep_alive_seconds: u64,
    /// Pending connections queued before they are accepted (capped by the kernel, on
    /// Linux at net.core.somaxconn).
    #[arg(
        long,
        env = "LISTEN_BACKLOG",
        default_value_t = ConnectionOptions::DEFAULT_LISTEN_BACKLOG,
        value_parser = clap::value_parser!(u32).range(1..=65535)
    )]
    listen_backlog: u32,
}

impl ConnectionArgs {
    fn options(&self) -> ConnectionOptions {
        ConnectionOptions {
            keep_alive: std::time::Duration::from_secs(self.keep_alive_seconds),
            listen_backlog: self.listen_backlog,
            ..ConnectionOptions::default()
        }
    }
}

#[cfg(feature = "fake")]
#[derive(Debug, Args)]
struct DemoArgs {
    /// Directory holding the demo providers.json and routing.json.
    #[arg(long, default_value = "config/demo")]
    config_dir: PathBuf,
    /// Address the gateway listens on.
    #[arg(long, env = "HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port the gateway listens on.
    #[arg(long, env = "PORT", default_value_t = 10006)]
    port: u16,
    /// Port of the fake providers (the demo config points at 10007).
    #[arg(long, default_value_t = 10007)]
    upstream_port: u16,
    #[command(flatten)]
    connections: ConnectionArgs,
}

#[cfg(feature = "fake")]
#[derive(Debug, Args)]
struct FakeArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 10007)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Added latency per answer, milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Extra random latency up to this many milliseconds.
    #[arg(long, default_value_t = 0)]
    jitter_ms: u64,
    /// Share of calls that fail (0.0 to 1.0).
    #[arg(long, default_value_t = 0.0)]
    fail_rate: f64,
    /// HTTP status of failed calls.
    #[arg(long, default_value_t = 500)]
    fail_status: u16,
    /// Retry-After seconds sent with a failing 429.
    #[arg(long, default_value_t = 1)]
    retry_after_secs: u64,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    workers: usize,
}

/// The demo config points its endpoints at this address.
#[cfg(feature = "fake")]
const DEMO_UPSTREAM: &str = "http://127.0.0.1:10007";

fn init_logging() {
    let level = std::env::var("LOG_LEVEL").unwrap_or_else(|_| "info".into());
    env_logger::Builder::from_env(env_logger::Env::new().default_filter_or(level)).init();
}

#[allow(clippy::print_stderr)]
fn load_or_report(dir: &Path) -> Option<Config> {
    match config::load(dir) {
        Ok(c) => Some(c),
        Err(problems) => {
            eprintln!(
                "{}: {} problem(s) in the configuration:",
                dir.display(),
                problems.len()
            );
            for p in problems {
                eprintln!("  {p}");
            }
            None
        }
    }
}

#[allow(clippy::print_stderr)]
fn access_or_report() -> Option<AccessPolicy> {
    AccessPolicy::from_env()
        .map_err(|e| eprintln!("invalid access list: {e}"))
        .ok()
}

async fn serve(args: ServeArgs) -> std::io::Result<ExitCode> {
    let Some(config) = load_or_report(&args.config_dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let Some(access) = access_or_report() else {
        return Ok(ExitCode::FAILURE);
    };
    let listener = TcpListener::bind((args.host.as_str(), args.port))?;
    let running = server::start(
        listener,
        ServerOptions {
            config,
            clock: Arc::new(SystemClock),
            limits: HttpLimits {
                max_request_bytes: args.max_request_bytes,
                body_timeout: std::time::Duration::from_secs(args.body_timeout_seconds.max(1)),
                ..HttpLimits::default()
            },
            workers: args.workers,
            access,
            state_dir: Some(args.state_dir),
            shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
            config_dir: Some(args.config_dir.clone()),
            probes: bkvy::probes::ProbeOptions::from_env(),
            stats: StatsOptions::from_env(),
            dashboard: DashboardOptions::from_env(),
            access_log: server::access_log_from_env(),
            connections: args.connections.options(),
        },
    )?;
    log::info!("bkvy listening on {}", running.url());
    run_until_shutdown(running).await?;
    Ok(ExitCode::SUCCESS)
}

/// Serves until SIGTERM or SIGINT (reloading the config on SIGHUP), then shuts down as
/// [`Running::run`] says, and the process exits 0.
async fn run_until_shutdown(running: Running) -> std::io::Result<()> {
    let state = running.state.clone();
    actix_web::rt::spawn(async move {
        use actix_web::rt::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            match bkvy::reload::reload(&state).await {
                Ok(_) => {}
                Err(bkvy::reload::ReloadError::Invalid(problems)) => {
                    log::error!("config reload rejected; the running config stays:");
                    for p in problems {
                        log::error!("  {p}");
                    }
                }
                Err(e) => log::error!("{e}"),
            }
        }
    });
    running.run(wait_for_stop_signal()).await.map(drop)
}

async fn wait_for_stop_signal() {
    use actix_web::rt::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            futures::future::select(Box::pin(term.recv()), Box::pin(int.recv())).await;
        }
        _ => {
            let _ = actix_web::rt::signal::ctrl_c().await;
        }
    }
}

#[cfg(feature = "fake")]
#[allow(clippy::print_stdout)]
fn print_demo_banner(url: &str, upstream: &str, dashboard: bool) {
    println!(
        r#"
bkvy demo: gateway at {url}, fake OpenAI/Anthropic/Gemini/Ollama at {upstream}
(no API keys, no internet; answers are canned, latency and an occasional 429 are simulated)

Try:
  curl -X POST "{url}/llm/intelligence" -H "Content-Type: application/json" \
    -d '{{"client_id": "demo-client", "intelligence_level": "low", "max_wait_seconds": 30,
         "messages": [{{"role": "user", "content": "What is 2+2?"}}]}}'

  curl -X POST "{url}/llm/scenario" -H "Content-Type: application/json" \
    -d '{{"client_id": "demo-client", "scenario": "cost_optimized_bulk", "max_wait_seconds": 30, "debug": true,
         "messages": [{{"role": "user", "content": "Summarise the plot of Hamlet"}}]}}'

  curl {url}/health
  curl {url}/rates/status
  curl {url}/queue/status

Press Ctrl-C to stop.
"#
    );
    if dashboard {
        println!("Dashboard: {url}/dashboard\n");
    } else {
        println!("Dashboard: off (start with DASHBOARD_ENABLED=true to see {url}/dashboard)\n");
    }
}

#[cfg(feature = "fake")]
async fn demo(args: DemoArgs) -> std::io::Result<ExitCode> {
    let fake_listener = TcpListener::bind(("127.0.0.1", args.upstream_port))?;
    let fake = FakeUpstream::start(
        fake_listener,
        FakeOptions {
            latency: std::time::Duration::from_millis(250),
            latency_jitter: std::time::Duration::from_millis(750),
            fail_rate: 0.03,
            fail_status: 429,
            retry_after_secs: 2,
            ..FakeOptions::default()
        },
    )?;
    let Some(mut config) = load_or_report(&args.config_dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let Some(access) = access_or_report() else {
        return Ok(ExitCode::FAILURE);
    };
    let upstream = fake.url();
    for p in &mut config.providers {
        for m in &mut p.models {
            m.endpoint = m.endpoint.replace(DEMO_UPSTREAM, &upstream);
        }
    }
    let listener = TcpListener::bind((args.host.as_str(), args.port))?;
    let running = server::start(
        listener,
        ServerOptions {
            config,
            clock: Arc::new(SystemClock),
            limits: HttpLimits::default(),
            workers: 2,
            access,
            state_dir: None,
            stats: StatsOptions::from_env(),
            shutdown_grace: std::time::Duration::from_secs(30),
            config_dir: None,
            probes: bkvy::probes::ProbeOptions::from_env(),
            dashboard: DashboardOptions::from_env(),
            access_log: server::access_log_from_env(),
            connections: args.connections.options(),
        },
    )?;
    let url = running.url();
    print_demo_banner(&url, &upstream, running.dashboard.is_some());
    run_until_shutdown(running).await?;
    fake.stop().await;
    Ok(ExitCode::SUCCESS)
}

#[allow(clippy::print_stdout)]
fn check_config(dir: &Path) -> ExitCode {
    match load_or_report(dir) {
        Some(c) => {
            let pairs: usize = c
                .providers
                .iter()
                .map(|p| p.keys.iter().map(|k| k.rate_limits.len()).sum::<usize>())
                .sum();
            println!(
                "{}: OK ({} providers, {} key/model pairs, {} scenarios)",
                dir.display(),
                c.providers.len(),
                pairs,
                c.scenarios.len()
            );
            ExitCode::SUCCESS
        }
        None => ExitCode::FAILURE,
    }
}

#[cfg(feature = "fake")]
async fn fake_upstream(args: FakeArgs) -> std::io::Result<ExitCode> {
    let opts = FakeOptions {
        latency: std::time::Duration::from_millis(args.latency_ms),
        latency_jitter: std::time::Duration::from_millis(args.jitter_ms),
        fail_rate: args.fail_rate.clamp(0.0, 1.0),
        fail_status: args.fail_status,
        retry_after_secs: args.retry_after_secs,
        workers: args.workers.max(1),
        ..FakeOptions::default()
    };
    bkvy::fake::serve_forever(args.port, &args.host, opts).await?;
    Ok(ExitCode::SUCCESS)
}

#[actix_web::main]
async fn main() -> ExitCode {
    init_logging();
    let cli = Cli::parse();
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(args).await,
        #[cfg(feature = "fake")]
        Some(Command::Demo(args)) => demo(args).await,
        Some(Command::CheckConfig { config_dir }) => Ok(check_config(&config_dir)),
        #[cfg(feature = "fake")]
        Some(Command::FakeUpstream(args)) => fake_upstream(args).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            log::error!("{e}");
            ExitCode::FAILURE
        }
    }
}
