//! Per key/model RPM and RPD accounting, as a plain struct.
//!
//! RPM is a *sliding* 60-second window over the times calls were dispatched: a call may go
//! only while fewer than `rpm` dispatches lie in the last 60 s, so no half-open 60-second
//! interval ever holds more than `rpm` calls (fixed calendar minutes would allow 2×rpm
//! across a boundary). RPD counts dispatches per calendar day in the provider's time zone.
//! A 429 from upstream pauses the pair until its Retry-After has passed. Every call sent
//! upstream counts, failed ones included, because that is how providers count.
//!
//! Providers count *arrivals*, later than bkvy's dispatch by a send delay that varies from
//! call to call (a busy worker, a new connection). A call that left quickly at the edge of
//! the window can arrive less than 60 s after one that left slowly, and the provider then
//! sees `rpm + 1` calls in its minute. So the window keeps a safety `margin`: a dispatch
//! holds its place for 60 s + margin, and one sent within `margin` before the day
//! boundary counts for the next day too.

use std::collections::VecDeque;

use chrono::{DateTime, Duration, TimeZone, Utc};
use chrono_tz::Tz;

use crate::clock::Millis;

/// Length of the RPM window.
pub const WINDOW_MS: Millis = 60_000;

/// What is holding a call back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocker {
    /// Nothing: a call may be dispatched now.
    None,
    /// The 60-second window is full.
    Rpm,
    /// Today's allowance is used up.
    Rpd,
    /// Upstream answered 429; paused until its Retry-After.
    Paused,
}

impl Blocker {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Rpm => "rpm",
            Self::Rpd => "rpd",
            Self::Paused => "paused",
        }
    }
}

/// How long until the next call may be dispatched, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wait {
    /// Milliseconds from now (0 = now).
    pub ms: Millis,
    /// The limit that decides it.
    pub blocker: Blocker,
}

/// RPM/RPD/pause state of one key/model pair.
#[derive(Debug, Clone)]
pub struct RateWindow {
    rpm: u32,
    rpd: u32,
    tz: Tz,
    /// Dispatch times still inside the window, oldest first, non-decreasing.
    recent: VecDeque<Millis>,
    day_start: Millis,
    day_end: Millis,
    day_count: u32,
    paused_until: Millis,
    /// Extra time a dispatch holds its place in the window (and before the day boundary,
    /// in the next day's count), for the provider counting arrivals.
    margin: Millis,
}

/// Start and end (exclusive) of the calendar day containing `now` in `tz`, in Unix ms.
pub fn day_bounds(tz: Tz, now: Millis) -> (Millis, Millis) {
    let utc = DateTime::<Utc>::from_timestamp_millis(now).unwrap_or_default();
    let date = utc.with_timezone(&tz).date_naive();
    let start_of = |d: chrono::NaiveDate| -> Millis {
        let midnight = d.and_hms_opt(0, 0, 0).unwrap_or_default();
        match tz.from_local_datetime(&midnight) {
            chrono::LocalResult::Single(t) => t.timestamp_millis(),
            chrono::LocalResult::Ambiguous(t, _) => t.timestamp_millis(),
            // A zone that skips midnight (DST at 00:00): the day starts an hour later.
            chrono::LocalResult::None => tz
                .from_local_datetime(&(midnight + Duration::hours(1)))
                .earliest()
                .map(|t| t.timestamp_millis())
                .unwrap_or(now),
        }
    };
    let start = start_of(date);
    let end = date.succ_opt().map(start_of).unwrap_or(start + 86_400_000);
    (start.min(now), end.max(now + 1))
}

impl RateWindow {
    /// A fresh window for the given limits (both must be ≥ 1; config validation ensures it).
    pub fn new(rpm: u32, rpd: u32, tz: Tz, now: Millis) -> Self {
        let (day_start, day_end) = day_bounds(tz, now);
        Self {
            rpm: rpm.max(1),
            rpd: rpd.max(1),
            tz,
            recent: VecDeque::with_capacity(rpm.min(4096) as usize),
            day_start,
            day_end,
            day_count: 0,
            paused_until: 0,
            margin: 0,
        }
    }

    /// The same window with a safety `margin` (see the module header).
    #[must_use]
    pub fn with_margin(mut self, margin: Millis) -> Self {
        self.margin = margin.max(0);
        self
    }

    /// Changes the safety margin (config reload).
    pub fn set_margin(&mut self, margin: Millis) {
        self.margin = margin.max(0);
    }

    /// How long a dispatch holds its place: 60 s plus the margin.
    fn span(&self) -> Millis {
        WINDOW_MS + self.margin
    }

    /// Limits per minute and per day.
    pub fn limits(&self) -> (u32, u32) {
        (self.rpm, self.rpd)
    }

    /// Changes the limits, keeping the counts (config reload).
    pub fn set_limits(&mut self, rpm: u32, rpd: u32) {
        self.rpm = rpm.max(1);
        self.rpd = rpd.max(1);
    }

    fn roll(&mut self, now: Millis) {
        if now >= self.day_end || now < self.day_start {
            let (s, e) = day_bounds(self.tz, now);
            // Calls sent within `margin` before the boundary may arrive after it: the
            // provider counts them in the new day.
            let old_end = self.day_end;
            let carried = if s == old_end {
                self.recent
                    .iter()
                    .filter(|&&t| t >= old_end - self.margin && t < old_end)
                    .count() as u32
            } else {
                0
            };
            self.day_start = s;
            self.day_end = e;
            self.day_count = carried;
        }
        let span = self.span();
        while self.recent.front().is_some_and(|&t| t + span <= now) {
            self.recent.pop_front();
        }
    }

