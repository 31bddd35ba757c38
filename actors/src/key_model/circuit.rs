//! A circuit breaker per key/model, as a plain struct.
//!
//! Failures are tracked by kind over consecutive counts and a sliding window. When either
//! threshold is reached the circuit opens: the pair is skipped (and reported with the time
//! it may return) instead of being tried and failing again. After a backoff that doubles
//! with each reopening (with jitter, so a fleet of pairs does not retry in lockstep) it is
//! half-open and admits a limited number of trial calls: a success closes it, a failure
//! reopens it with a longer backoff. An authentication failure keeps it open until a
//! config reload or a manual reset, because no amount of waiting fixes a bad key.
//!
//! Only failures that say something about the pair count: 429, 5xx, timeouts and
//! connection errors, auth, and malformed answers. A 400-class rejection of the request
//! itself does not.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::clock::Millis;

/// What kind of failure was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// 429.
    RateLimited,
    /// 5xx.
    Server,
    /// Timeout or connection error.
    Timeout,
    /// 401/403.
    Auth,
    /// A 2xx whose body could not be used.
    BadResponse,
}

impl FailureKind {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RateLimited => "rate_limited",
            Self::Server => "server_error",
            Self::Timeout => "timeout",
            Self::Auth => "auth",
            Self::BadResponse => "bad_response",
        }
    }
}

/// Thresholds and backoff (routing.json `circuit_breaker`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CircuitConfig {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// Length of the sliding window.
    pub window_ms: Millis,
    /// Opens after this many failures within the window.
    pub window_failures: u32,
    /// First open period.
    pub base_backoff_ms: Millis,
    /// Longest open period.
    pub max_backoff_ms: Millis,
    /// Trial calls allowed at once while half-open.
    pub half_open_trials: u32,
}

impl Default for CircuitConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            window_ms: 60_000,
            window_failures: 5,
            base_backoff_ms: 5_000,
            max_backoff_ms: 300_000,
            half_open_trials: 1,
        }
    }
}

/// The state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Skipped until `until`.
    Open {
        /// When it becomes half-open.
        until: Millis,
    },
    /// Admitting trial calls.
    HalfOpen,
    /// Authentication failed: open until reset.
    AuthOpen,
}

impl CircuitState {
    /// A stable label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
            Self::AuthOpen => "auth_open",
        }
    }
}

/// Why the circuit refuses a call now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocked {
    /// Open; may return at `until` (`None`: only after a reset).
    Open {
        /// When it will admit a trial.
        until: Option<Millis>,
    },
    /// Half-open and its trial slots are taken.
    TrialInProgress,
}

/// Persistable circuit state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CircuitSnapshot {
    /// State.
    pub state: CircuitState,
    /// Openings since the last close (drives the backoff).
    pub openings: u32,
    /// Failures in a row.
    pub consecutive: u32,
    /// Failure times and kinds inside the window.
    pub recent: Vec<(Millis, FailureKind)>,
    /// The kind that opened it last.
    pub last_kind: Option<FailureKind>,
}

/// The breaker.
#[derive(Debug, Clone)]
pub struct Circuit {
    cfg: CircuitConfig,
    state: CircuitState,
    openings: u32,
    consecutive: u32,
    recent: VecDeque<(Millis, FailureKind)>,
    trials: u32,
    last_kind: Option<FailureKind>,
    opened_total: u64,
}

impl Circuit {
    /// A closed circuit.
    pub fn new(cfg: CircuitConfig) -> Self {
        Self {
            cfg,
            state: CircuitState::Closed,
            openings: 0,
            consecutive: 0,
            recent: VecDeque::new(),
            trials: 0,
            last_kind: None,
            opened_total: 0,
        }
    }

    /// Replaces the thresholds (config reload), keeping the state.
    pub fn set_config(&mut self, cfg: CircuitConfig) {
        self.cfg = cfg;
    }

    /// The state, after moving an expired open period to half-open.
    pub fn state(&mut self, now: Millis) -> CircuitState {
        if let CircuitState::Open { until } = self.state {
            if now >= until {
                self.state = CircuitState::HalfOpen;
                self.trials = 0;
            }
        }
        self.state
    }

