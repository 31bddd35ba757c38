//! The actix-web layer: the route table and the state handlers share.
//!
//! [`configure`] is the one place routes are listed; the server and the tests both use
//! it. Handlers hold `web::Data<AppState>` (shared by all workers, defined below the web
//! layer in [`crate::state`]), `web::Data<WebState>` when they need the request limits,
//! the admin allow-list or the dashboard, and the per-worker `awc::Client` (awc clients
//! are `!Send`; one per worker thread is what awc asks for).

pub mod access;
pub mod access_log;
pub mod admin;
pub mod body;
pub mod chat;
pub mod circuits;
pub mod client_auth;
pub mod dashboard;
pub mod error;
pub mod llm;
pub mod openai;
pub mod statistics;
pub mod status;

/// The names of bkvy's own response headers, parsed once instead of on every answer.
pub mod names {
    use actix_web::http::header::HeaderName;

    /// `x-bkvy-request-id`
    pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-bkvy-request-id");
    /// `x-bkvy-provider`
    pub const PROVIDER: HeaderName = HeaderName::from_static("x-bkvy-provider");
    /// `x-bkvy-model`
    pub const MODEL: HeaderName = HeaderName::from_static("x-bkvy-model");
    /// `x-bkvy-decision`
    pub const DECISION: HeaderName = HeaderName::from_static("x-bkvy-decision");
    /// `x-bkvy-cost-usd`
    pub const COST_USD: HeaderName = HeaderName::from_static("x-bkvy-cost-usd");
}

use actix_web::{web, HttpRequest, HttpResponse};

use crate::clients::Clients;
use crate::state::AppState;
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
    /// Time a request body may take to arrive (`BODY_TIMEOUT_SECONDS`, default 30):
    /// a client that announces a body and stalls gets a 408 instead of holding on.
    pub body_timeout: std::time::Duration,
    /// How long a streamed answer waits for a client that reads nothing
    /// (`STREAM_WRITE_STALL_SECONDS`, default 30): then the stream is ended, its key/model
    /// slot released and the request recorded as a client disconnect.
    pub stream_write_stall: std::time::Duration,
    /// Bytes all request bodies being read may hold between them
    /// (`MAX_INFLIGHT_REQUEST_BYTES`, default 256 MiB); a body that would take more is
    /// refused with 503 and `Retry-After` in its door's error shape.
    pub max_inflight_request_bytes: usize,
    /// Bytes all plain upstream answers being read, decoded and parsed may hold between
    /// them (`MAX_INFLIGHT_RESPONSE_BYTES`, default 256 MiB); an answer that would take more
    /// is not read, and the attempt fails over as `gateway_overloaded` (not counted
    /// against the pair).
    pub max_inflight_response_bytes: usize,
}

impl HttpLimits {
    /// `STREAM_WRITE_STALL_SECONDS` default.
    pub const DEFAULT_STREAM_WRITE_STALL_SECONDS: u64 = 30;
    /// `MAX_INFLIGHT_REQUEST_BYTES` default: 256 MiB.
    pub const DEFAULT_MAX_INFLIGHT_REQUEST_BYTES: usize = 256 * 1024 * 1024;
    /// `MAX_INFLIGHT_RESPONSE_BYTES` default: 256 MiB.
    pub const DEFAULT_MAX_INFLIGHT_RESPONSE_BYTES: usize = 256 * 1024 * 1024;
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            max_request_bytes: 10 * 1024 * 1024,
            max_messages: 5_000,
            body_timeout: std::time::Duration::from_secs(30),
            stream_write_stall: std::time::Duration::from_secs(
                Self::DEFAULT_STREAM_WRITE_STALL_SECONDS,
            ),
            max_inflight_request_bytes: Self::DEFAULT_MAX_INFLIGHT_REQUEST_BYTES,
            max_inflight_response_bytes: Self::DEFAULT_MAX_INFLIGHT_RESPONSE_BYTES,
        }
    }
}

/// What only the web layer needs, beside the shared [`AppState`]: handlers that check
/// request limits, the admin allow-list or the dashboard take `web::Data<WebState>`.
pub struct WebState {
    /// Request limits.
    pub limits: HttpLimits,
    /// What the request bodies being read hold between them
    /// (`limits.max_inflight_request_bytes`).
    pub body_budget: crate::budget::ByteBudget,
    /// Who may reach the dashboard and admin endpoints.
    pub access: AccessPolicy,
    /// The web dashboard, when `DASHBOARD_ENABLED=true`.
    pub dashboard: Option<dashboard::Dashboard>,
}

/// Refuses the request unless its client address is allow-listed and its `Host` and
/// `Origin` headers show no other site's page sent it (DNS rebinding, cross-site
/// requests: see [`access`]).
///
/// When `ADMIN_TOKEN` is set, the request must also carry it (`Authorization: Bearer`).
pub fn require_admin(req: &HttpRequest, web: &WebState) -> Result<(), ApiError> {
    if let (false, ip) = web.access.check(req) {
        return Err(not_authorized(ip));
    }
    web.access.check_site(req).map_err(ApiError::Forbidden)?;
    if web.access.admin_token.is_some() && !web.access.has_admin_token(req) {
        return Err(ApiError::Unauthorized(
            "this endpoint needs the admin token: \"Authorization: Bearer <ADMIN_TOKEN>\"".into(),
        ));
    }
    Ok(())
}

