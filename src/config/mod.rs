//! Configuration: the validated, typed form of `providers.json` and `routing.json`.
//!
//! Loading is two-phase: the files are parsed as JSON values and walked by
//! `load::load`, which collects *every* problem with its JSON path (so
//! `bkvy check-config` can print them all at once) and only then builds these types.
//! Nothing downstream ever sees an unvalidated config.

pub mod clients;
pub mod load;
pub mod secret;

use std::collections::BTreeMap;
use std::time::Duration;

pub use clients::{Client, ClientKeys};
pub use load::{load, load_from_strs, with_clients_str, ConfigProblem};
pub use secret::Secret;

use crate::types::Tier;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Providers in file order (file order is the tie-breaker everywhere).
    pub providers: Vec<Provider>,
    /// Scenario name → entries sorted by ascending `priority` (stable for equal priorities).
    pub scenarios: BTreeMap<String, Vec<ScenarioEntry>>,
    /// The `scenarios` object of routing.json as written, for `GET /scenarios`.
    pub scenarios_raw: serde_json::Value,
    /// Gateway-wide settings from routing.json (all optional there).
    pub settings: Settings,
    /// The client keys of clients.json; `None` when there is no such file, and then no
    /// request needs a key.
    pub clients: Option<std::sync::Arc<ClientKeys>>,
}

/// Which wire protocol a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    /// OpenAI Chat Completions (`Authorization: Bearer`).
    Openai,
    /// Anthropic Messages (`x-api-key`, `anthropic-version`).
    Anthropic,
    /// Google Gemini `generateContent` (`x-goog-api-key`).
    Gemini,
    /// Ollama's native `/api/chat`.
    Ollama,
    /// Any OpenAI-compatible server (vLLM, llama.cpp, LM Studio, Ollama's `/v1`); key optional.
    OpenaiCompatible,
}

impl ProviderKind {
    /// The `type` string used in providers.json.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::Ollama => "ollama",
            Self::OpenaiCompatible => "openai_compatible",
        }
    }
}

/// One provider entry of providers.json.
#[derive(Debug, Clone)]
pub struct Provider {
    /// The provider's name (the top-level key).
    pub name: String,
    /// The wire protocol; from `type`, or derived from the name as the original did.
    pub kind: ProviderKind,
    /// API keys in file order.
    pub keys: Vec<ApiKey>,
    /// Models in file order.
    pub models: Vec<Model>,
    /// Time zone whose calendar day the RPD counter follows (`rpd_timezone`, default UTC).
    pub rpd_timezone: chrono_tz::Tz,
    /// TCP connect timeout for this provider (`connect_timeout_seconds`, default 10 s).
    pub connect_timeout: Duration,
    /// Limit on one upstream call, headers and body (`timeout_seconds`, default 120 s).
    pub call_timeout: Duration,
}

/// One API key of a provider.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// The key's id (the object key in `keys`), the only name for it that is ever shown.
    pub id: String,
    /// The credential; `None` only for providers that need none (Ollama, OpenAI-compatible).
    pub secret: Option<Secret>,
    /// Model name → limits, in file order. A key serves a model only if it is listed here.
    pub rate_limits: Vec<(String, RateLimit)>,
}

/// Limits of one (key, model) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimit {
    /// Calls allowed in any 60-second window.
    pub rpm: u32,
    /// Calls allowed per calendar day (in the provider's `rpd_timezone`).
    pub rpd: u32,
    /// Calls allowed in flight at once (`None`: no cap beyond RPM).
    pub max_concurrent: Option<u32>,
}

/// One model of a provider.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model name (the object key in `models`); also the upstream model id.
    pub name: String,
    /// The full URL called for this model.
    pub endpoint: String,
    /// USD per 1,000 input tokens (`cost_per_1k_input_tokens`, else `cost_per_1k_tokens`).
    pub cost_per_1k_input: f64,
    /// USD per 1,000 output tokens (`cost_per_1k_output_tokens`, else `cost_per_1k_tokens`).
    pub cost_per_1k_output: f64,
    /// The blended price as configured (`cost_per_1k_tokens`), used for ordering by cost.
    pub cost_per_1k_tokens: f64,
    /// Which intelligence level this model serves.
    pub tier: Tier,
    /// Whether the model has a thinking/reasoning mode that can be switched off.
    pub supports_thinking: bool,
    /// Seed for the service-time estimate, in milliseconds.
    pub avg_response_time_ms: u64,
    /// `anthropic-version` header value (Anthropic only; default `2023-06-01`).
    pub version: Option<String>,
}

/// One entry of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScenarioEntry {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Lower is preferred.
    pub priority: i64,
}

/// Gateway-wide settings (optional top-level fields of routing.json).
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Hard deadline of every request: queue waits, retries and fallbacks together
    /// (`request_timeout_seconds`, default 120).
    pub request_timeout: Duration,
    /// Attempts on one candidate for retryable failures (5xx, timeout, connection,
    /// malformed body) before moving on (`max_attempts_per_candidate`, default 2).
    pub max_attempts_per_candidate: u32,
    /// Bound of each key/model FIFO queue (`max_queue`, default 1000).
    pub max_queue: usize,
    /// Circuit breaker thresholds and backoff (`circuit_breaker`).
    pub circuit: bkvy_actors::key_model::circuit::CircuitConfig,
    /// A streamed answer that sends nothing for this long is ended with an error
    /// (`stream_idle_timeout_seconds`, default 30).
    pub stream_idle_timeout: Duration,
    /// Safety margin at each RPM window's edge and before the RPD day boundary, for
    /// providers counting arrivals rather than bkvy's dispatches
    /// (`rate_limit_margin_ms`, default 250).
    pub rate_limit_margin_ms: i64,
    /// One attempt may take this multiple of the pair's recent 95th-percentile latency
    /// (`attempt_timeout_multiplier`, default 4).
    pub attempt_timeout_multiplier: f64,
    /// … but never less than this (`attempt_timeout_floor_seconds`, default 30); and never
    /// more than the provider's `timeout_seconds`.
    pub attempt_timeout_floor: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(120),
            max_attempts_per_candidate: 2,
            max_queue: 1000,
            circuit: bkvy_actors::key_model::circuit::CircuitConfig::default(),
            stream_idle_timeout: Duration::from_secs(30),
            rate_limit_margin_ms: 250,
            attempt_timeout_multiplier: 4.0,
            attempt_timeout_floor: Duration::from_secs(30),
        }
    }
}

impl Config {
    /// The provider with this name.
    pub fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}

impl Provider {
    /// The model with this name.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.iter().find(|m| m.name == name)
    }

    /// The key with this id.
    pub fn key(&self, id: &str) -> Option<&ApiKey> {
        self.keys.iter().find(|k| k.id == id)
    }
}

impl ApiKey {
    /// This key's limits for a model, if the key serves it.
    pub fn limits_for(&self, model: &str) -> Option<RateLimit> {
        self.rate_limits
            .iter()
            .find(|(m, _)| m == model)
            .map(|(_, l)| *l)
    }
}
