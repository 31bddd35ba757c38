//! The `bkvy` binary: parse the command line, load and validate the config, start.
//!
//! Every setting of the process is read here and only here: each is a clap argument with
//! a long flag and an environment variable of the same name (`--dashboard-enabled` /
//! `DASHBOARD_ENABLED`), grouped by concern ([`ConnectionArgs`], [`LogArgs`],
//! [`ProbeArgs`], [`DashboardArgs`], [`StatsArgs`]) and shared by `serve` and `demo`;
//! `LOG_LEVEL` is a global argument, since every command logs. A flag on the command line
//! wins over its variable, the variable over the default; an invalid value stops start-up
//! with clap's error naming the flag and the variable. (The serve arguments also sit on the
//! top-level command, which serves by default, so their variables are checked whatever the
//! command.) The library
//! types (`ServerOptions` and what it holds) are built from the parsed values and read no
//! environment themselves. The one exception is `RUST_LOG`, read by `env_logger`, which
//! takes precedence over `LOG_LEVEL`. (The `env:NAME` references in the config files are
//! config content, resolved by `config::load`.)
//!
//! Every on/off setting uses one dialect, [`parse_bool`]: `true`/`false`, `1`/`0`,
//! `yes`/`no`, `on`/`off`, in any case; anything else, the empty string included, is
//! refused. On the command line `--flag` alone means `true` and `--flag=false` turns it off.

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use bkvy::config::{self, Config, Secret};
#[cfg(feature = "fake")]
use bkvy::fake::{FakeOptions, FakeUpstream};
use bkvy::http::access::{AccessPolicy, HostList, IpList, OriginList};
use bkvy::http::HttpLimits;
use bkvy::probes::ProbeOptions;
use bkvy::server::{
    self, ConnectionOptions, DashboardOptions, Running, ServerOptions, StatsOptions,
};
use bkvy_actors::SystemClock;
use clap::builder::TypedValueParser;
use clap::{ArgAction, Args, Parser, Subcommand};

/// jemalloc instead of glibc's malloc: a request allocates and frees a few hundred small
/// blocks on one thread, which glibc pays for in `malloc_consolidate` and chunk unlinking
/// (about a seventh of bkvy's CPU time at saturation). Peak memory stays in the same range
/// (see docs/PERFORMANCE.md, "Allocator").
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Shown under the help of the commands that take on/off settings.
const BOOL_HELP: &str = "A setting shown with [env: NAME] can also be given as that \
environment variable; the flag on the command line wins. On/off settings accept true/false, \
1/0, yes/no, on/off in any case (anything else, an empty value included, is refused); on the \
command line --flag alone means true and --flag=false turns it off.";

/// A self-hosted LLM gateway.
#[derive(Debug, Parser)]
#[command(name = "bkvy", version, about, after_help = BOOL_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
    /// Log filter when RUST_LOG is not set: error, warn, info, debug, trace, or an
    /// env_logger filter such as info,bkvy::access=warn.
    #[arg(
        long,
        env = "LOG_LEVEL",
        default_value = "info",
        global = true,
        help_heading = "Logging"
    )]
    log_level: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (the default).
    #[command(after_help = BOOL_HELP)]
    Serve(Box<ServeArgs>),
    /// Run the gateway against built-in fake providers: no API keys, no internet.
    #[cfg(feature = "fake")]
    #[command(after_help = BOOL_HELP)]
    Demo(Box<DemoArgs>),
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
    /// Bytes all request bodies being read may hold between them; a body that would take
    /// more is refused with 503 and Retry-After.
    #[arg(
        long,
        env = "MAX_INFLIGHT_REQUEST_BYTES",
        default_value_t = HttpLimits::DEFAULT_MAX_INFLIGHT_REQUEST_BYTES
    )]
    max_inflight_request_bytes: usize,
    /// Bytes all upstream answers being read may hold between them; an answer that would
    /// take more is not read and the request fails over (gateway_overloaded).
    #[arg(
        long,
        env = "MAX_INFLIGHT_RESPONSE_BYTES",
        default_value_t = HttpLimits::DEFAULT_MAX_INFLIGHT_RESPONSE_BYTES
    )]
    max_inflight_response_bytes: usize,
    /// Listen on a non-loopback address without config/clients.json, so that anyone who
    /// can reach the port may spend the provider keys (refused without this; logged as a
    /// warning with it).
    #[arg(
        long,
        env = "ALLOW_UNAUTHENTICATED",
        default_value_t = false,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    allow_unauthenticated: bool,
    /// Directory where rate, pause and circuit state survives restarts.
    #[arg(long, env = "STATE_DIR", default_value = "state")]
    state_dir: PathBuf,
    /// Seconds a request body may take to arrive.
    #[arg(long, env = "BODY_TIMEOUT_SECONDS", default_value_t = 30)]
    body_timeout_seconds: u64,
    /// Seconds a streamed answer waits for a client that reads nothing before ending the
    /// stream and releasing its key/model slot.
    #[arg(long, env = "STREAM_WRITE_STALL_SECONDS", default_value_t = HttpLimits::DEFAULT_STREAM_WRITE_STALL_SECONDS)]
    stream_write_stall_seconds: u64,
    /// Seconds in-flight requests may run on after SIGTERM/SIGINT.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30)]
    shutdown_grace_seconds: u64,
    #[command(flatten)]
    connections: ConnectionArgs,
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    probes: ProbeArgs,
    #[command(flatten)]
    dashboard: DashboardArgs,
    #[command(flatten)]
    stats: StatsArgs,
}

