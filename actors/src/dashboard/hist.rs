//! Latency histogram with fixed log-scale bins, so P95/P99 can be answered for any range by
//! adding bucket histograms together instead of keeping (and sorting) every latency.
//!
//! Bin `i` holds latencies in `[2^(i/8), 2^((i+1)/8))` ms (bin 0 also holds 0 ms): eight
//! bins per doubling, so a percentile is off by at most ~9 %, and clamping to the observed
//! minimum and maximum makes it exact when all values in the tail are equal.

use std::collections::BTreeMap;

use serde::Serialize;

/// Bins per doubling.
const BINS_PER_OCTAVE: f64 = 8.0;

/// A sparse latency histogram (most buckets see few distinct bins).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LatencyHist {
    bins: BTreeMap<u16, u64>,
    count: u64,
    min: i64,
    max: i64,
}

/// The bin of a latency in ms.
pub fn bin_of(ms: i64) -> u16 {
    if ms <= 1 {
        return 0;
    }
    let b = ((ms as f64).log2() * BINS_PER_OCTAVE).floor();
    b.clamp(0.0, f64::from(u16::MAX)) as u16
}

/// The upper bound of a bin, in ms.
pub fn bin_upper(bin: u16) -> f64 {
    ((f64::from(bin) + 1.0) / BINS_PER_OCTAVE).exp2()
}

impl LatencyHist {
    /// Counts one latency (negative values count as 0).
    pub fn record(&mut self, ms: i64) {
        let ms = ms.max(0);
        *self.bins.entry(bin_of(ms)).or_insert(0) += 1;
        if self.count == 0 {
            self.min = ms;
            self.max = ms;
        } else {
            self.min = self.min.min(ms);
            self.max = self.max.max(ms);
        }
        self.count += 1;
    }

    /// Adds another histogram.
    pub fn merge(&mut self, other: &LatencyHist) {
        if other.count == 0 {
            return;
        }
        for (b, n) in &other.bins {
            *self.bins.entry(*b).or_insert(0) += n;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count += other.count;
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0–1) in whole ms, as the original picked it: the element at
    /// index floor(n·q) of the sorted values (clamped to the last), here the upper bound
    /// of its bin, clamped to the observed range. `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<i64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((self.count as f64 * q.clamp(0.0, 1.0)).floor() as u64).min(self.count - 1);
        let mut seen = 0;
        for (b, n) in &self.bins {
            seen += n;
            if seen > rank {
                let v = bin_upper(*b).floor() as i64;
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotonic_and_about_nine_percent_wide() {
        let mut last = 0;
        for ms in [0, 1, 2, 3, 10, 100, 1_000, 10_000, 600_000] {
            let b = bin_of(ms);
            assert!(b >= last, "{ms}");
            last = b;
            if ms > 1 {
                let upper = bin_upper(b);
                assert!(
                    upper > ms as f64 && upper <= ms as f64 * 1.1,
                    "{ms} {upper}"
                );
            }
        }
    }

    #[test]
    fn equal_values_give_exact_percentiles() {
        let mut h = LatencyHist::default();
        for _ in 0..10 {
            h.record(250);
        }
        assert_eq!(h.quantile(0.95), Some(250));
        assert_eq!(h.quantile(0.99), Some(250));
    }

    #[test]
    fn percentiles_follow_the_tail_within_a_bin() {
        let mut h = LatencyHist::default();
        for ms in 1..=100 {
            h.record(ms * 10);
        }
        // Exact answer: index 95 of 10..=1000 step 10 → 960.
        let p95 = h.quantile(0.95).unwrap() as f64;
        assert!((960.0..=960.0 * 1.1).contains(&p95), "{p95}");
        assert_eq!(h.quantile(1.0), Some(1000));
        assert_eq!(LatencyHist::default().quantile(0.5), None);
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = Default::default();
        for ms in [5, 50, 500] {
            LatencyHist::record(&mut a, ms);
            LatencyHist::record(&mut all, ms);
        }
        for ms in [7, 70, 7_000] {
            LatencyHist::record(&mut b, ms);
            LatencyHist::record(&mut all, ms);
        }
        let mut merged: LatencyHist = a;
        merged.merge(&b);
        assert_eq!(merged, all);
    }
}