    /// How long until a call may be dispatched.
    pub fn wait(&mut self, now: Millis) -> Wait {
        self.roll(now);
        let mut wait = Wait {
            ms: 0,
            blocker: Blocker::None,
        };
        let mut consider = |ms: Millis, blocker: Blocker| {
            if ms > wait.ms {
                wait = Wait { ms, blocker };
            }
        };
        if self.paused_until > now {
            consider(self.paused_until - now, Blocker::Paused);
        }
        if self.day_count >= self.rpd {
            consider(self.day_end - now, Blocker::Rpd);
        }
        let len = self.recent.len();
        if len >= self.rpm as usize {
            let oldest_that_matters = self.recent[len - self.rpm as usize];
            consider(oldest_that_matters + self.span() - now, Blocker::Rpm);
        }
        wait
    }

    /// Like [`wait`](Self::wait), with `extra` more dispatches counted at `now` (calls
    /// granted ahead that the window has not recorded yet; they went at `now` or earlier,
    /// so counting them at `now` can only make the wait longer).
    pub fn wait_with(&mut self, now: Millis, extra: u64) -> Wait {
        let mut wait = self.wait(now);
        if extra == 0 {
            return wait;
        }
        let mut consider = |ms: Millis, blocker: Blocker| {
            if ms > wait.ms {
                wait = Wait { ms, blocker };
            }
        };
        if u64::from(self.day_count) + extra >= u64::from(self.rpd) {
            consider(self.day_end - now, Blocker::Rpd);
        }
        let len = self.recent.len() as u64;
        let total = len + extra;
        let rpm = u64::from(self.rpm);
        if total >= rpm {
            let idx = total - rpm;
            let oldest_that_matters = if idx < len {
                self.recent[idx as usize]
            } else {
                now
            };
            consider(oldest_that_matters + self.span() - now, Blocker::Rpm);
        }
        wait
    }

    /// How many calls could be dispatched at `now`, one after the other, before RPM, RPD
    /// or a pause holds the next one back.
    pub fn room(&mut self, now: Millis) -> u64 {
        self.roll(now);
        if self.paused_until > now {
            return 0;
        }
        let rpm = u64::from(self.rpm).saturating_sub(self.recent.len() as u64);
        let rpd = u64::from(self.rpd).saturating_sub(u64::from(self.day_count));
        rpm.min(rpd)
    }

    /// Counts a dispatch that went at `at` (at most `now`; a call granted ahead and
    /// reported when it ended), keeping the window in time order.
    pub fn record_at(&mut self, now: Millis, at: Millis) {
        self.roll(now);
        let at = at.min(now);
        self.insert_in_window(now, at);
        if self.counts_today(at) {
            self.day_count = self.day_count.saturating_add(1);
        }
    }

    /// Puts a dispatch at `at` (at most `now`) into the window in time order, if it still
    /// holds a place there at `now`.
    fn insert_in_window(&mut self, now: Millis, at: Millis) {
        if at + self.span() > now {
            let pos = self
                .recent
                .iter()
                .rposition(|&t| t <= at)
                .map_or(0, |p| p + 1);
            self.recent.insert(pos, at);
        }
    }

    /// Whether a dispatch at `at` belongs to today's count: sent today, or within the
    /// margin before today began.
    fn counts_today(&self, at: Millis) -> bool {
        at >= self.day_start - self.margin && at < self.day_end
    }

    /// Moves a dispatch recorded at `from` to `to`, when the call actually left (later
    /// than its grant), so that it holds its place from the time the provider sees it.
    pub fn move_dispatch(&mut self, now: Millis, from: Millis, to: Millis) {
        if to <= from {
            return;
        }
        self.roll(now);
        let to = to.min(now);
        if let Some(pos) = self.recent.iter().rposition(|&t| t == from) {
            self.recent.remove(pos);
        }
        // Even when the grant has left the window already, the call that left later
        // still holds its place.
        self.insert_in_window(now, to);
        // A call granted before the day (or its margin) began but sent after counts today.
        match (self.counts_today(from), self.counts_today(to)) {
            (false, true) => self.day_count = self.day_count.saturating_add(1),
            (true, false) => self.day_count = self.day_count.saturating_sub(1),
            _ => {}
        }
    }

    /// Counts a dispatch at `now`. Callers check [`wait`](Self::wait) first.
    pub fn record(&mut self, now: Millis) {
        self.roll(now);
        let at = self.recent.back().map_or(now, |&last| last.max(now));
        self.recent.push_back(at);
        self.day_count = self.day_count.saturating_add(1);
    }

    /// Takes back a dispatch recorded at `at` that never reached upstream.
    pub fn unrecord(&mut self, at: Millis) {
        if let Some(pos) = self.recent.iter().rposition(|&t| t == at) {
            self.recent.remove(pos);
        }
        if self.counts_today(at) {
            self.day_count = self.day_count.saturating_sub(1);
        }
    }

    /// Pauses dispatching until `until` (a 429's Retry-After). A later pause wins; an
    /// earlier one never shortens a pause already in force.
    pub fn pause_until(&mut self, until: Millis) {
        self.paused_until = self.paused_until.max(until);
    }

    /// Lifts a pause (manual reset).
    pub fn clear_pause(&mut self) {
        self.paused_until = 0;
    }

