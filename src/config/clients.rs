//! Client API keys: who may spend the provider keys (`clients.json`).
//!
//! Only the SHA-256 of each client key is kept after loading, whichever way the file gave
//! it (`env:NAME`, a literal, or `api_key_sha256`), so no client key is held in memory
//! once the file is read; a presented key is hashed and compared against every client's
//! hash in constant time, without stopping at the first match, so the time an answer takes
//! says nothing about which key, or how much of one, was right.

use bkvy_actors::{RouteTarget, Tier};
use subtle::ConstantTimeEq;

/// The clients of `clients.json`, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKeys {
    /// Every client.
    pub clients: Vec<Client>,
}

/// One client: its name, its key's hash, what it may ask for and its limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Client {
    /// The client's name (the object key in `clients`): its `client_id` in the statistics.
    pub name: String,
    /// SHA-256 of the client's key.
    pub key_sha256: [u8; 32],
    /// What the client may ask for; `None` allows everything.
    pub allow: Option<Vec<Allowed>>,
    /// Requests in any 60-second window.
    pub rpm: Option<u32>,
    /// Requests per UTC day.
    pub rpd: Option<u32>,
    /// USD per UTC day.
    pub daily_budget_usd: Option<f64>,
    /// USD per UTC calendar month.
    pub monthly_budget_usd: Option<f64>,
}

/// One entry of a client's `allow` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Allowed {
    /// `low`, `medium`, `high`: routing by intelligence level.
    Tier(Tier),
    /// `scenario:<name>`.
    Scenario(String),
    /// `<provider>/<model>`: that model directly, with any of its keys.
    Model {
        /// Provider name.
        provider: String,
        /// Model name.
        model: String,
    },
}

impl Allowed {
    /// Reads an `allow` entry (`None`: not one of the three forms).
    pub fn parse(s: &str) -> Option<Self> {
        if let Some(tier) = Tier::parse(s) {
            return Some(Self::Tier(tier));
        }
        if let Some(name) = s.strip_prefix("scenario:") {
            return (!name.is_empty()).then(|| Self::Scenario(name.to_owned()));
        }
        let (provider, model) = s.split_once('/')?;
        (!provider.is_empty() && !model.is_empty()).then(|| Self::Model {
            provider: provider.to_owned(),
            model: model.to_owned(),
        })
    }

    fn admits(&self, target: &RouteTarget) -> bool {
        match (self, target) {
            (Self::Tier(a), RouteTarget::Intelligence(t)) => a == t,
            (Self::Scenario(a), RouteTarget::Scenario(s)) => a == s,
            (
                Self::Model { provider, model },
                RouteTarget::Direct {
                    provider: p,
                    model: m,
                    ..
                },
            ) => provider == p && model == m,
            _ => false,
        }
    }
}

/// SHA-256 of a key.
pub fn sha256(key: &str) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, key.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Client {
    /// Whether the client may ask for `target`.
    pub fn allows(&self, target: &RouteTarget) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|list| list.iter().any(|a| a.admits(target)))
    }

    /// A short fingerprint of the key (the first 8 hex digits of its SHA-256): enough to
    /// tell keys apart in the logs and on the dashboard, nothing to authenticate with.
    pub fn fingerprint(&self) -> String {
        self.key_sha256[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl ClientKeys {
    /// The client whose key is `presented`. Every client's hash is compared, in constant
    /// time, whatever matched before.
    pub fn identify(&self, presented: &str) -> Option<&Client> {
        let hash = sha256(presented);
        let mut found = None;
        for c in &self.clients {
            if bool::from(c.key_sha256.ct_eq(&hash)) {
                found = Some(c);
            }
        }
        found
    }

    /// The client called `name`.
    pub fn get(&self, name: &str) -> Option<&Client> {
        self.clients.iter().find(|c| c.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(name: &str, key: &str, allow: Option<Vec<Allowed>>) -> Client {
        Client {
            name: name.into(),
            key_sha256: sha256(key),
            allow,
            rpm: None,
            rpd: None,
            daily_budget_usd: None,
            monthly_budget_usd: None,
        }
    }

    #[test]
    fn the_hash_is_sha256() {
        let hex: String = sha256("test").iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        );
        assert_eq!(client("a", "test", None).fingerprint(), "9f86d081");
    }

    #[test]
    fn identify_finds_the_one_client_with_that_key() {
        let keys = ClientKeys {
            clients: vec![client("a", "key-a", None), client("b", "key-b", None)],
        };
        assert_eq!(keys.identify("key-b").map(|c| c.name.as_str()), Some("b"));
        assert_eq!(keys.identify("key-a").map(|c| c.name.as_str()), Some("a"));
        assert!(keys.identify("key-c").is_none());
        assert!(keys.identify("").is_none());
        assert!(keys.identify("key-a ").is_none());
    }

    #[test]
    fn allow_lists_admit_exactly_their_targets() {
        let allow = ["low", "scenario:bulk", "openai/gpt-4o-mini"]
            .iter()
            .map(|s| Allowed::parse(s).unwrap())
            .collect();
        let c = client("a", "k", Some(allow));
        let direct = |p: &str, m: &str, k: Option<&str>| RouteTarget::Direct {
            provider: p.into(),
            model: m.into(),
            key_id: k.map(Into::into),
        };
        assert!(c.allows(&RouteTarget::Intelligence(Tier::Low)));
        assert!(!c.allows(&RouteTarget::Intelligence(Tier::Medium)));
        assert!(c.allows(&RouteTarget::Scenario("bulk".into())));
        assert!(!c.allows(&RouteTarget::Scenario("bulky".into())));
        assert!(c.allows(&direct("openai", "gpt-4o-mini", None)));
        assert!(c.allows(&direct("openai", "gpt-4o-mini", Some("k1"))));
        assert!(!c.allows(&direct("openai", "gpt-4o", None)));
        assert!(!c.allows(&direct("anthropic", "gpt-4o-mini", None)));
        let open = client("b", "k", None);
        assert!(open.allows(&direct("x", "y", None)));
        let closed = client("c", "k", Some(vec![]));
        assert!(!closed.allows(&RouteTarget::Intelligence(Tier::Low)));
    }

    #[test]
    fn allow_entries_parse_in_three_forms() {
        assert_eq!(Allowed::parse("high"), Some(Allowed::Tier(Tier::High)));
        assert_eq!(
            Allowed::parse("scenario:x"),
            Some(Allowed::Scenario("x".into()))
        );
        assert_eq!(
            Allowed::parse("vllm/Qwen/Qwen3-8B"),
            Some(Allowed::Model {
                provider: "vllm".into(),
                model: "Qwen/Qwen3-8B".into()
            })
        );
        for bad in ["", "scenario:", "/m", "p/", "gpt-4o", "LOW"] {
            assert_eq!(Allowed::parse(bad), None, "{bad}");
        }
    }
}
