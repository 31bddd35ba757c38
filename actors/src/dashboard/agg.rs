//! What one time bucket knows: counts by outcome and by every dimension the page shows,
//! cost, tokens, wait-budget compliance and a latency histogram. Everything is a sum, so a
//! range is answered by merging its buckets, and loaded history merges with live counts.
//!
//! Names come from callers (`client_id`) or the config; each map keeps at most
//! [`MAX_NAMES`] distinct names per bucket and counts the rest under [`OTHER`], so a caller
//! inventing a new `client_id` per request cannot grow memory without bound.

use std::collections::BTreeMap;

use serde::Serialize;

use super::hist::LatencyHist;
use super::tx::Tx;

/// Distinct names kept per map and bucket.
pub const MAX_NAMES: usize = 200;
/// Where names beyond [`MAX_NAMES`] are counted.
pub const OTHER: &str = "(other)";

/// The wait-budget buckets of the original, in display order.
pub const WAIT_BUCKETS: [&str; 5] = ["0-10s", "10-30s", "30-60s", "60-120s", "120s+"];

/// Which wait-budget bucket a `max_wait_seconds` falls in.
pub fn wait_bucket(secs: f64) -> usize {
    match secs {
        s if s <= 10.0 => 0,
        s if s <= 30.0 => 1,
        s if s <= 60.0 => 2,
        s if s <= 120.0 => 3,
        _ => 4,
    }
}

/// Count map with a bounded number of names.
pub type Counts = BTreeMap<String, u64>;

fn bump(map: &mut Counts, key: &str, n: u64) {
    if let Some(c) = map.get_mut(key) {
        *c += n;
    } else if map.len() < MAX_NAMES {
        map.insert(key.to_owned(), n);
    } else {
        *map.entry(OTHER.to_owned()).or_insert(0) += n;
    }
}

fn merge_counts(into: &mut Counts, from: &Counts) {
    for (k, n) in from {
        bump(into, k, *n);
    }
}

/// Success and failure counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Outcomes {
    /// Requests.
    pub total: u64,
    /// Answered.
    pub success: u64,
    /// Not answered.
    pub failed: u64,
}

impl Outcomes {
    fn record(&mut self, success: bool) {
        self.total += 1;
        if success {
            self.success += 1;
        } else {
            self.failed += 1;
        }
    }

    fn merge(&mut self, o: &Outcomes) {
        self.total += o.total;
        self.success += o.success;
        self.failed += o.failed;
    }
}

/// Usage of one API key id.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct KeyAgg {
    /// Requests answered or failed on this key.
    pub outcomes: Outcomes,
    /// Cost in USD.
    pub cost: f64,
    /// Input + output tokens.
    pub tokens: u64,
    /// Sum of wall times, ms.
    pub time_ms: i64,
    /// Requests per model.
    pub models: Counts,
}

/// One bucket's numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Agg {
    /// Requests by outcome.
    pub outcomes: Outcomes,
    /// Cost in USD.
    pub cost: f64,
    /// Input + output tokens.
    pub tokens: u64,
    /// Sum of wall times, ms.
    pub time_ms: i64,
    /// Answering provider.
    pub providers: Counts,
    /// Answering model.
    pub models: Counts,
    /// Routing method.
    pub methods: Counts,
    /// Requested intelligence level.
    pub levels: Counts,
    /// Caller `client_id`.
    pub clients: Counts,
    /// Error code.
    pub errors: Counts,
    /// Per key id.
    pub keys: BTreeMap<String, KeyAgg>,
    /// Outcomes per wait-budget bucket ([`WAIT_BUCKETS`]).
    pub wait: [Outcomes; 5],
    /// Requests with a budget that finished within it.
    pub wait_met: u64,
    /// Requests with a budget that took longer.
    pub wait_exceeded: u64,
    /// Wall times.
    pub latency: LatencyHist,
}

impl Agg {
    /// Counts one transaction.
    pub fn record(&mut self, tx: &Tx) {
        self.outcomes.record(tx.success);
        let cost = tx.cost.filter(|c| c.is_finite()).unwrap_or(0.0);
        self.cost += cost;
        self.tokens += tx.tokens();
        self.time_ms += tx.total_time_ms.max(0);
        self.latency.record(tx.total_time_ms);
        if tx.answered() {
            if let Some(p) = &tx.provider {
                bump(&mut self.providers, p, 1);
            }
            if let Some(m) = &tx.model {
                bump(&mut self.models, m, 1);
            }
        }
        bump(&mut self.methods, &tx.routing_method, 1);
        if let Some(l) = &tx.intelligence_level {
            bump(&mut self.levels, l, 1);
        }
        bump(&mut self.clients, &tx.client_id, 1);
        if !tx.success {
            bump(
                &mut self.errors,
                tx.error_type.as_deref().unwrap_or("unknown"),
                1,
            );
        }
        if let Some(k) = &tx.api_key {
            if self.keys.len() < MAX_NAMES || self.keys.contains_key(k) {
                let key = self.keys.entry(k.clone()).or_default();
                key.outcomes.record(tx.success);
                key.cost += cost;
                key.tokens += tx.tokens();
                key.time_ms += tx.total_time_ms.max(0);
                if let Some(m) = &tx.model {
                    bump(&mut key.models, m, 1);
                }
            }
        }
        if let Some(w) = tx.max_wait_seconds.filter(|w| w.is_finite()) {
            self.wait[wait_bucket(w)].record(tx.success);
            if tx.total_time_ms as f64 <= w * 1000.0 {
                self.wait_met += 1;
            } else {
                self.wait_exceeded += 1;
            }
        }
    }