    /// When the current pause ends, if one is in force.
    pub fn paused_until(&self, now: Millis) -> Option<Millis> {
        (self.paused_until > now).then_some(self.paused_until)
    }

    /// Calls in the current 60-second window.
    pub fn minute_used(&mut self, now: Millis) -> u32 {
        self.roll(now);
        self.recent.len() as u32
    }

    /// Calls today.
    pub fn day_used(&mut self, now: Millis) -> u32 {
        self.roll(now);
        self.day_count
    }

    /// When the oldest call leaves the window (the next time RPM room grows), if any.
    pub fn minute_reset_at(&mut self, now: Millis) -> Option<Millis> {
        self.roll(now);
        self.recent.front().map(|&t| t + self.span())
    }

    /// When the day counter resets.
    pub fn day_reset_at(&mut self, now: Millis) -> Millis {
        self.roll(now);
        self.day_end
    }

    /// When the most recent call was dispatched.
    pub fn last_dispatch(&self) -> Option<Millis> {
        self.recent.back().copied()
    }

    /// Milliseconds until the `n`-th next dispatch (0-based: `n = 0` is the next one) could
    /// go, if each goes as early as the limits allow. Used to estimate queue waits, and
    /// with every permit granted ahead counted as a dispatch, so `n` can be as large as
    /// the pair's whole RPM room: the answer is computed in constant time unless the day
    /// limit binds.
    pub fn start_after(&mut self, now: Millis, n: usize) -> Millis {
        let first = self.wait(now);
        if n == 0 {
            return first.ms;
        }
        let rpm = self.rpm as usize;
        // Fast path: the n queued dispatches fit in the window's free room and in today's
        // allowance, so they all go as soon as the current wait is over.
        if self.recent.len() + n < rpm && (self.day_count as usize) + n < self.rpd as usize {
            return first.ms;
        }
        let t0 = now + first.ms;
        if n < self.day_room_from(t0) {
            return self.rpm_only_start(t0, n) - now;
        }
        self.simulate_start(now, t0, n)
    }

    /// Dispatches the day counter allows from `t0` on, in the day `t0` falls in (the day
    /// rolls forward as [`simulate_start`](Self::simulate_start) rolls it).
    fn day_room_from(&self, t0: Millis) -> usize {
        let mut day_end = self.day_end;
        let mut day_count = self.day_count;
        while t0 >= day_end {
            day_end += 86_400_000;
            day_count = 0;
        }
        self.rpd.saturating_sub(day_count) as usize
    }

    /// When the `n`-th next dispatch could go by the RPM window alone, the first going at
    /// `t0`. With `e` the newest `m <= rpm` recorded dispatches (all at or before `t0`) and
    /// `s` the combined sequence, each new dispatch `j` goes at `max(t0, s[j-1],
    /// s[j-rpm] + span)`. In the first round (`j < m + rpm`) that is `max(t0, e[j-rpm] +
    /// span)`, as `e` is sorted; after it, `s[j] = s[j-rpm] + span`, because `s[j-rpm] >=
    /// t0` and `s[j-1] <= s[j-rpm] + span`. So dispatch `n` goes one span per full round
    /// after dispatch `n mod rpm` of the first round.
    fn rpm_only_start(&self, t0: Millis, n: usize) -> Millis {
        let rpm = self.rpm as usize;
        let m = self.recent.len().min(rpm);
        let oldest = self.recent.len() - m;
        let (rounds, r) = (n / rpm, n % rpm);
        let j = m + r;
        let first_round = if j < rpm {
            t0
        } else {
            t0.max(self.recent[oldest + j - rpm] + self.span())
        };
        first_round + rounds as Millis * self.span()
    }

    /// [`start_after`](Self::start_after) by placing every dispatch in turn: exact with
    /// both limits, linear in `n`. Used when the day limit binds.
    fn simulate_start(&self, now: Millis, t0: Millis, n: usize) -> Millis {
        let rpm = self.rpm as usize;
        // Only the newest `rpm` dispatches can hold a future one back.
        let mut window: VecDeque<Millis> = self
            .recent
            .iter()
            .skip(self.recent.len().saturating_sub(rpm))
            .copied()
            .collect();
        let mut t = t0;
        let mut day_end = self.day_end;
        let mut day_count = self.day_count;
        for _ in 0..=n {
            loop {
                if t >= day_end {
                    day_end += 86_400_000;
                    day_count = 0;
                }
                if day_count >= self.rpd {
                    t = day_end;
                    continue;
                }
                if window.len() >= rpm {
                    let gate = window[window.len() - rpm] + self.span();
                    if gate > t {
                        t = gate;
                        continue;
                    }
                }
                break;
            }
            window.push_back(t);
            if window.len() > rpm {
                window.pop_front();
            }
            day_count += 1;
        }
        // `t` is now the start of dispatch number n.
        t - now
    }

    /// The raw state for persistence and status endpoints.
    pub fn snapshot(&self) -> RateSnapshot {
        let mut runs: Vec<(Millis, u32)> = Vec::new();
        for &t in &self.recent {
            push_run(&mut runs, t, 1);
        }
        RateSnapshot {
            recent_runs: runs,
            recent: Vec::new(),
            day_start: self.day_start,
            day_count: self.day_count,
            paused_until: self.paused_until,
        }
    }

