//! The dashboard's memory: per-minute buckets for the last 48 hours, per-hour buckets for
//! the last 400 days, and bounded rings of the newest transactions and errors. Every event
//! is counted once in each bucket store; a query reads minute buckets where it can and hour
//! buckets before that, so no range ever needs the CSV again.

use std::collections::{BTreeMap, VecDeque};

use super::agg::Agg;
use super::tx::Tx;
use crate::clock::Millis;

/// One minute, ms.
pub const MINUTE_MS: Millis = 60_000;
/// One hour, ms.
pub const HOUR_MS: Millis = 3_600_000;
/// How long minute buckets are kept.
pub const MINUTE_RETENTION_MS: Millis = 48 * HOUR_MS;
/// How long hour buckets are kept.
pub const HOUR_RETENTION_MS: Millis = 400 * 24 * HOUR_MS;
/// Newest transactions kept.
pub const RECENT_CAP: usize = 500;
/// Newest failures kept.
pub const ERRORS_CAP: usize = 100;

/// `t` rounded down to a multiple of `step`.
pub fn floor_to(t: Millis, step: Millis) -> Millis {
    t.div_euclid(step) * step
}

/// Buckets and rings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Store {
    /// Minute start → numbers.
    pub minutes: BTreeMap<Millis, Agg>,
    /// Hour start → numbers.
    pub hours: BTreeMap<Millis, Agg>,
    /// Newest transactions, oldest first.
    pub recent: VecDeque<Tx>,
    /// Newest failures, oldest first.
    pub errors: VecDeque<Tx>,
    /// Earliest transaction time seen (still retained).
    pub earliest: Option<Millis>,
    /// Latest transaction time seen.
    pub latest: Option<Millis>,
    /// Transactions counted.
    pub rows: u64,
}

fn push_ring(ring: &mut VecDeque<Tx>, tx: Tx, cap: usize) {
    if ring.len() == cap {
        ring.pop_front();
    }
    ring.push_back(tx);
}

impl Store {
    /// The first instant minute buckets are complete for, at `now`: everything before it
    /// is answered from hour buckets. Hour-aligned, so the two never overlap.
    pub fn minute_cut(now: Millis) -> Millis {
        floor_to(now - MINUTE_RETENTION_MS, HOUR_MS) + HOUR_MS
    }

    /// Counts one transaction. Transactions older than the hour retention are ignored.
    pub fn record(&mut self, tx: Tx, now: Millis) {
        let at = tx.at_ms;
        if at < now - HOUR_RETENTION_MS {
            return;
        }
        self.hours
            .entry(floor_to(at, HOUR_MS))
            .or_default()
            .record(&tx);
        if at >= Self::minute_cut(now) - HOUR_MS {
            self.minutes
                .entry(floor_to(at, MINUTE_MS))
                .or_default()
                .record(&tx);
        }
        self.earliest = Some(self.earliest.map_or(at, |e| e.min(at)));
        self.latest = Some(self.latest.map_or(at, |l| l.max(at)));
        self.rows += 1;
        if !tx.success {
            push_ring(&mut self.errors, tx.clone(), ERRORS_CAP);
        }
        push_ring(&mut self.recent, tx, RECENT_CAP);
    }

    /// Drops buckets past their retention.
    pub fn prune(&mut self, now: Millis) {
        let keep_minutes = Self::minute_cut(now) - HOUR_MS;
        self.minutes = self.minutes.split_off(&keep_minutes);
        let keep_hours = floor_to(now - HOUR_RETENTION_MS, HOUR_MS);
        self.hours = self.hours.split_off(&keep_hours);
        if let Some(e) = self.earliest.as_mut() {
            *e = (*e).max(keep_hours);
        }
    }

