//! The answer to a dashboard query, in the original `/dashboard/data` shape, computed from
//! the buckets of a [`Store`]: totals, distributions, a time series with a step chosen to
//! fit the range, the newest transactions and errors, per-key usage and data coverage.

use serde::Serialize;

use super::agg::{Agg, Counts, WAIT_BUCKETS};
use super::range::TimeRange;
use super::store::{floor_to, Store, HOUR_MS, MINUTE_MS};
use super::tx::Tx;
use crate::clock::Millis;

/// Time-series steps to choose from, in minutes.
const STEPS_MIN: [i64; 11] = [1, 5, 15, 30, 60, 180, 360, 720, 1440, 2880, 10080];
/// Most points in a time series.
pub const MAX_POINTS: i64 = 100;
/// Transactions listed.
pub const RECENT_SHOWN: usize = 100;
/// Error details listed.
pub const ERRORS_SHOWN: usize = 50;
/// Slack before a range counts as only partly covered.
const COVERAGE_TOLERANCE_MS: Millis = 5 * MINUTE_MS;

/// ISO 8601 UTC with milliseconds and `Z`.
pub fn iso(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// `a / b` rounded up (for positive `b`).
pub fn ceil_div(a: i64, b: i64) -> i64 {
    (a + b - 1).div_euclid(b)
}

fn round_to(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        round_to(part as f64 * 100.0 / whole as f64, 2)
    }
}

/// The time-series step for a range, ms: the smallest that gives at most [`MAX_POINTS`]
/// points, and at least an hour when the range reaches back to hour-only data.
pub fn series_step(range: &TimeRange, hour_data: bool) -> Millis {
    let span = (range.end_ms - range.start_ms).max(1);
    STEPS_MIN
        .iter()
        .map(|m| m * MINUTE_MS)
        .filter(|s| !hour_data || *s >= HOUR_MS)
        .find(|s| ceil_div(span, *s) <= MAX_POINTS)
        .unwrap_or(7 * 24 * HOUR_MS)
}

/// Headline numbers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overview {
    pub total_requests: u64,
    pub successful_requests: u64,
    pub failed_requests: u64,
    /// Percent, 2 places.
    pub success_rate: f64,
    /// USD, 6 places.
    pub total_cost: f64,
    pub total_tokens: u64,
    pub avg_response_time_ms: Option<i64>,
    pub p95_response_time_ms: Option<i64>,
    pub p99_response_time_ms: Option<i64>,
    /// Percent of requests with a wait budget that finished within it.
    pub wait_time_compliance_rate: Option<f64>,
    pub wait_time_met: u64,
    pub wait_time_exceeded: u64,
    pub time_window_hours: f64,
}

/// One time-series point.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Bucket start, `YYYY-MM-DD HH:MM` UTC (the original's label).
    pub hour: String,
    /// Bucket start, ISO UTC.
    pub timestamp: String,
    pub success: u64,
    pub failed: u64,
    pub total: u64,
    pub cost: f64,
}

/// Count maps of the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Distributions {
    pub providers: Counts,
    pub models: Counts,
    pub routing_methods: Counts,
    pub intelligence_levels: Counts,
    pub clients: Counts,
}

/// A transaction as listed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TxView {
    pub timestamp: String,
    #[serde(flatten)]
    pub tx: Tx,
}

/// Errors of the range.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Errors {
    /// Count per error code.
    pub types: Counts,
    /// Newest failures first.
    pub details: Vec<TxView>,
}

/// One API key id's usage.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KeyView {
    pub api_key: String,
    pub requests: u64,
    pub successful: u64,
    pub failed: u64,
    pub success_rate: f64,
    pub total_cost: f64,
    pub total_tokens: u64,
    pub avg_response_time_ms: i64,
    pub models_used: Counts,
}

/// One wait-budget bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WaitView {
    pub bucket: &'static str,
    pub count: u64,
    pub success: u64,
    pub failed: u64,
    pub success_rate: f64,
}

/// How much of the range the kept data covers.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Coverage {
    pub requested_start: String,
    pub requested_end: String,
    pub earliest_available: Option<String>,
    pub latest_available: Option<String>,
    /// Whether any transaction has been recorded at all.
    pub has_data: bool,
    /// Whether the range starts before the earliest data (or ends before it starts).
    pub partial: bool,
    /// Text for a banner, when partial.
    pub warning: Option<String>,
    /// `minute` when the whole range is answered from minute buckets, else `hour`.
    pub resolution: &'static str,
}

/// Everything the page shows but the live key/model state.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    pub overview: Overview,
    pub time_series: Vec<Point>,
    pub time_series_step_seconds: i64,
    pub distributions: Distributions,
    pub recent_transactions: Vec<TxView>,
    pub errors: Errors,
    pub api_keys: Vec<KeyView>,
    pub wait_time_analysis: Vec<WaitView>,
    pub data_coverage: Coverage,
}

