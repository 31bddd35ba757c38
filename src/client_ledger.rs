//! What each client (of `clients.json`) has used: requests in the last minute and today,
//! and money spent today, this month and in all.
//!
//! A plain struct with an injected clock (every call takes `now`); the web layer keeps
//! one behind a mutex held for a few hundred nanoseconds per request
//! ([`SharedLedger`]), not an actor: admission must check and take in one step, or two
//! requests arriving together could both pass the last slot or the last dollar, and a
//! mailbox round trip on every request would cost more than the work.
//!
//! Budgets are checked before a call with a conservative estimate of its cost, which is
//! *reserved* until the call ends; then the reservation is released and the real cost is
//! added ([`ClientLedger::settle`]). So concurrent calls cannot together overspend by
//! more than their estimates underestimated. Days and months are UTC.
//!
//! The minute window counts requests in one-second buckets, and a request counts for 61
//! buckets: at least 60 s after it arrived, whatever the fraction of its second, so no
//! 60-second span ever holds more than `rpm` admitted requests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bkvy_actors::persist::StateStore;
use bkvy_actors::Millis;
use chrono::{Datelike, TimeZone, Utc};
use serde::{Deserialize, Serialize};

use crate::config::Client;

const SECOND: Millis = 1_000;
const DAY: Millis = 86_400_000;
/// Buckets a request counts in (see the module header).
const WINDOW_SECONDS: usize = 61;

/// Why a client's request was refused.
#[derive(Debug, Clone, PartialEq)]
pub enum LedgerRefusal {
    /// `rpm` requests in the last minute.
    Rpm {
        /// The limit.
        limit: u32,
        /// When a slot frees, from now.
        retry_after_ms: Millis,
    },
    /// `rpd` requests today.
    Rpd {
        /// The limit.
        limit: u32,
        /// Until the next UTC midnight.
        retry_after_ms: Millis,
    },
    /// The call could take the spend over a budget.
    Budget {
        /// `daily` or `monthly`.
        period: &'static str,
        /// The budget, USD.
        budget_usd: f64,
        /// Spent plus reserved by calls in flight, USD.
        committed_usd: f64,
        /// The estimate of this call, USD.
        estimate_usd: f64,
        /// When a retry could pass: the period's end, [`RESERVATIONS_RETRY_MS`] when only
        /// calls in flight stand in the way, `None` when the estimate alone is over the
        /// budget (no retry of the same request ever passes).
        retry_after_ms: Option<Millis>,
    },
}

/// The retry hint when only the reservations of calls in flight stand in the way of a
/// budget: they settle as those calls end.
pub const RESERVATIONS_RETRY_MS: Millis = 1_000;

impl LedgerRefusal {
    /// Until a retry could pass (`None`: no retry of the same request ever passes).
    pub fn retry_after_ms(&self) -> Option<Millis> {
        match self {
            Self::Rpm { retry_after_ms, .. } | Self::Rpd { retry_after_ms, .. } => {
                Some(*retry_after_ms)
            }
            Self::Budget { retry_after_ms, .. } => *retry_after_ms,
        }
    }
}

impl std::fmt::Display for LedgerRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rpm { limit, .. } => {
                write!(
                    f,
                    "the client's limit of {limit} requests per minute is reached"
                )
            }
            Self::Rpd { limit, .. } => {
                write!(
                    f,
                    "the client's limit of {limit} requests per day is reached"
                )
            }
            Self::Budget {
                period,
                budget_usd,
                committed_usd,
                estimate_usd,
                ..
            } => {
                write!(
                    f,
                    "the client's {period} budget of ${budget_usd:.4} would be exceeded: \
                     ${committed_usd:.6} spent or reserved, this request may cost up to \
                     ${estimate_usd:.6}"
                )?;
                if estimate_usd > budget_usd {
                    write!(
                        f,
                        " (more than the whole budget: lower max_tokens or shorten the \
                         request)"
                    )?;
                }
                Ok(())
            }
        }
    }
}

/// One client's usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientUsage {
    /// `(second, requests)` buckets of the minute window (second = Unix ms / 1000).
    minute: Vec<(i64, u32)>,
    /// The UTC day (`Unix ms / 86,400,000`) the day counters belong to.
    day: i64,
    /// Requests admitted that day.
    day_requests: u32,
    /// Spent that day, USD.
    day_spent_usd: f64,
    /// The UTC month (`year * 12 + month0`) the month counter belongs to.
    month: i64,
    /// Spent that month, USD.
    month_spent_usd: f64,
    /// Spent since the ledger began, USD.
    pub total_spent_usd: f64,
    /// Requests admitted since the ledger began.
    pub total_requests: u64,
    /// Estimates of calls in flight, USD (not persisted: calls do not survive a restart).
    #[serde(skip)]
    reserved_usd: f64,
}