    /// Adds history loaded from disk (older than everything recorded live).
    pub fn merge_history(&mut self, older: Store) {
        for (map, theirs) in [
            (&mut self.minutes, older.minutes),
            (&mut self.hours, older.hours),
        ] {
            for (k, agg) in theirs {
                map.entry(k).or_default().merge(&agg);
            }
        }
        for (mine, theirs, cap) in [
            (&mut self.recent, older.recent, RECENT_CAP),
            (&mut self.errors, older.errors, ERRORS_CAP),
        ] {
            let live = std::mem::replace(mine, theirs);
            for tx in live {
                push_ring(mine, tx, cap);
            }
        }
        self.earliest = match (self.earliest, older.earliest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.latest = match (self.latest, older.latest) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.rows += older.rows;
    }

    /// Calls `f(bucket_start, bucket_len, agg)` for every bucket of `[start, end)`: hour
    /// buckets before [`Store::minute_cut`], minute buckets from it. A bucket counts when
    /// its start lies in the range widened down to its own size.
    pub fn each_bucket(
        &self,
        start: Millis,
        end: Millis,
        now: Millis,
        mut f: impl FnMut(Millis, Millis, &Agg),
    ) {
        let cut = Self::minute_cut(now);
        let hour_from = floor_to(start, HOUR_MS);
        let hour_to = end.min(cut);
        if hour_from < hour_to {
            for (k, agg) in self.hours.range(hour_from..hour_to) {
                f(*k, HOUR_MS, agg);
            }
        }
        let minute_from = floor_to(start, MINUTE_MS).max(cut);
        if minute_from < end {
            for (k, agg) in self.minutes.range(minute_from..end) {
                f(*k, MINUTE_MS, agg);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_767_323_045_000;

    fn tx(at_ms: Millis, success: bool) -> Tx {
        Tx {
            at_ms,
            request_id: format!("r{at_ms}"),
            client_id: "c".into(),
            routing_method: "direct".into(),
            intelligence_level: None,
            max_wait_seconds: None,
            success,
            provider: None,
            model: None,
            api_key: None,
            total_time_ms: 5,
            cost: None,
            input_tokens: None,
            output_tokens: None,
            error_type: None,
            error_message: None,
        }
    }

    fn total(s: &Store, start: Millis, end: Millis) -> u64 {
        let mut n = 0;
        s.each_bucket(start, end, NOW, |_, _, a| n += a.outcomes.total);
        n
    }

    #[test]
    fn every_transaction_is_counted_once_whatever_the_range() {
        let mut s = Store::default();
        let times = [
            NOW - 10 * MINUTE_MS,
            NOW - 47 * HOUR_MS,
            NOW - 49 * HOUR_MS,
            NOW - 200 * 24 * HOUR_MS,
        ];
        for t in times {
            s.record(tx(t, true), NOW);
        }
        assert_eq!(total(&s, NOW - 365 * 24 * HOUR_MS, NOW), 4);
        assert_eq!(total(&s, NOW - HOUR_MS, NOW), 1);
        assert_eq!(total(&s, NOW - 48 * HOUR_MS, NOW), 2);
        assert_eq!(total(&s, NOW - 50 * HOUR_MS, NOW - 48 * HOUR_MS), 1);
        s.record(tx(NOW - 500 * 24 * HOUR_MS, true), NOW);
        assert_eq!(s.rows, 4, "beyond retention");
    }

    #[test]
    fn pruning_drops_old_buckets_and_moves_earliest() {
        let mut s = Store::default();
        s.record(tx(NOW - 3 * 24 * HOUR_MS, true), NOW);
        s.record(tx(NOW, true), NOW);
        let later = NOW + 399 * 24 * HOUR_MS;
        s.prune(later);
        assert_eq!(s.minutes.len(), 0);
        assert_eq!(s.hours.len(), 1);
        assert!(s.earliest.unwrap() > NOW - 3 * 24 * HOUR_MS);
    }

    #[test]
    fn rings_keep_the_newest_and_history_goes_before_live() {
        let mut live = Store::default();
        for i in 0..3 {
            live.record(tx(NOW - i, false), NOW);
        }
        let mut old = Store::default();
        for i in 0..(RECENT_CAP as i64) {
            old.record(tx(NOW - 10 * HOUR_MS + i, i % 2 == 0), NOW);
        }
        live.merge_history(old);
        assert_eq!(live.recent.len(), RECENT_CAP);
        assert_eq!(live.recent.back().map(|t| t.at_ms), Some(NOW - 2));
        assert_eq!(live.errors.len(), ERRORS_CAP);
        assert_eq!(live.rows, 3 + RECENT_CAP as u64);
        assert_eq!(
            total(&live, NOW - 24 * HOUR_MS, NOW + 1),
            3 + RECENT_CAP as u64
        );
    }
}
