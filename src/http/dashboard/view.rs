//! What the templates get: the report's numbers formatted for display, chart geometry and
//! the live key/model state. Formatting happens here so the templates stay simple and
//! every value reaches them as plain data for Tera to escape.

use bkvy_actors::dashboard::report::{iso, Report, TxView};
use bkvy_actors::dashboard::TimeRange;
use bkvy_actors::{CapacityStatus, KeyModelId, Millis};
use serde_json::{json, Value};

use super::charts;

/// The preset ranges of the range selector, in hours.
pub const PRESETS: [(i64, &str); 10] = [
    (1, "1 hour"),
    (6, "6 hours"),
    (24, "24 hours"),
    (72, "3 days"),
    (168, "7 days"),
    (336, "14 days"),
    (720, "30 days"),
    (2160, "90 days"),
    (4320, "180 days"),
    (8760, "365 days"),
];

fn ms_text(v: Option<i64>) -> String {
    v.map_or_else(|| "—".to_owned(), |ms| format!("{ms} ms"))
}

fn cost_text(c: f64) -> String {
    format!("${c:.6}")
}

fn opt(s: &Option<String>) -> &str {
    s.as_deref().unwrap_or("")
}

fn tx_row(t: &TxView) -> Value {
    let x = &t.tx;
    json!({
        "at": t.timestamp,
        "request_id": x.request_id,
        "client_id": x.client_id,
        "method": x.routing_method,
        "level": opt(&x.intelligence_level),
        "max_wait": x.max_wait_seconds.map(|w| format!("{w}s")).unwrap_or_default(),
        "provider": opt(&x.provider),
        "model": opt(&x.model),
        "api_key": opt(&x.api_key),
        "success": x.success,
        "time": format!("{} ms", x.total_time_ms),
        "cost": x.cost.map(|c| format!("{c:.6}")).unwrap_or_default(),
        "tokens": match (x.input_tokens, x.output_tokens) {
            (None, None) => String::new(),
            (i, o) => format!("{}/{}", i.unwrap_or(0), o.unwrap_or(0)),
        },
        "error_type": opt(&x.error_type),
        "error_message": opt(&x.error_message),
    })
}

/// Live queue, rate-limit and circuit state of one key/model, as JSON.
pub fn live_entry(id: &KeyModelId, s: &CapacityStatus) -> Value {
    json!({
        "provider": id.provider,
        "api_key_id": id.key_id,
        "model": id.model,
        "circuit_state": s.circuit_state,
        "queue_length": s.queue_length,
        "max_queue": s.max_queue,
        "in_flight": s.in_flight,
        "max_concurrent": s.max_concurrent,
        "requests_this_minute": s.requests_this_minute,
        "rpm_limit": s.rpm_limit,
        "requests_today": s.requests_today,
        "rpd_limit": s.rpd_limit,
        "rate_limited": s.rate_limit_wait_ms > 0,
        "rate_limit_wait_seconds": s.rate_limit_wait_ms.max(0) as f64 / 1000.0,
        "estimated_queue_wait_seconds": s.estimated_queue_wait_ms.max(0) as f64 / 1000.0,
        "limited_by": s.blocker,
        "disabled": s.disabled,
    })
}

/// A short label for the range (`Last 24 hours`, or the custom bounds).
fn range_label(r: &TimeRange, preset: Option<i64>) -> String {
    match preset {
        Some(1) => "Last hour".into(),
        Some(h) if h % 24 == 0 && h >= 48 => format!("Last {} days", h / 24),
        Some(h) => format!("Last {h} hours"),
        None => format!("{} – {}", iso(r.start_ms), iso(r.end_ms)),
    }
}

/// The template context of the content area.
pub fn context(
    report: &Report,
    range: &TimeRange,
    preset_hours: Option<i64>,
    live: &[Value],
    now: Millis,
) -> Value {
    let o = &report.overview;
    let d = &report.distributions;
    json!({
        "range": {
            "label": range_label(range, preset_hours),
            "start": iso(range.start_ms),
            "end": iso(range.end_ms),
            "custom": preset_hours.is_none(),
        },
        "presets": PRESETS.iter().map(|(h, label)| json!({
            "hours": h, "label": label, "selected": preset_hours == Some(*h),
        })).collect::<Vec<_>>(),
        "has_data": report.data_coverage.has_data,
        "in_range": o.total_requests > 0,
        "coverage": report.data_coverage,
        "cards": {
            "total": o.total_requests,
            "successful": o.successful_requests,
            "failed": o.failed_requests,
            "success_rate": format!("{:.2}%", o.success_rate),
            "total_cost": cost_text(o.total_cost),
            "tokens": o.total_tokens,
            "avg": ms_text(o.avg_response_time_ms),
            "p95": ms_text(o.p95_response_time_ms),
            "p99": ms_text(o.p99_response_time_ms),
            "compliance": o.wait_time_compliance_rate
                .map_or_else(|| "—".to_owned(), |r| format!("{r:.2}%")),
            "met": o.wait_time_met,
            "exceeded": o.wait_time_exceeded,
        },
        "charts": {
            "series": charts::columns(&report.time_series),
            "step_seconds": report.time_series_step_seconds,
            "providers": charts::donut(&d.providers),
            "models": charts::donut(&d.models),
            "methods": charts::donut(&d.routing_methods),
            "clients": charts::donut(&d.clients),
            "levels": charts::count_rows(&d.intelligence_levels),
            "wait": charts::wait_rows(&report.wait_time_analysis),
        },
        "recent": report.recent_transactions.iter().map(tx_row).collect::<Vec<_>>(),
        "error_types": report.errors.types,
        "error_details": report.errors.details.iter().map(tx_row).collect::<Vec<_>>(),
        "api_keys": report.api_keys.iter().map(|k| json!({
            "api_key": k.api_key,
            "requests": k.requests,
            "successful": k.successful,
            "failed": k.failed,
            "success_rate": format!("{:.2}%", k.success_rate),
            "good": k.success_rate >= 90.0,
            "total_cost": cost_text(k.total_cost),
            "total_tokens": k.total_tokens,
            "avg": format!("{} ms", k.avg_response_time_ms),
            "models": k.models_used.iter().map(|(m, n)| format!("{m} ({n})")).collect::<Vec<_>>().join(", "),
        })).collect::<Vec<_>>(),
        "live": live,
        "last_updated": iso(now),
    })
}
