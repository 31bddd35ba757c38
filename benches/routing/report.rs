//! The figures of a run, from the trace, what each request got, what the fake upstream
//! saw and the reference schedule: one JSON object (the bench prints it as one line) and
//! a readable rendering of the same figures.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::bound::Reference;
use crate::catalog::{find_model, Pair, Provider, Tier};
use crate::replay::Outcome;
use crate::trace::TraceRequest;

/// What the fake upstream saw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Upstream {
    /// Chat calls received.
    pub calls: usize,
    /// Calls answered 429: the provider-side limits' refusals and any other 429.
    pub status_429: usize,
    /// Refusals by the provider-side limits (`FakeUpstream::limit_refusals`).
    pub limit_refusals: u64,
    /// Calls answered with a 5xx (the failing model's injected 500s).
    pub status_5xx: usize,
    /// Calls to a (credential, model) the fake has no limit for: a catalog mistake.
    pub unlimited_calls: usize,
    /// Every 429: the pair (`model/key`) and, for a refusal of the minute's limit, by how
    /// much the window was short of 60 s (see [`shortfalls`]).
    pub refusals: Vec<(String, Option<f64>)>,
}

/// A limited call as the fake saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct Arrival {
    /// Which pair's limit it fell under.
    pub pair: usize,
    /// Arrival, µs since the epoch.
    pub at_us: u64,
    pub status: u16,
}

/// For every call answered 429, in arrival order: its pair and, when the pair's RPM was
/// full, how much sooner than 60 s after the `rpm`-th accepted arrival before it the call
/// came (ms): a few ms means bkvy sent it right at the edge of its own window and the
/// provider's clock disagreed by that much; `None` means the minute was not full (the
/// day's limit, or a 429 the limits did not send).
pub fn shortfalls(calls: &[Arrival], rpm: &[u32]) -> Vec<(usize, Option<f64>)> {
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate() {
        if c.status != 429 {
            continue;
        }
        let r = rpm[c.pair] as usize;
        let oldest = calls[..i]
            .iter()
            .rev()
            .filter(|a| a.pair == c.pair && a.status != 429 && a.at_us <= c.at_us)
            .nth(r.saturating_sub(1))
            .map(|a| a.at_us);
        let short = oldest
            .map(|a| a + 60_000_000)
            .filter(|&leaves| leaves > c.at_us)
            .map(|leaves| (leaves - c.at_us) as f64 / 1000.0);
        out.push((c.pair, short));
    }
    out
}

/// The figures of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub requests: usize,
    /// Answered 200.
    pub ok: usize,
    /// Answered 200 with wall time ≤ `max_wait_seconds`.
    pub within_budget: usize,
    pub within_budget_share: f64,
    /// Answered 200 after the budget.
    pub ok_over_budget: usize,
    /// Requests not answered 200, by status (`none` when no answer came).
    pub failures_by_status: BTreeMap<String, usize>,
    /// Why requests missed their budget (see [`cause`]).
    pub over_budget_causes: BTreeMap<String, usize>,
    /// The first requests that missed their budget, one line each.
    pub over_budget_examples: Vec<String>,
    /// 429s the upstream sent (all of them; `limit_refusals` of them by the limits).
    pub upstream_429s: usize,
    pub limit_refusals: u64,
    pub upstream_calls: usize,
    pub upstream_5xx: usize,
    pub unlimited_calls: usize,
    /// Upstream 429s per pair (`model/key`).
    pub refusals_by_pair: BTreeMap<String, usize>,
    /// For each 429 refusing a full minute, how much short of 60 s the window was, ms
    /// (ascending).
    pub refusal_shortfall_ms: Vec<f64>,
    /// Answers from a model whose tier is not the one asked for.
    pub wrong_tier: usize,
    /// Sum of `cost_usd` of the answers.
    pub cost_usd: f64,
    /// The reference schedule's cost of the whole trace.
    pub bound_usd: f64,
    /// The reference's cost of the requests bkvy answered (what `cost_usd` pays for).
    pub bound_answered_usd: f64,
    /// `cost_usd / bound_answered_usd`.
    pub cost_ratio: f64,
    /// Requests even the reference cannot finish within budget.
    pub reference_late: usize,
    /// The strict lower bound of the trace's cost.
    pub floor_usd: f64,
    /// Answers whose `total_tokens` differ from the trace's token model.
    pub token_mismatches: usize,
    /// Wall time of answered requests, ms.
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    /// Worst send delay after the trace time.
    pub max_lag_ms: f64,
    /// Answers per model, and the reference's calls per model.
    pub served_by_model: BTreeMap<String, usize>,
    pub reference_by_model: BTreeMap<String, usize>,
}

