//! What the trace should cost: a reference schedule to hold bkvy's bill against, and a
//! floor no schedule can beat.
//!
//! **Reference** (`reference`): the requests are taken in arrival order and each is put on
//! the cheapest (key, model) of its tier that can *finish* it within its budget, given
//! the calls already placed: it starts at the earliest instant at or after the arrival
//! at which one more call keeps every 60-second window of that pair within its RPM (and
//! its day within RPD), and takes the model's worst-case latency (base + full jitter). If
//! no pair can finish it in time, it goes to the pair that finishes it first and counts
//! as late. This is bkvy's promise played by a router that knows the future of every
//! window and the worst latency of every model, without failures or retries (the
//! failing model's 500s are not modelled). It is not a strict lower bound: a router that
//! gambles on average latency, or reorders requests, can pay less; it is the bill of
//! doing the documented thing exactly.
//!
//! **Floor** (`floor`): a true lower bound for any schedule that answers every request
//! within its budget while respecting the limits. Per tier, all of the tier's calls lie
//! between its first arrival and its last deadline, a span of `S` ms, and a pair can take
//! at most `min(rpd, rpm × ⌈S / 60 s⌉)` calls in it; filling the cheapest pairs first with
//! the largest requests (by tokens) gives the least any schedule could pay.

use crate::catalog::{Pair, Tier};
use crate::trace::TraceRequest;

/// The RPM window, in ms.
const WINDOW_MS: u64 = 60_000;

/// Where the reference put one request.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// Index into the pairs.
    pub pair: usize,
    pub start_ms: u64,
    pub finish_ms: u64,
    pub cost: f64,
    /// Finished after its budget.
    pub late: bool,
}

/// The reference schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// One per request, in trace order; `None` if its tier has no pair.
    pub assignments: Vec<Option<Assignment>>,
    pub cost: f64,
    pub late: usize,
}

/// The cost of a request on a pair.
pub fn cost(r: &TraceRequest, p: &Pair) -> f64 {
    r.tokens() as f64 * p.price_per_1k / 1000.0
}

/// Calls of `times` (sorted) in the window `(s - 60 s, s]`.
fn in_window(times: &[u64], s: u64) -> usize {
    let lo = times.partition_point(|&x| x + WINDOW_MS <= s);
    let hi = times.partition_point(|&x| x <= s);
    hi - lo
}

/// Whether one more call at `t` keeps every window that contains it within `rpm`. The
/// windows containing `t` end in `[t, t + 60 s)`; their counts only rise at calls, so it
/// is enough to look at the one ending at `t` and those ending at each later call.
pub fn fits(times: &[u64], t: u64, rpm: u32) -> bool {
    let rpm = rpm as usize;
    if in_window(times, t) >= rpm {
        return false;
    }
    let from = times.partition_point(|&x| x < t);
    times[from..]
        .iter()
        .take_while(|&&x| x < t + WINDOW_MS)
        .all(|&x| in_window(times, x) < rpm)
}

/// The earliest instant at or after `from` where [`fits`] holds (`times` sorted, `rpm` ≥ 1):
/// `from` itself or the instant a call leaves a window.
pub fn earliest_start(times: &[u64], from: u64, rpm: u32) -> u64 {
    std::iter::once(from)
        .chain(times.iter().map(|&x| x + WINDOW_MS).filter(|&t| t > from))
        .find(|&t| fits(times, t, rpm))
        .unwrap_or(from)
}

/// The reference schedule of `trace` (in arrival order) over `pairs`.
pub fn reference(trace: &[TraceRequest], pairs: &[Pair]) -> Reference {
    let mut placed: Vec<Vec<u64>> = vec![Vec::new(); pairs.len()];
    let mut by_price: Vec<usize> = (0..pairs.len()).collect();
    // Stable: equal prices keep file order, as bkvy's tie-breaker does.
    by_price.sort_by(|&a, &b| pairs[a].price_per_1k.total_cmp(&pairs[b].price_per_1k));
    let mut out = Reference {
        assignments: Vec::with_capacity(trace.len()),
        cost: 0.0,
        late: 0,
    };
    for r in trace {
        let mut fastest: Option<Assignment> = None;
        let mut chosen = None;
        for &i in by_price.iter().filter(|&&i| pairs[i].tier == r.tier) {
            let p = &pairs[i];
            if placed[i].len() >= p.rpd as usize {
                continue;
            }
            let start_ms = earliest_start(&placed[i], r.at_ms, p.rpm);
            let a = Assignment {
                pair: i,
                start_ms,
                finish_ms: start_ms + p.worst_latency_ms,
                cost: cost(r, p),
                late: start_ms + p.worst_latency_ms > r.due_ms(),
            };
            if !a.late {
                chosen = Some(a);
                break;
            }
            if fastest.as_ref().is_none_or(|f| a.finish_ms < f.finish_ms) {
                fastest = Some(a);
            }
        }
        let chosen = chosen.or(fastest);
        if let Some(a) = &chosen {
            let times = &mut placed[a.pair];
            let at = times.partition_point(|&x| x <= a.start_ms);
            times.insert(at, a.start_ms);
            out.cost += a.cost;
            out.late += usize::from(a.late);
        } else {
            out.late += 1;
        }
        out.assignments.push(chosen);
    }
    out
}

/// The floor: no schedule that meets every budget within the limits costs less.
pub fn floor(trace: &[TraceRequest], pairs: &[Pair]) -> f64 {
    let mut total = 0.0;
    for tier in Tier::ALL {
        let reqs: Vec<&TraceRequest> = trace.iter().filter(|r| r.tier == tier).collect();
        let (Some(first), Some(last)) = (
            reqs.iter().map(|r| r.at_ms).min(),
            reqs.iter().map(|r| r.due_ms()).max(),
        ) else {
            continue;
        };
        let windows = (last - first).div_ceil(WINDOW_MS).max(1);
        let mut caps: Vec<(f64, u64)> = pairs
            .iter()
            .filter(|p| p.tier == tier)
            .map(|p| {
                let cap = u64::from(p.rpd).min(u64::from(p.rpm) * windows);
                (p.price_per_1k, cap)
            })
            .collect();
        caps.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut tokens: Vec<u64> = reqs.iter().map(|r| r.tokens()).collect();
        tokens.sort_unstable_by(|a, b| b.cmp(a));
        let cheapest = caps.first().map_or(0.0, |c| c.0);
        let mut slots = caps
            .iter()
            .flat_map(|&(price, cap)| std::iter::repeat_n(price, cap as usize));
        for t in tokens {
            // More requests than capacity: no schedule exists; price the rest cheapest.
            let price = slots.next().unwrap_or(cheapest);
            total += t as f64 * price / 1000.0;
        }
    }
    total
}
