//! The routing choice, as a pure function over candidates and their wait estimates.
//!
//! The whole fallback order is fixed at the moment of choice: the chosen candidate first,
//! then the rest in the order the rule gives. Candidates that cannot start before the
//! request's deadline (disabled, queue full, circuit open, shutting down, paused or limited
//! past it) are left out and reported with the reason.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde::Serialize;

use crate::clock::Millis;
use crate::key_model::capacity::WaitEstimate;

/// Which rule orders the candidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Cheapest whose estimate fits `max_wait_ms`; if none fits, the fastest.
    Intelligence,
    /// Scenario priority, then cost, then estimate.
    Scenario,
    /// Shortest estimate (any key of the requested model).
    Direct,
    /// The one key the caller named.
    DirectKey,
}

/// One candidate as the choice sees it.
#[derive(Debug, Clone)]
pub struct CandidateView {
    /// Blended price per 1k tokens.
    pub cost: f64,
    /// Scenario priority (0 outside scenarios).
    pub priority: i64,
    /// The actor's answer; `None` if it did not answer in time.
    pub estimate: Option<WaitEstimate>,
}

/// Why a candidate was not chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotChosen {
    /// Index into the candidate list.
    pub index: usize,
    /// Position in the fallback order (1 = first fallback), `None` if left out.
    pub fallback_rank: Option<usize>,
    /// Stable reason label (a constant, except for left-out candidates whose reason names
    /// the rejection).
    pub reason: Cow<'static, str>,
    /// For left-out candidates: ms until they could start, if known.
    pub available_in_ms: Option<Millis>,
}

/// The result.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Indices in attempt order: the chosen one first.
    pub order: Vec<usize>,
    /// Every other candidate and why it was not chosen.
    pub not_chosen: Vec<NotChosen>,
    /// Which rule decided (`cheapest_within_estimate`, `fastest_none_within_estimate`,
    /// `scenario_priority`, `direct_fastest_key`, `direct_requested_key`).
    pub decision_reason: &'static str,
}

fn start_ms(e: &WaitEstimate) -> Millis {
    e.rate_limit_wait_ms + e.queue_wait_ms
}

fn cmp_f64(a: f64, b: f64) -> Ordering {
    a.partial_cmp(&b).unwrap_or(Ordering::Equal)
}

