//! Model-list endpoints, which the gateway can use as free health probes.
//!
//! OpenAI and Anthropic share `GET /v1/models`; the fake tells them apart the way the
//! credentials differ: an `x-api-key` header means Anthropic. Auth is checked as for
//! chat calls, and errors take the shape of the API's own `FLAVOR`. The lists are
//! fixed; they have the model `""` for fault scripts.

use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::{json, Value};

use super::exchange::{self, Flavor, Incoming, Reject, Success};
use super::state::Shared;
use super::{anthropic, gemini, ollama, openai, FakeApi};

const OPENAI: &[&str] = &["gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "o4-mini"];
const ANTHROPIC: &[&str] = &[
    "claude-3-5-haiku-latest",
    "claude-sonnet-4-0",
    "claude-opus-4-1",
];
const GEMINI: &[&str] = &["gemini-2.0-flash", "gemini-2.5-flash", "gemini-2.5-pro"];
const OLLAMA: &[&str] = &["llama3.2:latest", "qwen3:8b"];

/// `GET /v1/models` (OpenAI, or Anthropic when `x-api-key` is sent).
pub(crate) async fn v1_models(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (flavor, check): (Flavor, exchange::Check) = if req.headers().contains_key("x-api-key") {
        (anthropic::FLAVOR, anthropic_list)
    } else {
        (openai::FLAVOR, openai_list)
    };
    exchange::serve(
        &shared,
        &req,
        &body,
        FakeApi::ModelList,
        flavor,
        None,
        check,
    )
    .await
}

/// `GET /v1beta/models`.
pub(crate) async fn gemini_models(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    exchange::serve(
        &shared,
        &req,
        &body,
        FakeApi::ModelList,
        gemini::FLAVOR,
        None,
        gemini_list,
    )
    .await
}

/// `GET /api/tags`.
pub(crate) async fn ollama_tags(
    req: HttpRequest,
    body: Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    exchange::serve(
        &shared,
        &req,
        &body,
        FakeApi::ModelList,
        ollama::FLAVOR,
        None,
        ollama_list,
    )
    .await
}

fn both(list: impl Fn(&[&str]) -> Value, names: &[&str]) -> Success {
    Success::json(list(names), list(&[]))
}

fn openai_list(i: &Incoming<'_>) -> Result<Success, Reject> {
    openai::check_auth(i.req)?;
    Ok(both(
        |names| {
            let data: Vec<Value> = names
                .iter()
                .map(|id| json!({"id": id, "object": "model", "created": 1_700_000_000, "owned_by": "system"}))
                .collect();
            json!({"object": "list", "data": data})
        },
        OPENAI,
    ))
}

fn anthropic_list(i: &Incoming<'_>) -> Result<Success, Reject> {
    anthropic::check_headers(i.req)?;
    Ok(both(
        |names| {
            let data: Vec<Value> = names
                .iter()
                .map(|id| {
                    json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"})
                })
                .collect();
            json!({
                "data": data,
                "has_more": false,
                "first_id": names.first(),
                "last_id": names.last(),
            })
        },
        ANTHROPIC,
    ))
}

fn gemini_list(i: &Incoming<'_>) -> Result<Success, Reject> {
    gemini::check_auth(i.req)?;
    Ok(both(
        |names| {
            let models: Vec<Value> = names
                .iter()
                .map(|id| {
                    json!({
                        "name": format!("models/{id}"),
                        "displayName": id,
                        "inputTokenLimit": 1_048_576,
                        "outputTokenLimit": 65_536,
                        "supportedGenerationMethods": ["generateContent", "countTokens"],
                    })
                })
                .collect();
            json!({ "models": models })
        },
        GEMINI,
    ))
}

fn ollama_list(_: &Incoming<'_>) -> Result<Success, Reject> {
    Ok(both(
        |names| {
            let models: Vec<Value> = names
                .iter()
                .map(|id| {
                    json!({
                        "name": id,
                        "model": id,
                        "modified_at": "2025-01-01T00:00:00Z",
                        "size": 2_019_393_189_u64,
                        "digest": "0000000000000000000000000000000000000000000000000000000000000000",
                        "details": {"format": "gguf", "family": "llama", "parameter_size": "3.2B", "quantization_level": "Q4_K_M"},
                    })
                })
                .collect();
            json!({ "models": models })
        },
        OLLAMA,
    ))
}