    /// Whether a call may go now, without taking a trial slot.
    pub fn check(&mut self, now: Millis) -> Result<(), Blocked> {
        match self.state(now) {
            CircuitState::Closed => Ok(()),
            CircuitState::Open { until } => Err(Blocked::Open { until: Some(until) }),
            CircuitState::AuthOpen => Err(Blocked::Open { until: None }),
            CircuitState::HalfOpen if self.trials < self.cfg.half_open_trials.max(1) => Ok(()),
            CircuitState::HalfOpen => Err(Blocked::TrialInProgress),
        }
    }

    /// Takes a slot for a call that goes now; returns whether it is a trial.
    pub fn admit(&mut self, now: Millis) -> Result<bool, Blocked> {
        self.check(now)?;
        if self.state == CircuitState::HalfOpen {
            self.trials += 1;
            return Ok(true);
        }
        Ok(false)
    }

    /// A trial slot that was never used (call not sent, or outcome unknown).
    pub fn return_trial(&mut self, trial: bool) {
        if trial {
            self.trials = self.trials.saturating_sub(1);
        }
    }

    /// A call succeeded: the circuit closes.
    pub fn on_success(&mut self, trial: bool) {
        self.return_trial(trial);
        self.consecutive = 0;
        if matches!(self.state, CircuitState::HalfOpen) {
            self.state = CircuitState::Closed;
            self.openings = 0;
            self.recent.clear();
        }
    }