    /// Restores counts from a snapshot (persisted state), at time `now`.
    pub fn restore(&mut self, snap: &RateSnapshot, now: Millis) {
        let mut times: Vec<Millis> = snap.recent.clone();
        for &(t, n) in &snap.recent_runs {
            // At most `rpm` of them can matter; a damaged count must not exhaust memory.
            times.extend(std::iter::repeat_n(t, (n as usize).min(self.rpm as usize)));
        }
        times.sort_unstable();
        let keep = times.len().saturating_sub(self.rpm as usize);
        self.recent = times.drain(keep..).collect();
        self.paused_until = snap.paused_until;
        let (s, e) = day_bounds(self.tz, now);
        self.day_start = s;
        self.day_end = e;
        self.day_count = if snap.day_start == s {
            snap.day_count
        } else {
            0
        };
        self.roll(now);
    }
}

/// Adds `n` dispatches at `t` to runs kept in time order (`t` no earlier than the last).
pub fn push_run(runs: &mut Vec<(Millis, u32)>, t: Millis, n: u32) {
    match runs.last_mut() {
        Some((last, count)) if *last == t => *count = count.saturating_add(n),
        _ => runs.push((t, n)),
    }
}

/// Persistable rate state.
///
/// The dispatch times of the window are kept as runs of (millisecond, count): a busy pair
/// dispatches several calls in the same millisecond, and a snapshot is written every
/// second, so its size is bounded by the 60,000 milliseconds of the window however high
/// the rate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RateSnapshot {
    /// Dispatch times inside the window, as (Unix ms, calls at that ms), oldest first.
    #[serde(default)]
    pub recent_runs: Vec<(Millis, u32)>,
    /// Dispatch times one by one, as files written before `recent_runs` hold them
    /// (read, never written).
    #[serde(default, skip_serializing)]
    pub recent: Vec<Millis>,
    /// Start of the day the count belongs to.
    pub day_start: Millis,
    /// Calls that day.
    pub day_count: u32,
    /// End of a 429 pause (0 = none).
    pub paused_until: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T0: Millis = 1_767_225_600_000; // 2026-01-01T00:00:00Z

    #[test]
    fn rpm_blocks_until_the_oldest_call_leaves_the_window() {
        let mut w = RateWindow::new(2, 100, Tz::UTC, T0);
        assert_eq!(w.wait(T0).ms, 0);
        w.record(T0);
        w.record(T0 + 1_000);
        let wait = w.wait(T0 + 2_000);
        assert_eq!(wait.blocker, Blocker::Rpm);
        assert_eq!(wait.ms, 58_000);
        assert_eq!(w.wait(T0 + 60_000).ms, 0);
        assert_eq!(w.minute_used(T0 + 60_000), 1);
    }

    #[test]
    fn a_late_reported_dispatch_is_recorded_in_time_order() {
        let mut w = RateWindow::new(3, 100, Tz::UTC, T0);
        w.record(T0 + 2_000);
        w.record_at(T0 + 3_000, T0 + 1_000);
        w.record_at(T0 + 3_000, T0 - 61_000);
        assert_eq!(
            w.snapshot().recent_runs,
            vec![(T0 + 1_000, 1), (T0 + 2_000, 1)]
        );
        assert_eq!(w.day_used(T0 + 3_000), 2, "yesterday's call is not today's");
        assert_eq!(w.room(T0 + 3_000), 1);
        // One more granted ahead and not recorded: the window is full until the oldest
        // call leaves it.
        let wait = w.wait_with(T0 + 3_000, 1);
        assert_eq!((wait.ms, wait.blocker), (58_000, Blocker::Rpm));
        assert_eq!(w.wait_with(T0 + 3_000, 4).ms, 60_000);
        w.pause_until(T0 + 5_000);
        assert_eq!(w.room(T0 + 3_000), 0);
    }

    #[test]
    fn no_double_burst_across_a_minute_boundary() {
        let mut w = RateWindow::new(3, 100, Tz::UTC, T0 + 59_000);
        for _ in 0..3 {
            w.record(T0 + 59_000);
        }
        // A fixed calendar-minute limiter would allow three more at :00.
        assert!(w.wait(T0 + 60_000).ms > 0);
        assert_eq!(w.wait(T0 + 119_000).ms, 0);
    }

    #[test]
    fn rpd_reports_the_day_wait_even_when_rpm_also_blocks() {
        let mut w = RateWindow::new(1, 1, Tz::UTC, T0);
        w.record(T0);
        let wait = w.wait(T0 + 1_000);
        assert_eq!(wait.blocker, Blocker::Rpd);
        assert_eq!(wait.ms, 86_400_000 - 1_000);
        assert_eq!(w.wait(T0 + 86_400_000).ms, 0);
        assert_eq!(w.day_used(T0 + 86_400_000), 0);
    }

    #[test]
    fn rpd_follows_the_configured_time_zone() {
        let tz: Tz = "America/Los_Angeles".parse().unwrap();
        // 2026-01-01T07:59:00Z is 23:59 in Los Angeles (UTC-8).
        let before = T0 + 7 * 3_600_000 + 59 * 60_000;
        let mut w = RateWindow::new(100, 1, tz, before);
        w.record(before);
        assert_eq!(w.wait(before + 1).blocker, Blocker::Rpd);
        assert_eq!(
            w.wait(before + 60_000).ms,
            0,
            "a new day starts at local midnight"
        );
    }

    #[test]
    fn pause_wins_and_is_never_shortened() {
        let mut w = RateWindow::new(10, 100, Tz::UTC, T0);
        w.pause_until(T0 + 30_000);
        w.pause_until(T0 + 5_000);
        let wait = w.wait(T0);
        assert_eq!((wait.ms, wait.blocker), (30_000, Blocker::Paused));
        assert_eq!(w.paused_until(T0), Some(T0 + 30_000));
        assert_eq!(w.wait(T0 + 30_000).ms, 0);
    }

    #[test]
    fn unrecord_gives_the_slot_back() {
        let mut w = RateWindow::new(1, 1, Tz::UTC, T0);
        w.record(T0);
        w.unrecord(T0);
        assert_eq!(w.wait(T0).ms, 0);
        assert_eq!(w.day_used(T0), 0);
    }

    #[test]
    fn start_after_simulates_queued_dispatches() {
        let mut w = RateWindow::new(2, 100, Tz::UTC, T0);
        assert_eq!(w.start_after(T0, 0), 0);
        assert_eq!(w.start_after(T0, 1), 0);
        assert_eq!(w.start_after(T0, 2), 60_000);
        assert_eq!(w.start_after(T0, 3), 60_000);
        assert_eq!(w.start_after(T0, 4), 120_000);
        w.record(T0);
        assert_eq!(w.start_after(T0 + 10_000, 1), 50_000);
    }

    #[test]
    fn start_after_respects_rpd() {
        let mut w = RateWindow::new(100, 2, Tz::UTC, T0);
        w.record(T0);
        assert_eq!(w.start_after(T0, 0), 0);
        assert_eq!(w.start_after(T0, 1), 86_400_000);
    }

    #[test]
    fn snapshot_restore_keeps_todays_count_only() {
        let mut w = RateWindow::new(5, 5, Tz::UTC, T0);
        w.record(T0);
        w.record(T0 + 10);
        let snap = w.snapshot();
        let mut same_day = RateWindow::new(5, 5, Tz::UTC, T0 + 20);
        same_day.restore(&snap, T0 + 20);
        assert_eq!(same_day.day_used(T0 + 20), 2);
        assert_eq!(same_day.minute_used(T0 + 20), 2);
        let mut next_day = RateWindow::new(5, 5, Tz::UTC, T0 + 86_400_000);
        next_day.restore(&snap, T0 + 86_400_000);
        assert_eq!(next_day.day_used(T0 + 86_400_000), 0);
    }

    #[test]
    fn a_snapshot_keeps_calls_of_the_same_millisecond_as_one_run() {
        let mut w = RateWindow::new(1_000, 10_000, Tz::UTC, T0);
        for t in [T0, T0, T0, T0 + 5, T0 + 7, T0 + 7] {
            w.record(t);
        }
        let snap = w.snapshot();
        assert_eq!(snap.recent_runs, vec![(T0, 3), (T0 + 5, 1), (T0 + 7, 2)]);
        let json = serde_json::to_string(&snap).unwrap();
        assert!(
            json.contains("\"recent_runs\":[[") && !json.contains("\"recent\":"),
            "{json}"
        );
        let back: RateSnapshot = serde_json::from_str(&json).unwrap();
        let mut w2 = RateWindow::new(1_000, 10_000, Tz::UTC, T0 + 10);
        w2.restore(&back, T0 + 10);
        assert_eq!(w2.minute_used(T0 + 10), 6);
        assert_eq!(w2.day_used(T0 + 10), 6);
        assert_eq!(w2.snapshot().recent_runs, snap.recent_runs);
    }

    #[test]
    fn a_snapshot_written_one_time_per_call_is_still_read() {
        let json = format!(
            r#"{{"recent":[{t},{t},{u}],"day_start":{T0},"day_count":3,"paused_until":0}}"#,
            t = T0 + 1,
            u = T0 + 2
        );
        let snap: RateSnapshot = serde_json::from_str(&json).unwrap();
        let mut w = RateWindow::new(2, 100, Tz::UTC, T0 + 10);
        w.restore(&snap, T0 + 10);
        assert_eq!(w.day_used(T0 + 10), 3);
        // Only the newest `rpm` calls can block; the window waits for the older of them.
        assert_eq!(w.wait(T0 + 10).ms, T0 + 1 + WINDOW_MS - (T0 + 10));
    }

    #[test]
    fn a_margin_holds_each_dispatch_past_sixty_seconds() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0).with_margin(300);
        w.record(T0);
        assert_eq!(w.minute_reset_at(T0 + 1), Some(T0 + WINDOW_MS + 300));
        assert_eq!(w.wait(T0 + WINDOW_MS).ms, 300);
        assert_eq!(w.wait(T0 + WINDOW_MS + 300).ms, 0);
    }

    #[test]
    fn a_call_sent_just_before_midnight_counts_in_the_next_day_too() {
        let midnight = T0 + 86_400_000;
        let mut w = RateWindow::new(100, 2, Tz::UTC, midnight - 1_000).with_margin(300);
        w.record(midnight - 1_000);
        w.record(midnight - 100);
        assert_eq!(
            w.day_used(midnight + 10),
            1,
            "the call 100 ms before midnight is carried"
        );
        // A call granted ahead and reported after midnight, sent 200 ms before it.
        w.record_at(midnight + 20, midnight - 200);
        assert_eq!(w.day_used(midnight + 20), 2);
        assert_eq!(w.wait(midnight + 20).blocker, Blocker::Rpd);
    }

    #[test]
    fn a_dispatch_moved_across_midnight_counts_in_the_new_day() {
        let midnight = T0 + 86_400_000;
        let mut w = RateWindow::new(100, 2, Tz::UTC, midnight - 1_000).with_margin(250);
        w.record(midnight - 1_000);
        w.move_dispatch(midnight + 20, midnight - 1_000, midnight + 10);
        assert_eq!(w.day_used(midnight + 20), 1);
    }

    #[test]
    fn a_dispatch_moved_after_its_grant_left_the_window_still_holds_its_place() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.record(T0);
        w.move_dispatch(T0 + 60_300, T0, T0 + 1_000);
        assert_eq!(w.wait(T0 + 60_300).ms, 700);
    }

    #[test]
    fn a_dispatch_moves_to_when_the_call_left() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.record(T0);
        w.move_dispatch(T0 + 500, T0, T0 + 40);
        assert_eq!(w.wait(T0 + WINDOW_MS).ms, 40);
        assert_eq!(w.day_used(T0 + 500), 1);
    }

    #[test]
    fn a_damaged_count_cannot_blow_up_the_window() {
        let snap = RateSnapshot {
            recent_runs: vec![(T0, u32::MAX), (T0 + 1, u32::MAX)],
            recent: Vec::new(),
            day_start: T0,
            day_count: 7,
            paused_until: 0,
        };
        let mut w = RateWindow::new(60, 1_000, Tz::UTC, T0 + 10);
        w.restore(&snap, T0 + 10);
        assert_eq!(w.minute_used(T0 + 10), 60);
    }

    #[test]
    fn rpd_day_bounds_in_a_timezone_whose_dst_change_falls_at_midnight() {
        let havana: Tz = "America/Havana".parse().unwrap();
        // 2026-03-08: clocks go from 00:00 to 01:00, so the day starts at 01:00 CDT.
        let start = 1_772_946_000_000;
        assert_eq!(
            day_bounds(havana, start + 3_600_000),
            (start, start + 23 * 3_600_000),
            "a 23-hour day from 01:00"
        );
        assert_eq!(
            day_bounds(havana, start - 1).1,
            start,
            "the day before ends when the next one starts, at 01:00"
        );
        // A day limit used up late on 2026-03-07 frees at 01:00 the next morning.
        let mut w = RateWindow::new(100, 1, havana, start - 1_800_000);
        w.record(start - 1_800_000);
        let wait = w.wait(start - 1_000);
        assert_eq!((wait.ms, wait.blocker), (1_000, Blocker::Rpd));
        assert_eq!(w.wait(start).ms, 0);
        // 2026-11-01: clocks go from 01:00 back to 00:00; the day starts at the first
        // midnight and lasts 25 hours.
        let first_midnight = 1_793_505_600_000;
        assert_eq!(
            day_bounds(havana, first_midnight + 2 * 3_600_000),
            (first_midnight, first_midnight + 25 * 3_600_000)
        );
    }

    #[test]
    fn the_last_representable_day_still_ends_a_day_after_it_began() {
        // Noon UTC on the last day chrono can represent: there is no next day to ask.
        let noon = 8_210_266_833_600_000;
        assert_eq!(
            day_bounds(Tz::UTC, noon),
            (noon - 43_200_000, noon + 43_200_000)
        );
    }

    #[test]
    fn a_call_at_the_first_millisecond_of_the_day_counts_for_that_day() {
        let mut w = RateWindow::new(100, 1, Tz::UTC, T0);
        w.record(T0);
        assert_eq!(w.day_used(T0), 1);
        assert_eq!(w.wait(T0).blocker, Blocker::Rpd);
    }

    #[test]
    fn a_reload_that_lowers_rpm_below_the_current_count_refuses_the_next_call() {
        let mut w = RateWindow::new(3, 100, Tz::UTC, T0);
        w.record(T0);
        w.record(T0 + 1_000);
        assert_eq!(w.wait(T0 + 2_000).ms, 0);
        w.set_limits(2, 100);
        assert_eq!(w.limits(), (2, 100));
        let wait = w.wait(T0 + 2_000);
        assert_eq!((wait.ms, wait.blocker), (58_000, Blocker::Rpm));
        w.set_limits(2, 2);
        assert_eq!(w.wait(T0 + 2_000).blocker, Blocker::Rpd);
    }

    #[test]
    fn a_reload_that_sets_a_margin_holds_calls_already_made_longer() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.record(T0);
        w.set_margin(300);
        assert_eq!(w.wait(T0 + WINDOW_MS).ms, 300);
        w.set_margin(-5);
        assert_eq!(w.wait(T0 + WINDOW_MS).ms, 0, "a negative margin is none");
    }

    #[test]
    fn a_reset_lifts_a_429_pause() {
        let mut w = RateWindow::new(10, 100, Tz::UTC, T0);
        w.pause_until(T0 + 30_000);
        w.clear_pause();
        assert_eq!(w.wait(T0).ms, 0);
        assert_eq!(w.paused_until(T0), None);
        assert_eq!(w.room(T0), 10);
    }

    #[test]
    fn a_pause_is_over_at_its_end() {
        let mut w = RateWindow::new(10, 100, Tz::UTC, T0);
        w.pause_until(T0 + 30_000);
        assert_eq!(w.paused_until(T0 + 29_999), Some(T0 + 30_000));
        assert_eq!(w.paused_until(T0 + 30_000), None);
        assert_eq!(w.room(T0 + 29_999), 0);
        assert_eq!(w.room(T0 + 30_000), 10);
    }

    #[test]
    fn start_after_during_a_429_pause_starts_counting_when_it_ends() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.pause_until(T0 + 30_000);
        assert_eq!(w.start_after(T0, 0), 30_000);
        assert_eq!(w.start_after(T0, 1), 90_000);
        let mut w = RateWindow::new(5, 100, Tz::UTC, T0);
        w.pause_until(T0 + 30_000);
        assert_eq!(
            w.start_after(T0, 3),
            30_000,
            "room for all: they go when it ends"
        );
    }

    #[test]
    fn a_call_taken_back_after_midnight_leaves_the_new_days_count_alone() {
        let midnight = T0 + 86_400_000;
        let mut w = RateWindow::new(100, 10, Tz::UTC, midnight - 1_000);
        w.record(midnight - 1_000);
        w.record(midnight + 10);
        w.unrecord(midnight - 1_000);
        assert_eq!(
            w.day_used(midnight + 20),
            1,
            "yesterday's call was not today's"
        );
        assert_eq!(w.minute_used(midnight + 20), 1);
        // Within the margin before midnight a call counts today too, and is taken back.
        let mut w = RateWindow::new(100, 10, Tz::UTC, midnight - 1_000).with_margin(300);
        w.record(midnight - 100);
        w.record(midnight + 10);
        assert_eq!(w.day_used(midnight + 10), 2);
        w.unrecord(midnight - 100);
        assert_eq!(w.day_used(midnight + 20), 1);
    }

    #[test]
    fn when_two_limits_free_at_the_same_moment_the_first_one_checked_is_named() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.record(T0);
        // The pause and the window both end at T0 + 60,000: the pause is named.
        w.pause_until(T0 + WINDOW_MS);
        assert_eq!(w.wait(T0 + 1_000).blocker, Blocker::Paused);
        // Likewise with a call granted ahead: the window with it frees at the same time.
        let mut w = RateWindow::new(2, 100, Tz::UTC, T0);
        w.record(T0);
        w.pause_until(T0 + WINDOW_MS);
        let wait = w.wait_with(T0, 1);
        assert_eq!((wait.ms, wait.blocker), (WINDOW_MS, Blocker::Paused));
    }

    #[test]
    fn permits_granted_ahead_count_against_the_day_limit() {
        let mut w = RateWindow::new(100, 3, Tz::UTC, T0);
        w.record(T0);
        assert_eq!(w.wait_with(T0 + 10, 1).ms, 0, "two of three used");
        let wait = w.wait_with(T0 + 10, 2);
        assert_eq!((wait.ms, wait.blocker), (86_400_000 - 10, Blocker::Rpd));
    }

    #[test]
    fn permits_granted_ahead_that_fill_the_window_exactly_hold_it_from_now() {
        let mut w = RateWindow::new(3, 100, Tz::UTC, T0);
        w.record(T0);
        w.record(T0 + 1_000);
        // Two recorded and three ahead on an RPM of three: the oldest that matters is a
        // call granted ahead, counted at now.
        let wait = w.wait_with(T0 + 2_000, 3);
        assert_eq!((wait.ms, wait.blocker), (WINDOW_MS, Blocker::Rpm));
    }

    #[test]
    fn a_call_reported_exactly_one_window_late_holds_no_place() {
        let mut w = RateWindow::new(1, 100, Tz::UTC, T0);
        w.record_at(T0 + WINDOW_MS, T0);
        assert_eq!(w.last_dispatch(), None);
        assert_eq!(w.day_used(T0 + WINDOW_MS), 1, "it still counts today");
        w.record_at(T0 + WINDOW_MS, T0 + 1);
        assert_eq!(w.last_dispatch(), Some(T0 + 1));
    }

    #[test]
    fn a_moved_dispatch_leaves_the_other_calls_in_place() {
        let mut w = RateWindow::new(3, 100, Tz::UTC, T0);
        w.record(T0);
        w.record(T0 + 10);
        w.move_dispatch(T0 + 500, T0, T0 + 40);
        assert_eq!(w.snapshot().recent_runs, vec![(T0 + 10, 1), (T0 + 40, 1)]);
        assert_eq!(w.minute_reset_at(T0 + 500), Some(T0 + 10 + WINDOW_MS));
    }

    #[test]
    fn the_status_readings_follow_the_calls() {
        let mut w = RateWindow::new(5, 100, Tz::UTC, T0 + 5_000);
        assert_eq!(w.last_dispatch(), None);
        assert_eq!(w.day_reset_at(T0 + 5_000), T0 + 86_400_000);
        w.record(T0 + 5_000);
        w.record(T0 + 6_000);
        assert_eq!(w.last_dispatch(), Some(T0 + 6_000));
        assert_eq!(w.minute_used(T0 + 7_000), 2);
        assert_eq!(w.day_used(T0 + 7_000), 2);
        assert_eq!(w.minute_reset_at(T0 + 7_000), Some(T0 + 5_000 + WINDOW_MS));
        assert_eq!(w.day_reset_at(T0 + 86_400_000), T0 + 2 * 86_400_000);
    }

    #[test]
    fn the_start_several_windows_ahead_in_a_large_window_matches_placing_each_call() {
        let mut w = RateWindow::new(100_000, 1_000_000_000, Tz::UTC, T0);
        for i in 0..1_000 {
            w.record(T0 + i * 10);
        }
        let now = T0 + 20_000;
        for n in [98_999, 99_000, 99_001, 250_000] {
            let first = w.wait(now);
            assert_eq!(
                w.start_after(now, n),
                w.simulate_start(now, now + first.ms, n),
                "n = {n}"
            );
        }
        // The 99,000 free places go now; then the recorded calls leave the window one by
        // one from T0 + 60 s; a whole window of new calls later, one window after now.
        assert_eq!(w.start_after(now, 98_999), 0);
        assert_eq!(w.start_after(now, 99_000), T0 + 60_000 - now);
        assert_eq!(w.start_after(now, 100_000), 60_000);
    }

    #[test]
    fn a_start_billions_of_calls_ahead_is_found_without_placing_each_call() {
        // Placing four billion calls one by one would take minutes; the closed form
        // answers at once, and the day limit (u32::MAX) does not bind.
        let mut w = RateWindow::new(1_000, u32::MAX, Tz::UTC, T0).with_margin(250);
        w.record(T0);
        let n = 4_000_000_000usize;
        let rounds = (n / 1_000) as Millis;
        assert_eq!(w.start_after(T0, n), rounds * 60_250);
    }

    proptest! {
        /// The constant-time start of the `n`-th next dispatch agrees with placing every
        /// dispatch in turn, whatever the recorded calls, the limits, the margin and `n`
        /// (several rounds of the window included).
        #[test]
        fn start_after_agrees_with_placing_every_dispatch(
            rpm in 1u32..12,
            rpd in 1u32..60,
            margin in 0i64..500,
            gaps in proptest::collection::vec(0i64..20_000, 0..40),
            later in 0i64..90_000,
            n in 1usize..50,
        ) {
            let mut w = RateWindow::new(rpm, rpd, Tz::UTC, T0).with_margin(margin);
            let mut now = T0 + 86_400_000 - 200_000;
            for gap in gaps {
                now += gap;
                if w.wait(now).ms == 0 {
                    w.record(now);
                }
            }
            now += later;
            let first = w.wait(now);
            let simulated = w.simulate_start(now, now + first.ms, n);
            prop_assert_eq!(w.start_after(now, n), simulated);
        }

        /// Whatever the arrival pattern, a caller that dispatches only when `wait` says 0
        /// never puts more than `rpm` calls into any half-open 60-second interval, nor more
        /// than `rpd` into one UTC day.
        #[test]
        fn never_more_than_rpm_in_any_window(
            rpm in 1u32..20,
            rpd in 1u32..200,
            gaps in proptest::collection::vec(0i64..30_000, 1..400),
        ) {
            let mut w = RateWindow::new(rpm, rpd, Tz::UTC, T0);
            let mut now = T0;
            let mut sent = Vec::new();
            for gap in gaps {
                now += gap;
                if w.wait(now).ms == 0 {
                    w.record(now);
                    sent.push(now);
                }
            }
            for (i, &start) in sent.iter().enumerate() {
                let in_window = sent[i..].iter().take_while(|&&t| t < start + WINDOW_MS).count();
                prop_assert!(in_window <= rpm as usize);
            }
            let mut per_day = std::collections::HashMap::new();
            for t in &sent {
                *per_day.entry(t.div_euclid(86_400_000)).or_insert(0u32) += 1;
            }
            prop_assert!(per_day.values().all(|&c| c <= rpd));
        }

        /// A provider counting *arrivals* — each call arriving 0..=margin after bkvy
        /// recorded it, the delay varying per call — never sees more than `rpm` calls in
        /// any 60-second interval nor more than `rpd` in one UTC day, across the day
        /// boundary included.
        #[test]
        fn arrivals_never_exceed_the_limits_with_a_margin(
            rpm in 1u32..12,
            rpd in 1u32..60,
            margin in 0i64..500,
            start_before_midnight in 0i64..120_000,
            steps in proptest::collection::vec((0i64..20_000, 0i64..=1_000), 1..300),
        ) {
            let t0 = T0 + 86_400_000 - start_before_midnight;
            let mut w = RateWindow::new(rpm, rpd, Tz::UTC, t0).with_margin(margin);
            let mut now = t0;
            let mut arrivals = Vec::new();
            for (gap, delay_permille) in steps {
                now += gap;
                if w.wait(now).ms == 0 {
                    w.record(now);
                    arrivals.push(now + margin * delay_permille / 1_000);
                }
            }
            arrivals.sort_unstable();
            for (i, &start) in arrivals.iter().enumerate() {
                let in_window = arrivals[i..].iter().take_while(|&&t| t < start + WINDOW_MS).count();
                prop_assert!(in_window <= rpm as usize, "{} arrivals in 60 s from {}", in_window, start);
            }
            let mut per_day = std::collections::HashMap::new();
            for t in &arrivals {
                *per_day.entry(t.div_euclid(86_400_000)).or_insert(0u32) += 1;
            }
            prop_assert!(per_day.values().all(|&c| c <= rpd), "{:?}", per_day);
        }

        /// A caller that waits exactly as long as told is admitted at that moment.
        #[test]
        fn waiting_as_told_is_enough(
            rpm in 1u32..10,
            calls in 1usize..60,
        ) {
            let mut w = RateWindow::new(rpm, 10_000, Tz::UTC, T0);
            let mut now = T0;
            for _ in 0..calls {
                let wait = w.wait(now);
                now += wait.ms;
                prop_assert_eq!(w.wait(now).ms, 0);
                w.record(now);
            }
        }

        /// The queue estimate for the n-th dispatch equals what dispatching n+1 calls as
        /// early as allowed really gives.
        #[test]
        fn start_after_matches_a_real_run(rpm in 1u32..6, rpd in 1u32..12, n in 0usize..15) {
            let mut w = RateWindow::new(rpm, rpd, Tz::UTC, T0);
            let estimate = w.start_after(T0, n);
            let mut now = T0;
            for _ in 0..=n {
                now += w.wait(now).ms;
                w.record(now);
            }
            prop_assert_eq!(estimate, now - T0);
        }
    }
}