/// What the metrics and the dashboard show of a client.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClientView {
    /// Client name.
    pub client: String,
    /// Spent today (UTC), USD.
    pub spent_today_usd: f64,
    /// Spent this month (UTC), USD.
    pub spent_this_month_usd: f64,
    /// Spent in all, USD.
    pub spent_total_usd: f64,
    /// Reserved by calls in flight, USD.
    pub reserved_usd: f64,
    /// Daily budget left, USD (`None`: no daily budget).
    pub daily_remaining_usd: Option<f64>,
    /// Monthly budget left, USD.
    pub monthly_remaining_usd: Option<f64>,
    /// Requests in the last minute.
    pub requests_last_minute: u32,
    /// Requests today.
    pub requests_today: u32,
    /// Requests in all.
    pub requests_total: u64,
}

fn month_of(now: Millis) -> i64 {
    let t = Utc
        .timestamp_millis_opt(now)
        .single()
        .unwrap_or_else(Utc::now);
    i64::from(t.year()) * 12 + i64::from(t.month0())
}

/// Unix ms at which the month after `month` starts.
fn month_end(month: i64) -> Millis {
    let next = month + 1;
    let (y, m) = (next.div_euclid(12), next.rem_euclid(12) + 1);
    i32::try_from(y)
        .ok()
        .and_then(|y| Utc.with_ymd_and_hms(y, m as u32, 1, 0, 0, 0).single())
        .map_or(Millis::MAX, |t| t.timestamp_millis())
}

impl ClientUsage {
    /// Moves the counters to `now`: a new day or month starts from zero, old buckets go.
    fn roll(&mut self, now: Millis) {
        let day = now.div_euclid(DAY);
        if day != self.day {
            self.day = day;
            self.day_requests = 0;
            self.day_spent_usd = 0.0;
        }
        let month = month_of(now);
        if month != self.month {
            self.month = month;
            self.month_spent_usd = 0.0;
        }
        let sec = now.div_euclid(SECOND);
        self.minute
            .retain(|&(s, _)| s > sec - WINDOW_SECONDS as i64 && s <= sec);
    }

    fn last_minute(&self) -> u32 {
        self.minute.iter().map(|&(_, n)| n).sum()
    }

    fn check(
        &self,
        c: &Client,
        now: Millis,
        estimate_usd: Option<f64>,
    ) -> Result<(), LedgerRefusal> {
        if let Some(limit) = c.rpm {
            let mut left = self.last_minute();
            if left >= limit {
                // Buckets leave oldest first (they are kept in arrival order); after a
                // reload lowered `rpm` below the count, more than one must leave.
                let mut frees = 0;
                for &(s, n) in &self.minute {
                    left -= n;
                    frees = (s + WINDOW_SECONDS as i64) * SECOND;
                    if left < limit {
                        break;
                    }
                }
                return Err(LedgerRefusal::Rpm {
                    limit,
                    retry_after_ms: (frees - now).max(1),
                });
            }
        }
        if let Some(limit) = c.rpd {
            if self.day_requests >= limit {
                return Err(LedgerRefusal::Rpd {
                    limit,
                    retry_after_ms: (self.day + 1) * DAY - now,
                });
            }
        }
        let Some(estimate) = estimate_usd else {
            return Ok(());
        };
        let budgets = [
            (
                "daily",
                c.daily_budget_usd,
                self.day_spent_usd,
                (self.day + 1) * DAY,
            ),
            (
                "monthly",
                c.monthly_budget_usd,
                self.month_spent_usd,
                month_end(self.month),
            ),
        ];
        // A call that costs nothing passes even a budget that settled calls overshot.
        if estimate <= 0.0 {
            return Ok(());
        }
        for (period, budget, spent, ends) in budgets {
            let Some(budget) = budget else { continue };
            let committed = spent + self.reserved_usd;
            if committed + estimate > budget {
                // When does a retry pass? Never within any period when the estimate alone
                // is over the budget; as soon as calls in flight settle when only their
                // reservations stand in the way; else when the period ends.
                let retry_after_ms = if estimate > budget {
                    None
                } else if spent + estimate <= budget {
                    Some(RESERVATIONS_RETRY_MS)
                } else {
                    Some((ends - now).max(1))
                };
                return Err(LedgerRefusal::Budget {
                    period,
                    budget_usd: budget,
                    committed_usd: committed,
                    estimate_usd: estimate,
                    retry_after_ms,
                });
            }
        }
        Ok(())
    }
}

