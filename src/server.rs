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
use bkvy_actors::persist::{Loaded, StateStore};
use bkvy_actors::{
    start_key_models_with_state, Candidate, KeyModelId, KeyModelSpec, MailboxMeter, ProviderNames,
    RouterActor, RoutingTable, ScenarioStep, SharedClock, StatsActor,
};

use crate::config::Config;
use crate::events::CompletionSinks;
use crate::gateway::Upstreams;
use crate::http::access::AccessPolicy;
use crate::http::dashboard;
use crate::http::{self, AppState, HttpLimits};
use crate::metrics::Metrics;

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
    /// The web dashboard (`DASHBOARD_ENABLED`, history from `LOG_DIR`).
    pub dashboard: DashboardOptions,
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
/// order, plus the routing table around them.
pub fn build_table(
    config: &Config,
    clock: &SharedClock,
    meter: &MailboxMeter,
    store: Option<&StateStore>,
    loaded: &Loaded,
) -> RoutingTable {
    let mut specs = Vec::new();
    let mut meta = Vec::new();
    for p in &config.providers {
        for m in &p.models {
            for k in &p.keys {
                let Some(limits) = k.limits_for(&m.name) else {
                    continue;
                };
                specs.push(KeyModelSpec {
                    id: KeyModelId::new(&p.name, &k.id, &m.name),
                    rpm: limits.rpm,
                    rpd: limits.rpd,
                    rpd_timezone: p.rpd_timezone,
                    max_concurrent: limits.max_concurrent,
                    max_queue: config.settings.max_queue,
                    avg_response_time_ms: m.avg_response_time_ms,
                    circuit: config.settings.circuit,
                });
                meta.push((m.tier, m.cost_per_1k_tokens));
            }
        }
    }
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

/// Starts actors and the HTTP server. Must run inside an actix System.
pub fn start(listener: TcpListener, opts: ServerOptions) -> std::io::Result<Running> {
    // rustls needs one process-wide crypto provider; a second call finds it installed.
    let _ = rustls::crypto::ring::default_provider().install_default();

    let addr = listener.local_addr()?;
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
    let router = RouterActor::new(table.clone(), opts.clock.clone(), router_meter.clone()).start();
    let config = Arc::new(opts.config);
    let connect_timeout = config
        .providers
        .iter()
        .map(|p| p.connect_timeout)
        .max()
        .unwrap_or(Duration::from_secs(10));
    let shutdown_timeout = config.settings.request_timeout.as_secs().max(1);
    let table = Arc::new(table);
    let metrics = Arc::new(Metrics::new(vec![
        ("router", router_meter.clone()),
        ("key_model", key_model_meter.clone()),
    ]));
    let stats = StatsActor::new(opts.stats).start();
    let dash = dashboard::start(&opts.dashboard, opts.clock.clone())?;
    let mut recipients = vec![stats.clone().recipient()];
    if let Some(d) = &dash {
        recipients.push(d.actor.clone().recipient());
    }
    let dashboard_addr = dash.as_ref().map(|d| d.actor.clone());
    let state = web::Data::new(AppState {
        upstreams: Upstreams {
            config,
            router: router.clone(),
            clock: opts.clock.clone(),
            max_response_bytes: MAX_RESPONSE_BYTES,
        },
        router: router.clone(),
        table: table.clone(),
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

    let mut server = HttpServer::new(move || {
        let connector = awc::Connector::new().timeout(connect_timeout).limit(4096);
        let client = awc::Client::builder()
            .connector(connector)
            .disable_redirects()
            .finish();
        App::new()
            .app_data(state.clone())
            .app_data(web::Data::new(client))
            .wrap(actix_web::middleware::Logger::new("%a \"%r\" %s %b %Dms").exclude("/health"))
            .configure(http::configure)
    })
    .shutdown_timeout(shutdown_timeout);
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
        stats,
        dashboard: dashboard_addr,
    })
}
