//! The benchmark's providers: every model with its tier, price and latency, every key
//! with its limits. One table feeds bkvy's `providers.json`, the fake's provider-side
//! limits (the same RPM/RPD, so any call bkvy lets through beyond them is refused with a
//! 429 as a real provider would), the fake's per-model latency and failures, and the
//! cost reference.
//!
//! The shape is chosen to make routing matter: each tier has several models and keys at
//! different prices, the cheapest keys have low RPMs (5–10) that a burst overruns, one key
//! has an RPD that runs out during the run, one cheap model is slow (4–6 s, so it only
//! suits generous budgets) and one fails 10 % of its calls with a 500. Gemini model names
//! avoid `2.5` and `pro`, for which the fake reports thinking tokens: so every model
//! reports the same tokens for a request, and costs differ by price only.

use bkvy::fake::{FakeLimit, FakeModelOptions};
use serde_json::{json, Map, Value};

/// An intelligence tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Tier {
    Low,
    Medium,
    High,
}

impl Tier {
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Medium, Tier::High];

    pub fn name(self) -> &'static str {
        match self {
            Tier::Low => "low",
            Tier::Medium => "medium",
            Tier::High => "high",
        }
    }
}

/// One API key of a provider.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    pub id: &'static str,
    /// The literal key; `None` for a keyless local server (the fake sees no credential).
    pub secret: Option<&'static str>,
}

/// A model and the limits each key has on it.
#[derive(Debug, Clone, Copy)]
pub struct Model {
    pub name: &'static str,
    pub tier: Tier,
    /// USD per 1,000 tokens, input and output alike.
    pub price_per_1k: f64,
    /// The fake's latency: `latency_ms` plus a uniform `0..=jitter_ms`.
    pub latency_ms: u64,
    pub jitter_ms: u64,
    /// Share of calls the fake answers with a 500.
    pub fail_rate: f64,
    /// (key id, rpm, rpd).
    pub limits: &'static [(&'static str, u32, u32)],
}

impl Model {
    /// The slowest answer the fake gives (without failures).
    pub fn worst_latency_ms(&self) -> u64 {
        self.latency_ms + self.jitter_ms
    }
}

/// A provider of the catalog.
#[derive(Debug, Clone, Copy)]
pub struct Provider {
    pub name: &'static str,
    /// bkvy's provider `type`.
    pub kind: &'static str,
    pub keys: &'static [Key],
    pub models: &'static [Model],
}

const fn model(
    name: &'static str,
    tier: Tier,
    price_per_1k: f64,
    (latency_ms, jitter_ms): (u64, u64),
    limits: &'static [(&'static str, u32, u32)],
) -> Model {
    Model {
        name,
        tier,
        price_per_1k,
        latency_ms,
        jitter_ms,
        fail_rate: 0.0,
        limits,
    }
}

/// The benchmark's providers, in file order (bkvy's tie-breaker).
pub const PROVIDERS: &[Provider] = &[
    Provider {
        name: "gemini",
        kind: "gemini",
        keys: &[
            Key {
                id: "gk1",
                secret: Some("bench-gemini-key-1"),
            },
            Key {
                id: "gk2",
                secret: Some("bench-gemini-key-2"),
            },
        ],
        models: &[
            // The cheapest low model; gk1's day runs out during the run.
            model(
                "gemini-2.0-flash-lite",
                Tier::Low,
                0.000075,
                (300, 200),
                &[("gk1", 5, 12), ("gk2", 10, 10_000)],
            ),
            model(
                "gemini-2.0-flash",
                Tier::Medium,
                0.0004,
                (500, 500),
                &[("gk1", 6, 10_000), ("gk2", 15, 10_000)],
            ),
            model(
                "gemini-exp-1206",
                Tier::High,
                0.0025,
                (1000, 500),
                &[("gk2", 5, 10_000)],
            ),
        ],
    },
    Provider {
        name: "openai",
        kind: "openai",
        keys: &[
            Key {
                id: "ok1",
                secret: Some("sk-bench-openai-1"),
            },
            Key {
                id: "ok2",
                secret: Some("sk-bench-openai-2"),
            },
        ],
        models: &[
            model(
                "gpt-4.1-nano",
                Tier::Low,
                0.0001,
                (400, 300),
                &[("ok1", 8, 10_000), ("ok2", 30, 10_000)],
            ),
            model(
                "gpt-4o-mini",
                Tier::Low,
                0.0006,
                (600, 400),
                &[("ok1", 100, 10_000)],
            ),
            model(
                "gpt-4.1",
                Tier::High,
                0.002,
                (900, 400),
                &[("ok1", 3, 10_000), ("ok2", 10, 10_000)],
            ),
        ],
    },
    Provider {
        name: "anthropic",
        kind: "anthropic",
        keys: &[Key {
            id: "ak1",
            secret: Some("sk-ant-bench-1"),
        }],
        models: &[
            model(
                "claude-3-haiku",
                Tier::Low,
                0.00025,
                (500, 400),
                &[("ak1", 50, 10_000)],
            ),
            model(
                "claude-3-5-sonnet",
                Tier::Medium,
                0.003,
                (1000, 500),
                &[("ak1", 60, 10_000)],
            ),
            model(
                "claude-opus-4",
                Tier::High,
                0.015,
                (1000, 500),
                &[("ak1", 30, 10_000)],
            ),
        ],
    },
    // The slow one: free, but 4–6 s.
    Provider {
        name: "ollama",
        kind: "ollama",
        keys: &[Key {
            id: "local",
            secret: None,
        }],
        models: &[model(
            "llama3.3:70b",
            Tier::Medium,
            0.0,
            (4000, 2000),
            &[("local", 20, 10_000)],
        )],
    },
    // The failing one: 10 % of calls get a 500.
    Provider {
        name: "vllm",
        kind: "openai_compatible",
        keys: &[Key {
            id: "local",
            secret: None,
        }],
        models: &[Model {
            fail_rate: 0.1,
            ..model(
                "qwen3-32b",
                Tier::Medium,
                0.0002,
                (400, 300),
                &[("local", 20, 10_000)],
            )
        }],
    },
];

