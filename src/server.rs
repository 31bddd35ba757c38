//! Starting bkvy: actors once (outside the worker factory, so there is exactly one actor
//! per key/model however many workers run), then the HTTP server on a given listener.
//!
//! Taking an already-bound `TcpListener` lets tests bind `127.0.0.1:0` and the binary bind
//! `HOST:PORT` through the same code.
//!
//! [`ServerOptions`] is plain data: the binary fills it from its command line, where every
//! setting is a flag that can also be given as an environment variable (see
//! docs/CONFIGURATION.md); nothing here reads the environment.

use std::future::Future;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext};
use actix_web::{web, App, HttpServer};
use arc_swap::ArcSwap;
use bkvy_actors::persist::{Loaded, StateStore};
use bkvy_actors::{MailboxMeter, RouterActor, RoutingTable, SharedClock, StatsActor};
use futures::future::Either;

use crate::clients::Clients;
use crate::config::Config;
use crate::events::CompletionSinks;
use crate::gateway::Upstreams;
use crate::http::access::AccessPolicy;
use crate::http::dashboard;
use crate::http::{self, HttpLimits, WebState};
use crate::metrics::Metrics;
use crate::providers::Redactor;
use crate::state::{AppState, Live};
use crate::table::build_table;

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
    /// One `info` line per HTTP request (`ACCESS_LOG`, on by default). The lines cost
    /// little (see `http::access_log`), but a deployment that logs requests in front of
    /// bkvy may not want them twice.
    pub access_log: bool,
    /// Client connections: keep-alive, listen backlog, header and shutdown timeouts
    /// (`ConnectionOptions::default()` unless configured).
    pub connections: ConnectionOptions,
    /// Every config, reloaded ones included, must have client keys: bkvy listens on a
    /// non-loopback address and was not started with `--allow-unauthenticated`.
    pub require_client_keys: bool,
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
    /// Connections each worker holds open at once (`MAX_CONNECTIONS`, default 25,000,
    /// actix's own); the server as a whole holds at most workers × this. A worker at the
    /// limit stops accepting: further connections wait in the listen backlog (and past it
    /// are refused by the kernel) until one closes. They are never answered with a 503,
    /// because a connection not accepted cannot be answered.
    pub max_connections: usize,
}

impl ConnectionOptions {
    /// `KEEP_ALIVE_SECONDS` default.
    pub const DEFAULT_KEEP_ALIVE_SECONDS: u64 = 75;
    /// `LISTEN_BACKLOG` default.
    pub const DEFAULT_LISTEN_BACKLOG: u32 = 4096;
    /// `MAX_CONNECTIONS` default (per worker).
    pub const DEFAULT_MAX_CONNECTIONS: usize = 25_000;
}

