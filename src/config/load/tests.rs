//! Loading the shipped files, the original's format, defaults and ordering.

use std::time::Duration;

use super::load_from_strs;
use crate::config::{Config, ProviderKind};
use crate::types::Tier;

pub(super) fn no_env(_: &str) -> Option<String> {
    None
}

fn example_env(name: &str) -> Option<String> {
    match name {
        "GEMINI_API_KEY_1" | "GEMINI_API_KEY_2" | "OPENAI_API_KEY" | "ANTHROPIC_API_KEY" => {
            Some(format!("test-value-of-{name}"))
        }
        _ => None,
    }
}

fn ok(p: &str, r: &str, env: &dyn Fn(&str) -> Option<String>) -> Config {
    match load_from_strs(p, r, env) {
        Ok(c) => c,
        Err(problems) => panic!("unexpected problems: {problems:#?}"),
    }
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(name).collect()
}

#[test]
fn the_example_clients_file_loads_against_the_example_config() {
    let base = super::load_from_strs(
        include_str!("../../../config/providers.example.json"),
        include_str!("../../../config/routing.example.json"),
        &example_env,
    );
    let env = |name: &str| match name {
        "TEAM_SEARCH_KEY" | "INTERNAL_TOOLS_KEY" => Some(format!("test-value-of-{name}-0123")),
        other => example_env(other),
    };
    let c = super::with_clients_str(
        base,
        include_str!("../../../config/clients.example.json"),
        &env,
    )
    .unwrap_or_else(|p| panic!("{p:#?}"));
    let keys = c.clients.unwrap();
    let names: Vec<&str> = keys.clients.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["team-search", "batch-jobs", "internal-tools"]);
    assert_eq!(
        keys.identify("test").map(|c| c.name.as_str()),
        Some("batch-jobs")
    );
    assert_eq!(
        keys.identify("test-value-of-TEAM_SEARCH_KEY-0123")
            .map(|c| c.rpm),
        Some(Some(120))
    );
}

#[test]
fn clients_file_problems_are_all_reported_without_key_values() {
    let base = || {
        super::load_from_strs(
            include_str!("../../../config/providers.example.json"),
            include_str!("../../../config/routing.example.json"),
            &example_env,
        )
    };
    let bad = r#"{"clients": {
        "a": {"api_key": "short-key"},
        "b": {"api_key": "env:sk-pasted-secret-value", "rpm": 0},
        "c": {"api_key_sha256": "xyz"},
        "d": {"api_key": "0123456789abcdef0123", "api_key_sha256": "00"},
        "e": {},
        "f": {"api_key": "0123456789abcdef9999", "allow": ["scenario:nope", "openai/nope", "LOW", 3], "monthly_budget_usd": -1},
        "g": {"api_key": "0123456789abcdef9999", "colour": "red"},
        "anonymous": {"api_key": "0123456789abcdef7777"}
    }}"#;
    let problems = super::with_clients_str(base(), bad, &|_| None).unwrap_err();
    let text = format!("{problems:#?}");
    for path in [
        "clients.clients.a.api_key",
        "clients.clients.b.api_key",
        "clients.clients.b.rpm",
        "clients.clients.c.api_key_sha256",
        "clients.clients.d",
        "clients.clients.e",
        "clients.clients.f.allow[0]",
        "clients.clients.f.allow[1]",
        "clients.clients.f.allow[2]",
        "clients.clients.f.allow[3]",
        "clients.clients.f.monthly_budget_usd",
        "clients.clients.g.colour",
        "clients.clients.anonymous",
    ] {
        assert!(
            problems.iter().any(|p| p.path == path),
            "{path} not reported: {text}"
        );
    }
    for secret in ["short-key", "sk-pasted-secret-value", "0123456789abcdef"] {
        assert!(!text.contains(secret), "{secret} echoed: {text}");
    }
    // Two clients with one key.
    let twice = r#"{"clients": {"a": {"api_key": "0123456789abcdef0123"},
                               "b": {"api_key": "0123456789abcdef0123"}}}"#;
    let problems = super::with_clients_str(base(), twice, &|_| None).unwrap_err();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].message.contains("same key as client \"a\""));
    // Problems of the other files and of clients.json come together.
    let broken = super::load_from_strs("{", "{}", &|_| None);
    let problems = super::with_clients_str(broken, bad, &|_| None).unwrap_err();
    assert!(problems.iter().any(|p| p.path == "providers.json"));
    assert!(problems.iter().any(|p| p.path.starts_with("clients.")));
}

