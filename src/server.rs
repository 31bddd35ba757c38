//! Starting bkvy: actors once (outside the worker factory, so there is exactly one actor
//! per key/model however many workers run), then the HTTP server on a given listener.
//!
//! Taking an already-bound `TcpListener` lets tests bind `127.0.0.1:0` and the binary bind
//! `HOST:PORT` through the same code.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
use bkvy_actors::persist::{Loaded, StateStore};
use bkvy_actors::{
    start_key_models_with_state, Candidate, KeyModelId, KeyModelSpec, MailboxMeter, ProviderNames,
    RouterActor, RoutingTable, ScenarioStep, SharedClock, StatsActor,
};

use crate::clients::Clients;
use crate::config::Config;
use crate::events::CompletionSinks;
use crate::gateway::Upstreams;
use crate::http::access::AccessPolicy;
use crate::http::dashboard;
use crate::http::{self, AppState, HttpLimits, Live};
use crate::metrics::Metrics;
use crate::types::Tier;

pub use crate::http::dashboard::DashboardOptions;
pub use bkvy_actors::StatsOptions;

/// Largest upstream response body accepted.
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;

/// What `start` needs.
pub struct ServerOptions {
    /// The validated config.
    pub config: Config,
    /// Time source (a manual clock in tests).
    pub clock: SharedClock,
    /// Request limits.
    pub limits: HttpLimits,
    /// HTTP worker threads (0 = actix's default, one per core).
    pub workers: usize,
    /// Who may reach the dashboard and admin endpoints.
    pub access: AccessPolicy,
    /// Where rate, pause and circuit state is kept across restarts (`STATE_DIR`);
    /// `None` keeps it in memory only.
    pub state_dir: Option<PathBuf>,
    /// Statistics logs (`TRANSACTION_LOGGING`, `SUMMARY_STATS`, `LOG_DIR`).
    pub stats: StatsOptions,
    /// How long in-flight requests may run on after a shutdown signal
    /// (`SHUTDOWN_GRACE_SECONDS`, default 30).
    pub shutdown_grace: Duration,
    /// Where the config was read from, for reloads (`None`: reload is refused).
    pub config_dir: Option<PathBuf>,
    /// Background health probes (`HEALTH_PROBE_ENABLED`, off by default).
    pub probes: crate::probes::ProbeOptions,
    /// The web dashboard (`DASHBOARD_ENABLED`, history from `LOG_DIR`).
    pub dashboard: DashboardOptions,
    /// One `info` line per HTTP request (`ACCESS_LOG`, on by default).
    pub access_log: bool,
    /// Client connections: keep-alive, listen backlog, header and shutdown timeouts
    /// (`ConnectionOptions::default()` unless configured).
    pub connections: ConnectionOptions,
}

/// How the HTTP server treats client connections.
///
/// actix-web's own defaults suit a server that clients do not pool: a kept-alive
/// connection is closed after 5 s idle, which is shorter than the idle time of most
/// client pools (Python's httpx/aiohttp, Go's `http.Transport`, Node's agents keep
/// connections 15–90 s), so a pooled client's next request meets a connection the server
/// has just closed ("server disconnected"). And the listener's backlog is whatever its
/// creator gave it (128 for `std::net::TcpListener::bind`), which a burst of new
/// connections overflows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionOptions {
    /// How long an idle kept-alive connection stays open (`KEEP_ALIVE_SECONDS`, default
    /// 75, longer than the usual client pool's idle timeout so that the client closes
    /// first). Zero switches keep-alive off.
    pub keep_alive: Duration,
    /// Pending connections the kernel queues before bkvy accepts them (`LISTEN_BACKLOG`,
    /// default 4096). Linux caps it at `net.core.somaxconn`.
    pub listen_backlog: u32,
    /// How long a new connection may take to send its first request's head (actix's
    /// default is 5 s, which cuts off slow clients on poor networks and connections
    /// opened ahead of use). The body has its own limit, `HttpLimits::body_timeout`.
    pub client_request_timeout: Duration,
    /// How long closing a connection may take to flush what is left of the answer to a
    /// slow reader (actix's default is 1 s). Kept short: it is also how long a client that
    /// stalled (a body that never came, answered 408) holds its connection after the answer.
    pub client_disconnect_timeout: Duration,
}

impl ConnectionOptions {
    /// `KEEP_ALIVE_SECONDS` default.
    pub const DEFAULT_KEEP_ALIVE_SECONDS: u64 = 75;
    /// `LISTEN_BACKLOG` default.
    pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(Self::DEFAULT_KEEP_ALIVE_SECONDS),
            listen_backlog: Self::DEFAULT_LISTEN_BACKLOG,
            client_request_timeout: Duration::from_secs(30),
            client_disconnect_timeout: Duration::from_secs(2),
        }
    }
}