impl Default for ConnectionOptions {
    fn default() -> Self {
        Self {
            keep_alive: Duration::from_secs(Self::DEFAULT_KEEP_ALIVE_SECONDS),
            listen_backlog: Self::DEFAULT_LISTEN_BACKLOG,
            client_request_timeout: Duration::from_secs(30),
            client_disconnect_timeout: Duration::from_secs(2),
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
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

/// A started gateway: the HTTP server has its listener and the actors run. Nothing
/// happens to requests until [`Running::run`] (or the server future) is polled.
pub struct Running {
    /// The server future.
    server: actix_web::dev::Server,
    /// Where it listens.
    pub addr: SocketAddr,
    /// The state every worker shares (current config and table, sinks, actors).
    pub state: web::Data<AppState>,
    /// The dashboard actor, when the dashboard is on.
    pub dashboard: Option<Addr<bkvy_actors::DashboardActor>>,
}

/// What the shutdown sequence managed to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Every key/model's final state reached the disk (`None`: state is not persisted).
    pub state_saved: Option<bool>,
    /// The statistics logs were flushed.
    pub stats_flushed: bool,
}

/// Longest wait for the statistics logs to reach the disk at shutdown.
const STATS_FLUSH_TIMEOUT: Duration = Duration::from_secs(15);

impl Running {
    /// `http://host:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The HTTP server's handle (pause, resume, or stop it without the shutdown sequence).
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until `shutdown` resolves (or the server stops by itself), then runs the one
    /// shutdown sequence: every key/model refuses new requests and answers its queued ones
    /// with 503 at once and the server stops accepting; requests whose upstream call is
    /// under way run on for the grace period; then the access log, every key/model's
    /// final state and the statistics are written.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> std::io::Result<Stopped> {
        let Self { server, state, .. } = self;
        let handle = server.handle();
        let mut server = std::pin::pin!(server);
        let shutdown = std::pin::pin!(shutdown);
        let served = match futures::future::select(server.as_mut(), shutdown).await {
            Either::Left((served, _)) => served,
            Either::Right(((), _)) => {
                log::info!("shutting down: draining queues, letting in-flight requests finish");
                for c in &state.live().table.candidates {
                    c.handle.drain();
                }
                let (served, ()) = futures::join!(server.as_mut(), handle.stop(true));
                served
            }
        };
        http::access_log::flush();
        let state_saved = match &state.state_store {
            Some(store) => {
                let saved = persist_all(&state.live().table, store, state.ledger.clone()).await;
                if saved {
                    log::info!("state saved to {}", store.dir().display());
                } else {
                    log::error!(
                        "state could not be saved completely to {}",
                        store.dir().display()
                    );
                }
                Some(saved)
            }
            None => None,
        };
        state.sinks.flush();
        let flush = state.stats.send(bkvy_actors::stats::Flush);
        let stats_flushed = match actix_web::rt::time::timeout(STATS_FLUSH_TIMEOUT, flush).await {
            Ok(Ok(Ok(()))) => true,
            Ok(Ok(Err(e))) => {
                log::error!("statistics not fully written at shutdown: {e}");
                false
            }
            Ok(Err(e)) => {
                log::error!("statistics actor unreachable at shutdown: {e}");
                false
            }
            Err(_) => {
                log::error!("statistics flush timed out at shutdown");
                false
            }
        };
        served.map(|()| Stopped {
            state_saved,
            stats_flushed,
        })
    }
}

/// Starts bkvy on `listener` and serves until `shutdown` resolves, then shuts down as
/// [`Running::run`] says. Must run inside an actix System.
pub async fn run(
    listener: TcpListener,
    opts: ServerOptions,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<Stopped> {
    start(listener, opts)?.run(shutdown).await
}

/// Writes every key/model's final state and waits for it to reach the disk.
async fn persist_all(
    table: &RoutingTable,
    store: &StateStore,
    ledger: Arc<crate::client_ledger::SharedLedger>,
) -> bool {
    let snapshots = futures::future::join_all(
        table
            .candidates
            .iter()
            .map(|c| c.handle.snapshot(Duration::from_secs(2))),
    )
    .await;
    let store = store.clone();
    let written = web::block(move || {
        ledger.save(&store, true);
        for snap in snapshots.into_iter().flatten() {
            store.save_blocking(snap);
        }
        store.flush(Duration::from_secs(10))
    })
    .await;
    matches!(written, Ok(true))
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
    let table = Arc::new(build_table(
        &opts.config,
        &opts.clock,
        &key_model_meter,
        store.as_ref(),
        &loaded,
    ));
    let config = Arc::new(opts.config);
    // The live snapshot needs the router's address and the router reads its table from
    // the live snapshot: both are made inside the router's constructor.
    let mut live = None;
    let router = RouterActor::create(|ctx| {
        let swap = Arc::new(ArcSwap::from_pointee(Live {
            upstreams: Upstreams {
                redactor: Arc::new(Redactor::for_config(&config)),
                config,
                router: ctx.address(),
                clock: opts.clock.clone(),
                max_response_bytes: MAX_RESPONSE_BYTES,
                response_budget: crate::budget::ByteBudget::new(
                    opts.limits.max_inflight_response_bytes,
                ),
                last_failures: Default::default(),
            },
            table,
        }));
        let reader = swap.clone();
        live = Some(swap);
        RouterActor::new(
            Box::new(move || reader.load().table.clone()),
            router_meter.clone(),
        )
    });
    let live = live.ok_or_else(|| std::io::Error::other("the router did not start"))?;
    let shutdown_timeout = opts.shutdown_grace.as_secs().max(1);
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
    let ledger = crate::client_ledger::SharedLedger::load(store.as_ref())?;
    if let Some(store) = &store {
        let (ledger, store) = (ledger.clone(), store.clone());
        actix_web::rt::spawn(async move {
            let mut every = actix_web::rt::time::interval(crate::client_ledger::SAVE_EVERY);
            loop {
                every.tick().await;
                ledger.save(&store, false);
            }
        });
    }
    let state = web::Data::new(AppState {
        live,
        config_dir: opts.config_dir,
        state_store: store,
        reload_lock: tokio::sync::Mutex::new(()),
        router,
        clock: opts.clock,
        router_meter,
        key_model_meter,
        sinks: CompletionSinks::new(metrics.clone(), recipients),
        metrics,
        stats,
        ledger,
        require_client_keys: opts.require_client_keys,
    });
    let web_state = web::Data::new(WebState {
        limits: opts.limits,
        body_budget: crate::budget::ByteBudget::new(opts.limits.max_inflight_request_bytes),
        access: opts.access,
        dashboard: dash,
    });

    let access_log = opts.access_log;
    let connections = opts.connections;
    crate::probes::start(state.clone().into_inner(), opts.probes);
    let shared = state.clone();
    let mut server = HttpServer::new(move || {
        let clients = Clients::for_config(&shared.live().upstreams.config);
        let log = http::access_log::AccessLog::from_log_level();
        let access_log = access_log && log.is_enabled();
        if access_log {
            http::access_log::start_flush_timer();
        }
        App::new()
            .app_data(shared.clone())
            .app_data(web_state.clone())
            .app_data(web::Data::new(clients))
            .wrap(actix_web::middleware::Condition::new(access_log, log))
            .configure(http::configure)
    })
    .shutdown_timeout(shutdown_timeout)
    .keep_alive(connections.keep_alive)
    .client_request_timeout(connections.client_request_timeout)
    .client_disconnect_timeout(connections.client_disconnect_timeout)
    .max_connections(connections.max_connections.max(1))
    // Signals are the caller's (the future given to `run`), so that queued requests are
    // answered at once instead of holding the shutdown open.
    .disable_signals();
    if opts.workers > 0 {
        server = server.workers(opts.workers);
    }
    let server = server.listen(listener)?;
    Ok(Running {
        server: server.run(),
        addr,
        state,
        dashboard: dashboard_addr,
    })
}