fn listed<'a>(
    ring: impl DoubleEndedIterator<Item = &'a Tx>,
    r: &TimeRange,
    n: usize,
) -> Vec<TxView> {
    // Newest arrival first; among equal arrival times (same millisecond) the one that
    // finished last first: the ring is in completion order and the sort is stable.
    let mut v: Vec<&Tx> = ring
        .rev()
        .filter(|t| t.at_ms >= r.start_ms && t.at_ms < r.end_ms)
        .collect();
    v.sort_by_key(|t| std::cmp::Reverse(t.at_ms));
    v.into_iter()
        .take(n)
        .map(|t| TxView {
            timestamp: iso(t.at_ms),
            tx: t.clone(),
        })
        .collect()
}

fn coverage(store: &Store, r: &TimeRange, hour_data: bool) -> Coverage {
    let mut c = Coverage {
        requested_start: iso(r.start_ms),
        requested_end: iso(r.end_ms),
        earliest_available: store.earliest.map(iso),
        latest_available: store.latest.map(iso),
        has_data: store.rows > 0,
        resolution: if hour_data { "hour" } else { "minute" },
        ..Coverage::default()
    };
    let (Some(first), Some(last)) = (store.earliest, store.latest) else {
        return c;
    };
    let (e, l) = (iso(first), iso(last));
    if first >= r.end_ms || last < r.start_ms {
        c.partial = true;
        c.warning = Some(format!(
            "No data in the selected range. Available data: {e} to {l}."
        ));
    } else if first > r.start_ms + COVERAGE_TOLERANCE_MS {
        c.partial = true;
        c.warning = Some(format!(
            "Partial data coverage: data starts at {e}, after the start of the selected range."
        ));
    }
    c
}

impl Store {
    /// The report for `range` at `now`.
    pub fn query(&self, range: &TimeRange, now: Millis) -> Report {
        let hour_data = range.start_ms < Store::minute_cut(now);
        let step = series_step(range, hour_data);
        let first = floor_to(range.start_ms, step);
        let n = ceil_div(range.end_ms - first, step).max(1) as usize;
        let mut series = vec![Agg::default().outcomes; n];
        let mut costs = vec![0.0; n];
        let mut total = Agg::default();
        self.each_bucket(range.start_ms, range.end_ms, now, |at, _, agg| {
            let i = ((at - first).max(0) / step) as usize;
            if let (Some(p), Some(c)) = (series.get_mut(i), costs.get_mut(i)) {
                p.total += agg.outcomes.total;
                p.success += agg.outcomes.success;
                p.failed += agg.outcomes.failed;
                *c += agg.cost;
            }
            total.merge(agg);
        });
        let o = &total.outcomes;
        let overview = Overview {
            total_requests: o.total,
            successful_requests: o.success,
            failed_requests: o.failed,
            success_rate: percent(o.success, o.total),
            total_cost: round_to(total.cost, 6),
            total_tokens: total.tokens,
            avg_response_time_ms: (o.total > 0).then(|| total.time_ms / o.total as i64),
            p95_response_time_ms: total.latency.quantile(0.95),
            p99_response_time_ms: total.latency.quantile(0.99),
            wait_time_compliance_rate: (total.wait_met + total.wait_exceeded > 0)
                .then(|| percent(total.wait_met, total.wait_met + total.wait_exceeded)),
            wait_time_met: total.wait_met,
            wait_time_exceeded: total.wait_exceeded,
            time_window_hours: round_to(range.hours(), 2),
        };
        let time_series = series
            .iter()
            .zip(&costs)
            .enumerate()
            .map(|(i, (p, c))| {
                let at = first + i as i64 * step;
                let t =
                    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(at).unwrap_or_default();
                Point {
                    hour: t.format("%Y-%m-%d %H:%M").to_string(),
                    timestamp: iso(at),
                    success: p.success,
                    failed: p.failed,
                    total: p.total,
                    cost: round_to(*c, 6),
                }
            })
            .collect();
        let mut api_keys: Vec<KeyView> = total
            .keys
            .iter()
            .map(|(k, a)| KeyView {
                api_key: k.clone(),
                requests: a.outcomes.total,
                successful: a.outcomes.success,
                failed: a.outcomes.failed,
                success_rate: percent(a.outcomes.success, a.outcomes.total),
                total_cost: round_to(a.cost, 6),
                total_tokens: a.tokens,
                avg_response_time_ms: a.time_ms / a.outcomes.total.max(1) as i64,
                models_used: a.models.clone(),
            })
            .collect();
        api_keys.sort_by(|a, b| b.requests.cmp(&a.requests).then(a.api_key.cmp(&b.api_key)));
        let wait_time_analysis = WAIT_BUCKETS
            .iter()
            .zip(&total.wait)
            .filter(|(_, w)| w.total > 0)
            .map(|(name, w)| WaitView {
                bucket: name,
                count: w.total,
                success: w.success,
                failed: w.failed,
                success_rate: percent(w.success, w.total),
            })
            .collect();
        Report {
            overview,
            time_series,
            time_series_step_seconds: step / 1000,
            recent_transactions: listed(self.recent.iter(), range, RECENT_SHOWN),
            errors: Errors {
                types: total.errors.clone(),
                details: listed(self.errors.iter(), range, ERRORS_SHOWN),
            },
            distributions: Distributions {
                providers: total.providers,
                models: total.models,
                routing_methods: total.methods,
                intelligence_levels: total.levels,
                clients: total.clients,
            },
            api_keys,
            wait_time_analysis,
            data_coverage: coverage(self, range, hour_data),
        }
    }
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