/// Sets the backlog of an already listening socket (calling `listen(2)` again, which on
/// Linux and the BSDs updates the queue length; Windows keeps the first value). The
/// kernel caps it: on Linux at `net.core.somaxconn` (4096 since 5.4, 128 before).
pub fn apply_listen_backlog(listener: &TcpListener, backlog: u32) -> std::io::Result<()> {
    let backlog = i32::try_from(backlog.max(1)).unwrap_or(i32::MAX);
    socket2::SockRef::from(listener).listen(backlog)
}

/// `ACCESS_LOG`: `false` (or `0`, `off`, `no`) switches the per-request access log off;
/// anything else, or unset, keeps it. The lines cost little (see `http::access_log`), but a
/// deployment that logs requests in front of bkvy may not want them twice.
pub fn access_log_from_env() -> bool {
    std::env::var("ACCESS_LOG").map_or(true, |v| {
        !matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "false" | "0" | "off" | "no"
        )
    })
}

/// A running gateway.
pub struct Running {
    /// The server future; await it to run until shutdown.
    pub server: actix_web::dev::Server,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The router.
    pub router: Addr<RouterActor>,
    /// The routing table with every key/model handle.
    pub table: Arc<RoutingTable>,
    /// The state store, when state is persisted.
    pub state: Option<StateStore>,
    /// The state every worker shares (current config and table, for reload and shutdown).
    pub state_handle: web::Data<AppState>,
    /// The statistics actor (send it `Flush` before exiting).
    pub stats: Addr<StatsActor>,
    /// The dashboard actor, when the dashboard is on.
    pub dashboard: Option<Addr<bkvy_actors::DashboardActor>>,
}

