//! Monitoring endpoints: `/health`, `/providers`, `/intelligence/{level}`, `/scenarios`,
//! `/queue/status`, `/rates/status`, `/debug/config`. Every number is read live from the
//! key/model actors; nothing here ever contains a secret.

use std::collections::HashMap;
use std::time::Duration;

use actix_web::{web, HttpResponse};
use bkvy_actors::{CapacityStatus, KeyModelId, Millis, Ping, Tier};
use futures::future::join_all;
use serde_json::{json, Map, Value};

use super::error::ApiError;
use super::AppState;

const STATUS_TIMEOUT: Duration = Duration::from_secs(2);

/// ISO-8601 UTC text of a Unix-ms instant.
pub fn iso(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn secs(ms: Millis) -> f64 {
    (ms.max(0) as f64) / 1000.0
}

/// Live status of every key/model actor that answers in time.
pub async fn statuses(state: &AppState) -> HashMap<KeyModelId, CapacityStatus> {
    let table = &state.live().table;
    let answers = join_all(
        table
            .candidates
            .iter()
            .map(|c| c.handle.status(STATUS_TIMEOUT)),
    )
    .await;
    table
        .candidates
        .iter()
        .zip(answers)
        .filter_map(|(c, s)| s.map(|s| (c.id().clone(), s)))
        .collect()
}

/// `GET /health`: the router and every key/model actor must answer.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    state.router_meter.sent();
    let router_ok = state
        .router
        .send(Ping)
        .timeout(STATUS_TIMEOUT)
        .await
        .is_ok();
    let all = statuses(&state).await;
    let expected = state.live().table.candidates.len();
    let healthy = router_ok && all.len() == expected;
    let body = json!({
        "status": if healthy { "healthy" } else { "unhealthy" },
        "timestamp": iso(state.clock.now_ms()),
        "version": env!("CARGO_PKG_VERSION"),
        "mode": "actors",
        "actors": {
            "router": router_ok,
            "key_model_actors": expected,
            "key_model_actors_answering": all.len(),
        },
    });
    if healthy {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

fn key_status(s: &CapacityStatus) -> Value {
    json!({
        "currently_limited": s.rate_limit_wait_ms > 0 || s.disabled.is_some(),
        "wait_time_seconds": secs(s.rate_limit_wait_ms),
        "queue_wait_seconds": secs(s.estimated_queue_wait_ms - s.rate_limit_wait_ms),
        "queue_length": s.queue_length,
        "in_flight": s.in_flight,
        "disabled": s.disabled,
    })
}

/// `GET /providers`.
pub async fn providers(state: web::Data<AppState>) -> HttpResponse {
    let all = statuses(&state).await;
    let mut out = Map::new();
    for p in &state.live().upstreams.config.providers {
        let mut models = Map::new();
        for m in &p.models {
            let mut keys = Map::new();
            for k in &p.keys {
                let Some(limits) = k.limits_for(&m.name) else {
                    continue;
                };
                let mut entry = json!({
                    "rate_limits": {"rpm": limits.rpm, "rpd": limits.rpd, "max_concurrent": limits.max_concurrent},
                });
                if let (Some(s), Some(obj)) = (
                    all.get(&KeyModelId::new(&p.name, &k.id, &m.name)),
                    entry.as_object_mut(),
                ) {
                    if let Some(live) = key_status(s).as_object() {
                        obj.extend(live.clone());
                    }
                }
                keys.insert(k.id.clone(), entry);
            }
            models.insert(
                m.name.clone(),
                json!({
                    "intelligence_tier": m.tier,
                    "cost_per_1k_tokens": m.cost_per_1k_tokens,
                    "cost_per_1k_input_tokens": m.cost_per_1k_input,
                    "cost_per_1k_output_tokens": m.cost_per_1k_output,
                    "avg_response_time_ms": m.avg_response_time_ms,
                    "supports_thinking": m.supports_thinking,
                    "keys": keys,
                }),
            );
        }
        out.insert(
            p.name.clone(),
            json!({"type": p.kind.as_str(), "models": models}),
        );
    }
    HttpResponse::Ok().json(json!({ "providers": out }))
}

/// `GET /intelligence/{level}`.
pub async fn intelligence(
    state: web::Data<AppState>,
    level: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let tier = Tier::parse(&level)
        .ok_or_else(|| ApiError::Invalid("level must be one of low, medium, high".into()))?;
    let all = statuses(&state).await;
    let mut models = Vec::new();
    for p in &state.live().upstreams.config.providers {
        for m in p.models.iter().filter(|m| m.tier == tier) {
            let keys: Vec<Value> = p
                .keys
                .iter()
                .filter(|k| k.limits_for(&m.name).is_some())
                .filter_map(|k| {
                    let s = all.get(&KeyModelId::new(&p.name, &k.id, &m.name))?;
                    let queue = (s.estimated_queue_wait_ms - s.rate_limit_wait_ms).max(0);
                    Some(json!({
                        "api_key_id": k.id,
                        "rate_limited": s.rate_limit_wait_ms > 0,
                        "rate_limit_wait_seconds": secs(s.rate_limit_wait_ms),
                        "queue_wait_seconds": secs(queue),
                        "total_wait_seconds": secs(s.estimated_queue_wait_ms),
                        "disabled": s.disabled,
                    }))
                })
                .collect();
            models.push(json!({
                "provider": p.name,
                "model": m.name,
                "intelligence_tier": m.tier,
                "cost_per_1k_tokens": m.cost_per_1k_tokens,
                "avg_response_time_ms": m.avg_response_time_ms,
                "keys_status": keys,
            }));
        }
    }
    Ok(HttpResponse::Ok().json(json!({"intelligence_level": tier, "models": models})))
}

/// `GET /scenarios`: the scenarios as configured.
pub async fn scenarios(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({ "scenarios": state.live().upstreams.config.scenarios_raw }))
}

/// `GET /queue/status`: live queue lengths and waits per key/model.
pub async fn queue_status(state: web::Data<AppState>) -> HttpResponse {
    let now = state.clock.now_ms();
    let mut out = Map::new();
    for (id, s) in all_statuses(&state).await {
        out.insert(
            id.to_string(),
            json!({
                "provider": id.provider,
                "api_key_id": id.key_id,
                "model": id.model,
                "current_queue_length": s.queue_length,
                "max_queue": s.max_queue,
                "in_flight": s.in_flight,
                "max_concurrent": s.max_concurrent,
                "oldest_wait_ms": s.oldest_wait_ms,
                "estimated_queue_wait_seconds": secs(s.estimated_queue_wait_ms),
                "service_time_estimate_ms": s.service_ms,
                "last_updated": iso(now),
            }),
        );
    }
    HttpResponse::Ok().json(json!({ "queue_states": out }))
}

/// `GET /rates/status`: live window counts and resets per key/model.
pub async fn rates_status(state: web::Data<AppState>) -> HttpResponse {
    let mut out = Map::new();
    for (id, s) in all_statuses(&state).await {
        out.insert(
            id.to_string(),
            json!({
                "provider": id.provider,
                "api_key_id": id.key_id,
                "model": id.model,
                "requests_this_minute": s.requests_this_minute,
                "requests_today": s.requests_today,
                "minute_reset_time": s.minute_reset_at.map(iso),
                "day_reset_time": iso(s.day_reset_at),
                "currently_rate_limited": s.rate_limit_wait_ms > 0,
                "limited_by": s.blocker,
                "rate_limit_wait_seconds": secs(s.rate_limit_wait_ms),
                "paused_until": s.paused_until.map(iso),
                "rpm_limit": s.rpm_limit,
                "rpd_limit": s.rpd_limit,
                "last_request_time": s.last_request_at.map(iso),
                "rate_limited_responses": s.rate_limited_total,
                "disabled": s.disabled,
                "circuit_state": s.circuit_state,
            }),
        );
    }
    HttpResponse::Ok().json(json!({ "rate_limit_states": out }))
}

/// [`statuses`], sorted by key/model id.
pub async fn all_statuses(state: &AppState) -> Vec<(KeyModelId, CapacityStatus)> {
    sorted(statuses(state).await)
}

/// What every client of `clients.json` has used and spent, in file order (empty without
/// client keys).
pub fn client_views(state: &AppState) -> Vec<crate::client_ledger::ClientView> {
    let live = state.live();
    let Some(keys) = &live.upstreams.config.clients else {
        return Vec::new();
    };
    let now = state.clock.now_ms();
    state.ledger.with(false, |l| {
        keys.clients.iter().map(|c| l.view(c, now)).collect()
    })
}

/// `GET /clients/status`: each client's spend, budgets left and request counts, with its
/// key's fingerprint (never the key).
pub async fn clients_status(state: web::Data<AppState>) -> HttpResponse {
    let live = state.live();
    let fingerprints: HashMap<&str, String> = live
        .upstreams
        .config
        .clients
        .iter()
        .flat_map(|k| k.clients.iter())
        .map(|c| (c.name.as_str(), c.fingerprint()))
        .collect();
    let clients: Vec<Value> = client_views(&state)
        .into_iter()
        .map(|v| {
            let mut o = json!(v);
            o["key_fingerprint"] = json!(fingerprints.get(v.client.as_str()));
            o
        })
        .collect();
    HttpResponse::Ok().json(json!({
        "client_keys": live.upstreams.config.clients.is_some(),
        "clients": clients,
    }))
}

fn sorted(map: HashMap<KeyModelId, CapacityStatus>) -> Vec<(KeyModelId, CapacityStatus)> {
    let mut v: Vec<_> = map.into_iter().collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// `GET /debug/config`: the routable configuration without secrets.
pub async fn debug_config(state: web::Data<AppState>) -> HttpResponse {
    let cfg = &state.live().upstreams.config;
    let mut providers = Map::new();
    let mut mappings: HashMap<&str, Vec<Value>> = HashMap::new();
    for p in &cfg.providers {
        let mut models = Map::new();
        for m in &p.models {
            models.insert(
                m.name.clone(),
                json!({
                    "intelligence_tier": m.tier,
                    "cost_per_1k_tokens": m.cost_per_1k_tokens,
                    "avg_response_time_ms": m.avg_response_time_ms,
                }),
            );
            mappings
                .entry(m.tier.as_str())
                .or_default()
                .push(json!([p.name, m.name]));
        }
        let keys: Vec<&str> = p.keys.iter().map(|k| k.id.as_str()).collect();
        providers.insert(
            p.name.clone(),
            json!({"type": p.kind.as_str(), "models": models, "keys": keys}),
        );
    }
    HttpResponse::Ok().json(json!({
        "providers": providers,
        "intelligence_mappings": {
            "low": mappings.remove("low").unwrap_or_default(),
            "medium": mappings.remove("medium").unwrap_or_default(),
            "high": mappings.remove("high").unwrap_or_default(),
        },
        "scenarios": cfg.scenarios_raw,
        "settings": {
            "request_timeout_seconds": cfg.settings.request_timeout.as_secs_f64(),
            "max_attempts_per_candidate": cfg.settings.max_attempts_per_candidate,
            "max_queue": cfg.settings.max_queue,
        },
    }))
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let live = sorted(statuses(&state).await);
    state.metrics.set_key_models(state.clock.now_ms(), &live);
    state.metrics.set_events_dropped(state.sinks.dropped());
    state.metrics.set_clients(&client_views(&state));
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(format!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(text))
}