/// The words of the one boolean dialect and what each means.
const BOOL_WORDS: [(&str, bool); 8] = [
    ("true", true),
    ("false", false),
    ("1", true),
    ("0", false),
    ("yes", true),
    ("no", false),
    ("on", true),
    ("off", false),
];

/// The one boolean dialect of every on/off setting, flag or environment variable:
/// `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in any case, surrounding whitespace
/// ignored. Anything else, the empty string included, is an error.
fn parse_bool(value: &str) -> Result<bool, String> {
    let word = value.trim();
    BOOL_WORDS
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(word))
        .map(|(_, b)| *b)
        .ok_or_else(|| "expected true, false, 1, 0, yes, no, on or off (any case)".to_owned())
}

/// [`parse_bool`] as clap's value parser. Its error is clap's "invalid value" one, with
/// the accepted words and a tip naming the flag and its environment variable (the value
/// may have come from either).
#[derive(Debug, Clone, Copy)]
struct BoolParser;

impl TypedValueParser for BoolParser {
    type Value = bool;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &OsStr,
    ) -> Result<bool, clap::Error> {
        use clap::error::{ContextKind, ContextValue, ErrorKind};
        let text = value.to_string_lossy();
        parse_bool(&text).map_err(|_| {
            let mut e = clap::Error::new(ErrorKind::InvalidValue).with_cmd(cmd);
            let arg_name = arg.map_or_else(|| "...".to_owned(), ToString::to_string);
            e.insert(ContextKind::InvalidArg, ContextValue::String(arg_name));
            // An empty value would read "a value is required"; quote it instead.
            let shown = if text.is_empty() {
                "\"\"".into()
            } else {
                text.to_string()
            };
            e.insert(ContextKind::InvalidValue, ContextValue::String(shown));
            let words = BOOL_WORDS.iter().map(|(w, _)| (*w).to_owned()).collect();
            e.insert(ContextKind::ValidValue, ContextValue::Strings(words));
            if let Some(arg) = arg {
                let flag = arg
                    .get_long()
                    .map_or_else(|| arg.get_id().to_string(), |l| format!("--{l}"));
                let source = match arg.get_env() {
                    Some(env) => format!(
                        "{flag} or the environment variable {}",
                        env.to_string_lossy()
                    ),
                    None => flag,
                };
                e.insert(
                    ContextKind::Suggested,
                    ContextValue::StyledStrs(vec![format!(
                        "{source} takes one of these words, in any case"
                    )
                    .into()]),
                );
            }
            e
        })
    }
}

/// A number of seconds between two probe rounds: finite and at least 1.
fn parse_probe_interval(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 1.0 => Ok(s),
        _ => Err("expected a number of seconds, at least 1".to_owned()),
    }
}

