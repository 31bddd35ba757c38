//! The [`RoutingTable`]: every routable (provider, key, model) candidate and the
//! scenarios, built from the config on start and on reload and owned by the gateway's
//! live snapshot. [`RoutingTable::plan`] is the whole routing decision: it builds the
//! candidates of a request, reads their key/model actors' published estimates and fixes
//! the attempt order with [`choose`], with no message; the HTTP
//! handler calls it itself.
//!
//! The key/model actors push their estimates (see [`crate::key_model::published`]) instead
//! of being asked with a message per candidate per request, so a choice needs no round
//! trip. The choice is advisory: a slot may be taken between the estimate and the
//! reservation, which is why reserving re-checks and may refuse.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use super::choice::{choose, CandidateView, NotChosen, Rule};
use crate::clock::Millis;
use crate::ids::{KeyModelId, RoutingMethod, Tier};
use crate::key_model::capacity::WaitEstimate;
use crate::key_model::handle::KeyModelHandle;

/// One routable (provider, key, model) combination.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The key/model actor.
    pub handle: KeyModelHandle,
    /// The model's tier.
    pub tier: Tier,
    /// Blended price per 1k tokens (ordering by cost).
    pub cost_per_1k: f64,
}

impl Candidate {
    /// Identity.
    pub fn id(&self) -> &KeyModelId {
        &self.handle.spec.id
    }
}

/// A provider's names, for validating direct requests.
#[derive(Debug, Clone)]
pub struct ProviderNames {
    /// Provider name.
    pub name: String,
    /// Its models, file order.
    pub models: Vec<String>,
    /// Its key ids, file order.
    pub keys: Vec<String>,
}

/// One scenario entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioStep {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// Lower is preferred.
    pub priority: i64,
}

/// Everything routing needs, built from the config.
#[derive(Debug, Clone, Default)]
pub struct RoutingTable {
    /// All combinations in file order (providers → models → keys): the tie-breaker.
    pub candidates: Vec<Arc<Candidate>>,
    /// Providers with their model and key names.
    pub providers: Vec<ProviderNames>,
    /// Scenarios by name.
    pub scenarios: BTreeMap<String, Vec<ScenarioStep>>,
}

/// What the request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteTarget {
    /// Cheapest model of a tier within the wait budget.
    Intelligence(Tier),
    /// A named scenario.
    Scenario(String),
    /// A provider's model, optionally with a named key.
    Direct {
        /// Provider name.
        provider: String,
        /// Model name.
        model: String,
        /// A key id, or any key.
        key_id: Option<String>,
    },
}

impl RouteTarget {
    /// The routing method.
    pub fn method(&self) -> RoutingMethod {
        match self {
            Self::Intelligence(_) => RoutingMethod::Intelligence,
            Self::Scenario(_) => RoutingMethod::Scenario,
            Self::Direct { .. } => RoutingMethod::Direct,
        }
    }
}

/// What a request asks of [`RoutingTable::plan`].
#[derive(Debug, Clone)]
pub struct Route {
    /// What was asked for.
    pub target: RouteTarget,
    /// The caller's wait budget (planning input).
    pub max_wait_ms: Millis,
    /// Hard deadline, Unix ms.
    pub deadline: Millis,
}

/// A candidate in the attempt order.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The combination.
    pub candidate: Arc<Candidate>,
    /// Its answer to the wait-time query.
    pub estimate: WaitEstimate,
}

/// A candidate and why it was not chosen first.
#[derive(Debug, Clone, Serialize)]
pub struct Considered {
    /// Provider name.
    pub provider: String,
    /// Model name.
    pub model: String,
    /// API key id.
    pub api_key: String,
    /// Its estimate, if its actor answered.
    pub estimated_total_time_ms: Option<Millis>,
    /// Blended price per 1k tokens.
    pub cost_per_1k_tokens: f64,
    /// Why it was not chosen.
    pub reason_not_chosen: String,
    /// Position among the fallbacks (1 = tried second), or none if left out.
    pub fallback_rank: Option<usize>,
    /// For a left-out candidate, ms until it could start.
    pub available_in_ms: Option<Millis>,
}

/// The routing decision.
#[derive(Debug, Clone)]
pub struct Plan {
    /// How candidates were chosen.
    pub method: RoutingMethod,
    /// Which rule decided.
    pub decision_reason: &'static str,
    /// Attempt order, the chosen candidate first.
    pub ordered: Vec<Planned>,
    /// The candidates as listed for the choice, with what it saw of each.
    listed: Vec<Ranked>,
    views: Vec<CandidateView>,
    /// Every other candidate with its reason (indices into `listed`).
    not_chosen: Vec<NotChosen>,
}

impl Plan {
    /// Every candidate but the chosen one, with why it was not chosen. Built on demand
    /// (debug answers, failures): most requests never show it.
    pub fn considered(&self) -> Vec<Considered> {
        considered(&self.listed, &self.views, &self.not_chosen)
    }
}

fn considered(
    list: &[Ranked],
    views: &[CandidateView],
    not_chosen: &[NotChosen],
) -> Vec<Considered> {
    not_chosen
        .iter()
        .map(|n| {
            let c = &list[n.index].0;
            let id = c.id();
            Considered {
                provider: id.provider.clone(),
                model: id.model.clone(),
                api_key: id.key_id.clone(),
                estimated_total_time_ms: views[n.index].estimate.as_ref().map(|e| e.total_ms),
                cost_per_1k_tokens: c.cost_per_1k,
                reason_not_chosen: n.reason.clone().into_owned(),
                fallback_rank: n.fallback_rank,
                available_in_ms: n.available_in_ms,
            }
        })
        .collect()
}

