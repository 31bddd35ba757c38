//! Mailbox metrics per actor kind, for operators.
//!
//! actix does not expose a mailbox's length, so senders count what they send
//! ([`MailboxMeter::sent`]) and handlers count what they handle
//! ([`MailboxMeter::handling`]); the difference is the backlog. The one message on the
//! request path that the request waits for, `Reserve`, carries its send time, and its
//! handler records how long it waited in the mailbox ([`MailboxMeter::waited`]) into a
//! fixed-bucket histogram.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// Upper bounds (seconds) of the mailbox-wait histogram buckets.
pub const WAIT_BUCKETS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.05, 0.25, 1.0,
];

/// Counters of one actor kind (shared by all actors of that kind).
#[derive(Debug, Default)]
pub struct MailboxStats {
    sent: AtomicU64,
    handled: AtomicU64,
    handle_nanos: AtomicU64,
    wait_buckets: [AtomicU64; WAIT_BUCKETS.len()],
    wait_count: AtomicU64,
    wait_nanos: AtomicU64,
}

/// A cheap handle to an actor kind's counters.
#[derive(Debug, Clone, Default)]
pub struct MailboxMeter(Arc<MailboxStats>);

/// Counts one handled message and its handling time when dropped.
#[derive(Debug)]
pub struct Handling {
    meter: Arc<MailboxStats>,
    started: Instant,
}

impl Drop for Handling {
    fn drop(&mut self) {
        self.meter.handled.fetch_add(1, Ordering::Relaxed);
        let nanos = self.started.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.meter.handle_nanos.fetch_add(nanos, Ordering::Relaxed);
    }
}

/// A point-in-time reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MailboxReading {
    /// Messages sent to actors of this kind (by senders that count).
    pub sent: u64,
    /// Messages handled.
    pub handled: u64,
    /// Sent but not yet handled.
    pub backlog: u64,
    /// Total time spent in handlers, nanoseconds.
    pub handle_nanos: u64,
    /// Counts per [`WAIT_BUCKETS`] bucket (between the previous bound and this one).
    pub wait_buckets: [u64; WAIT_BUCKETS.len()],
    /// Messages whose mailbox wait was measured.
    pub wait_count: u64,
    /// Sum of the measured mailbox waits, nanoseconds.
    pub wait_nanos: u64,
}

impl MailboxMeter {
    /// A new set of counters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Call when sending a message to an actor of this kind.
    pub fn sent(&self) {
        self.0.sent.fetch_add(1, Ordering::Relaxed);
    }

    /// Call at the start of a handler; the guard counts it when dropped.
    pub fn handling(&self) -> Handling {
        Handling {
            meter: self.0.clone(),
            started: Instant::now(),
        }
    }

    /// Call at the start of handling a message sent at `sent_at`: records its mailbox wait.
    pub fn waited(&self, sent_at: Instant) {
        let wait = sent_at.elapsed();
        let secs = wait.as_secs_f64();
        if let Some(i) = WAIT_BUCKETS.iter().position(|&b| secs <= b) {
            self.0.wait_buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.0.wait_count.fetch_add(1, Ordering::Relaxed);
        let nanos = wait.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.0.wait_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Current counters.
    pub fn read(&self) -> MailboxReading {
        let sent = self.0.sent.load(Ordering::Relaxed);
        let handled = self.0.handled.load(Ordering::Relaxed);
        let mut wait_buckets = [0; WAIT_BUCKETS.len()];
        for (out, b) in wait_buckets.iter_mut().zip(&self.0.wait_buckets) {
            *out = b.load(Ordering::Relaxed);
        }
        MailboxReading {
            sent,
            handled,
            backlog: sent.saturating_sub(handled),
            handle_nanos: self.0.handle_nanos.load(Ordering::Relaxed),
            wait_buckets,
            wait_count: self.0.wait_count.load(Ordering::Relaxed),
            wait_nanos: self.0.wait_nanos.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counts_backlog_and_cumulative_wait_buckets() {
        let m = MailboxMeter::new();
        m.sent();
        m.sent();
        {
            let _h = m.handling();
        }
        m.waited(Instant::now());
        m.waited(Instant::now() - Duration::from_millis(3));
        let r = m.read();
        assert_eq!((r.sent, r.handled, r.backlog), (2, 1, 1));
        assert_eq!(r.wait_count, 2);
        assert_eq!(r.wait_buckets[0], 1, "one wait under 10 µs");
        assert_eq!(r.wait_buckets.iter().sum::<u64>(), 2);
        assert!(r.wait_nanos >= 3_000_000);
    }
}
