//! The web dashboard: `GET /dashboard` (HTML), `/dashboard/fragment` (the content area,
//! for refreshing without a reload), `/dashboard/data` (JSON), `/dashboard/health`, and
//! the same-origin assets `/dashboard/app.js` and `/dashboard/app.css`.
//!
//! Numbers come from the `DashboardActor` (never a file read in a handler), asked with a
//! timeout; live queue and rate state from the key/model actors. HTML is rendered by Tera
//! with autoescaping from templates embedded in the binary, so it runs from any directory.
//! Every path under `/dashboard` passes one middleware: 404 when the dashboard is off, the
//! IP allow-list ([`AccessPolicy`](super::access::AccessPolicy)), and strict security
//! headers (CSP without inline script or style, `nosniff`, no referrer).

pub mod charts;
mod options;
pub mod view;

pub use options::DashboardOptions;

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::{from_fn, Next};
use actix_web::{web, HttpRequest, HttpResponse, ResponseError};
use bkvy_actors::dashboard::{range, DashboardStatus, Report, TimeRange};
use bkvy_actors::{DashboardActor, GetDashboard, GetDashboardStatus, SharedClock};
use serde::Deserialize;
use serde_json::{json, Value};
use tera::Tera;

use super::error::ApiError;
use super::{require_viewer, status, AppState, WebState};

/// How long a handler waits for the dashboard actor.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

/// The Content-Security-Policy of every dashboard response.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

const TEMPLATES: [(&str, &str); 3] = [
    (
        "macros.html.tera",
        include_str!("../../templates/macros.html.tera"),
    ),
    (
        "content.html.tera",
        include_str!("../../templates/content.html.tera"),
    ),
    (
        "dashboard.html.tera",
        include_str!("../../templates/dashboard.html.tera"),
    ),
];
const APP_JS: &str = include_str!("../../templates/app.js");
const APP_CSS: &str = include_str!("../../templates/app.css");

/// A running dashboard: its actor and the templates, parsed once.
#[derive(Clone)]
pub struct Dashboard {
    /// The aggregates.
    pub actor: Addr<DashboardActor>,
    /// The templates.
    pub tera: Arc<Tera>,
}

/// The templates, with autoescaping on for `.html.tera`.
pub fn templates() -> Result<Tera, tera::Error> {
    let mut tera = Tera::default();
    tera.autoescape_on(vec![".html.tera", ".html"]);
    tera.add_raw_templates(TEMPLATES.to_vec())?;
    Ok(tera)
}

/// Starts the actor and parses the templates, when enabled. Must run inside an actix System.
/// Starts the dashboard (when enabled); its actor counts its messages in `meter`.
pub fn start(
    opts: &DashboardOptions,
    clock: SharedClock,
    meter: bkvy_actors::MailboxMeter,
) -> std::io::Result<Option<Dashboard>> {
    use actix::Actor;
    if !opts.enabled {
        return Ok(None);
    }
    let tera =
        templates().map_err(|e| std::io::Error::other(format!("dashboard templates: {e:?}")))?;
    let actor = DashboardActor::new(clock, opts.log_dir.clone())
        .with_meter(meter)
        .start();
    Ok(Some(Dashboard {
        actor,
        tera: Arc::new(tera),
    }))
}

/// Why a dashboard request failed: a bad range parameter (400, naming the problem) or
/// any of the project's errors.
#[derive(Debug, thiserror::Error)]
pub enum DashError {
    /// A query parameter is invalid.
    #[error("{0}")]
    BadParam(String),
    /// Anything else.
    #[error(transparent)]
    Api(#[from] ApiError),
}

impl ResponseError for DashError {
    fn status_code(&self) -> actix_web::http::StatusCode {
        match self {
            Self::BadParam(_) => actix_web::http::StatusCode::BAD_REQUEST,
            Self::Api(e) => e.status_code(),
        }
    }