    /// Adds another bucket's numbers.
    pub fn merge(&mut self, o: &Agg) {
        self.outcomes.merge(&o.outcomes);
        self.cost += o.cost;
        self.tokens += o.tokens;
        self.time_ms += o.time_ms;
        for (mine, theirs) in [
            (&mut self.providers, &o.providers),
            (&mut self.models, &o.models),
            (&mut self.methods, &o.methods),
            (&mut self.levels, &o.levels),
            (&mut self.clients, &o.clients),
            (&mut self.errors, &o.errors),
        ] {
            merge_counts(mine, theirs);
        }
        for (k, theirs) in &o.keys {
            let key = self.keys.entry(k.clone()).or_default();
            key.outcomes.merge(&theirs.outcomes);
            key.cost += theirs.cost;
            key.tokens += theirs.tokens;
            key.time_ms += theirs.time_ms;
            merge_counts(&mut key.models, &theirs.models);
        }
        for (mine, theirs) in self.wait.iter_mut().zip(&o.wait) {
            mine.merge(theirs);
        }
        self.wait_met += o.wait_met;
        self.wait_exceeded += o.wait_exceeded;
        self.latency.merge(&o.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(success: bool, client: &str, ms: i64, wait: Option<f64>) -> Tx {
        Tx {
            at_ms: 0,
            request_id: "r".into(),
            client_id: client.into(),
            routing_method: "intelligence".into(),
            intelligence_level: Some("low".into()),
            max_wait_seconds: wait,
            success,
            provider: success.then(|| "openai".into()),
            model: success.then(|| "gpt".into()),
            api_key: success.then(|| "k1".into()),
            total_time_ms: ms,
            cost: success.then_some(0.25),
            input_tokens: Some(3),
            output_tokens: Some(4),
            error_type: (!success).then(|| "timeout".into()),
            error_message: None,
        }
    }

    #[test]
    fn counts_cost_keys_and_wait_compliance() {
        let mut a = Agg::default();
        a.record(&tx(true, "c1", 500, Some(1.0)));
        a.record(&tx(true, "c1", 1500, Some(1.0)));
        a.record(&tx(false, "c2", 100, Some(45.0)));
        a.record(&tx(false, "c2", 100, None));
        assert_eq!(
            a.outcomes,
            Outcomes {
                total: 4,
                success: 2,
                failed: 2
            }
        );
        assert_eq!(a.cost, 0.5);
        assert_eq!(a.tokens, 28);
        assert_eq!(a.providers["openai"], 2);
        assert_eq!(a.errors["timeout"], 2);
        assert_eq!(a.clients["c2"], 2);
        assert_eq!(a.keys["k1"].outcomes.success, 2);
        assert_eq!(a.keys["k1"].tokens, 14);
        assert_eq!((a.wait_met, a.wait_exceeded), (2, 1));
        assert_eq!(a.wait[0].total, 2);
        assert_eq!(a.wait[2].failed, 1);
    }

    #[test]
    fn merge_is_the_same_as_recording_in_one_bucket() {
        let (mut a, mut b, mut all) = (Agg::default(), Agg::default(), Agg::default());
        for (i, t) in [tx(true, "x", 10, Some(5.0)), tx(false, "y", 20, None)]
            .iter()
            .enumerate()
        {
            if i == 0 {
                a.record(t)
            } else {
                b.record(t)
            }
            all.record(t);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn names_beyond_the_cap_are_counted_as_other() {
        let mut a = Agg::default();
        for i in 0..MAX_NAMES + 5 {
            a.record(&tx(true, &format!("client-{i}"), 1, None));
        }
        assert_eq!(a.clients.len(), MAX_NAMES + 1);
        assert_eq!(a.clients[OTHER], 5);
        assert_eq!(wait_bucket(10.0), 0);
        assert_eq!(wait_bucket(10.5), 1);
        assert_eq!(wait_bucket(500.0), 4);
    }
}