/// Whether a request finished within its budget.
pub fn within_budget(r: &TraceRequest, o: &Outcome) -> bool {
    o.status == Some(200) && o.elapsed_ms <= r.budget_s * 1000.0
}

/// Why a request missed its budget: no answer, an error status, or for a late 200 the
/// first that applies of: bkvy found no candidate within its estimate; failed tries
/// before the answer; time waiting for a limit or in the queue; a model slower than the
/// budget at worst; and otherwise the upstream call itself.
pub fn cause(r: &TraceRequest, o: &Outcome, providers: &[Provider]) -> String {
    match o.status {
        None => format!("no_answer: {}", o.error.as_deref().unwrap_or("?")),
        Some(200) => {
            if o.decision.as_deref() == Some("fastest_none_within_estimate") {
                "late: no candidate within estimate".to_owned()
            } else if !o.attempts.is_empty() {
                format!("late: after failed tries ({})", o.attempts.join(", "))
            } else if o.rate_limit_wait_ms + o.queue_wait_ms > 0.0 {
                "late: waited for a limit or in the queue".to_owned()
            } else if o
                .model
                .as_deref()
                .and_then(|m| find_model(providers, m))
                .is_some_and(|m| m.worst_latency_ms() as f64 > r.budget_s * 1000.0)
            {
                "late: model can be slower than the budget".to_owned()
            } else {
                "late: upstream call".to_owned()
            }
        }
        Some(s) => format!("{s}: {}", o.error.as_deref().unwrap_or("?")),
    }
}

/// How many over-budget requests are described one by one.
const EXAMPLES: usize = 12;

/// One line about a request that missed its budget.
pub fn describe(r: &TraceRequest, o: &Outcome) -> String {
    format!(
        "#{} {} budget {:.1} s at {:.1} s: {} in {:.0} ms via {}/{}/{} ({}), waited {:.0} ms for a limit and {:.0} ms in the queue, upstream {:.0} ms, failed tries [{}]",
        r.id,
        r.tier.name(),
        r.budget_s,
        r.at_ms as f64 / 1000.0,
        o.status.map_or("no answer".to_owned(), |s| s.to_string()),
        o.elapsed_ms,
        o.provider.as_deref().unwrap_or("-"),
        o.model.as_deref().unwrap_or("-"),
        o.key.as_deref().unwrap_or("-"),
        o.decision.as_deref().or(o.error.as_deref()).unwrap_or("-"),
        o.rate_limit_wait_ms,
        o.queue_wait_ms,
        o.api_ms,
        o.attempts.join(", "),
    )
}

/// The `p`-th percentile (nearest rank) of sorted values.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The figures of a run.
pub fn summarize(
    trace: &[TraceRequest],
    outcomes: &[Outcome],
    reference: &Reference,
    floor_usd: f64,
    pairs: &[Pair],
    providers: &[Provider],
    upstream: &Upstream,
) -> Summary {
    let mut failures_by_status = BTreeMap::new();
    let mut over_budget_causes = BTreeMap::new();
    let mut over_budget_examples = Vec::new();
    let mut served_by_model = BTreeMap::new();
    let mut reference_by_model = BTreeMap::new();
    let (mut ok, mut within, mut wrong_tier, mut mismatches) = (0, 0, 0, 0);
    let (mut cost, mut bound_answered) = (0.0, 0.0);
    let mut times = Vec::new();
    for ((r, o), a) in trace.iter().zip(outcomes).zip(&reference.assignments) {
        if let Some(a) = a {
            *reference_by_model
                .entry(pairs[a.pair].model.to_owned())
                .or_insert(0) += 1;
        }
        if within_budget(r, o) {
            within += 1;
        } else {
            *over_budget_causes
                .entry(cause(r, o, providers))
                .or_insert(0) += 1;
            if over_budget_examples.len() < EXAMPLES {
                over_budget_examples.push(describe(r, o));
            }
        }
        if o.status != Some(200) {
            let status = o.status.map_or("none".to_owned(), |s| s.to_string());
            *failures_by_status.entry(status).or_insert(0) += 1;
            continue;
        }
        ok += 1;
        cost += o.cost_usd;
        bound_answered += a.as_ref().map_or(0.0, |a| a.cost);
        times.push(o.elapsed_ms);
        let model = o.model.clone().unwrap_or_default();
        let tier: Option<Tier> = find_model(providers, &model).map(|m| m.tier);
        if tier != Some(r.tier) {
            wrong_tier += 1;
        }
        if o.tokens != Some(r.tokens()) {
            mismatches += 1;
        }
        *served_by_model.entry(model).or_insert(0) += 1;
    }
    times.sort_by(f64::total_cmp);
    let mut refusals_by_pair = BTreeMap::new();
    let mut refusal_shortfall_ms = Vec::new();
    for (pair, short) in &upstream.refusals {
        *refusals_by_pair.entry(pair.clone()).or_insert(0) += 1;
        refusal_shortfall_ms.extend(*short);
    }
    refusal_shortfall_ms.sort_by(f64::total_cmp);
    let share = |n: usize| {
        if trace.is_empty() {
            0.0
        } else {
            n as f64 / trace.len() as f64
        }
    };
    Summary {
        requests: trace.len(),
        ok,
        within_budget: within,
        within_budget_share: share(within),
        ok_over_budget: ok - within.min(ok),
        failures_by_status,
        over_budget_causes,
        over_budget_examples,
        upstream_429s: upstream.status_429,
        limit_refusals: upstream.limit_refusals,
        upstream_calls: upstream.calls,
        upstream_5xx: upstream.status_5xx,
        unlimited_calls: upstream.unlimited_calls,
        refusals_by_pair,
        refusal_shortfall_ms,
        wrong_tier,
        cost_usd: cost,
        bound_usd: reference.cost,
        bound_answered_usd: bound_answered,
        cost_ratio: if bound_answered > 0.0 {
            cost / bound_answered
        } else {
            0.0
        },
        reference_late: reference.late,
        floor_usd,
        token_mismatches: mismatches,
        p50_ms: percentile(&times, 50.0),
        p95_ms: percentile(&times, 95.0),
        p99_ms: percentile(&times, 99.0),
        max_lag_ms: outcomes.iter().map(|o| o.lag_ms).fold(0.0, f64::max),
        served_by_model,
        reference_by_model,
    }
}

