//! Names shared by every actor: intelligence tiers, routing methods and the identity of a
//! (provider, API key, model) combination.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The three intelligence levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Simple questions, translations, basic tasks.
    Low,
    /// Analysis, coding, complex reasoning.
    Medium,
    /// Research, advanced reasoning, critical tasks.
    High,
}

impl Tier {
    /// All tiers, lowest first.
    pub const ALL: [Tier; 3] = [Tier::Low, Tier::Medium, Tier::High];

    /// The lower-case name used in JSON and URLs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
        }
    }

    /// Parses `low`, `medium` or `high` (exactly, lower case).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "low" => Some(Self::Low),
            "medium" => Some(Self::Medium),
            "high" => Some(Self::High),
            _ => None,
        }
    }
}

/// How a request chose its candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoutingMethod {
    /// By intelligence level: cheapest model of the tier that fits the wait budget.
    Intelligence,
    /// By a named scenario's priority list.
    Scenario,
    /// A given provider and model.
    Direct,
}

impl RoutingMethod {
    /// The lower-case name used in JSON and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Intelligence => "intelligence",
            Self::Scenario => "scenario",
            Self::Direct => "direct",
        }
    }
}

/// Identity of one (provider, API key id, model) combination.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyModelId {
    /// Provider name.
    pub provider: String,
    /// API key id (never the secret).
    pub key_id: String,
    /// Model name.
    pub model: String,
}

impl KeyModelId {
    /// Builds an id.
    pub fn new(provider: &str, key_id: &str, model: &str) -> Self {
        Self {
            provider: provider.to_owned(),
            key_id: key_id.to_owned(),
            model: model.to_owned(),
        }
    }
}

impl fmt::Display for KeyModelId {
    /// `{provider}_{key_id}_{model}`: the original's rate-limit/queue key spelling.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}_{}", self.provider, self.key_id, self.model)
    }
}
