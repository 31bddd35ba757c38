//! Provider-side rate limits: RPM over a sliding 60 s and RPD per UTC calendar day, per
//! (credential, model), counted by *arrival at the provider*.
//!
//! Why: bkvy counts its own dispatches, but a real provider counts what arrives, on its
//! own clock. A fake that refuses calls the way a provider does shows whether bkvy's
//! accounting ever lets through a call the provider would refuse (two calls dispatched
//! exactly 60 s apart that arrive 59.999 s apart, retries, a day boundary). Times are
//! microseconds since the Unix epoch and passed in explicitly, so the rules are tested
//! without sleeping; microseconds, not milliseconds, so that truncation to milliseconds
//! on the gateway side cannot hide an overrun.
//!
//! A refused call does not count: a provider that answers 429 has not served it.

use std::collections::VecDeque;

use super::FakeLimit;

/// The RPM window: arrivals in `(now - WINDOW_US, now]` count.
pub(crate) const WINDOW_US: u64 = 60_000_000;
/// One UTC day.
pub(crate) const DAY_US: u64 = 86_400_000_000;
/// Arrivals are forgotten this long after they left the window, so that a call whose
/// timestamp was taken a little before another's (worker threads race to the lock) is
/// still counted against the arrivals before it.
const FORGET_AFTER_US: u64 = 10_000_000;

/// Which limit refused a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exceeded {
    /// Calls per sliding minute; `used` is how many arrived in the window.
    Rpm { limit: u32, used: usize },
    /// Calls per UTC day.
    Rpd { limit: u32 },
}

/// A refused call: which limit (when both are full, the one that frees later) and the
/// whole seconds, rounded up, until a call would be accepted again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) exceeded: Exceeded,
    pub(crate) retry_after_secs: u64,
}

impl Refused {
    /// The message of the 429, worded like OpenAI's.
    pub(crate) fn message(&self, model: &str) -> String {
        let secs = self.retry_after_secs;
        match self.exceeded {
            Exceeded::Rpm { limit, used } => format!(
                "Rate limit reached for {model} on requests per min (RPM): Limit {limit}, \
                 Used {used}, Requested 1. Please try again in {secs}s."
            ),
            Exceeded::Rpd { limit } => format!(
                "Rate limit reached for {model} on requests per day (RPD): Limit {limit}, \
                 Used {limit}, Requested 1. Please try again in {secs}s."
            ),
        }
    }
}

/// What one (credential, model) has accepted.
#[derive(Debug, Clone, Default, PartialEq)]
struct Arrivals {
    /// Accepted arrival times, ascending.
    times: VecDeque<u64>,
    /// The UTC day (days since the epoch) `day_count` is for.
    day: u64,
    day_count: u32,
}

/// The limits and what each limited (credential, model) has accepted so far.
#[derive(Debug, Default)]
pub(crate) struct ArrivalLimits {
    limits: Vec<FakeLimit>,
    /// Parallel to `limits`.
    arrivals: Vec<Arrivals>,
    refused: u64,
}

impl ArrivalLimits {
    pub(crate) fn new(limits: Vec<FakeLimit>) -> Self {
        let arrivals = vec![Arrivals::default(); limits.len()];
        Self {
            limits,
            arrivals,
            refused: 0,
        }
    }

    /// Replaces the limits; a (credential, model) that stays limited keeps its history.
    pub(crate) fn set_limits(&mut self, limits: Vec<FakeLimit>) {
        let arrivals = limits
            .iter()
            .map(|new| {
                self.index(new.credential.as_deref(), &new.model)
                    .map(|i| self.arrivals[i].clone())
                    .unwrap_or_default()
            })
            .collect();
        self.limits = limits;
        self.arrivals = arrivals;
    }

    /// How many calls were refused so far.
    pub(crate) fn refused(&self) -> u64 {
        self.refused
    }

    /// The first limit for this pair.
    fn index(&self, credential: Option<&str>, model: &str) -> Option<usize> {
        self.limits
            .iter()
            .position(|l| l.model == model && l.credential.as_deref() == credential)
    }