    fn error_response(&self) -> HttpResponse {
        match self {
            Self::BadParam(m) => HttpResponse::BadRequest().json(json!({
                "success": false,
                "error": m,
                "error_code": "invalid_parameter",
            })),
            Self::Api(e) => e.error_response(),
        }
    }
}

fn add_security_headers(h: &mut header::HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// Off → 404; not allow-listed → 403; then the handler; security headers on every answer.
async fn guard(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let refusal = match req.app_data::<web::Data<WebState>>() {
        None => Some(ApiError::Internal("no application state".into())),
        Some(web) if web.dashboard.is_none() => Some(ApiError::NotFound {
            code: "not_found",
            message: format!("no route for {} {}", req.method(), req.path()),
        }),
        Some(web) => require_viewer(req.request(), web).err(),
    };
    let mut res = match refusal {
        Some(e) => req.into_response(e.error_response()).map_into_right_body(),
        None => next.call(req).await?.map_into_left_body(),
    };
    add_security_headers(res.headers_mut());
    Ok(res)
}

/// The range parameters of `/dashboard`, `/dashboard/fragment` and `/dashboard/data`.
#[derive(Debug, Default, Deserialize)]
pub struct RangeParams {
    hours: Option<String>,
    start_date: Option<String>,
    end_date: Option<String>,
}

impl RangeParams {
    fn resolve(&self, now: i64) -> Result<(TimeRange, Option<i64>), DashError> {
        let r = range::resolve(
            self.hours.as_deref(),
            self.start_date.as_deref(),
            self.end_date.as_deref(),
            now,
        )
        .map_err(DashError::BadParam)?;
        let custom = self
            .start_date
            .as_deref()
            .is_some_and(|s| !s.trim().is_empty());
        let preset = (!custom).then(|| ((r.end_ms - r.start_ms) / 3_600_000).max(1));
        Ok((r, preset))
    }
}

fn dashboard(web: &WebState) -> Result<&Dashboard, DashError> {
    web.dashboard
        .as_ref()
        .ok_or_else(|| ApiError::Internal("dashboard not started".into()).into())
}

fn actor_error(e: actix::MailboxError) -> DashError {
    match e {
        actix::MailboxError::Timeout => ApiError::Unavailable {
            code: "dashboard_unavailable",
            message: "the dashboard actor did not answer in time".into(),
            retry_after_secs: Some(1),
        },
        actix::MailboxError::Closed => ApiError::Internal("dashboard actor stopped".into()),
    }
    .into()
}

async fn report(state: &AppState, web: &WebState, range: TimeRange) -> Result<Report, DashError> {
    state.sinks.flush();
    dashboard(web)?
        .actor
        .send(GetDashboard { range })
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(actor_error)
}

async fn live(state: &AppState) -> Vec<Value> {
    status::all_statuses(state)
        .await
        .iter()
        .map(|(id, s)| view::live_entry(id, s))
        .collect()
}

async fn render(
    state: &AppState,
    web: &WebState,
    q: &RangeParams,
    template: &str,
) -> Result<HttpResponse, DashError> {
    let now = state.clock.now_ms();
    let (range, preset) = q.resolve(now)?;
    let (rep, live) = futures::join!(report(state, web, range), live(state));
    let mut ctx = view::context(&rep?, &range, preset, &live, now);
    ctx["client_spend"] = json!(client_spend(state));
    let ctx = tera::Context::from_value(ctx)
        .map_err(|e| ApiError::Internal(format!("dashboard context: {e}")))?;
    let html = dashboard(web)?
        .tera
        .render(template, &ctx)
        .map_err(|e| ApiError::Internal(format!("dashboard render: {e:?}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// The clients of `clients.json` with their spend and budgets, formatted for the page.
fn client_spend(state: &AppState) -> Vec<Value> {
    let usd = |v: f64| format!("${v:.4}");
    let left = |r: Option<f64>| r.map_or_else(|| "no budget".to_owned(), usd);
    status::client_views(state)
        .into_iter()
        .map(|v| {
            json!({
                "client": v.client,
                "today": usd(v.spent_today_usd),
                "month": usd(v.spent_this_month_usd),
                "total": usd(v.spent_total_usd),
                "daily_left": left(v.daily_remaining_usd),
                "monthly_left": left(v.monthly_remaining_usd),
                "requests_minute": v.requests_last_minute,
                "requests_today": v.requests_today,
            })
        })
        .collect()
}

async fn page(
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    q: web::Query<RangeParams>,
) -> Result<HttpResponse, DashError> {
    render(&s, &w, &q, "dashboard.html.tera").await
}

async fn fragment(
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    q: web::Query<RangeParams>,
) -> Result<HttpResponse, DashError> {
    render(&s, &w, &q, "content.html.tera").await
}

async fn data_inner(
    state: &AppState,
    web: &WebState,
    q: &RangeParams,
) -> Result<HttpResponse, DashError> {
    let now = state.clock.now_ms();
    let (range, _) = q.resolve(now)?;
    let (rep, live) = futures::join!(report(state, web, range), live(state));
    let mut body = serde_json::to_value(rep?)
        .map_err(|e| ApiError::Internal(format!("dashboard data: {e}")))?;
    if let Some(obj) = body.as_object_mut() {
        obj.insert("live".into(), Value::Array(live));
        obj.insert("client_spend".into(), json!(status::client_views(state)));
        obj.insert(
            "last_updated".into(),
            json!(bkvy_actors::dashboard::report::iso(now)),
        );
    }
    Ok(HttpResponse::Ok().json(body))
}

async fn data(
    s: web::Data<AppState>,
    w: web::Data<WebState>,
    q: web::Query<RangeParams>,
) -> Result<HttpResponse, DashError> {
    data_inner(&s, &w, &q).await
}

async fn health(s: web::Data<AppState>, w: web::Data<WebState>) -> Result<HttpResponse, DashError> {
    s.sinks.flush();
    let st: DashboardStatus = dashboard(&w)?
        .actor
        .send(GetDashboardStatus)
        .timeout(ACTOR_TIMEOUT)
        .await
        .map_err(actor_error)?;
    Ok(HttpResponse::Ok().json(json!({
        "status": "healthy",
        "history_loaded": st.history_loaded,
        "actor": st,
        "timestamp": bkvy_actors::dashboard::report::iso(s.clock.now_ms()),
    })))
}

async fn app_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .body(APP_JS)
}

async fn app_css() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .body(APP_CSS)
}

async fn not_found(req: HttpRequest) -> HttpResponse {
    ApiError::NotFound {
        code: "not_found",
        message: format!("no route for {} {}", req.method(), req.path()),
    }
    .error_response()
}

/// The `/dashboard` scope.
pub fn scope() -> actix_web::Scope<
    impl actix_web::dev::ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    let query = web::QueryConfig::default()
        .error_handler(|e, _| DashError::BadParam(format!("invalid query string: {e}")).into());
    web::scope("/dashboard")
        .app_data(query)
        .wrap(from_fn(guard))
        .route("", web::get().to(page))
        .route("/", web::get().to(page))
        .route("/data", web::get().to(data))
        .route("/fragment", web::get().to(fragment))
        .route("/health", web::get().to(health))
        .route("/app.js", web::get().to(app_js))
        .route("/app.css", web::get().to(app_css))
        .default_service(web::to(not_found))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_parse() {
        assert!(templates().is_ok());
    }
}