/// One (provider, key, model) bkvy can route to.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    pub provider: &'static str,
    pub key: &'static str,
    pub model: &'static str,
    pub tier: Tier,
    pub price_per_1k: f64,
    pub rpm: u32,
    pub rpd: u32,
    pub worst_latency_ms: u64,
}

/// Every pair, in bkvy's file order (provider, model, key).
pub fn pairs(providers: &[Provider]) -> Vec<Pair> {
    let mut out = Vec::new();
    for p in providers {
        for m in p.models {
            for &(key, rpm, rpd) in m.limits {
                out.push(Pair {
                    provider: p.name,
                    key,
                    model: m.name,
                    tier: m.tier,
                    price_per_1k: m.price_per_1k,
                    rpm,
                    rpd,
                    worst_latency_ms: m.worst_latency_ms(),
                });
            }
        }
    }
    out
}

/// The tier and price of a model by name.
pub fn find_model(providers: &[Provider], name: &str) -> Option<Model> {
    providers
        .iter()
        .flat_map(|p| p.models.iter())
        .find(|m| m.name == name)
        .copied()
}

fn endpoint(kind: &str, model: &str) -> String {
    match kind {
        "anthropic" => "{FAKE}/v1/messages".to_owned(),
        "gemini" => format!("{{FAKE}}/v1beta/models/{model}:generateContent"),
        "ollama" => "{FAKE}/api/chat".to_owned(),
        "openai_compatible" => "{FAKE}/keyless/v1/chat/completions".to_owned(),
        _ => "{FAKE}/v1/chat/completions".to_owned(),
    }
}

/// bkvy's `providers.json` for the catalog, with `{FAKE}` replaced by `fake_url`.
pub fn providers_json(providers: &[Provider], fake_url: &str) -> String {
    let mut root = Map::new();
    for p in providers {
        let mut keys = Map::new();
        for k in p.keys {
            let mut limits = Map::new();
            for m in p.models {
                for &(key, rpm, rpd) in m.limits {
                    if key == k.id {
                        limits.insert(m.name.to_owned(), json!({"rpm": rpm, "rpd": rpd}));
                    }
                }
            }
            let mut key = json!({ "rate_limits": limits });
            if let Some(secret) = k.secret {
                key["api_key"] = json!(secret);
            }
            keys.insert(k.id.to_owned(), key);
        }
        let mut models = Map::new();
        for m in p.models {
            models.insert(
                m.name.to_owned(),
                json!({
                    "endpoint": endpoint(p.kind, m.name).replace("{FAKE}", fake_url),
                    "cost_per_1k_tokens": m.price_per_1k,
                    "intelligence_tier": m.tier.name(),
                    // What the fake averages; bkvy learns the real figure as it goes.
                    "avg_response_time_ms": m.latency_ms + m.jitter_ms / 2,
                }),
            );
        }
        root.insert(
            p.name.to_owned(),
            json!({"type": p.kind, "keys": keys, "models": models}),
        );
    }
    Value::Object(root).to_string()
}

/// bkvy's `routing.json`: defaults, a hard deadline above every budget.
pub const ROUTING_JSON: &str =
    r#"{"request_timeout_seconds": 120, "max_attempts_per_candidate": 2, "scenarios": {}}"#;

/// The fake's provider-side limits: exactly bkvy's configured RPM/RPD per key and model.
pub fn fake_limits(providers: &[Provider]) -> Vec<FakeLimit> {
    let mut out = Vec::new();
    for p in providers {
        for m in p.models {
            for &(key, rpm, rpd) in m.limits {
                let credential = p
                    .keys
                    .iter()
                    .find(|k| k.id == key)
                    .and_then(|k| k.secret)
                    .map(str::to_owned);
                out.push(FakeLimit {
                    credential,
                    model: m.name.to_owned(),
                    rpm,
                    rpd,
                });
            }
        }
    }
    out
}

/// The fake's per-model latency and failures.
pub fn fake_models(providers: &[Provider]) -> Vec<FakeModelOptions> {
    providers
        .iter()
        .flat_map(|p| p.models.iter())
        .map(|m| FakeModelOptions {
            model: m.name.to_owned(),
            latency: std::time::Duration::from_millis(m.latency_ms),
            latency_jitter: std::time::Duration::from_millis(m.jitter_ms),
            fail_rate: m.fail_rate,
            fail_status: 500,
        })
        .collect()
}
