//! Validation of routing.json: scenarios and gateway-wide settings.
//!
//! Scenario entries are checked against the providers and models actually
//! configured, so a typo is reported at start-up instead of as a failed request.

use std::collections::BTreeMap;

use serde_json::Value;

use super::check::{index, join, Checker};
use std::time::Duration;

use bkvy_actors::key_model::circuit::CircuitConfig;

use crate::config::{ScenarioEntry, Settings};

const ROUTING_FIELDS: &[&str] = &[
    "scenarios",
    "request_timeout_seconds",
    "max_attempts_per_candidate",
    "max_queue",
    "circuit_breaker",
    "stream_idle_timeout_seconds",
    "rate_limit_margin_ms",
    "attempt_timeout_multiplier",
    "attempt_timeout_floor_seconds",
];
const CIRCUIT_FIELDS: &[&str] = &[
    "consecutive_failures",
    "window_seconds",
    "window_failures",
    "base_backoff_seconds",
    "max_backoff_seconds",
    "half_open_trials",
];
const ENTRY_FIELDS: &[&str] = &["provider", "model", "priority"];

/// Provider names with their model names, read from the raw providers.json so
/// that cross-checks work even when a provider has problems of its own.
/// `None` for the models when the provider's `models` is not an object.
pub(super) struct Catalogue<'v>(Vec<(&'v str, Option<Vec<&'v str>>)>);

impl<'v> Catalogue<'v> {
    pub fn from_json(providers: &'v Value) -> Option<Self> {
        let list = providers
            .as_object()?
            .iter()
            .map(|(name, p)| {
                let models = match p.get("models") {
                    None | Some(Value::Null) => Some(Vec::new()),
                    Some(m) => m
                        .as_object()
                        .map(|m| m.keys().map(String::as_str).collect()),
                };
                (name.as_str(), models)
            })
            .collect();
        Some(Self(list))
    }
}

/// The validated content of routing.json.
pub(super) struct Routing {
    pub scenarios: BTreeMap<String, Vec<ScenarioEntry>>,
    pub scenarios_raw: Value,
    pub settings: Settings,
}

/// Walks routing.json; `catalogue` is `None` when providers.json could not be read.
pub(super) fn routing(
    ck: &mut Checker<'_>,
    root: &Value,
    catalogue: Option<&Catalogue<'_>>,
) -> Option<Routing> {
    let path = "routing";
    let obj = ck.object(path, root)?;
    ck.fields(path, obj, ROUTING_FIELDS);
    let scenarios = ck.req(path, obj, "scenarios", |ck, p, v| {
        scenarios(ck, p, v, catalogue)
    });
    let d = Settings::default();
    let timeout = ck.or(
        path,
        obj,
        "request_timeout_seconds",
        d.request_timeout,
        Checker::seconds,
    );
    let attempts = ck.or(
        path,
        obj,
        "max_attempts_per_candidate",
        d.max_attempts_per_candidate,
        |ck, p, v| ck.int_in(p, v, 1, 10).and_then(|n| u32::try_from(n).ok()),
    );
    let queue = ck.or(path, obj, "max_queue", d.max_queue, |ck, p, v| {
        ck.int_in(p, v, 1, 100_000)
            .and_then(|n| usize::try_from(n).ok())
    });
    let circuit = ck.or(path, obj, "circuit_breaker", d.circuit, circuit_breaker);
    let idle = ck.or(
        path,
        obj,
        "stream_idle_timeout_seconds",
        d.stream_idle_timeout,
        Checker::seconds,
    );
    let margin = ck.or(
        path,
        obj,
        "rate_limit_margin_ms",
        d.rate_limit_margin_ms,
        |ck, p, v| {
            ck.int_in(p, v, 0, 10_000)
                .and_then(|n| i64::try_from(n).ok())
        },
    );
    let multiplier = ck.or(
        path,
        obj,
        "attempt_timeout_multiplier",
        d.attempt_timeout_multiplier,
        |ck, p, v| {
            let n = v.as_f64().filter(|n| (1.0..=100.0).contains(n));
            if n.is_none() {
                ck.problem(p, "expected a number from 1 to 100");
            }
            n
        },
    );
    let floor = ck.or(
        path,
        obj,
        "attempt_timeout_floor_seconds",
        d.attempt_timeout_floor,
        Checker::seconds,
    );
    Some(Routing {
        scenarios: scenarios?,
        scenarios_raw: obj.get("scenarios").cloned().unwrap_or(Value::Null),
        settings: Settings {
            request_timeout: timeout?,
            max_attempts_per_candidate: attempts?,
            max_queue: queue?,
            circuit: circuit?,
            stream_idle_timeout: idle?,
            rate_limit_margin_ms: margin?,
            attempt_timeout_multiplier: multiplier?,
            attempt_timeout_floor: floor?,
        },
    })
}