/// Chooses among `candidates` for a request with the given wait budget and time left
/// before its deadline.
pub fn choose(
    rule: Rule,
    candidates: &[CandidateView],
    max_wait_ms: Millis,
    remaining_ms: Millis,
) -> Choice {
    // Sized once: every candidate ends up in one of the two lists.
    let mut usable = Vec::with_capacity(candidates.len());
    let mut not_chosen = Vec::with_capacity(candidates.len());
    for (i, c) in candidates.iter().enumerate() {
        let left_out = match &c.estimate {
            None => Some((Cow::Borrowed("actor_unavailable"), None)),
            Some(e) => match &e.unavailable {
                Some(r) => Some((Cow::Owned(format!("unavailable: {r}")), r.available_in_ms())),
                None if start_ms(e) > remaining_ms => Some((
                    Cow::Owned(format!("would_miss_deadline ({})", e.blocker)),
                    Some(start_ms(e)),
                )),
                None => None,
            },
        };
        match left_out {
            Some((reason, available_in_ms)) => not_chosen.push(NotChosen {
                index: i,
                fallback_rank: None,
                reason,
                available_in_ms,
            }),
            None => usable.push(i),
        }
    }
    let total = |i: usize| {
        candidates[i]
            .estimate
            .as_ref()
            .map_or(Millis::MAX, |e| e.total_ms)
    };
    let cost = |i: usize| candidates[i].cost;
    let fits = |i: usize| total(i) <= max_wait_ms;

    let decision_reason;
    match rule {
        Rule::Intelligence => {
            let any_fits = usable.iter().any(|&i| fits(i));
            if any_fits {
                decision_reason = "cheapest_within_estimate";
                usable.sort_by(|&a, &b| {
                    fits(b)
                        .cmp(&fits(a))
                        .then_with(|| {
                            if fits(a) {
                                cmp_f64(cost(a), cost(b)).then(total(a).cmp(&total(b)))
                            } else {
                                total(a).cmp(&total(b)).then(cmp_f64(cost(a), cost(b)))
                            }
                        })
                        .then(a.cmp(&b))
                });
            } else {
                decision_reason = "fastest_none_within_estimate";
                usable.sort_by(|&a, &b| {
                    total(a)
                        .cmp(&total(b))
                        .then(cmp_f64(cost(a), cost(b)))
                        .then(a.cmp(&b))
                });
            }
        }
        Rule::Scenario => {
            decision_reason = "scenario_priority";
            usable.sort_by(|&a, &b| {
                candidates[a]
                    .priority
                    .cmp(&candidates[b].priority)
                    .then(cmp_f64(cost(a), cost(b)))
                    .then(total(a).cmp(&total(b)))
                    .then(a.cmp(&b))
            });
        }
        Rule::Direct | Rule::DirectKey => {
            decision_reason = if rule == Rule::Direct {
                "direct_fastest_key"
            } else {
                "direct_requested_key"
            };
            usable.sort_by(|&a, &b| total(a).cmp(&total(b)).then(a.cmp(&b)));
        }
    }

    if let Some(&chosen) = usable.first() {
        for (rank, &i) in usable.iter().enumerate().skip(1) {
            let reason = match rule {
                Rule::Intelligence if !fits(i) && fits(chosen) => "exceeds_max_wait",
                Rule::Intelligence
                    if decision_reason == "cheapest_within_estimate" && cost(i) > cost(chosen) =>
                {
                    "higher_cost"
                }
                Rule::Scenario if candidates[i].priority > candidates[chosen].priority => {
                    "lower_priority"
                }
                Rule::Scenario if cost(i) > cost(chosen) => "higher_cost",
                _ if total(i) == total(chosen) => "same_estimate_later_in_config",
                _ => "longer_estimate",
            };
            not_chosen.push(NotChosen {
                index: i,
                fallback_rank: Some(rank),
                reason: Cow::Borrowed(reason),
                available_in_ms: None,
            });
        }
    }
    not_chosen.sort_by_key(|n| (n.fallback_rank.is_none(), n.fallback_rank, n.index));
    Choice {
        order: usable,
        not_chosen,
        decision_reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key_model::capacity::Rejection;
    use proptest::prelude::*;

    fn est(wait: Millis, service: Millis) -> WaitEstimate {
        WaitEstimate {
            rate_limit_wait_ms: wait,
            queue_wait_ms: 0,
            service_ms: service,
            total_ms: wait + service,
            queue_len: 0,
            in_flight: 0,
            blocker: if wait > 0 { "rpm" } else { "none" },
            unavailable: None,
        }
    }

    fn cand(cost: f64, wait: Millis, service: Millis) -> CandidateView {
        CandidateView {
            cost,
            priority: 0,
            estimate: Some(est(wait, service)),
        }
    }

    #[test]
    fn cheapest_that_fits_wins() {
        let cs = [
            cand(0.01, 0, 1_000),
            cand(0.001, 50_000, 1_000),
            cand(0.002, 0, 2_000),
        ];
        let c = choose(Rule::Intelligence, &cs, 10_000, 120_000);
        assert_eq!(c.decision_reason, "cheapest_within_estimate");
        assert_eq!(c.order, vec![2, 0, 1]);
        let reasons: Vec<_> = c.not_chosen.iter().map(|n| n.reason.as_ref()).collect();
        assert_eq!(reasons, vec!["higher_cost", "exceeds_max_wait"]);
    }

    fn reasons(c: &Choice) -> Vec<&str> {
        c.not_chosen.iter().map(|n| n.reason.as_ref()).collect()
    }

    #[test]
    fn each_fallback_says_why_it_was_not_first() {
        // Intelligence, one fits: a dearer one that fits, an equal one, a faster-but-dearer
        // one that does not fit.
        let cs = [
            cand(0.001, 0, 1_000),
            cand(0.002, 0, 1_000),
            cand(0.001, 0, 1_000),
            cand(0.001, 0, 3_000),
        ];
        let c = choose(Rule::Intelligence, &cs, 2_000, 120_000);
        assert_eq!(c.order, vec![0, 2, 1, 3]);
        assert_eq!(
            reasons(&c),
            vec![
                "same_estimate_later_in_config",
                "higher_cost",
                "exceeds_max_wait"
            ]
        );
        // None fits: ordered by estimate, reasons by estimate only.
        let c = choose(Rule::Intelligence, &cs, 500, 120_000);
        assert_eq!(c.decision_reason, "fastest_none_within_estimate");
        assert_eq!(
            reasons(&c),
            vec![
                "same_estimate_later_in_config",
                "same_estimate_later_in_config",
                "longer_estimate"
            ]
        );
        // Scenario: priority first, then cost, then estimate.
        let mut sc = [
            cand(0.001, 0, 1_000),
            cand(0.002, 0, 1_000),
            cand(0.001, 0, 2_000),
            cand(0.0, 0, 1_000),
            cand(0.001, 0, 1_000),
        ];
        sc[3].priority = 2;
        for c in &mut sc[..3] {
            c.priority = 1;
        }
        sc[4].priority = 1;
        let c = choose(Rule::Scenario, &sc, 10_000, 120_000);
        assert_eq!(c.order, vec![0, 4, 2, 1, 3]);
        assert_eq!(
            reasons(&c),
            vec![
                "same_estimate_later_in_config",
                "longer_estimate",
                "higher_cost",
                "lower_priority"
            ]
        );
    }

    #[test]
    fn a_start_exactly_at_the_deadline_is_still_usable() {
        let mut queued = cand(0.001, 4_000, 1_000);
        if let Some(e) = queued.estimate.as_mut() {
            e.queue_wait_ms = 1_000;
            e.total_ms = 6_000;
        }
        let c = choose(Rule::Intelligence, &[queued.clone()], 10_000, 5_000);
        assert_eq!(c.order, vec![0], "start 5,000 ms with 5,000 ms left");
        let c = choose(Rule::Intelligence, &[queued], 10_000, 4_999);
        assert!(
            c.order.is_empty(),
            "start (rate + queue) past the time left"
        );
    }

    #[test]
    fn fastest_when_none_fits() {
        let cs = [cand(0.001, 30_000, 1_000), cand(0.01, 20_000, 1_000)];
        let c = choose(Rule::Intelligence, &cs, 5_000, 120_000);
        assert_eq!(c.decision_reason, "fastest_none_within_estimate");
        assert_eq!(c.order, vec![1, 0]);
    }

    #[test]
    fn candidates_that_cannot_start_before_the_deadline_are_left_out() {
        let mut disabled = cand(0.0, 0, 100);
        if let Some(e) = disabled.estimate.as_mut() {
            e.unavailable = Some(Rejection::Disabled {
                message: "401".into(),
            });
        }
        let cs = [
            cand(0.0, 90_000, 100),
            disabled,
            CandidateView {
                cost: 0.0,
                priority: 0,
                estimate: None,
            },
            cand(0.5, 0, 100),
        ];
        let c = choose(Rule::Intelligence, &cs, 1_000, 60_000);
        assert_eq!(c.order, vec![3]);
        assert_eq!(c.not_chosen.len(), 3);
        assert!(c.not_chosen.iter().all(|n| n.fallback_rank.is_none()));
        assert_eq!(c.not_chosen[0].available_in_ms, Some(90_000));
    }

    #[test]
    fn scenario_follows_priority_before_cost() {
        let mut a = cand(0.01, 0, 100);
        a.priority = 1;
        let mut b = cand(0.0, 0, 100);
        b.priority = 2;
        let c = choose(Rule::Scenario, &[b, a], 1_000, 60_000);
        assert_eq!(c.order, vec![1, 0]);
        assert_eq!(c.decision_reason, "scenario_priority");
        assert_eq!(c.not_chosen[0].reason, "lower_priority");
    }

    #[test]
    fn direct_picks_the_key_with_the_shortest_estimate() {
        let cs = [cand(0.0, 5_000, 100), cand(0.0, 0, 100)];
        let c = choose(Rule::Direct, &cs, 1_000, 60_000);
        assert_eq!(c.order, vec![1, 0]);
        assert_eq!(c.decision_reason, "direct_fastest_key");
    }

    proptest! {
        /// Every candidate appears exactly once: in the order or among the left-out ones;
        /// and when something fits, the chosen one is a cheapest fitting candidate.
        #[test]
        fn choice_is_a_partition_and_respects_the_rule(
            specs in proptest::collection::vec((0u32..5, 0i64..20_000, 1i64..5_000, any::<bool>()), 1..10),
            max_wait in 0i64..20_000,
        ) {
            let cs: Vec<_> = specs.iter().map(|&(cost, wait, service, answered)| CandidateView {
                cost: f64::from(cost) / 1000.0,
                priority: 0,
                estimate: answered.then(|| est(wait, service)),
            }).collect();
            let c = choose(Rule::Intelligence, &cs, max_wait, 15_000);
            let mut seen: Vec<usize> = c.order.clone();
            seen.extend(c.not_chosen.iter().filter(|n| n.fallback_rank.is_none()).map(|n| n.index));
            seen.sort_unstable();
            prop_assert_eq!(seen, (0..cs.len()).collect::<Vec<_>>());
            prop_assert_eq!(c.not_chosen.len(), cs.len() - usize::from(!c.order.is_empty()));
            if c.decision_reason == "cheapest_within_estimate" {
                let chosen = c.order[0];
                let min_fit_cost = c.order.iter()
                    .filter(|&&i| cs[i].estimate.as_ref().is_some_and(|e| e.total_ms <= max_wait))
                    .map(|&i| cs[i].cost)
                    .fold(f64::INFINITY, f64::min);
                prop_assert!(cs[chosen].cost <= min_fit_cost);
            }
        }
    }
}