/// Every client's usage, by client name.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientLedger {
    clients: HashMap<String, ClientUsage>,
}

impl ClientLedger {
    /// Whether `c` may send a request now, by its request limits alone (nothing taken): the
    /// early check, before the request is planned.
    pub fn check_rate(&mut self, c: &Client, now: Millis) -> Result<(), LedgerRefusal> {
        let u = self.clients.entry(c.name.clone()).or_default();
        u.roll(now);
        u.check(c, now, None)
    }

    /// Admits a request of `c` that may cost up to `estimate_usd`: checks the request
    /// limits and the budgets and, when all pass, counts the request and reserves the
    /// estimate, in one step. Every admitted request must be [`settle`](Self::settle)d.
    pub fn admit(
        &mut self,
        c: &Client,
        now: Millis,
        estimate_usd: f64,
    ) -> Result<(), LedgerRefusal> {
        let estimate = if estimate_usd.is_finite() {
            estimate_usd.max(0.0)
        } else {
            f64::MAX
        };
        let u = self.clients.entry(c.name.clone()).or_default();
        u.roll(now);
        u.check(c, now, Some(estimate))?;
        let sec = now.div_euclid(SECOND);
        match u.minute.last_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => u.minute.push((sec, 1)),
        }
        u.day_requests = u.day_requests.saturating_add(1);
        u.total_requests += 1;
        u.reserved_usd += estimate;
        Ok(())
    }

    /// Ends an admitted request: releases its reservation and adds what it really cost.
    pub fn settle(&mut self, client: &str, now: Millis, estimate_usd: f64, cost_usd: f64) {
        let Some(u) = self.clients.get_mut(client) else {
            return;
        };
        u.roll(now);
        let estimate = if estimate_usd.is_finite() {
            estimate_usd.max(0.0)
        } else {
            f64::MAX
        };
        u.reserved_usd = (u.reserved_usd - estimate).max(0.0);
        let cost = if cost_usd.is_finite() {
            cost_usd.max(0.0)
        } else {
            0.0
        };
        u.day_spent_usd += cost;
        u.month_spent_usd += cost;
        u.total_spent_usd += cost;
    }

    /// What `c` has used, as of `now`.
    pub fn view(&mut self, c: &Client, now: Millis) -> ClientView {
        let u = self.clients.entry(c.name.clone()).or_default();
        u.roll(now);
        let left = |budget: Option<f64>, spent: f64| budget.map(|b| (b - spent).max(0.0));
        ClientView {
            client: c.name.clone(),
            spent_today_usd: u.day_spent_usd,
            spent_this_month_usd: u.month_spent_usd,
            spent_total_usd: u.total_spent_usd,
            reserved_usd: u.reserved_usd,
            daily_remaining_usd: left(c.daily_budget_usd, u.day_spent_usd),
            monthly_remaining_usd: left(c.monthly_budget_usd, u.month_spent_usd),
            requests_last_minute: u.last_minute(),
            requests_today: u.day_requests,
            requests_total: u.total_requests,
        }
    }
}

/// The ledger every worker shares, and whether it changed since it was last saved.
#[derive(Debug, Default)]
pub struct SharedLedger {
    inner: Mutex<(ClientLedger, bool)>,
}

impl SharedLedger {
    /// A ledger starting from `ledger` (read back from the state directory).
    pub fn new(ledger: ClientLedger) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new((ledger, false)),
        })
    }

    /// Runs `f` on the ledger; `changes` marks it for saving.
    pub fn with<T>(&self, changes: bool, f: impl FnOnce(&mut ClientLedger) -> T) -> T {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        g.1 |= changes;
        f(&mut g.0)
    }

    /// A copy to save, when it changed since the last one (the flag is cleared: a save
    /// that does not happen must [`mark_changed`](Self::mark_changed) it again).
    pub fn take_changed(&self) -> Option<ClientLedger> {
        let mut g = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        std::mem::take(&mut g.1).then(|| g.0.clone())
    }

    /// Marks the ledger for saving again (a save that was not queued).
    pub fn mark_changed(&self) {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner).1 = true;
    }
}