/// A size in MiB: a finite number above 0, fractions allowed.
fn parse_megabytes(value: &str) -> Result<f64, String> {
    match value.trim().parse::<f64>() {
        Ok(mb) if mb.is_finite() && mb > 0.0 => Ok(mb),
        _ => Err("expected a positive number of MiB (fractions allowed)".to_owned()),
    }
}

/// Logging of the gateway, shared by `serve` and `demo` (`LOG_LEVEL` is a global
/// argument on [`Cli`], since every command logs).
#[derive(Debug, Args)]
#[command(next_help_heading = "Logging")]
struct LogArgs {
    /// One info line per HTTP request (the access log). Other info lines stay when it is
    /// off; a deployment that logs requests in front of bkvy may not want them twice.
    #[arg(
        long,
        env = "ACCESS_LOG",
        default_value_t = true,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    access_log: bool,
}

/// Background health probes, shared by `serve` and `demo`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Health probes")]
struct ProbeArgs {
    /// Probe every (provider, key) in the background with the provider's free model-list
    /// endpoint (never a paid completion).
    #[arg(
        long,
        env = "HEALTH_PROBE_ENABLED",
        default_value_t = false,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    health_probe_enabled: bool,
    /// Seconds between two probe rounds (at least 1, fractions allowed).
    #[arg(
        long,
        env = "HEALTH_PROBE_INTERVAL_SECONDS",
        default_value_t = ProbeOptions::DEFAULT_INTERVAL_SECONDS as f64,
        value_parser = parse_probe_interval
    )]
    health_probe_interval_seconds: f64,
}

impl ProbeArgs {
    fn options(&self) -> ProbeOptions {
        ProbeOptions {
            enabled: self.health_probe_enabled,
            interval: std::time::Duration::from_secs_f64(self.health_probe_interval_seconds),
        }
    }
}

/// The web dashboard and who may reach it and the admin endpoints, shared by `serve` and
/// `demo`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Dashboard and admin access")]
struct DashboardArgs {
    /// Serve the web dashboard at /dashboard (off: 404). Its history comes from --log-dir.
    #[arg(
        long,
        env = "DASHBOARD_ENABLED",
        default_value_t = false,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    dashboard_enabled: bool,
    /// Comma-separated IPs and CIDR ranges (IPv4 and IPv6) allowed to reach the admin
    /// endpoints and the dashboard; an empty value allows nobody.
    #[arg(
        long,
        env = "DASHBOARD_ALLOWED_IPS",
        default_value = AccessPolicy::DEFAULT_ALLOWED,
        value_parser = IpList::parse
    )]
    dashboard_allowed_ips: IpList,
    /// Comma-separated IPs and CIDR ranges of reverse proxies whose X-Forwarded-For is
    /// believed (none when unset).
    #[arg(long, env = "DASHBOARD_TRUSTED_PROXIES", value_parser = IpList::parse)]
    dashboard_trusted_proxies: Option<IpList>,
    /// Comma-separated host names (name or name:port, `*` for any) the Host header of an
    /// admin or dashboard request may carry beside IP addresses and localhost (none when
    /// unset): a defence against DNS rebinding.
    #[arg(long, env = "ALLOWED_HOSTS", value_parser = HostList::parse)]
    allowed_hosts: Option<HostList>,
    /// Comma-separated origins (scheme://host[:port], or null) allowed to send admin and
    /// dashboard requests beside bkvy's own pages (none when unset).
    #[arg(long, env = "ALLOWED_ORIGINS", value_parser = OriginList::parse)]
    allowed_origins: Option<OriginList>,
    /// A token the admin endpoints then require (Authorization: Bearer, besides an allowed
    /// address) and the dashboard and status endpoints accept instead of an allowed
    /// address. Give it in the environment: a command line is visible to other users.
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true, value_parser = admin_token)]
    admin_token: Option<Secret>,
    /// Who may read the status endpoints that reveal configuration or spend (/providers,
    /// /rates/status, /circuits/status, /debug/config, /statistics/*, /metrics,
    /// /queue/status, /clients/status): `protected` (the dashboard's rule: an allowed address or the admin
    /// token) or `open` (everyone who can reach the port).
    #[arg(long, env = "STATUS_ACCESS", default_value = "protected", value_parser = ["protected", "open"])]
    status_access: String,
}

