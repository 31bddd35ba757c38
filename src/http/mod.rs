//! The actix-web layer: the route table and the state handlers share.
//!
//! [`configure`] is the one place routes are listed; the server and the tests both use
//! it. Handlers hold `web::Data<AppState>` (shared by all workers) and the per-worker
//! `awc::Client` (awc clients are `!Send`; one per worker thread is what awc asks for).

pub mod access;
pub mod admin;
pub mod body;
pub mod circuits;
pub mod dashboard;
pub mod error;
pub mod llm;
pub mod openai;
pub mod statistics;
pub mod status;

use std::sync::Arc;

use arc_swap::ArcSwap;

use actix::Addr;
use actix_web::{web, HttpRequest, HttpResponse};
use bkvy_actors::{MailboxMeter, RouterActor, RoutingTable, SharedClock, StatsActor};

use crate::clients::Clients;
use crate::events::CompletionSinks;
use crate::gateway::Upstreams;
use crate::metrics::Metrics;
use access::AccessPolicy;
use error::ApiError;
use llm::Endpoint;

/// Request-size and shape limits.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// Largest accepted request body (`MAX_REQUEST_BYTES`, default 10 MiB).
    pub max_request_bytes: usize,
    /// Most messages in one request.
    pub max_messages: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 10 * 1024 * 1024,
            max_messages: 5_000,
        }
    }
}

/// What a config reload replaces, swapped atomically: a request works on one snapshot.
pub struct Live {
    /// Config, router and clock for execution.
    pub upstreams: Upstreams,
    /// The routing table (status endpoints read the key/model handles from it).
    pub table: Arc<RoutingTable>,
}

/// State shared by every worker.
pub struct AppState {
    /// The current config and routing table.
    pub live: ArcSwap<Live>,
    /// Where the config was read from (reload re-reads it there).
    pub config_dir: Option<std::path::PathBuf>,
    /// Where key/model state is persisted (new pairs of a reload save there too).
    pub state_store: Option<bkvy_actors::persist::StateStore>,
    /// One reload at a time.
    pub reload_lock: tokio::sync::Mutex<()>,
    /// The router.
    pub router: Addr<RouterActor>,
    /// Time source.
    pub clock: SharedClock,
    /// Request limits.
    pub limits: HttpLimits,
    /// Mailbox counters of the router.
    pub router_meter: MailboxMeter,
    /// Mailbox counters of the key/model actors.
    pub key_model_meter: MailboxMeter,
    /// Where completion events go.
    pub sinks: CompletionSinks,
    /// Operator metrics.
    pub metrics: Arc<Metrics>,
    /// Who may reach the dashboard and admin endpoints.
    pub access: AccessPolicy,
    /// The statistics actor (the `/statistics/*` endpoints ask it).
    pub stats: Addr<StatsActor>,
    /// The web dashboard, when `DASHBOARD_ENABLED=true`.
    pub dashboard: Option<dashboard::Dashboard>,
}

impl AppState {
    /// The current config and routing table.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }
}

/// Refuses the request unless its client address is allow-listed.
pub fn require_admin(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    match state.access.check(req) {
        (true, _) => Ok(()),
        (false, ip) => Err(ApiError::Forbidden(format!(
            "IP address {} is not authorized to access this resource",
            ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
        ))),
    }
}

async fn llm_intelligence(
    s: web::Data<AppState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(s, c, p, Endpoint::Intelligence).await
}

async fn llm_scenario(
    s: web::Data<AppState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(s, c, p, Endpoint::Scenario).await
}

async fn llm_direct(
    s: web::Data<AppState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(s, c, p, Endpoint::Direct).await
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        code: "not_found",
        message: format!("no route for {} {}", req.method(), req.path()),
    })
}

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/llm/intelligence", web::post().to(llm_intelligence))
        .route("/llm/scenario", web::post().to(llm_scenario))
        .route("/llm/direct", web::post().to(llm_direct))
        .route(
            "/v1/chat/completions",
            web::post().to(openai::chat_completions),
        )
        .route("/v1/models", web::get().to(openai::models))
        .route("/health", web::get().to(status::health))
        .route("/providers", web::get().to(status::providers))
        .route("/intelligence/{level}", web::get().to(status::intelligence))
        .route("/scenarios", web::get().to(status::scenarios))
        .route("/queue/status", web::get().to(status::queue_status))
        .route("/rates/status", web::get().to(status::rates_status))
        .route("/debug/config", web::get().to(status::debug_config))
        .route("/metrics", web::get().to(status::metrics))
        .route("/admin/reload", web::post().to(admin::reload))
        .route("/circuits/status", web::get().to(circuits::status))
        .route(
            "/circuits/reset/{provider}/{model}/{key_id}",
            web::post().to(circuits::reset),
        )
        .route("/statistics/status", web::get().to(statistics::status))
        .route("/statistics/summary", web::get().to(statistics::summary))
        .route(
            "/statistics/aggregate",
            web::get().to(statistics::aggregate),
        )
        .route("/statistics/daily", web::get().to(statistics::daily_all))
        .route(
            "/statistics/daily/{date}",
            web::get().to(statistics::daily_one),
        )
        .service(dashboard::scope())
        .default_service(web::to(not_found));
}