fn not_authorized(ip: Option<std::net::IpAddr>) -> ApiError {
    ApiError::Forbidden(format!(
        "IP address {} is not authorized to access this resource",
        ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
    ))
}

/// The rule of the dashboard and of the status endpoints that reveal configuration or
/// spend: an allow-listed address or the admin token, and `Host`/`Origin` headers of no
/// other site.
pub fn require_viewer(req: &HttpRequest, web: &WebState) -> Result<(), ApiError> {
    web.access.check_site(req).map_err(ApiError::Forbidden)?;
    match web.access.check(req) {
        (true, _) => Ok(()),
        _ if web.access.has_admin_token(req) => Ok(()),
        (false, ip) => Err(not_authorized(ip)),
    }
}

/// Middleware of the status endpoints: [`require_viewer`] unless `STATUS_ACCESS=open`.
async fn status_access(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody>,
) -> Result<actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>, actix_web::Error> {
    // Without the web state there is no rule to apply: refuse rather than serve openly.
    let Some(web) = req.app_data::<web::Data<WebState>>() else {
        return Err(ApiError::Internal("the access rules are not configured".into()).into());
    };
    if !web.access.status_open {
        require_viewer(req.request(), web)?;
    }
    next.call(req).await
}

/// A GET-only status resource behind [`status_access`].
fn status_get<F, Args>(
    path: &str,
    handler: F,
) -> actix_web::Resource<
    impl actix_web::dev::ServiceFactory<
        actix_web::dev::ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse<impl actix_web::body::MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
>
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    get(path, handler).wrap(actix_web::middleware::from_fn(status_access))
}

async fn llm_intelligence(
    r: HttpRequest,
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(r, s, w, c, p, Endpoint::Intelligence).await
}

async fn llm_scenario(
    r: HttpRequest,
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(r, s, w, c, p, Endpoint::Scenario).await
}

async fn llm_direct(
    r: HttpRequest,
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    c: web::Data<Clients>,
    p: web::Payload,
) -> HttpResponse {
    llm::handle(r, s, w, c, p, Endpoint::Direct).await
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound {
        code: "not_found",
        message: format!("no route for {} {}", req.method(), req.path()),
    })
}

/// The route table.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(post("/llm/intelligence", llm_intelligence))
        .service(post("/llm/scenario", llm_scenario))
        .service(post("/llm/direct", llm_direct))
        .service(post("/v1/chat/completions", openai::chat_completions))
        .service(get("/v1/models", openai::models))
        .service(get("/health", status::health))
        .service(status_get("/providers", status::providers))
        .service(get("/intelligence/{level}", status::intelligence))
        .service(get("/scenarios", status::scenarios))
        .service(status_get("/queue/status", status::queue_status))
        .service(status_get("/clients/status", status::clients_status))
        .service(status_get("/rates/status", status::rates_status))
        .service(status_get("/debug/config", status::debug_config))
        .service(status_get("/metrics", status::metrics))
        .service(post("/admin/reload", admin::reload))
        .service(status_get("/circuits/status", circuits::status))
        .service(post(
            "/circuits/reset/{provider}/{model}/{key_id}",
            circuits::reset,
        ))
        .service(status_get("/statistics/status", statistics::status))
        .service(status_get("/statistics/summary", statistics::summary))
        .service(status_get("/statistics/aggregate", statistics::aggregate))
        .service(status_get("/statistics/daily", statistics::daily_all))
        .service(status_get(
            "/statistics/daily/{date}",
            statistics::daily_one,
        ))
        .service(dashboard::scope())
        .default_service(web::to(not_found));
}

/// A POST-only resource; other methods get a JSON 405.
fn post<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(method_not_allowed))
}

/// A GET-only resource; other methods get a JSON 405.
fn get<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler))
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed(format!(
        "{} is not allowed on {}",
        req.method(),
        req.path()
    )))
}

#[cfg(test)]
mod tests {
    use actix_web::{test, App, HttpResponse};

    /// A status endpoint mounted without the web state has no access rule to apply: it
    /// refuses rather than serving anyone.
    #[actix_web::test]
    async fn a_status_endpoint_without_its_access_rules_refuses() {
        let app = test::init_service(App::new().service(super::status_get("/x", || async {
            HttpResponse::Ok().finish()
        })))
        .await;
        let res =
            test::try_call_service(&app, test::TestRequest::get().uri("/x").to_request()).await;
        let status = match res {
            Ok(r) => r.status(),
            Err(e) => e.as_response_error().status_code(),
        };
        assert_eq!(status.as_u16(), 500);
    }
}
