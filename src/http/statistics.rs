//! `/statistics/*`: the usage numbers kept by the `StatsActor`, in the original's shapes.
//!
//! Every answer comes from the actor's memory (never a file read in a handler), asked with
//! a timeout; a log that is off answers `{"enabled": false}`. See docs/STATISTICS.md.

use std::time::Duration;

use actix::Message;
use actix_web::{web, HttpResponse};
use bkvy_actors::stats::daily::round6;
use bkvy_actors::stats::{
    DayReply, DayStats, GetAggregate, GetAllDaily, GetDaily, GetStatsStatus, GetSummary, StatsActor,
};
use chrono::NaiveDate;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::AppState;

/// How long an endpoint waits for the statistics actor.
const ACTOR_TIMEOUT: Duration = Duration::from_secs(2);

async fn ask<M>(state: &AppState, msg: M) -> Result<M::Result, ApiError>
where
    M: Message + Send + 'static,
    M::Result: Send,
    StatsActor: actix::Handler<M>,
{
    state.sinks.flush();
    match state.stats.send(msg).timeout(ACTOR_TIMEOUT).await {
        Ok(r) => Ok(r),
        Err(actix::MailboxError::Timeout) => Err(ApiError::Unavailable {
            code: "statistics_unavailable",
            message: "the statistics actor did not answer in time".into(),
            retry_after_secs: Some(1),
        }),
        Err(actix::MailboxError::Closed) => {
            Err(ApiError::Internal("statistics actor stopped".into()))
        }
    }
}

fn disabled() -> HttpResponse {
    HttpResponse::Ok().json(json!({"enabled": false}))
}

fn path_text(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// `GET /statistics/status`.
pub async fn status(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let st = ask(&state, GetStatsStatus).await?;
    let o = &st.options;
    Ok(HttpResponse::Ok().json(json!({
        "transaction_logging": {
            "enabled": o.transaction_logging,
            "log_file": path_text(&o.log_file()),
            "log_directory": path_text(&o.log_dir),
            "summary_ready": st.summary_seeded,
            "dropped_rows": st.dropped_rows,
        },
        "summary_stats": {
            "enabled": o.summary_stats,
            "stats_file": path_text(&o.stats_file()),
            "log_directory": path_text(&o.log_dir),
            "loaded": st.daily_loaded,
        },
    })))
}

/// `GET /statistics/summary`: totals of the transaction log.
pub async fn summary(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(s) = ask(&state, GetSummary).await? else {
        return Ok(disabled());
    };
    let st = ask(&state, GetStatsStatus).await?;
    Ok(HttpResponse::Ok().json(json!({
        "enabled": true,
        "total_requests": s.total_requests,
        "successful_requests": s.successful_requests,
        "success_rate": s.success_rate(),
        "routing_methods": s.routing_methods,
        "providers_used": s.providers_used,
        "intelligence_levels": s.intelligence_levels,
        "errors": s.errors,
        "total_cost_estimate": round6(s.total_cost),
        "log_file": path_text(&st.options.log_file()),
        "malformed_rows_skipped": s.malformed_rows_skipped,
    })))
}

/// `GET /statistics/aggregate`: every tracked day added up.
pub async fn aggregate(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(a) = ask(&state, GetAggregate).await? else {
        return Ok(disabled());
    };
    let st = ask(&state, GetStatsStatus).await?;
    let t = &a.totals;
    Ok(HttpResponse::Ok().json(json!({
        "enabled": true,
        "total_requests": t.total_requests,
        "successful_requests": t.successful,
        "success_rate": t.success_rate(),
        "routing_methods": t.by_routing_method,
        "providers_used": t.by_provider,
        "intelligence_levels": t.by_intelligence,
        "errors": t.errors,
        "total_cost_estimate": round6(t.total_cost),
        "avg_response_time_ms": t.avg_response_time_ms,
        "days_tracked": a.days_tracked,
        "stats_file": path_text(&st.options.stats_file()),
    })))
}

fn day_json(d: &DayStats) -> Map<String, Value> {
    let v = json!({
        "total_requests": d.total_requests,
        "successful": d.successful,
        "success_rate": d.success_rate(),
        "by_routing_method": d.by_routing_method,
        "by_intelligence": d.by_intelligence,
        "by_provider": d.by_provider,
        "errors": d.errors,
        "total_cost": round6(d.total_cost),
        "avg_response_time_ms": d.avg_response_time_ms,
        "total_time_ms": d.total_time_ms,
        "response_count": d.response_count,
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// `GET /statistics/daily`: every day, newest first.
pub async fn daily_all(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let Some(all) = ask(&state, GetAllDaily).await? else {
        return Ok(disabled());
    };
    let days: Map<String, Value> = all
        .days
        .iter()
        .rev()
        .map(|(date, d)| (date.to_string(), Value::Object(day_json(d))))
        .collect();
    Ok(HttpResponse::Ok().json(days))
}

/// `GET /statistics/daily/{date}`.
pub async fn daily_one(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let text = path.into_inner();
    let date = NaiveDate::parse_from_str(&text, "%Y-%m-%d")
        .ok()
        .filter(|_| text.len() == 10)
        .ok_or_else(|| ApiError::InvalidDate(text.chars().take(64).collect()))?;
    match ask(&state, GetDaily { date }).await? {
        DayReply::Disabled => Ok(disabled()),
        DayReply::NoData => Err(ApiError::NotFound {
            code: "no_data_for_date",
            message: format!("no statistics for {date}"),
        }),
        DayReply::Day(d) => {
            let mut body = Map::new();
            body.insert("date".into(), json!(date.to_string()));
            body.extend(day_json(&d));
            Ok(HttpResponse::Ok().json(body))
        }
    }
}