/// Why a request cannot be routed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// No model has the requested tier.
    #[error("No models available for intelligence level: {0}")]
    NoModelsAvailable(&'static str),
    /// Unknown scenario.
    #[error("Scenario not found: {0}")]
    ScenarioNotFound(String),
    /// Unknown provider.
    #[error("Provider not found: {0}")]
    ProviderNotFound(String),
    /// Unknown model of a known provider.
    #[error("Model not found: {0}")]
    ModelNotFound(String),
    /// Unknown key of a known provider.
    #[error("API key not found: {0}")]
    ApiKeyNotFound(String),
    /// Models exist but no key serves them.
    #[error("No available combinations for {0} routing")]
    NoCombinations(&'static str),
    /// Every candidate is disabled, full, or cannot start before the deadline.
    #[error("All {count} candidates are unavailable before the request deadline")]
    AllUnavailable {
        /// How many candidates there were.
        count: usize,
        /// Each with its reason.
        considered: Vec<Considered>,
        /// Earliest time one could start, ms from now.
        retry_after_ms: Option<Millis>,
    },
}

impl RouteError {
    /// The stable error code (the original's names where it had one).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoModelsAvailable(_) => "no_models_available",
            Self::ScenarioNotFound(_) => "scenario_not_found",
            Self::ProviderNotFound(_) => "provider_not_found",
            Self::ModelNotFound(_) => "model_not_found",
            Self::ApiKeyNotFound(_) => "api_key_not_found",
            Self::NoCombinations(_) => "no_combinations_available",
            Self::AllUnavailable { .. } => "all_candidates_unavailable",
        }
    }
}

/// A candidate with its scenario priority (0 outside scenarios).
type Ranked = (Arc<Candidate>, i64);

impl RoutingTable {
    /// The candidates of a target with their scenario priorities, or why there are none.
    fn candidates_for(&self, target: &RouteTarget) -> Result<(Vec<Ranked>, Rule), RouteError> {
        let t = self;
        match target {
            RouteTarget::Intelligence(tier) => {
                let list: Vec<_> = t
                    .candidates
                    .iter()
                    .filter(|c| c.tier == *tier)
                    .map(|c| (c.clone(), 0))
                    .collect();
                if list.is_empty() {
                    return Err(RouteError::NoModelsAvailable(tier.as_str()));
                }
                Ok((list, Rule::Intelligence))
            }
            RouteTarget::Scenario(name) => {
                let steps = t
                    .scenarios
                    .get(name)
                    .filter(|s| !s.is_empty())
                    .ok_or_else(|| RouteError::ScenarioNotFound(name.clone()))?;
                let mut list = Vec::new();
                for step in steps {
                    for c in &t.candidates {
                        let id = c.id();
                        if id.provider == step.provider && id.model == step.model {
                            list.push((c.clone(), step.priority));
                        }
                    }
                }
                if list.is_empty() {
                    return Err(RouteError::NoCombinations("scenario"));
                }
                Ok((list, Rule::Scenario))
            }
            RouteTarget::Direct {
                provider,
                model,
                key_id,
            } => {
                let p = t
                    .providers
                    .iter()
                    .find(|p| &p.name == provider)
                    .ok_or_else(|| RouteError::ProviderNotFound(provider.clone()))?;
                if !p.models.iter().any(|m| m == model) {
                    return Err(RouteError::ModelNotFound(model.clone()));
                }
                if let Some(k) = key_id {
                    if !p.keys.iter().any(|x| x == k) {
                        return Err(RouteError::ApiKeyNotFound(k.clone()));
                    }
                }
                let list: Vec<_> = t
                    .candidates
                    .iter()
                    .filter(|c| {
                        let id = c.id();
                        &id.provider == provider
                            && &id.model == model
                            && key_id.as_ref().is_none_or(|k| &id.key_id == k)
                    })
                    .map(|c| (c.clone(), 0))
                    .collect();
                if list.is_empty() {
                    return Err(RouteError::NoCombinations("direct"));
                }
                let rule = if key_id.is_some() {
                    Rule::DirectKey
                } else {
                    Rule::Direct
                };
                Ok((list, rule))
            }
        }
    }
}

impl RoutingTable {
    /// Plans a request from the estimates the key/model actors published: the whole
    /// routing decision, with no message; the HTTP handler calls it on the live table.
    pub fn plan(&self, msg: &Route, now: Millis) -> Result<Plan, RouteError> {
        let (list, rule) = self.candidates_for(&msg.target)?;
        let remaining = (msg.deadline - now).max(0);
        let views: Vec<CandidateView> = list
            .iter()
            .map(|(c, priority)| CandidateView {
                cost: c.cost_per_1k,
                priority: *priority,
                estimate: Some(c.handle.estimate_now(now)),
            })
            .collect();
        let choice = choose(rule, &views, msg.max_wait_ms, remaining);
        if choice.order.is_empty() {
            let retry_after_ms = choice
                .not_chosen
                .iter()
                .filter_map(|n| n.available_in_ms)
                .min();
            return Err(RouteError::AllUnavailable {
                count: list.len(),
                considered: considered(&list, &views, &choice.not_chosen),
                retry_after_ms,
            });
        }
        let mut ordered = Vec::with_capacity(choice.order.len());
        ordered.extend(choice.order.iter().filter_map(|&i| {
            views[i].estimate.clone().map(|estimate| Planned {
                candidate: list[i].0.clone(),
                estimate,
            })
        }));
        Ok(Plan {
            method: msg.target.method(),
            decision_reason: choice.decision_reason,
            ordered,
            listed: list,
            views,
            not_chosen: choice.not_chosen,
        })
    }
}