/// The targets the routing must meet, each with whether this run meets it.
pub fn targets(s: &Summary) -> Vec<(&'static str, bool)> {
    vec![
        ("within budget >= 99.5 %", s.within_budget_share >= 0.995),
        ("upstream 429s == 0", s.upstream_429s == 0),
        ("wrong tier == 0", s.wrong_tier == 0),
        ("cost <= 1.25 x bound", s.cost_ratio <= 1.25),
    ]
}

/// The figures for a person to read.
pub fn render(s: &Summary) -> String {
    let mut out = String::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    line(format!(
        "requests {}  ok {}  within budget {} ({:.2} %)  ok but over budget {}",
        s.requests,
        s.ok,
        s.within_budget,
        s.within_budget_share * 100.0,
        s.ok_over_budget
    ));
    line(format!("failures by status: {:?}", s.failures_by_status));
    line(format!(
        "upstream: {} calls, {} answered 429 ({} by the provider-side limits), {} answered 5xx, {} to unlimited pairs",
        s.upstream_calls, s.upstream_429s, s.limit_refusals, s.upstream_5xx, s.unlimited_calls
    ));
    if !s.refusals_by_pair.is_empty() {
        line(format!("upstream 429s by pair: {:?}", s.refusals_by_pair));
        let shown: Vec<String> = s
            .refusal_shortfall_ms
            .iter()
            .map(|ms| format!("{ms:.3}"))
            .collect();
        line(format!(
            "  minute windows short of 60 s by (ms): [{}]",
            shown.join(", ")
        ));
    }
    line(format!("wrong tier: {}", s.wrong_tier));
    line(format!(
        "cost ${:.6}  reference ${:.6} (answered: ${:.6}, {} late even there)  ratio {:.3}  floor ${:.6}",
        s.cost_usd,
        s.bound_usd,
        s.bound_answered_usd,
        s.reference_late,
        s.cost_ratio,
        s.floor_usd
    ));
    line(format!(
        "wall time of answers: p50 {:.0} ms  p95 {:.0} ms  p99 {:.0} ms; worst send lag {:.1} ms; token mismatches {}",
        s.p50_ms, s.p95_ms, s.p99_ms, s.max_lag_ms, s.token_mismatches
    ));
    if !s.over_budget_causes.is_empty() {
        line("over budget, by cause:".to_owned());
    }
    for (cause, n) in &s.over_budget_causes {
        line(format!("  {n:>5}  {cause}"));
    }
    if !s.over_budget_examples.is_empty() {
        line("first requests over budget:".to_owned());
    }
    for e in &s.over_budget_examples {
        line(format!("  {e}"));
    }
    line("answers per model (bkvy / reference):".to_owned());
    let models: std::collections::BTreeSet<&String> = s
        .served_by_model
        .keys()
        .chain(s.reference_by_model.keys())
        .collect();
    for m in models {
        line(format!(
            "  {:<24} {:>5} / {:>5}",
            m,
            s.served_by_model.get(m).copied().unwrap_or(0),
            s.reference_by_model.get(m).copied().unwrap_or(0)
        ));
    }
    for (target, met) in targets(s) {
        line(format!(
            "target {target}: {}",
            if met { "met" } else { "MISSED" }
        ));
    }
    out
}