#[test]
fn example_files_load() {
    let c = ok(
        include_str!("../../../config/providers.example.json"),
        include_str!("../../../config/routing.example.json"),
        &example_env,
    );
    assert_eq!(
        names(&c.providers, |p| &p.name),
        ["gemini", "openai", "anthropic", "ollama", "vllm"]
    );
    let gemini = c.provider("gemini").unwrap();
    assert_eq!(gemini.rpd_timezone, chrono_tz::America::Los_Angeles);
    let k2 = gemini.key("gemini_key_2").unwrap();
    assert_eq!(
        k2.secret.as_ref().unwrap().expose(),
        "test-value-of-GEMINI_API_KEY_2"
    );
    let pro = gemini.model("gemini-2.5-pro").unwrap();
    assert!(pro
        .endpoint
        .ends_with("/models/gemini-2.5-pro:generateContent"));
    assert_eq!(
        c.provider("vllm").unwrap().kind,
        ProviderKind::OpenaiCompatible
    );
    assert!(c.provider("ollama").unwrap().keys[0].secret.is_none());
    let sonnet = c
        .provider("anthropic")
        .unwrap()
        .model("claude-sonnet-4-0")
        .unwrap();
    assert_eq!(sonnet.cost_per_1k_input, 0.003);
    assert_eq!(sonnet.cost_per_1k_output, 0.015);
    assert!((sonnet.cost_per_1k_tokens - 0.009).abs() < 1e-12);
    assert_eq!(c.scenarios.len(), 7);
    for s in [
        "low_intelligence_low_rate",
        "medium_intelligence_balanced",
        "high_intelligence_premium",
        "reasoning_models",
        "gemini_only_fast",
        "anthropic_preferred",
        "cost_optimized_bulk",
    ] {
        assert!(c.scenarios.contains_key(s), "{s}");
    }
}

#[test]
fn demo_files_load_without_keys_or_internet() {
    let c = ok(
        include_str!("../../../config/demo/providers.json"),
        include_str!("../../../config/demo/routing.json"),
        &no_env,
    );
    assert_eq!(
        names(&c.providers, |p| &p.name),
        ["openai", "anthropic", "gemini", "ollama"]
    );
    assert_eq!(c.settings.request_timeout, Duration::from_secs(30));
    assert_eq!(c.scenarios.len(), 7);
    for tier in [Tier::Low, Tier::Medium, Tier::High] {
        let mut costs: Vec<(&str, f64)> = c
            .providers
            .iter()
            .flat_map(|p| p.models.iter().map(move |m| (p.name.as_str(), m)))
            .filter(|(_, m)| m.tier == tier)
            .map(|(p, m)| (p, m.cost_per_1k_tokens))
            .collect();
        assert!(costs.len() >= 2, "{tier:?}");
        costs.dedup_by(|a, b| a.0 == b.0);
        assert!(costs.len() >= 2, "{tier:?} needs several providers");
    }
    for p in &c.providers {
        for m in &p.models {
            assert!(
                m.endpoint.starts_with("http://127.0.0.1:10007/"),
                "{}",
                m.endpoint
            );
            assert!(p.keys.iter().any(|k| k.limits_for(&m.name).is_some()));
        }
    }
    assert_eq!(c.provider("openai").unwrap().keys.len(), 2);
    assert_eq!(c.provider("gemini").unwrap().keys.len(), 2);
    assert!(c.provider("ollama").unwrap().keys[0].secret.is_none());
}