/// `ADMIN_TOKEN`: at least 16 characters, so that it cannot be guessed.
fn admin_token(s: &str) -> Result<Secret, String> {
    if s.trim() != s || s.chars().count() < 16 {
        return Err(
            "the admin token must be at least 16 characters, without surrounding spaces".into(),
        );
    }
    Ok(Secret::new(s))
}

impl DashboardArgs {
    fn access(&self) -> AccessPolicy {
        AccessPolicy {
            allowed: self.dashboard_allowed_ips.clone(),
            trusted_proxies: self.dashboard_trusted_proxies.clone().unwrap_or_default(),
            allowed_hosts: self.allowed_hosts.clone().unwrap_or_default(),
            allowed_origins: self.allowed_origins.clone().unwrap_or_default(),
            admin_token: self.admin_token.clone(),
            status_open: self.status_access == "open",
        }
    }

    fn options(&self, stats: &StatsArgs) -> DashboardOptions {
        DashboardOptions {
            enabled: self.dashboard_enabled,
            log_dir: Some(stats.log_dir.clone()),
        }
    }
}

/// The statistics logs, shared by `serve` and `demo`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Statistics")]
struct StatsArgs {
    /// Write one CSV row per request to LOG_DIR/transactions.csv.
    #[arg(
        long,
        env = "TRANSACTION_LOGGING",
        default_value_t = false,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    transaction_logging: bool,
    /// Write per-day totals to LOG_DIR/daily_stats.json.
    #[arg(
        long,
        env = "SUMMARY_STATS",
        default_value_t = false,
        action = ArgAction::Set,
        value_parser = BoolParser,
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "true"
    )]
    summary_stats: bool,
    /// Directory of the statistics files (created if missing), also the dashboard's
    /// history.
    #[arg(long, env = "LOG_DIR", default_value = StatsOptions::DEFAULT_LOG_DIR)]
    log_dir: PathBuf,
    /// Rotate transactions.csv before it grows past this many MiB (fractions allowed; no
    /// rotation when unset).
    #[arg(long, env = "TRANSACTION_LOG_MAX_MB", value_parser = parse_megabytes)]
    transaction_log_max_mb: Option<f64>,
}

impl StatsArgs {
    fn options(&self) -> StatsOptions {
        StatsOptions {
            transaction_logging: self.transaction_logging,
            summary_stats: self.summary_stats,
            log_dir: self.log_dir.clone(),
            max_csv_bytes: self
                .transaction_log_max_mb
                .map(|mb| (mb * 1024.0 * 1024.0) as u64),
        }
    }
}

/// Client connection settings, shared by `serve` and `demo`.
#[derive(Debug, Args)]
#[command(next_help_heading = "Client connections")]
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
    /// Client connections each HTTP worker holds open at once; the server holds at most
    /// WORKERS times this. Further connections wait in the listen backlog.
    #[arg(
        long,
        env = "MAX_CONNECTIONS",
        default_value_t = ConnectionOptions::DEFAULT_MAX_CONNECTIONS,
        value_parser = clap::value_parser!(u64).range(1..=1_000_000).map(|n| n as usize)
    )]
    max_connections: usize,
}