/// `circuit_breaker`: every field optional, defaulting to [`CircuitConfig::default`].
fn circuit_breaker(ck: &mut Checker<'_>, path: &str, v: &Value) -> Option<CircuitConfig> {
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, CIRCUIT_FIELDS);
    let d = CircuitConfig::default();
    let ms = |d: Duration| d.as_millis().min(i64::MAX as u128) as i64;
    let count = |ck: &mut Checker<'_>, p: &str, v: &Value| {
        ck.int_in(p, v, 1, 1_000)
            .and_then(|n| u32::try_from(n).ok())
    };
    let consecutive = ck.or(
        path,
        obj,
        "consecutive_failures",
        d.consecutive_failures,
        count,
    );
    let window_failures = ck.or(path, obj, "window_failures", d.window_failures, count);
    let trials = ck.or(path, obj, "half_open_trials", d.half_open_trials, count);
    let secs = |ck: &mut Checker<'_>, p: &str, v: &Value| ck.seconds(p, v).map(ms);
    let window = ck.or(path, obj, "window_seconds", d.window_ms, secs);
    let base = ck.or(path, obj, "base_backoff_seconds", d.base_backoff_ms, secs);
    let max = ck.or(path, obj, "max_backoff_seconds", d.max_backoff_ms, secs);
    if let (Some(b), Some(m)) = (base, max) {
        if m < b {
            ck.problem(
                &join(path, "max_backoff_seconds"),
                "must not be smaller than base_backoff_seconds",
            );
            return None;
        }
    }
    Some(CircuitConfig {
        consecutive_failures: consecutive?,
        window_ms: window?,
        window_failures: window_failures?,
        base_backoff_ms: base?,
        max_backoff_ms: max?,
        half_open_trials: trials?,
    })
}

fn scenarios(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    catalogue: Option<&Catalogue<'_>>,
) -> Option<BTreeMap<String, Vec<ScenarioEntry>>> {
    let obj = ck.object(path, v)?;
    let all: Vec<_> = obj
        .iter()
        .map(|(name, v)| {
            let entries = scenario(ck, &join(path, name), v, catalogue)?;
            Some((name.clone(), entries))
        })
        .collect();
    all.into_iter().collect()
}

fn scenario(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    catalogue: Option<&Catalogue<'_>>,
) -> Option<Vec<ScenarioEntry>> {
    let Some(items) = v.as_array() else {
        ck.problem(
            path,
            "expected an array of {provider, model, priority} entries",
        );
        return None;
    };
    if items.is_empty() {
        ck.problem(path, "a scenario needs at least one entry");
        return None;
    }
    let all: Vec<_> = items
        .iter()
        .enumerate()
        .map(|(i, v)| entry(ck, &index(path, i), v, catalogue))
        .collect();
    let mut entries: Vec<ScenarioEntry> = all.into_iter().collect::<Option<_>>()?;
    // Stable: equal priorities keep their order in the file.
    entries.sort_by_key(|e| e.priority);
    Some(entries)
}

fn entry(
    ck: &mut Checker<'_>,
    path: &str,
    v: &Value,
    catalogue: Option<&Catalogue<'_>>,
) -> Option<ScenarioEntry> {
    let obj = ck.object(path, v)?;
    ck.fields(path, obj, ENTRY_FIELDS);
    let provider = ck.req(path, obj, "provider", Checker::owned_string);
    let model = ck.req(path, obj, "model", Checker::owned_string);
    let priority = ck.req(path, obj, "priority", Checker::integer);
    if let (Some(cat), Some(p)) = (catalogue, &provider) {
        match cat.0.iter().find(|(name, _)| name == p) {
            None => ck.problem(&join(path, "provider"), format!("unknown provider \"{p}\"")),
            Some((_, Some(models))) => {
                if let Some(m) = model.as_deref().filter(|m| !models.contains(m)) {
                    let msg = format!("provider \"{p}\" has no model \"{m}\"");
                    ck.problem(&join(path, "model"), msg);
                }
            }
            Some((_, None)) => {}
        }
    }
    Some(ScenarioEntry {
        provider: provider?,
        model: model?,
        priority: priority?,
    })
}