/// The shape of the original's providers.json and routing.json, unchanged.
const ORIGINAL_PROVIDERS: &str = r#"{
  "gemini": {
    "keys": {
      "gemini_key_1": {
        "api_key": "AIza-literal-1",
        "rate_limits": {
          "gemini-2.5-flash": {"rpm": 10, "rpd": 250},
          "gemini-2.5-pro": {"rpm": 3, "rpd": 50}
        }
      }
    },
    "models": {
      "gemini-2.5-flash": {
        "endpoint": "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent",
        "cost_per_1k_tokens": 0.0, "avg_response_time_ms": 2000,
        "intelligence_tier": "low", "supports_thinking": true
      },
      "gemini-2.5-pro": {
        "endpoint": "https://generativelanguage.googleapis.com/v1beta/models/gemini-pro:generateContent",
        "cost_per_1k_tokens": 0.0, "avg_response_time_ms": 3000,
        "intelligence_tier": "high", "supports_thinking": true
      }
    }
  },
  "openai": {
    "keys": {
      "openai_key_1": {
        "api_key": "sk-proj-literal",
        "rate_limits": {"gpt-4o": {"rpm": 10, "rpd": 200}}
      }
    },
    "models": {
      "gpt-4o": {
        "endpoint": "https://api.openai.com/v1/chat/completions",
        "cost_per_1k_tokens": 0.0025, "avg_response_time_ms": 4500,
        "intelligence_tier": "high", "supports_thinking": false
      },
      "o1-preview": {
        "endpoint": "https://api.openai.com/v1/responses",
        "cost_per_1k_tokens": 0.015, "avg_response_time_ms": 8000,
        "intelligence_tier": "high", "supports_thinking": true
      }
    }
  },
  "anthropic": {
    "keys": {
      "anthropic_key_1": {
        "api_key": "sk-ant-literal",
        "rate_limits": {"claude-3-haiku-20240307": {"rpm": 25, "rpd": 500}}
      }
    },
    "models": {
      "claude-3-haiku-20240307": {
        "endpoint": "https://api.anthropic.com/v1/messages",
        "cost_per_1k_tokens": 0.00025, "avg_response_time_ms": 1800,
        "intelligence_tier": "low", "version": "2023-06-01"
      }
    }
  },
  "ollama": {
    "keys": {
      "ollama_default": {
        "api_key": "none_required",
        "rate_limits": {"llama3.2:3b": {"rpm": 60, "rpd": 2000}}
      }
    },
    "models": {
      "llama3.2:3b": {
        "endpoint": "http://192.168.1.50:11434/api/chat",
        "cost_per_1k_tokens": 0, "avg_response_time_ms": 2000,
        "intelligence_tier": "low", "supports_thinking": false
      }
    }
  }
}"#;

const ORIGINAL_ROUTING: &str = r#"{
  "scenarios": {
    "reasoning_models": [
      {"provider": "openai", "model": "o1-preview", "priority": 1},
      {"provider": "gemini", "model": "gemini-2.5-pro", "priority": 3},
      {"provider": "openai", "model": "gpt-4o", "priority": 2}
    ]
  }
}"#;

#[test]
fn original_format_loads_with_defaults() {
    let c = ok(ORIGINAL_PROVIDERS, ORIGINAL_ROUTING, &no_env);
    let kinds: Vec<_> = c.providers.iter().map(|p| p.kind).collect();
    use ProviderKind::*;
    assert_eq!(kinds, [Gemini, Openai, Anthropic, Ollama]);
    let ollama = c.provider("ollama").unwrap();
    assert!(
        ollama.keys[0].secret.is_none(),
        "none_required means no key"
    );
    let openai = c.provider("openai").unwrap();
    assert_eq!(
        openai.keys[0].secret.as_ref().unwrap().expose(),
        "sk-proj-literal"
    );
    // A model no key lists is valid (just not routable).
    assert!(openai.model("o1-preview").is_some());
    assert_eq!(openai.rpd_timezone, chrono_tz::UTC);
    assert_eq!(openai.connect_timeout, Duration::from_secs(10));
    assert_eq!(openai.call_timeout, Duration::from_secs(120));
    let gpt = openai.model("gpt-4o").unwrap();
    assert_eq!(
        (
            gpt.cost_per_1k_input,
            gpt.cost_per_1k_output,
            gpt.cost_per_1k_tokens
        ),
        (0.0025, 0.0025, 0.0025)
    );
    assert_eq!(gpt.version, None);
    let haiku = c
        .provider("anthropic")
        .unwrap()
        .model("claude-3-haiku-20240307");
    assert_eq!(haiku.unwrap().version.as_deref(), Some("2023-06-01"));
    assert!(!haiku.unwrap().supports_thinking);
    assert_eq!(c.settings, crate::config::Settings::default());
    let order: Vec<_> = c.scenarios["reasoning_models"]
        .iter()
        .map(|e| e.model.as_str())
        .collect();
    assert_eq!(order, ["o1-preview", "gpt-4o", "gemini-2.5-pro"]);
    let raw: serde_json::Value = serde_json::from_str(ORIGINAL_ROUTING).unwrap();
    assert_eq!(c.scenarios_raw, raw["scenarios"]);
}