/// Where the ledger is kept in `STATE_DIR`: `clients/ledger.json`.
const SUBDIR: &str = "clients";
const FILE: &str = "ledger.json";

/// How often a changed ledger is written.
pub const SAVE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

impl SharedLedger {
    /// The ledger saved in `store` (empty when there is none). A ledger that exists but
    /// cannot be read is an error, not a fresh start: starting from zero would hand every
    /// client its spent budget back and then overwrite the record.
    pub fn load(store: Option<&StateStore>) -> std::io::Result<Arc<Self>> {
        let Some(store) = store else {
            return Ok(Self::new(ClientLedger::default()));
        };
        let path = store.dir().join(SUBDIR).join(FILE);
        let unreadable = |why: String| {
            std::io::Error::other(format!(
                "the client ledger {} cannot be read ({why}); bkvy will not start from \
                 zero over it: fix or move the file away",
                path.display()
            ))
        };
        let ledger = match store.read_file(SUBDIR, FILE) {
            Ok(None) => ClientLedger::default(),
            Ok(Some(bytes)) => {
                serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?
            }
            Err(e) => return Err(unreadable(e.to_string())),
        };
        Ok(Self::new(ledger))
    }

    /// Writes the ledger when it changed since the last save: queued without blocking, or
    /// (`blocking`, at shutdown, from a blocking context) waiting for room in the writer's
    /// queue. A save that could not be queued leaves the ledger marked for the next one.
    pub fn save(&self, store: &StateStore, blocking: bool) {
        let Some(l) = self.take_changed() else { return };
        match serde_json::to_vec(&l) {
            Ok(bytes) => {
                let queued = if blocking {
                    store.save_file_blocking(SUBDIR, FILE, bytes)
                } else {
                    store.save_file(SUBDIR, FILE, bytes)
                };
                if !queued {
                    self.mark_changed();
                }
            }
            Err(e) => log::error!("cannot encode the client ledger: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn client(rpm: Option<u32>, rpd: Option<u32>, day: Option<f64>, month: Option<f64>) -> Client {
        Client {
            name: "c".into(),
            key_sha256: [0; 32],
            allow: None,
            rpm,
            rpd,
            daily_budget_usd: day,
            monthly_budget_usd: month,
        }
    }

    /// 2026-12-06 10:00:00 UTC.
    const T0: Millis = 1_796_551_200_000;

    #[test]
    fn rpm_refuses_the_extra_request_and_says_when_a_slot_frees() {
        let c = client(Some(2), None, None, None);
        let mut l = ClientLedger::default();
        assert!(l.admit(&c, T0 + 300, 0.0).is_ok());
        assert!(l.admit(&c, T0 + 10_000, 0.0).is_ok());
        let refused = l.admit(&c, T0 + 20_000, 0.0).unwrap_err();
        // The first request's second (T0) counts until T0 + 61 s.
        assert_eq!(
            refused,
            LedgerRefusal::Rpm {
                limit: 2,
                retry_after_ms: 41_000
            }
        );
        assert!(l.check_rate(&c, T0 + 60_999).is_err());
        assert!(l.admit(&c, T0 + 61_000, 0.0).is_ok());
    }

    #[test]
    fn rpd_resets_at_utc_midnight() {
        let c = client(None, Some(1), None, None);
        let mut l = ClientLedger::default();
        assert!(l.admit(&c, T0, 0.0).is_ok());
        let midnight = (T0 / DAY + 1) * DAY;
        let r = l.admit(&c, T0 + 1, 0.0).unwrap_err();
        assert_eq!(r.retry_after_ms(), Some(midnight - T0 - 1));
        assert!(l.admit(&c, midnight, 0.0).is_ok());
    }

    #[test]
    fn budget_counts_reservations_and_settles_the_real_cost() {
        let c = client(None, None, Some(1.0), None);
        let mut l = ClientLedger::default();
        assert!(l.admit(&c, T0, 0.6).is_ok());
        // 0.6 reserved: another 0.6 would pass 1.0.
        let r = l.admit(&c, T0, 0.6).unwrap_err();
        assert!(
            matches!(
                r,
                LedgerRefusal::Budget {
                    period: "daily",
                    ..
                }
            ),
            "{r:?}"
        );
        // The call cost less than estimated.
        l.settle("c", T0, 0.6, 0.1);
        assert!(l.admit(&c, T0, 0.6).is_ok());
        l.settle("c", T0, 0.6, 0.85);
        let v = l.view(&c, T0);
        assert!((v.spent_today_usd - 0.95).abs() < 1e-9);
        assert!((v.daily_remaining_usd.unwrap() - 0.05).abs() < 1e-9);
        assert_eq!(v.reserved_usd, 0.0);
        assert!(l.admit(&c, T0, 0.06).is_err());
        assert!(l.admit(&c, T0, 0.04).is_ok());
        // Tomorrow the daily budget is whole again.
        assert!(l.admit(&c, T0 + DAY, 0.9).is_ok());
    }

    #[test]
    fn monthly_budget_spans_days_and_resets_with_the_month() {
        let c = client(None, None, None, Some(1.0));
        let mut l = ClientLedger::default();
        assert!(l.admit(&c, T0, 0.0).is_ok());
        l.settle("c", T0, 0.0, 0.7);
        assert!(l.admit(&c, T0 + DAY, 0.0).is_ok());
        l.settle("c", T0 + DAY, 0.0, 0.3);
        let r = l.admit(&c, T0 + 2 * DAY, 0.01).unwrap_err();
        let jan = Utc
            .with_ymd_and_hms(2027, 1, 1, 0, 0, 0)
            .unwrap()
            .timestamp_millis();
        assert_eq!(r.retry_after_ms(), Some(jan - T0 - 2 * DAY));
        assert!(l.admit(&c, jan, 0.5).is_ok());
    }

    #[test]
    fn a_free_call_passes_a_spent_budget_and_nonsense_estimates_do_not() {
        let c = client(None, None, Some(0.0), None);
        let mut l = ClientLedger::default();
        assert!(l.admit(&c, T0, 0.0).is_ok());
        assert!(l.admit(&c, T0, f64::NAN).is_err());
        assert!(l.admit(&c, T0, f64::INFINITY).is_err());
        l.settle("c", T0, f64::NAN, f64::NAN);
        assert_eq!(l.view(&c, T0).spent_total_usd, 0.0);
    }

    #[test]
    fn the_ledger_round_trips_through_json_without_reservations() {
        let c = client(Some(5), Some(5), Some(5.0), Some(5.0));
        let mut l = ClientLedger::default();
        l.admit(&c, T0, 1.0).unwrap();
        l.admit(&c, T0, 1.0).unwrap();
        l.settle("c", T0, 1.0, 0.25);
        let json = serde_json::to_string(&l).unwrap();
        let mut back: ClientLedger = serde_json::from_str(&json).unwrap();
        let v = back.view(&c, T0);
        assert_eq!(v.requests_today, 2);
        assert_eq!(v.requests_last_minute, 2);
        assert!((v.spent_today_usd - 0.25).abs() < 1e-12);
        assert_eq!(
            v.reserved_usd, 0.0,
            "calls in flight do not survive a restart"
        );
    }

    #[test]
    fn after_rpm_is_lowered_retry_after_waits_for_enough_buckets_to_leave() {
        let mut c = client(Some(10), None, None, None);
        let mut l = ClientLedger::default();
        for at in [0, 5_000, 10_000, 20_000, 30_000] {
            l.admit(&c, T0 + at, 0.0).unwrap();
        }
        // A reload lowers rpm to 2 with 5 in the window: four buckets must leave before
        // one more request fits, the fourth (T0 + 20 s) at T0 + 81 s.
        c.rpm = Some(2);
        let r = l.check_rate(&c, T0 + 40_000).unwrap_err();
        assert_eq!(r.retry_after_ms(), Some(41_000));
        assert!(l.check_rate(&c, T0 + 80_999).is_err());
        assert!(l.check_rate(&c, T0 + 81_000).is_ok());
    }

    #[test]
    fn a_budget_refusal_says_when_a_retry_can_pass() {
        let c = client(None, None, Some(1.0), None);
        let mut l = ClientLedger::default();
        // An estimate over the whole budget never passes: no retry hint.
        let r = l.admit(&c, T0, 1.5).unwrap_err();
        assert_eq!(r.retry_after_ms(), None);
        assert!(r.to_string().contains("lower max_tokens"), "{r}");
        // Only a reservation in the way: retry soon.
        l.admit(&c, T0, 0.8).unwrap();
        let r = l.admit(&c, T0, 0.5).unwrap_err();
        assert_eq!(r.retry_after_ms(), Some(RESERVATIONS_RETRY_MS));
        // Spent money in the way: retry at midnight.
        l.settle("c", T0, 0.8, 0.8);
        let r = l.admit(&c, T0, 0.5).unwrap_err();
        let midnight = (T0 / DAY + 1) * DAY;
        assert_eq!(r.retry_after_ms(), Some(midnight - T0));
    }

    #[test]
    fn a_free_call_passes_a_budget_that_settled_calls_overshot() {
        let c = client(None, None, Some(1.0), None);
        let mut l = ClientLedger::default();
        l.admit(&c, T0, 0.5).unwrap();
        // The call cost more than its estimate.
        l.settle("c", T0, 0.5, 1.2);
        assert!(l.admit(&c, T0, 0.01).is_err());
        assert!(l.admit(&c, T0, 0.0).is_ok());
    }

    #[test]
    fn an_unreadable_ledger_stops_the_start_and_a_saved_one_loads_back() {
        let dir = std::env::temp_dir().join(format!("bkvy-ledger-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (store, _) = StateStore::open(&dir).unwrap();
        let empty = SharedLedger::load(Some(&store)).unwrap();
        empty
            .with(true, |l| l.admit(&client(None, None, None, None), T0, 0.0))
            .unwrap();
        empty.save(&store, true);
        assert!(
            empty.take_changed().is_none(),
            "saved: nothing left to save"
        );
        assert!(store.flush(std::time::Duration::from_secs(5)));
        let back = SharedLedger::load(Some(&store)).unwrap();
        assert_eq!(
            back.with(false, |l| l.clone()),
            empty.with(false, |l| l.clone())
        );
        std::fs::write(dir.join(SUBDIR).join(FILE), b"{\"clients\": 7").unwrap();
        let err = SharedLedger::load(Some(&store)).unwrap_err();
        assert!(err.to_string().contains("ledger.json"), "{err}");
        // A save the writer could not take marks the ledger again for the next one.
        empty.mark_changed();
        assert!(empty.take_changed().is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    proptest! {
        /// Whatever the arrival times, no 60-second span holds more than `rpm` admitted
        /// requests, and a refusal's retry-after is exactly when the next one passes.
        #[test]
        fn rpm_is_never_exceeded_and_retry_after_is_exact(
            rpm in 1u32..6,
            gaps in proptest::collection::vec(0i64..20_000, 1..80),
            lowered in proptest::option::of((1u32..6, 0usize..80)),
        ) {
            let mut c = client(Some(rpm), None, None, None);
            let mut l = ClientLedger::default();
            let mut now = T0;
            let mut admitted: Vec<Millis> = Vec::new();
            // A reload may change rpm mid-way (retry-after must stay exact); the span
            // check then holds for the larger of the two limits.
            let most = lowered.map_or(rpm, |(r, _)| r.max(rpm));
            for (i, gap) in gaps.into_iter().enumerate() {
                if let Some((r, at)) = lowered {
                    if i == at {
                        c.rpm = Some(r);
                    }
                }
                now += gap;
                match l.admit(&c, now, 0.0) {
                    Ok(()) => admitted.push(now),
                    Err(LedgerRefusal::Rpm { retry_after_ms, .. }) => {
                        prop_assert!(retry_after_ms >= 1);
                        let mut probe = l.clone();
                        prop_assert!(probe.check_rate(&c, now + retry_after_ms - 1).is_err());
                        prop_assert!(probe.check_rate(&c, now + retry_after_ms).is_ok());
                    }
                    Err(other) => prop_assert!(false, "unexpected {other:?}"),
                }
            }
            for (i, &t) in admitted.iter().enumerate() {
                let in_span = admitted[i..].iter().filter(|&&u| u - t < 60_000).count();
                prop_assert!(in_span as u32 <= most, "{in_span} in 60 s from {t}");
            }
        }

        /// Spend plus reservations never passes the budget, however calls interleave, when
        /// no call costs more than its estimate.
        #[test]
        fn budget_is_never_exceeded_when_estimates_hold(
            ops in proptest::collection::vec((0.0f64..0.5, 0.0f64..1.0, any::<bool>()), 1..60),
        ) {
            let c = client(None, None, Some(2.0), None);
            let mut l = ClientLedger::default();
            let mut open: Vec<(f64, f64)> = Vec::new();
            for (estimate, share, finish) in ops {
                if finish && !open.is_empty() {
                    let (e, s) = open.remove(0);
                    l.settle("c", T0, e, e * s);
                } else if l.admit(&c, T0, estimate).is_ok() {
                    open.push((estimate, share));
                }
                let v = l.view(&c, T0);
                prop_assert!(v.spent_today_usd + v.reserved_usd <= 2.0 + 1e-9);
            }
        }
    }
}