    /// A call failed. `retry_after` (429) sets a floor for the open period; `jitter` in
    /// [0, 1) spreads the backoff by up to +20 %. Returns true when this opened the circuit.
    pub fn on_failure(
        &mut self,
        now: Millis,
        kind: FailureKind,
        retry_after: Option<Millis>,
        trial: bool,
        jitter: f64,
    ) -> bool {
        self.return_trial(trial);
        self.consecutive = self.consecutive.saturating_add(1);
        self.recent.push_back((now, kind));
        while self
            .recent
            .front()
            .is_some_and(|&(t, _)| t + self.cfg.window_ms <= now)
        {
            self.recent.pop_front();
        }
        if kind == FailureKind::Auth {
            let opened = self.state != CircuitState::AuthOpen;
            self.state = CircuitState::AuthOpen;
            self.last_kind = Some(kind);
            self.opened_total += u64::from(opened);
            return opened;
        }
        let reopen = trial || self.state(now) == CircuitState::HalfOpen;
        let tripped = self.consecutive >= self.cfg.consecutive_failures.max(1)
            || self.recent.len() >= self.cfg.window_failures.max(1) as usize;
        if !(reopen || tripped)
            || matches!(
                self.state,
                CircuitState::Open { .. } | CircuitState::AuthOpen
            )
        {
            return false;
        }
        self.openings = self.openings.saturating_add(1);
        let base = self.cfg.base_backoff_ms.max(1);
        let doubled = base.saturating_mul(1 << (self.openings - 1).min(20));
        let backoff = doubled.min(self.cfg.max_backoff_ms.max(base));
        let jittered = backoff + (backoff as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as Millis;
        let period = jittered.max(retry_after.unwrap_or(0));
        self.state = CircuitState::Open {
            until: now + period,
        };
        self.trials = 0;
        self.last_kind = Some(kind);
        self.opened_total += 1;
        true
    }

    /// A free health probe reached the pair: an open circuit (not one opened by an
    /// authentication failure) may admit its trial now instead of waiting out the backoff.
    pub fn probe_succeeded(&mut self, now: Millis) {
        if let CircuitState::Open { until } = self.state {
            if until > now {
                self.state = CircuitState::Open { until: now };
            }
        }
    }

    /// Closes the circuit and forgets its history (manual reset, config reload after auth).
    pub fn reset(&mut self) {
        self.state = CircuitState::Closed;
        self.openings = 0;
        self.consecutive = 0;
        self.recent.clear();
        self.trials = 0;
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Failures in the window (as of the last failure).
    pub fn window_failures(&self) -> usize {
        self.recent.len()
    }

    /// The kind that opened it last.
    pub fn last_kind(&self) -> Option<FailureKind> {
        self.last_kind
    }

    /// Times it opened since start.
    pub fn opened_total(&self) -> u64 {
        self.opened_total
    }

    /// Openings since the last close.
    pub fn openings(&self) -> u32 {
        self.openings
    }

    /// For persistence.
    pub fn snapshot(&self) -> CircuitSnapshot {
        CircuitSnapshot {
            state: self.state,
            openings: self.openings,
            consecutive: self.consecutive,
            recent: self.recent.iter().copied().collect(),
            last_kind: self.last_kind,
        }
    }

    /// From persistence. A half-open circuit comes back half-open with no trial in flight.
    pub fn restore(&mut self, snap: &CircuitSnapshot) {
        self.state = snap.state;
        self.openings = snap.openings;
        self.consecutive = snap.consecutive;
        self.recent = snap.recent.iter().copied().collect();
        self.last_kind = snap.last_kind;
        self.trials = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg() -> CircuitConfig {
        CircuitConfig {
            consecutive_failures: 3,
            window_ms: 60_000,
            window_failures: 5,
            base_backoff_ms: 1_000,
            max_backoff_ms: 8_000,
            half_open_trials: 1,
        }
    }

    #[test]
    fn opens_after_consecutive_failures_and_reports_when_it_returns() {
        let mut c = Circuit::new(cfg());
        assert!(!c.on_failure(0, FailureKind::Server, None, false, 0.0));
        assert!(!c.on_failure(1, FailureKind::Timeout, None, false, 0.0));
        assert!(c.on_failure(2, FailureKind::Server, None, false, 0.0));
        assert_eq!(c.check(3), Err(Blocked::Open { until: Some(1_002) }));
        assert_eq!(c.state(1_002), CircuitState::HalfOpen);
    }

    #[test]
    fn a_success_resets_the_consecutive_count() {
        let mut c = Circuit::new(cfg());
        c.on_failure(0, FailureKind::Server, None, false, 0.0);
        c.on_failure(1, FailureKind::Server, None, false, 0.0);
        c.on_success(false);
        c.on_failure(2, FailureKind::Server, None, false, 0.0);
        assert_eq!(c.check(3), Ok(()));
    }

    #[test]
    fn opens_on_the_window_count_even_with_successes_between() {
        let mut c = Circuit::new(cfg());
        for i in 0..4 {
            c.on_failure(i * 1_000, FailureKind::Server, None, false, 0.0);
            c.on_success(false);
        }
        assert!(c.on_failure(4_000, FailureKind::Server, None, false, 0.0));
    }

    #[test]
    fn old_failures_leave_the_window() {
        let mut c = Circuit::new(cfg());
        for i in 0..4 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
            c.on_success(false);
        }
        assert!(!c.on_failure(70_000, FailureKind::Server, None, false, 0.0));
    }

    #[test]
    fn half_open_admits_limited_trials_and_closes_on_success() {
        let mut c = Circuit::new(cfg());
        for i in 0..3 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
        }
        let t = 1_002;
        assert_eq!(c.admit(t), Ok(true));
        assert_eq!(c.admit(t), Err(Blocked::TrialInProgress));
        c.on_success(true);
        assert_eq!(c.state(t), CircuitState::Closed);
        assert_eq!(c.admit(t), Ok(false));
    }

    #[test]
    fn a_failed_trial_reopens_with_a_longer_backoff() {
        let mut c = Circuit::new(cfg());
        for i in 0..3 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
        }
        let t = 1_002;
        assert_eq!(c.admit(t), Ok(true));
        assert!(c.on_failure(t, FailureKind::Server, None, true, 0.0));
        assert_eq!(
            c.check(t),
            Err(Blocked::Open {
                until: Some(t + 2_000)
            })
        );
        let t2 = t + 2_000;
        assert_eq!(c.admit(t2), Ok(true));
        c.on_failure(t2, FailureKind::Timeout, None, true, 0.0);
        assert_eq!(
            c.check(t2),
            Err(Blocked::Open {
                until: Some(t2 + 4_000)
            })
        );
    }

    #[test]
    fn backoff_is_capped_and_jittered_and_honours_retry_after() {
        let mut c = Circuit::new(cfg());
        let mut now = 0;
        for _ in 0..10 {
            let trial = c.admit(now).unwrap_or(false);
            c.on_failure(now, FailureKind::Server, None, trial, 0.0);
            c.on_failure(now, FailureKind::Server, None, false, 0.0);
            c.on_failure(now, FailureKind::Server, None, false, 0.0);
            if let CircuitState::Open { until } = c.state(now) {
                assert!(until - now <= 8_000);
                now = until;
            }
        }
        let mut c = Circuit::new(cfg());
        c.on_failure(0, FailureKind::RateLimited, None, false, 0.0);
        c.on_failure(0, FailureKind::RateLimited, None, false, 0.0);
        c.on_failure(0, FailureKind::RateLimited, Some(30_000), false, 0.99);
        assert_eq!(
            c.check(1),
            Err(Blocked::Open {
                until: Some(30_000)
            })
        );
        let mut c = Circuit::new(cfg());
        for _ in 0..3 {
            c.on_failure(0, FailureKind::Server, None, false, 0.5);
        }
        assert_eq!(c.check(1), Err(Blocked::Open { until: Some(1_100) }));
    }