impl Running {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Starts a graceful shutdown: every key/model refuses new requests and answers its
/// queued ones with 503 at once, and the server stops accepting; requests whose upstream
/// call is under way run on for the grace period. Await the server future afterwards.
pub async fn begin_shutdown(table: &RoutingTable, server: &actix_web::dev::ServerHandle) {
    for c in &table.candidates {
        c.handle.drain();
    }
    server.stop(true).await;
}

/// Writes every key/model's final state and waits for it to reach the disk (shutdown).
pub async fn persist_all(table: &RoutingTable, store: &StateStore) -> bool {
    let snapshots = futures::future::join_all(
        table
            .candidates
            .iter()
            .map(|c| c.handle.snapshot(Duration::from_secs(2))),
    )
    .await;
    let store = store.clone();
    let written = web::block(move || {
        for snap in snapshots.into_iter().flatten() {
            store.save_blocking(snap);
        }
        store.flush(Duration::from_secs(10))
    })
    .await;
    matches!(written, Ok(true))
}

/// One key/model spec per (provider, model, key) where the key lists the model, in file
/// order (the tie-breaker), with the model's tier and blended price.
pub fn pair_specs(config: &Config) -> Vec<(KeyModelSpec, Tier, f64)> {
    let mut out = Vec::new();
    for p in &config.providers {
        for m in &p.models {
            for k in &p.keys {
                let Some(limits) = k.limits_for(&m.name) else {
                    continue;
                };
                let spec = KeyModelSpec {
                    id: KeyModelId::new(&p.name, &k.id, &m.name),
                    rpm: limits.rpm,
                    rpd: limits.rpd,
                    rpd_timezone: p.rpd_timezone,
                    max_concurrent: limits.max_concurrent,
                    max_queue: config.settings.max_queue,
                    avg_response_time_ms: m.avg_response_time_ms,
                    circuit: config.settings.circuit,
                    rate_margin_ms: config.settings.rate_limit_margin_ms,
                };
                out.push((spec, m.tier, m.cost_per_1k_tokens));
            }
        }
    }
    out
}

/// The routing table of `config` around already-started key/model handles.
pub fn table_of(config: &Config, candidates: Vec<Arc<Candidate>>) -> RoutingTable {
    let providers = config
        .providers
        .iter()
        .map(|p| ProviderNames {
            name: p.name.clone(),
            models: p.models.iter().map(|m| m.name.clone()).collect(),
            keys: p.keys.iter().map(|k| k.id.clone()).collect(),
        })
        .collect();
    let scenarios = config
        .scenarios
        .iter()
        .map(|(name, steps)| {
            let steps = steps
                .iter()
                .map(|s| ScenarioStep {
                    provider: s.provider.clone(),
                    model: s.model.clone(),
                    priority: s.priority,
                })
                .collect();
            (name.clone(), steps)
        })
        .collect();
    RoutingTable {
        candidates,
        providers,
        scenarios,
    }
}

/// Starts one key/model actor per pair of `config` and builds the routing table.
pub fn build_table(
    config: &Config,
    clock: &SharedClock,
    meter: &MailboxMeter,
    store: Option<&StateStore>,
    loaded: &Loaded,
) -> RoutingTable {
    let (specs, meta): (Vec<_>, Vec<_>) = pair_specs(config)
        .into_iter()
        .map(|(spec, tier, cost)| (spec, (tier, cost)))
        .unzip();
    let handles = start_key_models_with_state(specs, clock, meter, store, loaded);
    let candidates = handles
        .into_iter()
        .zip(meta)
        .map(|(handle, (tier, cost_per_1k))| {
            Arc::new(Candidate {
                handle,
                tier,
                cost_per_1k,
            })
        })
        .collect();
    table_of(config, candidates)
}

/// Starts actors and the HTTP server. Must run inside an actix System.
pub fn start(listener: TcpListener, opts: ServerOptions) -> std::io::Result<Running> {
    // rustls needs one process-wide crypto provider; a second call finds it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let addr = listener.local_addr()?;
    apply_listen_backlog(&listener, opts.connections.listen_backlog)?;
    let key_model_meter = MailboxMeter::new();
    let router_meter = MailboxMeter::new();
    let (store, loaded) = match &opts.state_dir {
        Some(dir) => {
            let (store, loaded) = StateStore::open(dir)?;
            log::info!(
                "state: {} key/model snapshot(s) restored from {}",
                loaded.snapshots.len(),
                dir.display()
            );
            (Some(store), loaded)
        }
        None => (None, Loaded::default()),
    };
    let table = build_table(
        &opts.config,
        &opts.clock,
        &key_model_meter,
        store.as_ref(),
        &loaded,
    );
    let router = RouterActor::new(table.clone(), router_meter.clone()).start();
    let config = Arc::new(opts.config);
    let shutdown_timeout = opts.shutdown_grace.as_secs().max(1);
    let table = Arc::new(table);
    let stats_meter = MailboxMeter::new();
    let dashboard_meter = MailboxMeter::new();
    let mut mailboxes = vec![
        ("router", router_meter.clone()),
        ("key_model", key_model_meter.clone()),
        ("stats", stats_meter.clone()),
    ];
    let stats = StatsActor::new(opts.stats)
        .with_meter(stats_meter.clone())
        .start();
    let dash = dashboard::start(&opts.dashboard, opts.clock.clone(), dashboard_meter.clone())?;
    let mut recipients = vec![(stats.clone().recipient(), stats_meter)];
    if let Some(d) = &dash {
        recipients.push((d.actor.clone().recipient(), dashboard_meter.clone()));
        mailboxes.push(("dashboard", dashboard_meter));
    }
    let metrics = Arc::new(Metrics::new(mailboxes));
    let dashboard_addr = dash.as_ref().map(|d| d.actor.clone());
    let state = web::Data::new(AppState {
        live: ArcSwap::from_pointee(Live {
            upstreams: Upstreams {
                config,
                router: router.clone(),
                clock: opts.clock.clone(),
                max_response_bytes: MAX_RESPONSE_BYTES,
            },
            table: table.clone(),
        }),
        config_dir: opts.config_dir,
        state_store: store.clone(),
        reload_lock: tokio::sync::Mutex::new(()),
        router: router.clone(),
        clock: opts.clock,
        limits: opts.limits,
        router_meter,
        key_model_meter,
        sinks: CompletionSinks::new(metrics.clone(), recipients),
        metrics,
        access: opts.access,
        stats: stats.clone(),
        dashboard: dash,
    });

    let state_handle = state.clone();
    let access_log = opts.access_log;
    let connections = opts.connections;
    crate::probes::start(state.clone(), opts.probes);
    let mut server = HttpServer::new(move || {
        let clients = Clients::for_config(&state.live().upstreams.config);
        let log = http::access_log::AccessLog::from_log_level();
        let access_log = access_log && log.is_enabled();
        if access_log {
            http::access_log::start_flush_timer();
        }
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(clients))
            .wrap(actix_web::middleware::Condition::new(access_log, log))
            .configure(http::configure)
    })
    .shutdown_timeout(shutdown_timeout)
    .keep_alive(connections.keep_alive)
    .client_request_timeout(connections.client_request_timeout)
    .client_disconnect_timeout(connections.client_disconnect_timeout)
    // Signals are handled by the caller (see `begin_shutdown`), so that queued requests
    // are answered at once instead of holding the shutdown open.
    .disable_signals();
    if opts.workers > 0 {
        server = server.workers(opts.workers);
    }
    let server = server.listen(listener)?;
    Ok(Running {
        server: server.run(),
        addr,
        router,
        table,
        state: store,
        state_handle,
        stats,
        dashboard: dashboard_addr,
    })
}