    /// A call of `model` with `credential` arrives at `now_us`: accepted (and counted) or
    /// refused (not counted). Pairs without a limit are always accepted.
    pub(crate) fn arrive(
        &mut self,
        credential: Option<&str>,
        model: &str,
        now_us: u64,
    ) -> Result<(), Refused> {
        let Some(i) = self.index(credential, model) else {
            return Ok(());
        };
        let (rpm, rpd) = (self.limits[i].rpm, self.limits[i].rpd);
        let a = &mut self.arrivals[i];
        while a
            .times
            .front()
            .is_some_and(|&t| t + WINDOW_US + FORGET_AFTER_US <= now_us)
        {
            a.times.pop_front();
        }
        let today = now_us / DAY_US;
        if today > a.day {
            a.day = today;
            a.day_count = 0;
        }
        // (now - 60 s, now]: the first arrival after the window's start, the first after now.
        let start = a
            .times
            .partition_point(|&t| t.saturating_add(WINDOW_US) <= now_us);
        let end = a.times.partition_point(|&t| t <= now_us);
        let used = end - start;
        let rpm_wait = usize::try_from(rpm).ok().filter(|&r| used >= r).map(|r| {
            // The call fits once `used - rpm + 1` arrivals have left the window.
            let leaving = a.times[start + (used - r)];
            leaving + WINDOW_US - now_us
        });
        // An arrival stamped on an earlier day than one already counted (a race at
        // midnight) is let through: that day's count is gone.
        let rpd_wait =
            (today == a.day && a.day_count >= rpd).then(|| (today + 1) * DAY_US - now_us);
        let (exceeded, wait_us) = match (rpm_wait, rpd_wait) {
            (None, None) => {
                a.times.insert(end, now_us);
                if today == a.day {
                    a.day_count += 1;
                }
                return Ok(());
            }
            (Some(m), Some(d)) if d > m => (Exceeded::Rpd { limit: rpd }, d),
            (Some(m), _) => (Exceeded::Rpm { limit: rpm, used }, m),
            (None, Some(d)) => (Exceeded::Rpd { limit: rpd }, d),
        };
        self.refused += 1;
        Err(Refused {
            exceeded,
            retry_after_secs: wait_us.div_ceil(1_000_000),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000;
    /// Some UTC midnight (2026-01-01).
    const MIDNIGHT: u64 = 20_454 * DAY_US;

    fn limit(credential: Option<&str>, model: &str, rpm: u32, rpd: u32) -> FakeLimit {
        FakeLimit {
            credential: credential.map(str::to_owned),
            model: model.to_owned(),
            rpm,
            rpd,
        }
    }

    fn one(rpm: u32, rpd: u32) -> ArrivalLimits {
        ArrivalLimits::new(vec![limit(Some("k"), "m", rpm, rpd)])
    }

    fn retry(r: Result<(), Refused>) -> u64 {
        match r {
            Ok(()) => panic!("accepted"),
            Err(r) => r.retry_after_secs,
        }
    }

    #[test]
    fn window_edge_is_exactly_sixty_seconds() {
        let t0 = MIDNIGHT + 3600 * S;
        let mut l = one(2, 1000);
        assert!(l.arrive(Some("k"), "m", t0).is_ok());
        assert!(l.arrive(Some("k"), "m", t0 + S).is_ok());
        // 1 µs before the first leaves the window: refused, retry in 1 s (rounded up).
        let r = l.arrive(Some("k"), "m", t0 + 60 * S - 1);
        assert_eq!(
            r,
            Err(Refused {
                exceeded: Exceeded::Rpm { limit: 2, used: 2 },
                retry_after_secs: 1
            })
        );
        // Exactly 60 s later the first arrival is out of (now - 60 s, now].
        assert!(l.arrive(Some("k"), "m", t0 + 60 * S).is_ok());
        // Now t0 + 1 s and t0 + 60 s are in the window.
        assert_eq!(retry(l.arrive(Some("k"), "m", t0 + 60 * S + 1)), 1);
        assert!(l.arrive(Some("k"), "m", t0 + 61 * S).is_ok());
        assert_eq!(l.refused(), 2);
    }

    #[test]
    fn retry_after_rounds_up_to_when_the_oldest_leaves() {
        let t0 = MIDNIGHT + 10 * S + S / 2;
        let mut l = one(1, 1000);
        assert!(l.arrive(Some("k"), "m", t0).is_ok());
        // 9.5 s later: the arrival leaves in 50.5 s → 51.
        assert_eq!(retry(l.arrive(Some("k"), "m", t0 + 9 * S + S / 2)), 51);
        // Exactly 10 s later: 50 s.
        assert_eq!(retry(l.arrive(Some("k"), "m", t0 + 10 * S)), 50);
    }

    #[test]
    fn refused_calls_do_not_count() {
        let t0 = MIDNIGHT + 100 * S;
        let mut l = one(1, 1000);
        assert!(l.arrive(Some("k"), "m", t0).is_ok());
        for s in [1, 30, 59] {
            assert!(l.arrive(Some("k"), "m", t0 + s * S).is_err());
        }
        // Had the refusals at 30 s and 59 s counted, this would be refused too.
        assert!(l.arrive(Some("k"), "m", t0 + 60 * S).is_ok());
        assert_eq!(l.refused(), 3);
    }

    #[test]
    fn day_limit_resets_at_utc_midnight() {
        let mut l = one(100, 2);
        let before = MIDNIGHT - 60 * S;
        assert!(l.arrive(Some("k"), "m", before).is_ok());
        assert!(l.arrive(Some("k"), "m", before + S).is_ok());
        let r = l.arrive(Some("k"), "m", MIDNIGHT - 30 * S + 1);
        assert_eq!(
            r,
            Err(Refused {
                exceeded: Exceeded::Rpd { limit: 2 },
                retry_after_secs: 30
            })
        );
        assert_eq!(retry(l.arrive(Some("k"), "m", MIDNIGHT - 1)), 1);
        assert!(l.arrive(Some("k"), "m", MIDNIGHT).is_ok());
        assert!(l.arrive(Some("k"), "m", MIDNIGHT + 1).is_ok());
        assert_eq!(retry(l.arrive(Some("k"), "m", MIDNIGHT + 2)), 86_400);
    }

    #[test]
    fn both_full_waits_for_the_later_one() {
        let mut l = one(1, 1);
        let t = MIDNIGHT + 10 * S;
        assert!(l.arrive(Some("k"), "m", t).is_ok());
        let r = l.arrive(Some("k"), "m", t + S);
        assert_eq!(
            r,
            Err(Refused {
                exceeded: Exceeded::Rpd { limit: 1 },
                retry_after_secs: 86_400 - 11
            })
        );
    }

    #[test]
    fn keys_and_models_are_independent_and_none_means_no_credential() {
        let mut l = ArrivalLimits::new(vec![
            limit(Some("a"), "m", 1, 10),
            limit(Some("b"), "m", 1, 10),
            limit(Some("a"), "n", 1, 10),
            limit(None, "m", 1, 10),
        ]);
        let t = MIDNIGHT + S;
        let pairs = [
            (Some("a"), "m"),
            (Some("b"), "m"),
            (Some("a"), "n"),
            (None, "m"),
        ];
        for (cred, model) in pairs {
            assert!(l.arrive(cred, model, t).is_ok(), "{cred:?} {model}");
        }
        for (cred, model) in pairs {
            assert!(l.arrive(cred, model, t + S).is_err(), "{cred:?} {model}");
        }
        // Pairs without a limit are never refused, nor counted.
        for _ in 0..100 {
            assert!(l.arrive(Some("c"), "m", t).is_ok());
            assert!(l.arrive(Some("b"), "n", t).is_ok());
            assert!(l.arrive(None, "n", t).is_ok());
        }
        assert_eq!(l.refused(), 4);
    }

    #[test]
    fn arrivals_out_of_order_still_count() {
        let t0 = MIDNIGHT + 100 * S;
        let mut l = one(2, 1000);
        assert!(l.arrive(Some("k"), "m", t0 + 70 * S).is_ok());
        // A call stamped earlier reaches the lock later: (t0 + 10, t0 + 70] holds one.
        assert!(l.arrive(Some("k"), "m", t0 + 70 * S - 5).is_ok());
        assert!(l.arrive(Some("k"), "m", t0 + 70 * S + 1).is_err());
    }

    #[test]
    fn replacing_limits_keeps_history_of_kept_pairs() {
        let mut l = ArrivalLimits::new(vec![limit(Some("k"), "m", 1, 10)]);
        let t = MIDNIGHT + S;
        assert!(l.arrive(Some("k"), "m", t).is_ok());
        l.set_limits(vec![
            limit(Some("x"), "m", 1, 10),
            limit(Some("k"), "m", 2, 10),
        ]);
        assert!(l.arrive(Some("k"), "m", t + S).is_ok());
        assert!(l.arrive(Some("k"), "m", t + 2 * S).is_err());
        l.set_limits(Vec::new());
        assert!(l.arrive(Some("k"), "m", t + 3 * S).is_ok());
    }

    #[test]
    fn old_arrivals_are_forgotten() {
        let mut l = one(3, 1_000_000);
        let t0 = MIDNIGHT + S;
        for i in 0..1000 {
            assert!(l.arrive(Some("k"), "m", t0 + i * 30 * S).is_ok());
        }
        assert!(l.arrivals[0].times.len() <= 3);
    }

    #[test]
    fn message_names_the_limit() {
        let r = Refused {
            exceeded: Exceeded::Rpm { limit: 3, used: 3 },
            retry_after_secs: 7,
        };
        assert_eq!(
            r.message("gpt-x"),
            "Rate limit reached for gpt-x on requests per min (RPM): Limit 3, Used 3, \
             Requested 1. Please try again in 7s."
        );
    }
}