impl ConnectionArgs {
    fn options(&self) -> ConnectionOptions {
        ConnectionOptions {
            keep_alive: std::time::Duration::from_secs(self.keep_alive_seconds),
            listen_backlog: self.listen_backlog,
            max_connections: self.max_connections,
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
    #[command(flatten)]
    log: LogArgs,
    #[command(flatten)]
    probes: ProbeArgs,
    #[command(flatten)]
    dashboard: DashboardArgs,
    #[command(flatten)]
    stats: StatsArgs,
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

/// `RUST_LOG` when set (read by `env_logger`), else `--log-level` / `LOG_LEVEL`.
fn init_logging(level: &str) {
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

/// Whether `host` (an address or a name to bind) is loopback only.
fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Whether every model of `config` is served at `base` (the demo's fakes).
#[cfg(feature = "fake")]
fn reaches_only(config: &Config, base: &str) -> bool {
    let base = base.trim_end_matches('/');
    config.providers.iter().flat_map(|p| &p.models).all(|m| {
        m.endpoint
            .strip_prefix(base)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// The deployment rule: bind loopback, or require client keys, or say so explicitly.
/// `Ok(true)`: every reload must keep `clients.json`.
fn client_keys_rule(
    host: &str,
    config: &Config,
    allow_unauthenticated: bool,
) -> Result<bool, String> {
    if is_loopback(host) || config.clients.is_some() {
        return Ok(!is_loopback(host) && !allow_unauthenticated);
    }
    if allow_unauthenticated {
        log::warn!(
            "listening on {host} without config/clients.json (--allow-unauthenticated): \
             anyone who can reach this port may spend the provider keys"
        );
        return Ok(false);
    }
    Err(format!(
        "refusing to listen on {host} without config/clients.json: anyone who can reach the \
         port could spend the provider keys. Add client keys (docs/SECURITY.md), bind \
         127.0.0.1, or start with --allow-unauthenticated"
    ))
}

// Start-up problems go to stderr, like check-config's.
#[allow(clippy::print_stderr)]
async fn serve(args: ServeArgs) -> std::io::Result<ExitCode> {
    let Some(config) = load_or_report(&args.config_dir) else {
        return Ok(ExitCode::FAILURE);
    };
    let require_client_keys =
        match client_keys_rule(&args.host, &config, args.allow_unauthenticated) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{e}");
                return Ok(ExitCode::FAILURE);
            }
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
                stream_write_stall: std::time::Duration::from_secs(
                    args.stream_write_stall_seconds.max(1),
                ),
                max_inflight_request_bytes: args.max_inflight_request_bytes,
                max_inflight_response_bytes: args.max_inflight_response_bytes,
                ..HttpLimits::default()
            },
            workers: args.workers,
            access: args.dashboard.access(),
            state_dir: Some(args.state_dir),
            shutdown_grace: std::time::Duration::from_secs(args.shutdown_grace_seconds),
            config_dir: Some(args.config_dir.clone()),
            probes: args.probes.options(),
            stats: args.stats.options(),
            dashboard: args.dashboard.options(&args.stats),
            access_log: args.log.access_log,
            connections: args.connections.options(),
            require_client_keys,
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
        println!(
            "Dashboard: off (start with --dashboard-enabled or DASHBOARD_ENABLED=true to see {url}/dashboard)\n"
        );
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
    let upstream = fake.url();
    for p in &mut config.providers {
        for m in &mut p.models {
            m.endpoint = m.endpoint.replace(DEMO_UPSTREAM, &upstream);
        }
    }
    // The fakes spend nothing; a config that reaches any other upstream may spend real
    // keys, and the deployment rule applies to it as it does to `serve`.
    if !reaches_only(&config, &upstream) {
        if let Err(e) = client_keys_rule(&args.host, &config, false) {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{e}");
            }
            return Ok(ExitCode::FAILURE);
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
            access: args.dashboard.access(),
            state_dir: None,
            stats: args.stats.options(),
            shutdown_grace: std::time::Duration::from_secs(30),
            config_dir: None,
            probes: args.probes.options(),
            dashboard: args.dashboard.options(&args.stats),
            access_log: args.log.access_log,
            connections: args.connections.options(),
            // The demo never reloads its config.
            require_client_keys: false,
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
    let cli = Cli::parse();
    init_logging(&cli.log_level);
    let result = match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        #[cfg(feature = "fake")]
        Some(Command::Demo(args)) => demo(*args).await,
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::Mutex;

    use clap::CommandFactory;

    use super::*;

    /// Every environment variable `serve` reads, each once.
    const SERVE_ENV: &[&str] = &[
        "HOST",
        "PORT",
        "WORKERS",
        "MAX_REQUEST_BYTES",
        "MAX_INFLIGHT_REQUEST_BYTES",
        "MAX_INFLIGHT_RESPONSE_BYTES",
        "STATE_DIR",
        "BODY_TIMEOUT_SECONDS",
        "STREAM_WRITE_STALL_SECONDS",
        "SHUTDOWN_GRACE_SECONDS",
        "KEEP_ALIVE_SECONDS",
        "LISTEN_BACKLOG",
        "MAX_CONNECTIONS",
        "ACCESS_LOG",
        "HEALTH_PROBE_ENABLED",
        "HEALTH_PROBE_INTERVAL_SECONDS",
        "DASHBOARD_ENABLED",
        "DASHBOARD_ALLOWED_IPS",
        "DASHBOARD_TRUSTED_PROXIES",
        "ALLOWED_HOSTS",
        "ALLOWED_ORIGINS",
        "ADMIN_TOKEN",
        "STATUS_ACCESS",
        "ALLOW_UNAUTHENTICATED",
        "TRANSACTION_LOGGING",
        "SUMMARY_STATS",
        "LOG_DIR",
        "TRANSACTION_LOG_MAX_MB",
        "LOG_LEVEL",
    ];

    /// The on/off settings.
    const BOOL_ENV: &[&str] = &[
        "ACCESS_LOG",
        "HEALTH_PROBE_ENABLED",
        "DASHBOARD_ENABLED",
        "TRANSACTION_LOGGING",
        "SUMMARY_STATS",
        "ALLOW_UNAUTHENTICATED",
    ];

    /// Parses `args` with exactly `env` set of the variables the command reads (the
    /// others removed), under a lock so that two tests never see each other's variables.
    fn parse_with_env(env: &[(&str, &str)], args: &[&str]) -> Result<Cli, clap::Error> {
        static ENV: Mutex<()> = Mutex::new(());
        let _guard = ENV
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let saved: Vec<_> = SERVE_ENV
            .iter()
            .map(|n| (*n, std::env::var_os(n)))
            .collect();
        for n in SERVE_ENV {
            std::env::remove_var(n);
        }
        for (n, v) in env {
            std::env::set_var(n, v);
        }
        let parsed = Cli::try_parse_from(args);
        for (n, v) in saved {
            match v {
                Some(v) => std::env::set_var(n, v),
                None => std::env::remove_var(n),
            }
        }
        parsed
    }

    fn serve_args(cli: Cli) -> ServeArgs {
        match cli.command {
            None => cli.serve,
            Some(Command::Serve(args)) => *args,
            Some(other) => panic!("not serve: {other:?}"),
        }
    }

    #[test]
    fn one_boolean_dialect() {
        for yes in [
            "true", "TRUE", "True", "1", "yes", "Yes", "on", "ON", " on\n",
        ] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes:?}");
        }
        for no in ["false", "FALSE", "0", "no", "NO", "off", "Off", "\tfalse "] {
            assert_eq!(parse_bool(no), Ok(false), "{no:?}");
        }
        for bad in [
            "",
            " ",
            "2",
            "-1",
            "t",
            "y",
            "n",
            "maybe",
            "enabled",
            "truee",
            "yes please",
        ] {
            assert!(parse_bool(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn serve_help_lists_every_variable() {
        let mut cmd = Cli::command();
        cmd.build();
        let subs: &[&str] = if cfg!(feature = "fake") {
            &["serve", "demo"]
        } else {
            &["serve"]
        };
        for sub in subs {
            let sub = cmd.find_subcommand_mut(sub).unwrap();
            let help = sub.render_long_help().to_string();
            for name in SERVE_ENV {
                // `demo` has no state, workers or request limits of its own.
                let serve_only = [
                    "WORKERS",
                    "MAX_REQUEST_BYTES",
                    "MAX_INFLIGHT_REQUEST_BYTES",
                    "MAX_INFLIGHT_RESPONSE_BYTES",
                    "STATE_DIR",
                    "BODY_TIMEOUT_SECONDS",
                    "STREAM_WRITE_STALL_SECONDS",
                    "SHUTDOWN_GRACE_SECONDS",
                    "ALLOW_UNAUTHENTICATED",
                ];
                // A secret's value is never shown: `[env: ADMIN_TOKEN]`.
                let listed = help.contains(&format!("[env: {name}="))
                    || help.contains(&format!("[env: {name}]"));
                if sub.get_name() == "demo" && serve_only.contains(name) {
                    assert!(!listed, "{name} in demo");
                    continue;
                }
                assert!(listed, "{name} not in:\n{help}");
            }
        }
    }

    #[test]
    fn the_defaults_are_the_library_defaults() {
        let cli = parse_with_env(&[], &["bkvy", "serve"]).unwrap();
        assert_eq!(cli.log_level, "info");
        let args = serve_args(cli);
        assert!(args.log.access_log);
        assert_eq!(args.probes.options(), ProbeOptions::disabled());
        assert_eq!(args.stats.options(), StatsOptions::disabled());
        assert_eq!(args.dashboard.access(), AccessPolicy::default());
        assert_eq!(
            args.dashboard.options(&args.stats),
            DashboardOptions {
                enabled: false,
                log_dir: Some(PathBuf::from("logs")),
            }
        );
    }

    #[test]
    fn settings_from_flags() {
        let args = serve_args(
            parse_with_env(
                &[],
                &[
                    "bkvy",
                    "--dashboard-enabled",
                    "--access-log=off",
                    "--transaction-logging=YES",
                    "--summary-stats=0",
                    "--health-probe-enabled",
                    "--health-probe-interval-seconds",
                    "2.5",
                    "--transaction-log-max-mb",
                    "1.5",
                    "--log-dir",
                    "/var/log/bkvy",
                    "--dashboard-allowed-ips=",
                    "--dashboard-trusted-proxies",
                    "10.0.0.0/8",
                ],
            )
            .unwrap(),
        );
        assert!(!args.log.access_log);
        let probes = args.probes.options();
        assert!(probes.enabled);
        assert_eq!(probes.interval, std::time::Duration::from_millis(2500));
        let stats = args.stats.options();
        assert!(stats.transaction_logging);
        assert!(!stats.summary_stats);
        assert_eq!(
            stats.log_file(),
            Path::new("/var/log/bkvy/transactions.csv")
        );
        assert_eq!(stats.max_csv_bytes, Some(1_572_864));
        let dashboard = args.dashboard.options(&args.stats);
        assert!(dashboard.enabled);
        assert_eq!(dashboard.log_dir, Some(PathBuf::from("/var/log/bkvy")));
        let access = args.dashboard.access();
        assert_eq!(
            access.allowed,
            IpList::default(),
            "an empty list allows nobody"
        );
        assert!(access.trusted_proxies.contains("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn settings_from_the_environment_and_the_flag_wins() {
        let env = [
            ("DASHBOARD_ENABLED", "On"),
            ("ACCESS_LOG", "no"),
            ("SUMMARY_STATS", "1"),
            ("LOG_DIR", "/srv/logs"),
            ("LOG_LEVEL", "warn"),
        ];
        let cli = parse_with_env(&env, &["bkvy", "serve", "--summary-stats=false"]).unwrap();
        assert_eq!(cli.log_level, "warn");
        let args = serve_args(cli);
        assert!(args.dashboard.dashboard_enabled);
        assert!(!args.log.access_log);
        assert!(!args.stats.summary_stats, "the flag wins over the variable");
        assert_eq!(args.stats.log_dir, PathBuf::from("/srv/logs"));
    }

    #[cfg(feature = "fake")]
    #[test]
    fn demo_takes_the_same_settings() {
        let cli = parse_with_env(
            &[("TRANSACTION_LOGGING", "yes")],
            &[
                "bkvy",
                "demo",
                "--dashboard-enabled",
                "--log-level",
                "debug",
            ],
        )
        .unwrap();
        assert_eq!(cli.log_level, "debug");
        let Some(Command::Demo(args)) = cli.command else {
            panic!("not demo")
        };
        assert!(args.dashboard.dashboard_enabled);
        assert!(args.stats.options().transaction_logging);
        assert!(args.log.access_log);
    }

    #[test]
    fn an_invalid_value_is_refused_naming_the_variable() {
        for name in BOOL_ENV {
            for bad in ["maybe", ""] {
                let e = parse_with_env(&[(name, bad)], &["bkvy", "serve"]).unwrap_err();
                assert_eq!(e.kind(), clap::error::ErrorKind::InvalidValue);
                let msg = e.to_string();
                assert!(
                    msg.contains(&format!("environment variable {name}")),
                    "{name}={bad:?}: {msg}"
                );
                assert!(
                    msg.contains("[possible values: true, false, 1, 0, yes, no, on, off]"),
                    "{msg}"
                );
            }
        }
        let e = parse_with_env(&[], &["bkvy", "--dashboard-enabled=2"]).unwrap_err();
        assert!(e.to_string().contains("--dashboard-enabled"), "{e}");
        for (name, bad) in [
            ("HEALTH_PROBE_INTERVAL_SECONDS", "0.5"),
            ("HEALTH_PROBE_INTERVAL_SECONDS", "soon"),
            ("TRANSACTION_LOG_MAX_MB", "-3"),
            ("TRANSACTION_LOG_MAX_MB", "inf"),
            ("DASHBOARD_ALLOWED_IPS", "10.0.0.300"),
            ("DASHBOARD_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("LOG_DIR", ""),
            ("PORT", "http"),
        ] {
            let e = parse_with_env(&[(name, bad)], &["bkvy", "serve"]).unwrap_err();
            assert!(e.to_string().contains(name), "{name}={bad:?}: {e}");
        }
    }

    #[test]
    fn a_non_loopback_address_needs_client_keys_or_an_explicit_flag() {
        let config = || {
            bkvy::config::load_from_strs(
                r#"{"ollama": {"keys": {"local": {"rate_limits": {"m": {"rpm": 1, "rpd": 1}}}},
                    "models": {"m": {"endpoint": "http://127.0.0.1:9/api/chat",
                    "cost_per_1k_tokens": 0, "intelligence_tier": "low"}}}}"#,
                r#"{"scenarios": {}}"#,
                &|_| None,
            )
            .unwrap()
        };
        for host in ["127.0.0.1", "::1", "[::1]", "localhost", "127.0.0.2"] {
            assert!(is_loopback(host), "{host}");
            assert_eq!(
                client_keys_rule(host, &config(), false),
                Ok(false),
                "{host}"
            );
        }
        for host in ["0.0.0.0", "::", "10.0.0.1", "bkvy.internal"] {
            assert!(!is_loopback(host), "{host}");
            assert!(client_keys_rule(host, &config(), false).is_err(), "{host}");
            assert_eq!(client_keys_rule(host, &config(), true), Ok(false), "{host}");
        }
        let with_keys = bkvy::config::with_clients_str(
            Ok(config()),
            r#"{"clients": {"a": {"api_key": "0123456789abcdef0123"}}}"#,
            &|_| None,
        )
        .unwrap();
        // With client keys, every reload must keep them; unless the flag said otherwise.
        assert_eq!(client_keys_rule("0.0.0.0", &with_keys, false), Ok(true));
        assert_eq!(client_keys_rule("0.0.0.0", &with_keys, true), Ok(false));
        assert_eq!(client_keys_rule("127.0.0.1", &with_keys, false), Ok(false));
    }

    /// `demo` skips the deployment rule only for a config whose every model is a fake.
    #[cfg(feature = "fake")]
    #[test]
    fn the_demo_skips_the_deployment_rule_only_when_it_reaches_nothing_but_its_fakes() {
        let config = |endpoint: &str| {
            bkvy::config::load_from_strs(
                &format!(
                    r#"{{"ollama": {{"keys": {{"local": {{"rate_limits": {{"m": {{"rpm": 1, "rpd": 1}}}}}}}},
                    "models": {{"m": {{"endpoint": "{endpoint}",
                    "cost_per_1k_tokens": 0, "intelligence_tier": "low"}}}}}}}}"#
                ),
                r#"{"scenarios": {}}"#,
                &|_| None,
            )
            .unwrap()
        };
        let fake = "http://127.0.0.1:10007";
        assert!(reaches_only(
            &config("http://127.0.0.1:10007/api/chat"),
            fake
        ));
        assert!(!reaches_only(
            &config("http://127.0.0.1:10007@evil.example/api/chat"),
            fake
        ));
        assert!(!reaches_only(
            &config("https://api.openai.com/v1/chat"),
            fake
        ));
    }
}