#[test]
fn file_order_is_kept_for_providers_keys_models_and_limits() {
    let p = r#"{
      "zeta": {"type": "openai_compatible",
        "keys": {"k9": {"rate_limits": {"b": {"rpm": 1, "rpd": 1}, "a": {"rpm": 1, "rpd": 1}}},
                 "k1": {"rate_limits": {}}},
        "models": {
          "b": {"endpoint": "http://x/v1", "cost_per_1k_tokens": 0, "intelligence_tier": "low"},
          "a": {"endpoint": "http://x/v1", "cost_per_1k_tokens": 0, "intelligence_tier": "low"}
        }},
      "alpha": {"type": "ollama"},
      "mid": {"type": "ollama"}
    }"#;
    let c = ok(p, r#"{"scenarios": {}}"#, &no_env);
    assert_eq!(names(&c.providers, |p| &p.name), ["zeta", "alpha", "mid"]);
    let z = &c.providers[0];
    assert_eq!(names(&z.keys, |k| &k.id), ["k9", "k1"]);
    assert_eq!(names(&z.models, |m| &m.name), ["b", "a"]);
    assert_eq!(names(&z.keys[0].rate_limits, |l| &l.0), ["b", "a"]);
}

#[test]
fn scenario_entries_sort_by_priority_stably() {
    let p = r#"{"ollama": {"models": {
      "m1": {"endpoint": "http://h/api/chat", "cost_per_1k_tokens": 0, "intelligence_tier": "low"},
      "m2": {"endpoint": "http://h/api/chat", "cost_per_1k_tokens": 0, "intelligence_tier": "low"},
      "m3": {"endpoint": "http://h/api/chat", "cost_per_1k_tokens": 0, "intelligence_tier": "low"},
      "m4": {"endpoint": "http://h/api/chat", "cost_per_1k_tokens": 0, "intelligence_tier": "low"}
    }}}"#;
    let r = r#"{"scenarios": {"s": [
      {"provider": "ollama", "model": "m1", "priority": 2},
      {"provider": "ollama", "model": "m2", "priority": -1},
      {"provider": "ollama", "model": "m3", "priority": 2},
      {"provider": "ollama", "model": "m4", "priority": -1}
    ]}}"#;
    let c = ok(p, r, &no_env);
    let order: Vec<_> = c.scenarios["s"].iter().map(|e| e.model.as_str()).collect();
    assert_eq!(order, ["m2", "m4", "m1", "m3"]);
}

#[test]
fn new_fields_are_read() {
    let p = r#"{"local": {"type": "openai_compatible", "rpd_timezone": "Europe/Berlin",
      "connect_timeout_seconds": 0.5, "timeout_seconds": 45,
      "keys": {"k": {"api_key": "env::LOCAL_KEY",
                     "rate_limits": {"m": {"rpm": 5, "rpd": 50, "max_concurrent": 3}}}},
      "models": {"m": {"endpoint": "https://h/v1/chat/completions",
        "cost_per_1k_input_tokens": 0.001, "cost_per_1k_output_tokens": 0.003,
        "intelligence_tier": "medium"}}}}"#;
    let r = r#"{"scenarios": {}, "request_timeout_seconds": 12.5,
      "max_attempts_per_candidate": 3, "max_queue": 50}"#;
    let env = |n: &str| (n == "LOCAL_KEY").then(|| "  from-env\n".to_owned());
    let c = ok(p, r, &env);
    let pr = &c.providers[0];
    assert_eq!(pr.rpd_timezone, chrono_tz::Europe::Berlin);
    assert_eq!(pr.connect_timeout, Duration::from_millis(500));
    assert_eq!(pr.call_timeout, Duration::from_secs(45));
    assert_eq!(pr.keys[0].secret.as_ref().unwrap().expose(), "from-env");
    let limit = pr.keys[0].limits_for("m").unwrap();
    assert_eq!(
        (limit.rpm, limit.rpd, limit.max_concurrent),
        (5, 50, Some(3))
    );
    let m = &pr.models[0];
    assert!((m.cost_per_1k_tokens - 0.002).abs() < 1e-12);
    assert_eq!(m.avg_response_time_ms, 2000);
    assert!(!m.supports_thinking);
    assert_eq!(c.settings.request_timeout, Duration::from_millis(12_500));
    assert_eq!(c.settings.max_attempts_per_candidate, 3);
    assert_eq!(c.settings.max_queue, 50);
}
