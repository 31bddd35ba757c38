//! Circuit breaker endpoints: `GET /circuits/status` and
//! `POST /circuits/reset/{provider}/{model}/{key_id}` (allow-listed addresses only).
//!
//! Both read the key/model actors named in the routing table; unknown names are 404 and
//! never create anything.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::{json, Map};

use super::error::ApiError;
use super::status::{all_statuses, iso};
use super::{AppState, WebState};

/// `GET /circuits/status`.
pub async fn status(state: web::Data<AppState>) -> HttpResponse {
    let mut circuits = Map::new();
    let (mut open, mut half_open, mut closed) = (0, 0, 0);
    for (id, s) in all_statuses(&state).await {
        match s.circuit_state {
            "open" | "auth_open" => open += 1,
            "half_open" => half_open += 1,
            _ => closed += 1,
        }
        circuits.insert(
            format!("{}_{}_{}", id.provider, id.model, id.key_id),
            json!({
                "provider": id.provider,
                "model": id.model,
                "api_key_id": id.key_id,
                "state": s.circuit_state,
                "next_test_time": s.circuit_open_until.map(iso),
                "consecutive_failures": s.consecutive_failures,
                "failures_in_window": s.window_failures,
                "last_failure_type": s.last_failure_kind,
                "open_count": s.circuit_opened_total,
                "disabled": s.disabled,
                "paused_until": s.paused_until.map(iso),
                "health_probe": s.probe.as_ref().map(|p| json!({
                    "ok": p.ok,
                    "checked_at": iso(p.at),
                    "error": p.error,
                })),
            }),
        );
    }
    HttpResponse::Ok().json(json!({
        "enabled": true,
        "total_circuits": open + half_open + closed,
        "open_circuits": open,
        "half_open_circuits": half_open,
        "closed_circuits": closed,
        "circuits": circuits,
    }))
}

/// `POST /circuits/reset/{provider}/{model}/{key_id}`.
pub async fn reset(
    req: HttpRequest,
    state: web::Data<AppState>,
    web: web::Data<WebState>,
    path: web::Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    super::require_admin(&req, &web)?;
    let (provider, model, key_id) = path.into_inner();
    let live = state.live();
    let found = live.table.candidates.iter().find(|c| {
        let id = c.id();
        id.provider == provider && id.model == model && id.key_id == key_id
    });
    let Some(candidate) = found else {
        return Err(ApiError::NotFound {
            code: "circuit_not_found",
            message: format!("no key/model {provider}/{model}/{key_id}"),
        });
    };
    candidate.handle.reset();
    Ok(HttpResponse::Ok().json(json!({
        "success": true,
        "message": format!("Circuit reset for {provider}/{model}/{key_id}"),
    })))
}