    #[test]
    fn a_successful_probe_lets_an_open_circuit_try_at_once_but_not_an_auth_one() {
        let mut c = Circuit::new(cfg());
        for i in 0..3 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
        }
        c.probe_succeeded(10);
        assert_eq!(c.state(10), CircuitState::HalfOpen);
        let mut a = Circuit::new(cfg());
        a.on_failure(0, FailureKind::Auth, None, false, 0.0);
        a.probe_succeeded(10);
        assert_eq!(a.state(10), CircuitState::AuthOpen);
    }

    #[test]
    fn auth_stays_open_until_reset() {
        let mut c = Circuit::new(cfg());
        assert!(c.on_failure(0, FailureKind::Auth, None, false, 0.0));
        assert_eq!(c.check(10_000_000), Err(Blocked::Open { until: None }));
        c.reset();
        assert_eq!(c.check(10_000_000), Ok(()));
    }

    #[test]
    fn snapshot_round_trips() {
        let mut c = Circuit::new(cfg());
        for i in 0..3 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
        }
        let snap = c.snapshot();
        let json = serde_json::to_string(&snap).unwrap();
        let mut d = Circuit::new(cfg());
        d.restore(&serde_json::from_str(&json).unwrap());
        assert_eq!(d.check(5), c.check(5));
    }

    fn open_and_wait(c: &mut Circuit) -> Millis {
        for i in 0..3 {
            c.on_failure(i, FailureKind::Server, None, false, 0.0);
        }
        // Backoff 1 s from the third failure at 2.
        1_002
    }

    #[test]
    fn each_failure_kind_and_circuit_state_has_its_label() {
        let labels: Vec<_> = [
            FailureKind::RateLimited,
            FailureKind::Server,
            FailureKind::Timeout,
            FailureKind::Auth,
            FailureKind::BadResponse,
        ]
        .iter()
        .map(|k| k.as_str())
        .collect();
        assert_eq!(
            labels,
            vec![
                "rate_limited",
                "server_error",
                "timeout",
                "auth",
                "bad_response"
            ]
        );
        let states: Vec<_> = [
            CircuitState::Closed,
            CircuitState::Open { until: 5 },
            CircuitState::HalfOpen,
            CircuitState::AuthOpen,
        ]
        .iter()
        .map(CircuitState::as_str)
        .collect();
        assert_eq!(states, vec!["closed", "open", "half_open", "auth_open"]);
    }

    #[test]
    fn a_half_open_trial_never_sent_gives_its_slot_back() {
        let mut c = Circuit::new(cfg());
        let t = open_and_wait(&mut c);
        assert_eq!(c.admit(t), Ok(true));
        assert_eq!(c.admit(t), Err(Blocked::TrialInProgress));
        c.return_trial(true);
        assert_eq!(c.admit(t), Ok(true), "the returned slot is free again");
        // Returning a call that was no trial frees nothing.
        c.return_trial(false);
        assert_eq!(c.admit(t), Err(Blocked::TrialInProgress));
    }

    #[test]
    fn a_reload_that_lowers_the_threshold_opens_on_the_next_failure() {
        let mut c = Circuit::new(cfg());
        assert!(!c.on_failure(0, FailureKind::Server, None, false, 0.0));
        c.set_config(CircuitConfig {
            consecutive_failures: 2,
            base_backoff_ms: 7_000,
            ..cfg()
        });
        assert!(c.on_failure(1, FailureKind::Server, None, false, 0.0));
        assert_eq!(c.check(2), Err(Blocked::Open { until: Some(7_001) }));
    }

    #[test]
    fn a_failure_while_half_open_reopens_even_below_the_thresholds() {
        // Back from a restart half-open, with no failure counted.
        let mut c = Circuit::new(cfg());
        c.restore(&CircuitSnapshot {
            state: CircuitState::HalfOpen,
            openings: 1,
            consecutive: 0,
            recent: Vec::new(),
            last_kind: Some(FailureKind::Server),
        });
        // A call that was no trial (sent before the circuit opened) fails now.
        assert!(c.on_failure(100, FailureKind::Timeout, None, false, 0.0));
        assert_eq!(
            c.check(100),
            Err(Blocked::Open {
                until: Some(100 + 2_000)
            }),
            "second opening: twice the base backoff"
        );
    }

    #[test]
    fn a_failure_while_already_open_does_not_extend_the_open_period() {
        let mut c = Circuit::new(cfg());
        open_and_wait(&mut c);
        assert!(!c.on_failure(500, FailureKind::Server, None, false, 0.0));
        assert_eq!(c.check(600), Err(Blocked::Open { until: Some(1_002) }));
        assert_eq!((c.openings(), c.opened_total()), (1, 1));
    }

    #[test]
    fn the_counters_follow_failures_openings_and_a_close() {
        let mut c = Circuit::new(cfg());
        assert_eq!(c.last_kind(), None);
        c.on_failure(0, FailureKind::Server, None, false, 0.0);
        c.on_failure(1, FailureKind::Timeout, None, false, 0.0);
        assert_eq!((c.consecutive_failures(), c.window_failures()), (2, 2));
        assert_eq!((c.openings(), c.opened_total()), (0, 0));
        c.on_failure(2, FailureKind::BadResponse, None, false, 0.0);
        assert_eq!((c.consecutive_failures(), c.window_failures()), (3, 3));
        assert_eq!(c.last_kind(), Some(FailureKind::BadResponse));
        assert_eq!((c.openings(), c.opened_total()), (1, 1));
        // A failed trial reopens: two openings in a row.
        let t = 1_002;
        assert_eq!(c.admit(t), Ok(true));
        c.on_failure(t, FailureKind::Server, None, true, 0.0);
        assert_eq!((c.openings(), c.opened_total()), (2, 2));
        assert_eq!(c.last_kind(), Some(FailureKind::Server));
        // A successful trial closes it: openings start again, the total stays.
        let t2 = t + 2_000;
        assert_eq!(c.admit(t2), Ok(true));
        c.on_success(true);
        assert_eq!((c.openings(), c.opened_total()), (0, 2));
        assert_eq!((c.consecutive_failures(), c.window_failures()), (0, 0));
    }

    #[test]
    fn an_auth_failure_counts_one_opening_however_often_it_repeats() {
        let mut c = Circuit::new(cfg());
        assert!(c.on_failure(0, FailureKind::Auth, None, false, 0.0));
        assert!(!c.on_failure(1, FailureKind::Auth, None, false, 0.0));
        assert_eq!(c.opened_total(), 1);
        assert_eq!(c.last_kind(), Some(FailureKind::Auth));
    }

    #[test]
    fn a_failure_exactly_one_window_old_has_left_the_window() {
        let mut c = Circuit::new(cfg());
        c.on_failure(0, FailureKind::Server, None, false, 0.0);
        c.on_success(false);
        c.on_failure(59_999, FailureKind::Server, None, false, 0.0);
        assert_eq!(c.window_failures(), 2);
        c.on_success(false);
        c.on_failure(60_000, FailureKind::Server, None, false, 0.0);
        assert_eq!(c.window_failures(), 2, "the failure at 0 left at 60,000");
    }

    proptest! {
        /// Whatever happens, the number of trials in flight never exceeds the limit, and an
        /// open circuit never admits a call before its time.
        #[test]
        fn trials_are_bounded_and_open_means_closed_doors(
            ops in proptest::collection::vec((0u8..4, 0i64..3_000, any::<bool>()), 1..300),
        ) {
            let mut c = Circuit::new(cfg());
            let mut now = 0;
            let mut in_flight: Vec<bool> = Vec::new();
            for (op, dt, flag) in ops {
                now += dt;
                match op {
                    0 => {
                        let before = c.check(now);
                        match c.admit(now) {
                            Ok(trial) => {
                                prop_assert!(before.is_ok());
                                in_flight.push(trial);
                            }
                            Err(Blocked::Open { until: Some(u) }) => prop_assert!(u > now),
                            Err(_) => {}
                        }
                    }
                    1 => if let Some(t) = in_flight.pop() { c.on_success(t) },
                    2 => if let Some(t) = in_flight.pop() {
                        c.on_failure(now, if flag { FailureKind::Server } else { FailureKind::Timeout }, None, t, 0.3);
                    },
                    _ => if let Some(t) = in_flight.pop() { c.return_trial(t) },
                }
                let trials = in_flight.iter().filter(|&&t| t).count() as u32;
                prop_assert!(trials <= cfg().half_open_trials);
            }
        }
    }
}
