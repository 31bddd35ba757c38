//! The routing table built from the config: one key/model actor per (provider, key,
//! model) the key lists, in file order (the tie-breaker), with its tier and price, plus
//! the providers' names and the scenarios. Start and reload both build it here, so the
//! two can never disagree about which pairs exist.

use std::sync::Arc;

use bkvy_actors::persist::{Loaded, StateStore};
use bkvy_actors::{
    start_key_models_with_state, Candidate, KeyModelId, KeyModelSpec, MailboxMeter, ProviderNames,
    RoutingTable, ScenarioStep, SharedClock,
};

use crate::config::Config;
use crate::types::Tier;

/// One key/model spec per (provider, model, key) where the key lists the model, in file
/// order (the tie-breaker), with the model's tier and blended price.
pub fn pair_specs(config: &Config) -> Vec<(KeyModelSpec, Tier, f64)> {
    let mut out = Vec::new();
    for p in &config.providers {
        for m in &p.models {
            for k in &p.keys {
                let Some(limits) = k.limits_for(&m.name) else {
                    continue;
                };
                let spec = KeyModelSpec {
                    id: KeyModelId::new(&p.name, &k.id, &m.name),
                    rpm: limits.rpm,
                    rpd: limits.rpd,
                    rpd_timezone: p.rpd_timezone,
                    max_concurrent: limits.max_concurrent,
                    max_queue: config.settings.max_queue,
                    avg_response_time_ms: m.avg_response_time_ms,
                    circuit: config.settings.circuit,
                    rate_margin_ms: config.settings.rate_limit_margin_ms,
                };
                out.push((spec, m.tier, m.cost_per_1k_tokens));
            }
        }
    }
    out
}

/// The routing table of `config` around already-started key/model handles.
pub fn table_of(config: &Config, candidates: Vec<Arc<Candidate>>) -> RoutingTable {
    let providers = config
        .providers
        .iter()
        .map(|p| ProviderNames {
            name: p.name.clone(),
            models: p.models.iter().map(|m| m.name.clone()).collect(),
            keys: p.keys.iter().map(|k| k.id.clone()).collect(),
        })
        .collect();
    let scenarios = config
        .scenarios
        .iter()
        .map(|(name, steps)| {
            let steps = steps
                .iter()
                .map(|s| ScenarioStep {
                    provider: s.provider.clone(),
                    model: s.model.clone(),
                    priority: s.priority,
                })
                .collect();
            (name.clone(), steps)
        })
        .collect();
    RoutingTable {
        candidates,
        providers,
        scenarios,
    }
}

/// Starts one key/model actor per pair of `config` and builds the routing table.
pub fn build_table(
    config: &Config,
    clock: &SharedClock,
    meter: &MailboxMeter,
    store: Option<&StateStore>,
    loaded: &Loaded,
) -> RoutingTable {
    let (specs, meta): (Vec<_>, Vec<_>) = pair_specs(config)
        .into_iter()
        .map(|(spec, tier, cost)| (spec, (tier, cost)))
        .unzip();
    let handles = start_key_models_with_state(specs, clock, meter, store, loaded);
    let candidates = handles
        .into_iter()
        .zip(meta)
        .map(|(handle, (tier, cost_per_1k))| {
            Arc::new(Candidate {
                handle,
                tier,
                cost_per_1k,
            })
        })
        .collect();
    table_of(config, candidates)
}
